//! Network namespaces for the partition tests (`tests/downing.rs`, `tests/sharding.rs`): real cuts,
//! made and removed by the test, which runs as root.

use std::process::Command as StdCommand;

/// Network namespaces on two bridges: every node starts on the first; `cut` moves some to
/// the second (they still reach each other, not the rest), `heal` moves them back. Removed
/// on drop.
pub(crate) struct Lan {
    id: String,
    subnet: String,
    nodes: usize,
}

pub(crate) fn ip(args: &[&str]) {
    let output = StdCommand::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lan {
    pub(crate) fn new(nodes: usize) -> Lan {
        ensure_iproute2();
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
        let lan = Lan {
            id: format!("{:04x}", seed & 0xffff),
            subnet: format!("10.213.{}", seed % 250),
            nodes,
        };
        for bridge in [lan.bridge(1), lan.bridge(2)] {
            ip(&["link", "add", &bridge, "type", "bridge"]);
            ip(&["link", "set", &bridge, "up"]);
        }
        for i in 0..nodes {
            let (ns, outer, inner) = (
                lan.ns(i),
                format!("pb{}v{i}", lan.id),
                format!("pb{}p{i}", lan.id),
            );
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", lan.addr(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&["link", "set", &outer, "master", &lan.bridge(1)]);
            ip(&["link", "set", &outer, "up"]);
        }
        lan
    }

    fn bridge(&self, n: u8) -> String {
        format!("pb{}b{n}", self.id)
    }

    pub(crate) fn ns(&self, i: usize) -> String {
        format!("pb{}n{i}", self.id)
    }

    pub(crate) fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Moves `side` to the second bridge: a real cut between it and the rest.
    pub(crate) fn cut(&self, side: &[usize]) {
        for i in side {
            ip(&[
                "link",
                "set",
                &format!("pb{}v{i}", self.id),
                "master",
                &self.bridge(2),
            ]);
        }
    }

    /// Puts every node back on the first bridge.
    pub(crate) fn heal(&self) {
        for i in 0..self.nodes {
            ip(&[
                "link",
                "set",
                &format!("pb{}v{i}", self.id),
                "master",
                &self.bridge(1),
            ]);
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = StdCommand::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        for bridge in [self.bridge(1), self.bridge(2)] {
            let _ = StdCommand::new("ip")
                .args(["link", "del", &bridge])
                .status();
        }
    }
}

/// Installs Debian's `iproute2` if `ip` is missing (as `.ci/run` does for its tools).
fn ensure_iproute2() {
    if StdCommand::new("ip").arg("-V").output().is_ok() {
        return;
    }
    let installed = StdCommand::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2",
        ])
        .status()
        .expect("run apt-get");
    assert!(installed.success(), "cannot install iproute2");
}
