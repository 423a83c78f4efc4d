//! `annals demo`: a bank of accounts, concurrent tellers handling commands
//! with optimistic concurrency, deliberate conflicts, and a check that
//! every aggregate reads back to what the tellers were told.
//!
//! Every fourth command of every teller is a deposit to one of two shared
//! "hot" accounts, which all tellers reach at about the same step (group
//! commit answers them together): they load the same version and race, one
//! append wins and the others are rejected with the stream's actual version,
//! reload and retry. The first of them starts in lock step (every teller
//! has loaded the account before any appends), so the race happens however
//! fast appends are (on tmpfs they took microseconds and the tellers,
//! free-running, sometimes never met). The other commands go to accounts
//! spread so that tellers rarely meet.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use annals::{CurrentVersion, Direction, EventData, ExpectedVersion, Store};

use crate::commands::open;
use crate::Failure;

/// Balance of an account aggregate: the sum of its `Deposited` amounts.
fn load_balance(store: &Store, stream: &str) -> Result<(i64, CurrentVersion), Failure> {
    let events = store.read_stream(stream, 0, Direction::Forward, usize::MAX)?;
    let balance = events
        .iter()
        .filter(|e| e.event_type == "Deposited")
        .map(|e| {
            std::str::from_utf8(&e.data)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .sum();
    let version = events.last().map_or(CurrentVersion::NoStream, |e| {
        CurrentVersion::Version(e.version)
    });
    Ok((balance, version))
}

/// Runs the demo and prints what happened.
pub fn run(
    dir: Option<PathBuf>,
    threads: usize,
    commands: usize,
    accounts: usize,
) -> Result<(), Failure> {
    let temp;
    let dir = match dir {
        Some(dir) => dir,
        None => {
            temp = tempfile::tempdir().map_err(|e| Failure::error(format!("temp dir: {e}")))?;
            temp.path().to_path_buf()
        }
    };
    let (threads, accounts) = (threads.max(1), accounts.max(1));
    let store = open(&dir, true)?;
    println!("annals demo: store at {}", dir.display());
    println!(
        "{threads} tellers x {commands} deposits over {accounts} accounts; every deposit loads the account and appends with the version it saw"
    );
    println!(
        "every 4th deposit goes to one of two hot accounts all tellers share: they race, one append wins, the others are rejected, reload and retry"
    );
    let deposited = run_tellers(&store, threads, commands, accounts)?;
    check_balances(&store, accounts, deposited)
}

/// Runs the tellers; prints rates and conflicts; returns the amount that
/// acknowledged deposits add up to.
fn run_tellers(
    store: &Store,
    threads: usize,
    commands: usize,
    accounts: usize,
) -> Result<u64, Failure> {
    let conflicts = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let most_tries = Arc::new(AtomicU64::new(0));
    let deposited = Arc::new(AtomicU64::new(0));
    let start_line = Arc::new(Barrier::new(threads));
    let started = Instant::now();
    let tellers: Vec<_> = (0..threads)
        .map(|t| {
            let (store, conflicts, retried, most_tries, deposited, start_line) = (
                store.clone(),
                Arc::clone(&conflicts),
                Arc::clone(&retried),
                Arc::clone(&most_tries),
                Arc::clone(&deposited),
                Arc::clone(&start_line),
            );
            std::thread::spawn(move || -> Result<u64, Failure> {
                let mut latencies_us = 0u64;
                for i in 0..commands {
                    let stream = format!("account-{}", account_for(t, i, accounts));
                    let amount = (i % 50 + 1) as u64;
                    let mut tries = 0u64;
                    loop {
                        tries += 1;
                        let loaded = load_balance(&store, &stream);
                        if i == 0 && tries == 1 {
                            // Every teller, even one whose load failed
                            // (no other may wait for it for ever).
                            start_line.wait();
                        }
                        let (_, version) = loaded?;
                        let expected = match version {
                            CurrentVersion::Version(v) => ExpectedVersion::Exact(v),
                            _ => ExpectedVersion::NoStream,
                        };
                        let asked = Instant::now();
                        let result = store.append(
                            &stream,
                            expected,
                            vec![EventData::new("Deposited", amount.to_string())],
                        )?;
                        latencies_us += asked.elapsed().as_micros() as u64;
                        match result {
                            Ok(_) => break,
                            Err(_) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if tries > 1 {
                        retried.fetch_add(1, Ordering::Relaxed);
                    }
                    most_tries.fetch_max(tries, Ordering::Relaxed);
                    deposited.fetch_add(amount, Ordering::Relaxed);
                }
                Ok(latencies_us)
            })
        })
        .collect();
    let mut latency_total_us = 0;
    for teller in tellers {
        latency_total_us += teller
            .join()
            .map_err(|_| Failure::error("a teller panicked"))??;
    }
    let elapsed = started.elapsed();
    let appends = (threads * commands) as u64 + conflicts.load(Ordering::Relaxed);
    let committed = (threads * commands) as f64;
    println!(
        "committed {} deposits in {:.2}s: {:.0} durable appends/s, mean append latency {:.0} us",
        threads * commands,
        elapsed.as_secs_f64(),
        committed / elapsed.as_secs_f64(),
        latency_total_us as f64 / appends as f64
    );
    println!(
        "conflicts: {} appends were rejected with WrongExpectedVersion, reloaded and retried ({} deposits needed a retry, at most {} tries)",
        conflicts.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed),
        most_tries.load(Ordering::Relaxed)
    );
    let writes = store.write_stats();
    println!(
        "group commit: {} appends answered by {} groups ({:.1} per group; a group is at most one write and one fdatasync)",
        writes.requests,
        writes.groups,
        writes.requests as f64 / writes.groups.max(1) as f64
    );

    Ok(deposited.load(Ordering::Relaxed))
}

/// The account a teller's command deposits to: every fourth command goes
/// to one of two hot accounts that every teller shares (so tellers race on
/// them), the others to accounts spread by teller and step.
fn account_for(teller: usize, command: usize, accounts: usize) -> usize {
    if command.is_multiple_of(4) {
        (command / 4) % 2 % accounts
    } else {
        (teller * 7 + command * 13) % accounts
    }
}

/// Reads every aggregate back: the balances must add up to what was deposited.
fn check_balances(store: &Store, accounts: usize, deposited: u64) -> Result<(), Failure> {
    let read_started = Instant::now();
    let mut total = 0i64;
    let mut richest = (String::new(), 0i64);
    for a in 0..accounts {
        let stream = format!("account-{a}");
        let (balance, _) = load_balance(store, &stream)?;
        total += balance;
        if balance > richest.1 {
            richest = (stream, balance);
        }
    }
    let read_elapsed = read_started.elapsed();
    let stats = store.stats();
    println!(
        "read back {accounts} aggregates in {:.1} ms ({} events, {} streams, {} segment(s))",
        read_elapsed.as_secs_f64() * 1e3,
        stats.events,
        stats.streams,
        stats.segments
    );
    println!("richest account: {} with {}", richest.0, richest.1);
    let expected_total = deposited as i64;
    if total != expected_total {
        return Err(Failure::error(format!(
            "balances add up to {total}, but {expected_total} was deposited"
        )));
    }
    let report = store.verify()?;
    println!(
        "balances add up to {total} = deposits acknowledged; verify: {} events checksummed, index matches the log",
        report.events
    );
    Ok(())
}
