//! [`PgServer`]: a real PostgreSQL server for tests and benches, started from Debian's
//! `postgresql` package on a free loopback port and removed when dropped.
//!
//! Installs the package with `apt-get` if no server binaries are found (needs root). The
//! server refuses to run as root, so as root it runs as the unprivileged user `postbox-pg`,
//! created if missing. Its data directory is a fresh temporary directory; authentication is
//! `trust` on loopback only, and the only user is `postgres`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

/// The unprivileged user the server runs as when the tests run as root.
pub const SERVER_USER: &str = "postbox-pg";

/// A PostgreSQL server of its own, on loopback. Stopped and deleted on drop.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `(uid, gid)` to run the server's tools as (when we are root).
    user: Option<(u32, u32)>,
    running: bool,
}

impl PgServer {
    /// Installs PostgreSQL if needed, creates a database cluster in a temporary directory
    /// and starts it on a free loopback port, with `fsync` on.
    pub fn start() -> Result<Self, String> {
        let bin = find_bin().or_else(|_| {
            install()?;
            find_bin()
        })?;
        let user = if is_root()? {
            Some(server_user()?)
        } else {
            None
        };
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("postbox-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("giving {} to {SERVER_USER}: {e}", dir.display()))?;
        }
        let mut server = Self {
            bin,
            dir,
            port: free_port()?,
            user,
            running: false,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "--no-locale".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        server.resume()?;
        Ok(server)
    }

    /// The connection string (`host=127.0.0.1 port=.. user=postgres dbname=postgres`).
    pub fn url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (fast shutdown: connections are closed, nothing is lost).
    pub fn stop(&mut self) -> Result<(), String> {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again on the same port, with the same data.
    pub fn resume(&mut self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let started = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        );
        if let Err(e) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{e}\nserver log:\n{log}"));
        }
        self.running = true;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Result<Output, String> {
        let mut command = Command::new(self.bin.join(tool));
        command.args(args).env("LC_ALL", "C").current_dir(&self.dir);
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        checked(command, tool)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let data = self.data();
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn checked(mut command: Command, what: &str) -> Result<Output, String> {
    let output = command
        .output()
        .map_err(|e| format!("running {what}: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has the server tools.
fn find_bin() -> Result<PathBuf, String> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| format!("{}: {e}", root.display()))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no PostgreSQL server under {}", root.display()))
}

fn install() -> Result<(), String> {
    if !is_root()? {
        return Err("PostgreSQL is not installed (apt-get install postgresql, as root)".into());
    }
    let apt = |args: &[&str]| {
        let mut command = Command::new("apt-get");
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        checked(command, "apt-get")
    };
    let install = [
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "postgresql",
    ];
    if apt(&install).is_err() {
        apt(&["update", "-q"])?;
        apt(&install)?;
    }
    Ok(())
}

fn is_root() -> Result<bool, String> {
    let output = checked(
        {
            let mut c = Command::new("id");
            c.arg("-u");
            c
        },
        "id -u",
    )?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// The uid and gid of [`SERVER_USER`], created if missing.
fn server_user() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let mut command = Command::new("id");
        command.args([flag, SERVER_USER]);
        let output = checked(command, "id")?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("id {flag} {SERVER_USER}: {e}"))
    };
    // One creation at a time in this process; another process may race us, which the
    // second look-up below tolerates.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    if id("-u").is_err() {
        let mut command = Command::new("useradd");
        command.args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SERVER_USER,
        ]);
        if let Err(e) = checked(command, "useradd") {
            id("-u").map_err(|_| e)?;
        }
    }
    Ok((id("-u")?, id("-g")?))
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| format!("finding a free port: {e}"))
}
