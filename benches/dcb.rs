//! Issue 22 (Dynamic Consistency Boundary) in one run: conditional appends'
//! commits/s beside plain appends' (Annals and SQLite, with the plain-file
//! ceiling), `read_query` of one tag among many events beside SQLite with a
//! tags table and index, and a condition check's cost as the number of
//! events matching its query grows. A custom harness: commits/s under
//! concurrency and medians, printed as lines.
//!
//! `cargo bench -p annals-benches --bench dcb` (ANNALS_BENCH_SECS: seconds
//! per throughput run, default 3; ANNALS_DCB_EVENTS: events in the read
//! store, default 1,000,000; ANNALS_DCB_THREADS: writers, default 4;
//! ANNALS_DCB_ROUNDS: interleaved rounds of the throughput runs, default 3).

use std::time::Duration;

use annals_benches::dcb::{
    annals_appends, build_tagged, condition_lookup_cost, median_us, sqlite_appends,
    sqlite_read_tag, DATA_BYTES, WRITTEN_SINCE,
};
use annals_benches::suite::writes::{frame_bytes, plain_commits};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs = Duration::from_secs_f64(env("ANNALS_BENCH_SECS", 3.0));
    let events: u64 = env("ANNALS_DCB_EVENTS", 1_000_000);
    let threads: usize = env("ANNALS_DCB_THREADS", 4);

    // The disk is shared and its fsync latency drifts: the workloads run
    // interleaved, round after round, and each is reported as its median.
    let rounds: usize = env("ANNALS_DCB_ROUNDS", 3);
    let bytes = frame_bytes(1, "student-0", "StudentSubscribed") + DATA_BYTES / 2;
    let mut runs: [Vec<f64>; 5] = Default::default();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        eprintln!(
            "running: appends, round {}/{rounds}, {threads} threads, {secs:?} each",
            round + 1
        );
        // Each goes first every other round (the first run of a round meets
        // a disk the round before left busy).
        let (plain, conditional) = if round % 2 == 0 {
            let plain = annals_appends(threads, secs, false).ops_per_sec();
            (plain, annals_appends(threads, secs, true).ops_per_sec())
        } else {
            let conditional = annals_appends(threads, secs, true).ops_per_sec();
            (
                annals_appends(threads, secs, false).ops_per_sec(),
                conditional,
            )
        };
        eprintln!(
            "  round {}: plain {plain:.0}, conditional {conditional:.0}",
            round + 1
        );
        ratios.push(conditional / plain);
        runs[0].push(plain);
        runs[1].push(conditional);
        runs[2].push(sqlite_appends(threads, secs, false).ops_per_sec());
        runs[3].push(sqlite_appends(threads, secs, true).ops_per_sec());
        runs[4].push(plain_commits(threads, secs, bytes).ops_per_sec());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let [plain, conditional, sqlite_plain, sqlite_conditional, ceiling] =
        runs.each_mut().map(median);
    let ratio = median(&mut ratios);
    println!(
        "commits/s, {threads} threads, 1 tagged event each, median of {rounds} interleaved rounds:"
    );
    println!("  annals plain        {plain:>10.0}");
    println!(
        "  annals conditional  {conditional:>10.0}  (median per-round ratio to plain {ratio:.2}x)"
    );
    println!("  sqlite plain        {sqlite_plain:>10.0}");
    println!(
        "  sqlite conditional  {sqlite_conditional:>10.0}  (annals conditional {:.2}x)",
        conditional / sqlite_conditional
    );
    println!(
        "  plain file ceiling  {ceiling:>10.0}  (write + fdatasync per commit, per thread file)"
    );

    eprintln!("running: building {events} tagged events in both stores");
    let dir = tempfile::tempdir().expect("temp dir");
    let students = 10_000u64;
    let (store, mut conn) = build_tagged(dir.path(), events, students);
    let tag = "student:42";
    let one_tag = annals::Query::new([annals::QueryItem::new().tags([tag])]);
    let mut found = (0, 0);
    let reads: usize = env("ANNALS_DCB_READS", 21);
    let annals_read = median_us(reads, || {
        found.0 = store
            .read_query(&one_tag, 0, usize::MAX)
            .expect("read")
            .events
            .len();
    });
    let sqlite_read = median_us(reads, || found.1 = sqlite_read_tag(&conn, tag));
    assert_eq!(found.0, found.1);
    println!(
        "read_query of one tag ({} matches) among {events} events, median of {reads}:",
        found.0
    );
    println!("  annals  {annals_read:>10.1} us");
    println!(
        "  sqlite  {sqlite_read:>10.1} us  (annals {:.2}x faster)",
        sqlite_read / annals_read
    );

    println!(
        "condition lookup ({WRITTEN_SINCE} non-matching events after `after`, N matches at or below it), median of {reads}:"
    );
    for (tag, matches) in [
        ("course:none", 0),
        ("student:42", events / students),
        ("course:7", events / 1000),
    ] {
        let (annals, sqlite) = condition_lookup_cost(&store, &mut conn, tag, reads);
        println!("  N = {matches:>7}: annals {annals:>9.2} us, sqlite {sqlite:>9.2} us");
    }
}
