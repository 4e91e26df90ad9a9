//! A cluster node for the multi-process scenarios: hosts a `Journal` registered with the
//! receptionist under "journal", with the default failure detection, and prints
//! `READY <gossip addr> <remote addr> <incarnation>` once it has joined. Closing its stdin
//! makes it leave the cluster gracefully and exit; killing it is a crash.
//!
//! Usage: `cluster-peer <gossip listen addr> <remote listen addr> [seed gossip addr]`.

use postbox::prelude::*;
use postbox_cluster::{Cluster, ClusterConfig, ServiceKey};
use postbox_remote::{Remote, RemoteConfig};
use postbox_tests::{Journal, CLUSTER, SECRET};
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let gossip: SocketAddr = args.next().ok_or("gossip address")?.parse()?;
    let remote_at: SocketAddr = args.next().ok_or("remote address")?.parse()?;
    let seeds: Vec<String> = args.collect();
    let system = ActorSystem::new();
    let remote = Remote::start(&system, RemoteConfig::new(remote_at, CLUSTER, SECRET)).await?;
    let cluster = Cluster::join(
        &system,
        &remote,
        ClusterConfig::new(CLUSTER, SECRET, gossip).seeds(seeds),
    )
    .await?;
    let journal = system.spawn(Props::new(Journal::default))?;
    cluster
        .receptionist()
        .register(&ServiceKey::<Journal>::new("journal"), &journal)
        .await?;
    println!(
        "READY {} {} {}",
        cluster.gossip_addr(),
        remote.addr(),
        cluster.node().incarnation
    );
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    cluster.leave().await?;
    remote.shutdown().await;
    system.shutdown().await;
    Ok(())
}
