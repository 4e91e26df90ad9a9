//! A peer node for the actix scenario: hosts an actix `Tally` (on an actix System thread)
//! behind an `ActixHost` registered as "tally", prints `LISTENING <addr>` and serves until
//! its stdin closes (or it is killed).

#[path = "../actix/fixture.rs"]
mod fixture;

use fixture::Tally;
use postbox::prelude::*;
use postbox_actix::{ActixHost, ActixRuntime};
use postbox_remote::Remote;
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let actix = ActixRuntime::new("actix")?;
    let system = ActorSystem::new();
    let remote = Remote::start(&system, postbox_tests::config(postbox_tests::SECRET)).await?;
    remote.expose::<ActixHost<Tally>>();
    let host = system.spawn(
        ActixHost::builder(actix.start(|_| Tally::default()))
            .liveness_interval(Duration::from_millis(20))
            .props(),
    )?;
    system.registry().register("tally", &host)?;
    println!("LISTENING {}", remote.addr());
    // Serve until the parent closes our stdin.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    remote.shutdown().await;
    system.shutdown().await;
    tokio::task::spawn_blocking(move || actix.stop()).await??;
    Ok(())
}
