//! An existing actix actor, reached from another node through postbox.
//!
//! The actix code below is what an application already has; nothing in it changes. Eight
//! lines (marked `bridge`) make the actor reachable from any postbox node: its message becomes
//! a postbox message with a wire tag, its host answers that message from other nodes, and the
//! host is spawned, exposed on the node's transport and registered by name. A second node
//! (another `ActorSystem` with its own transport, in this process for the demo; it could as
//! well be another machine) looks it up and asks it.
//!
//! ```sh
//! cargo run --release --example actix_bridge
//! ```

use postbox::prelude::*;
use postbox_actix::{bridge_message, remote_actix, ActixHost, ActixRuntime};
use postbox_remote::{Remote, RemoteConfig};
use serde::{Deserialize, Serialize};

// ---- existing actix code, unchanged --------------------------------------------------------

/// Greets people and remembers how many it has greeted.
#[derive(Default)]
struct Greeter {
    greeted: u64,
}

impl actix::Actor for Greeter {
    type Context = actix::Context<Self>;
}

#[derive(Serialize, Deserialize)]
struct Greet(String);

impl actix::Message for Greet {
    type Result = String;
}

impl actix::Handler<Greet> for Greeter {
    type Result = String;

    fn handle(&mut self, Greet(name): Greet, _: &mut actix::Context<Self>) -> String {
        self.greeted += 1;
        format!("hello {name}, you are visitor #{}", self.greeted)
    }
}

// ---- the bridge ----------------------------------------------------------------------------

bridge_message!(Greet, "demo.Greet"); // bridge: Greet is a postbox message that may travel
remote_actix!(Greeter: Greet); // bridge: the host answers Greet from other nodes

/// Starts node A: the actix actor as usual, then its host, exposed and registered.
async fn node_a(actix: &ActixRuntime) -> Result<(ActorSystem, Remote), Box<dyn std::error::Error>> {
    let greeter = actix.start(|_| Greeter::default()); // existing: the actix actor's address
    let system = ActorSystem::new(); // bridge
    let config = RemoteConfig::new("127.0.0.1:0".parse()?, "demo", b"demo secret"); // bridge
    let remote = Remote::start(&system, config).await?; // bridge
    remote.expose::<ActixHost<Greeter>>(); // bridge
    let host = system.spawn(ActixHost::props(greeter))?; // bridge
    system.registry().register("greeter", &host)?; // bridge
    Ok((system, remote))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // actix keeps its own System, on a thread of its own.
    let actix = ActixRuntime::new("actix")?;
    let (system_a, remote_a) = node_a(&actix).await?;

    // Node B knows nothing about actix: it sees a remote actor that answers `Greet`.
    let system_b = ActorSystem::new();
    let config = RemoteConfig::new("127.0.0.1:0".parse()?, "demo", b"demo secret");
    let remote_b = Remote::start(&system_b, config).await?;
    let greeter: ActorRef<ActixHost<Greeter>> = remote_b.lookup(remote_a.addr(), "greeter").await?;
    for name in ["ada", "grace", "barbara"] {
        let reply = greeter.ask(Greet(name.into())).await?;
        println!("node B asked node A's actix actor: {reply}");
    }

    remote_b.shutdown().await;
    remote_a.shutdown().await;
    system_b.shutdown().await;
    system_a.shutdown().await;
    tokio::task::spawn_blocking(move || actix.stop()).await??;
    Ok(())
}
