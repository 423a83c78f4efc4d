//! Relay and mirror against a real `nats-server`: the relay publishes every
//! position once, in order, with subjects and headers that decode back to
//! the event; a restarted relay resumes where JetStream is; the mirror's
//! `$all` equals the source's record for record and `verify` passes; and
//! every refusal (another store's stream, a store behind its stream, a
//! stream with wrong settings, a mirror of something else) writes nothing.

mod common;

use annals::{EventData, ExpectedVersion, Store};
use annals_jetstream::{
    mirror, published, relay, subject_for, Error, MirrorOptions, RelayOptions, MIRROR_OF_FILE_NAME,
};
use common::{assert_exactly_once, fill, runtime, server};

fn relay_options(url: &str, stream: &str, until: u64) -> RelayOptions {
    let mut options = RelayOptions::new(url, stream);
    options.until = Some(until);
    options.acks_in_flight = 7;
    options.batch_events = 5;
    options
}

fn mirror_options(url: &str, stream: &str, until: u64) -> MirrorOptions {
    let mut options = MirrorOptions::new(url, stream);
    options.until = Some(until);
    options.batch_events = 3;
    options
}

#[test]
fn a_relayed_feed_is_mirrored_record_for_record_and_both_resume() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let Some(server) = server(dirs[0].path()) else {
        return;
    };
    let url = server.url();
    let rt = runtime();
    let source = Store::open(dirs[1].path()).unwrap();
    fill(&source, 0);
    let end = source.position_end();
    let report = rt
        .block_on(relay(source.clone(), relay_options(&url, "FEED", end)))
        .unwrap();
    assert_eq!(report.published, end);
    let messages = rt.block_on(published(&url, "FEED")).unwrap();
    assert_exactly_once(&source, &messages, end);
    for m in &messages {
        assert_eq!(m.subject, subject_for("annals", &m.event.event.stream));
    }

    let mirror_dir = dirs[2].path();
    let replica = common::open_replica(mirror_dir);
    let got = rt
        .block_on(mirror(
            replica.clone(),
            mirror_dir,
            mirror_options(&url, "FEED", end),
        ))
        .unwrap();
    assert_eq!(got, end);
    let all = |s: &Store| s.read_all_replicated(0, usize::MAX).unwrap();
    assert_eq!(all(&replica), all(&source));
    replica.verify().unwrap();

    // More appends: a new relay resumes after what JetStream holds (it
    // publishes only the new ones), a new mirror after its own end.
    fill(&source, 1);
    let end2 = source.position_end();
    let report = rt
        .block_on(relay(source.clone(), relay_options(&url, "FEED", end2)))
        .unwrap();
    assert_eq!(report.published, end2 - end);
    assert_exactly_once(
        &source,
        &rt.block_on(published(&url, "FEED")).unwrap(),
        end2,
    );
    drop(replica);
    let replica = common::open_replica(mirror_dir);
    rt.block_on(mirror(
        replica.clone(),
        mirror_dir,
        mirror_options(&url, "FEED", end2),
    ))
    .unwrap();
    assert_eq!(all(&replica), all(&source));
    replica.verify().unwrap();
    assert_eq!(
        replica
            .read_stream("order-1-1", 0, annals::Direction::Forward, 10)
            .unwrap_err()
            .to_string(),
        source
            .read_stream("order-1-1", 0, annals::Direction::Forward, 10)
            .unwrap_err()
            .to_string(),
        "the hard delete replicated"
    );
}

#[test]
fn a_relay_from_a_read_only_open_follows_the_owners_appends() {
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let Some(server) = server(dirs[0].path()) else {
        return;
    };
    let url = server.url();
    let rt = runtime();
    let owner = Store::open(dirs[1].path()).unwrap();
    let reader = Store::open_read_only(dirs[1].path()).unwrap();
    let total = 2_000u64;
    let writer = {
        let owner = owner.clone();
        std::thread::spawn(move || {
            for i in 0..total / 10 {
                let events = (0..10).map(|_| EventData::new("T", "x")).collect();
                owner
                    .append(&format!("s-{}", i % 7), ExpectedVersion::Any, events)
                    .unwrap()
                    .unwrap();
            }
        })
    };
    let report = rt
        .block_on(relay(reader, relay_options(&url, "FEED", total)))
        .unwrap();
    writer.join().unwrap();
    assert_eq!(report.published, total);
    assert_exactly_once(
        &owner,
        &rt.block_on(published(&url, "FEED")).unwrap(),
        total,
    );
}

