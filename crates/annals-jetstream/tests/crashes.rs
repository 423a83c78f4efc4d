//! Exactly once under crashes, against a real `nats-server`: while writers
//! append, relays are aborted at random moments (mid-publish, mid-ack),
//! the server is killed (`SIGKILL`) and restarted mid-relay, and one
//! restart comes after the stream's duplicate window (shortened to 1 s)
//! has passed, so `Nats-Msg-Id` cannot hide a duplicate. Afterwards
//! JetStream holds every position once, in order, and a mirror that ran
//! through the same crashes equals the source. The seed is printed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::{EventData, ExpectedVersion, Store};
use annals_jetstream::{mirror, published, relay, MirrorOptions, RelayOptions};
use common::{assert_exactly_once, runtime, server};

/// xorshift64*: enough randomness for crash points, reproducible by seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn appender(store: Store, stop: Arc<AtomicBool>, seed: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = Rng(seed | 1);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let n = 1 + rng.below(20) as usize;
            let events = (0..n)
                .map(|k| EventData::new("T", format!("{i}-{k}")).with_metadata("m"))
                .collect();
            if i.is_multiple_of(5) {
                let second = vec![EventData::new("U", "u")];
                store
                    .append_many(vec![
                        (format!("a-{}", i % 13), ExpectedVersion::Any, events),
                        (format!("b.{}", i % 3), ExpectedVersion::Any, second),
                    ])
                    .unwrap()
                    .unwrap();
            } else {
                store
                    .append(&format!("a-{}", i % 13), ExpectedVersion::Any, events)
                    .unwrap()
                    .unwrap();
            }
            i += 1;
            std::thread::sleep(Duration::from_micros(200));
        }
    })
}

#[test]
fn aborted_relays_and_server_crashes_publish_every_position_once_in_order() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let Some(mut server) = server(dirs[0].path()) else {
        return;
    };
    let url = server.url();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed | 1);
    let rt = runtime();
    let source = Store::open(dirs[1].path()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = appender(source.clone(), Arc::clone(&stop), seed);

    let mut options = RelayOptions::new(&url, "FEED");
    options.stream.duplicate_window = Duration::from_secs(1);
    options.acks_in_flight = 64;
    options.log = false;
    options.backoff_max = Duration::from_millis(200);
    let replica_dir = dirs[2].path().to_owned();
    let replica = common::open_replica(&replica_dir);
    let mut mirror_options = MirrorOptions::new(&url, "FEED");
    mirror_options.log = false;
    mirror_options.backoff_max = Duration::from_millis(200);
    let mirroring = {
        let (replica, dir, options) =
            (replica.clone(), replica_dir.clone(), mirror_options.clone());
        rt.spawn(async move { mirror(replica, &dir, options).await })
    };

    let started = std::time::Instant::now();
    for round in 0..30 {
        eprintln!("round {round} at {:?}", started.elapsed());
        let task = rt.spawn(relay(source.clone(), options.clone()));
        std::thread::sleep(Duration::from_millis(rng.below(150)));
        if round % 6 == 3 {
            // The server crashes mid-relay and comes back.
            server.restart().unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(300)));
        }
        task.abort();
        let _ = rt.block_on(task);
        if round % 10 == 9 {
            // Both crash at once.
            server.restart().unwrap();
        }
        if round == 15 {
            // The next relay starts after the duplicate window has passed.
            std::thread::sleep(Duration::from_millis(1_300));
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let end = source.position_end();
    assert!(end > 1_000, "only {end} events appended");
    options.until = Some(end);
    eprintln!("final relay of {end} at {:?}", started.elapsed());
    rt.block_on(relay(source.clone(), options)).unwrap();
    eprintln!("relayed at {:?}", started.elapsed());
    assert_exactly_once(&source, &rt.block_on(published(&url, "FEED")).unwrap(), end);

    // The mirror ran through the same crashes; let it finish.
    mirroring.abort();
    let _ = rt.block_on(mirroring);
    mirror_options.until = Some(end);
    rt.block_on(mirror(replica.clone(), &replica_dir, mirror_options))
        .unwrap();
    eprintln!("mirrored at {:?}", started.elapsed());
    let all = |s: &Store| s.read_all_replicated(0, usize::MAX).unwrap();
    assert_eq!(all(&replica), all(&source));
    replica.verify().unwrap();
}
