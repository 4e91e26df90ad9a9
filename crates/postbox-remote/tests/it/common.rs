//! What the two-node tests share: nodes hosting a `Journal`, the TLS fixtures, and the
//! testkit's bounded waits.

pub(crate) use crate::actors::*;
pub(crate) use postbox_testkit::{remote_config, until, within, RemoteNode, TestProbe, PATIENCE};

use postbox::prelude::*;
use postbox_remote::{Remote, RemoteConfig, TlsConfig};

/// A test node (the testkit's [`remote_config`]) hosting a `Journal` registered as "journal".
pub(crate) async fn host() -> (ActorSystem, Remote, ActorRef<Journal>) {
    host_with(remote_config()).await
}

/// [`host`] with the given transport settings.
pub(crate) async fn host_with(config: RemoteConfig) -> (ActorSystem, Remote, ActorRef<Journal>) {
    let (system, remote) = client_with(config).await;
    let journal = serve_journal(&system, &remote);
    (system, remote, journal)
}

/// A test node with nothing on it.
pub(crate) async fn client() -> (ActorSystem, Remote) {
    client_with(remote_config()).await
}

/// [`client`] with the given transport settings.
pub(crate) async fn client_with(config: RemoteConfig) -> (ActorSystem, Remote) {
    let RemoteNode { system, remote, .. } = RemoteNode::start_with(config).await;
    (system, remote)
}

/// Mutual TLS from the fixtures (`tests/fixtures/tls`, made by its `generate.sh`): `"node"`
/// has a certificate from the cluster CA, `"rogue-node"` one from an unrelated CA (both trust
/// only their own CA).
pub(crate) fn tls(node: &str) -> TlsConfig {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let ca = if node == "rogue-node" {
        "rogue-ca.pem"
    } else {
        "ca.pem"
    };
    TlsConfig::from_files(
        dir.join(ca),
        dir.join(format!("{node}.pem")),
        dir.join(format!("{node}-key.pem")),
    )
    .expect("TLS fixtures")
}