#[test]
fn refusals_publish_and_write_nothing() {
    let dirs: Vec<_> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let Some(server) = server(dirs[0].path()) else {
        return;
    };
    let url = server.url();
    let rt = runtime();
    let a_dir = dirs[1].path();
    let source = Store::open(a_dir).unwrap();
    fill(&source, 0);
    let early = source.position_end();
    // A copy of the store as it was: the same id, fewer events (a restore
    // from an older backup).
    source.flush().unwrap();
    drop(source);
    let restored = dirs[2].path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    for entry in std::fs::read_dir(a_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), restored.join(entry.file_name())).unwrap();
    }
    let source = Store::open(a_dir).unwrap();
    fill(&source, 1);
    let end = source.position_end();
    rt.block_on(relay(source.clone(), relay_options(&url, "FEED", end)))
        .unwrap();
    let before = rt.block_on(published(&url, "FEED")).unwrap();

    let refused = |result: Result<annals_jetstream::relay::RelayReport, Error>| {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Refused(_)), "{err}");
        err.to_string()
    };
    // Behind its stream.
    let old = Store::open(&restored).unwrap();
    assert_eq!(old.position_end(), early);
    let msg = refused(rt.block_on(relay(old, relay_options(&url, "FEED", end))));
    assert!(
        msg.contains(&format!("this store ends at {early}")),
        "{msg}"
    );
    // Another store.
    let other = Store::open(dirs[3].path()).unwrap();
    fill(&other, 0);
    refused(rt.block_on(relay(other.clone(), relay_options(&url, "FEED", 3))));
    assert_eq!(rt.block_on(published(&url, "FEED")).unwrap(), before);
    // A stream whose settings would not keep the feed.
    rt.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "MEMORY".into(),
            subjects: vec!["mem.>".into()],
            storage: async_nats::jetstream::stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let mut in_memory = relay_options(&url, "MEMORY", 3);
    in_memory.stream.subject_prefix = "mem".into();
    let msg = refused(rt.block_on(relay(other.clone(), in_memory)));
    assert!(msg.contains("memory"), "{msg}");
    let mut other_prefix = relay_options(&url, "FEED", 3);
    other_prefix.stream.subject_prefix = "elsewhere".into();
    let msg = refused(rt.block_on(relay(other.clone(), other_prefix)));
    assert!(msg.contains("subjects"), "{msg}");
    // Regression: a stream JetStream will not create (its subjects overlap
    // FEED's) was retried for ever as if the server were down.
    let msg = refused(rt.block_on(relay(other, relay_options(&url, "OVERLAP", 3))));
    assert!(msg.contains("overlap"), "{msg}");

    // A mirror into a store of its own events, or of another source.
    let own = dirs[4].path();
    let store = Store::open(own).unwrap();
    store
        .append("x-1", ExpectedVersion::Any, vec![EventData::new("T", "x")])
        .unwrap()
        .unwrap();
    let err = rt
        .block_on(mirror(
            store.clone(),
            own,
            mirror_options(&url, "FEED", end),
        ))
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err}");
    assert_eq!(store.position_end(), 1);
    let elsewhere = dirs[5].path();
    let store = Store::open(elsewhere).unwrap();
    std::fs::write(
        elsewhere.join(MIRROR_OF_FILE_NAME),
        "0000000000000000000000000000abcd\n",
    )
    .unwrap();
    let err = rt
        .block_on(mirror(
            store.clone(),
            elsewhere,
            mirror_options(&url, "FEED", end),
        ))
        .unwrap_err();
    assert!(err.to_string().contains("mirrors store"), "{err}");
    assert_eq!(store.position_end(), 0);
}
