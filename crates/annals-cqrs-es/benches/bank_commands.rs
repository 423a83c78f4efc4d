//! Commands/s of cqrs-es' bank-account example (crates/annals-cqrs-es/
//! examples/bank_account) on Annals, beside the same example on
//! `sqlite-es` (cqrs-es' own SQLite backend, sqlx, WAL) and on cqrs-es'
//! in-memory `MemStore` (the ceiling: no storage at all), in the same run.
//! Every backend runs event-sourced (`new_event_store`; MemStore is its own).
//!
//! One iteration is a session on a fresh account: open, deposit, withdraw,
//! write a check, deposit — 5 commands, each a load of the account plus a
//! commit — so a session's cost does not grow with the number of
//! iterations. `sequential`: one client; `concurrent_16`: 16 clients, each
//! a session on its own account, at once (80 commands an iteration).
//! Durable peers: Annals `Fsync` vs SQLite `synchronous=FULL`; and
//! Annals `Buffered` vs SQLite `synchronous=NORMAL` (sqlite-es' default).
//! `fdatasync_ceiling`: one 100-byte write + `fdatasync` of a plain file,
//! what a sequential durable command cannot beat.
//!
//! `offload`: the cost of running the blocking store off the executor: one
//! 1-event append to a fresh stream called inline on the executor thread,
//! the same through `spawn_blocking`, and the repository's `persist` (which
//! encodes and uses `spawn_blocking`), Buffered so fsync does not hide it.
//!
//! Run: `cargo bench -p annals-cqrs-es --bench bank_commands -- --warm-up-time 1 --measurement-time 3`

// `criterion_group!` defines an undocumented function.
#![allow(missing_docs)]

#[path = "../examples/bank_account/account.rs"]
#[allow(dead_code)]
mod account;

use std::io::Write;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use account::{BankAccount, BankAccountCommand as Command};
use annals::{Durability, EventData, ExpectedVersion, Options, Store};
use annals_cqrs_es::AnnalsEventRepository;
use cqrs_es::mem_store::MemStore;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, SerializedEvent};
use cqrs_es::{CqrsFramework, EventStore};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const SESSION_COMMANDS: u64 = 5;
const CLIENTS: u64 = 16;

static NEXT_ACCOUNT: AtomicU64 = AtomicU64::new(0);

fn session(id: &str) -> [Command; SESSION_COMMANDS as usize] {
    [
        Command::OpenAccount {
            account_id: id.into(),
        },
        Command::DepositMoney { amount: 1000.0 },
        Command::WithdrawMoney { amount: 60.0 },
        Command::WriteCheck {
            check_number: "1170".into(),
            amount: 256.28,
        },
        Command::DepositMoney { amount: 12.5 },
    ]
}

async fn run_session<ES: EventStore<BankAccount>>(cqrs: &CqrsFramework<BankAccount, ES>) {
    let id = format!("a{}", NEXT_ACCOUNT.fetch_add(1, Ordering::Relaxed));
    for command in session(&id) {
        cqrs.execute(&id, command).await.expect("command accepted");
    }
}

fn bench_backend<ES>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    clients: u64,
    store: ES,
) where
    ES: EventStore<BankAccount> + 'static,
    ES::AC: Send,
{
    let cqrs = Arc::new(CqrsFramework::new(store, vec![], ()));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let sessions: Vec<_> = (0..clients)
                        .map(|_| {
                            let cqrs = cqrs.clone();
                            tokio::spawn(async move { run_session(&cqrs).await })
                        })
                        .collect();
                    for session in sessions {
                        session.await.expect("session");
                    }
                }
                start.elapsed()
            })
        })
    });
}

fn annals_repo(dir: &std::path::Path, durability: Durability) -> AnnalsEventRepository {
    let options = Options::default().durability(durability);
    AnnalsEventRepository::new(Store::open_with(dir, options).expect("open store"))
}

async fn sqlite_repo(
    path: &std::path::Path,
    sync: SqliteSynchronous,
) -> sqlite_es::SqliteEventRepository {
    let url = format!("sqlite://{}", path.display());
    let options = SqliteConnectOptions::from_str(&url)
        .expect("url")
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
        .expect("sqlite pool");
    // The columns sqlite-es' queries use (its migration's tables).
    for ddl in [
        "CREATE TABLE events (aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, \
         sequence INTEGER NOT NULL, event_type TEXT NOT NULL, event_version TEXT NOT NULL, \
         payload TEXT NOT NULL, metadata TEXT NOT NULL, \
         PRIMARY KEY (aggregate_type, aggregate_id, sequence)) STRICT",
        "CREATE TABLE snapshots (aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, \
         last_sequence INTEGER NOT NULL, current_snapshot INTEGER NOT NULL, payload TEXT NOT NULL, \
         PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)) STRICT",
    ] {
        sqlx::query(ddl).execute(&pool).await.expect("schema");
    }
    sqlite_es::SqliteEventRepository::new(pool)
}

fn bank_commands(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for (clients, label) in [(1, "sequential"), (CLIENTS, "concurrent_16")] {
        let mut group = c.benchmark_group(format!("bank_commands_{label}"));
        group.throughput(Throughput::Elements(SESSION_COMMANDS * clients));
        group.sample_size(10);
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
        let new_event_store = PersistedEventStore::<_, BankAccount>::new_event_store;
        let annals_fsync = annals_repo(dirs[0].path(), Durability::Fsync);
        bench_backend(
            &mut group,
            &runtime,
            "annals_fsync",
            clients,
            new_event_store(annals_fsync),
        );
        let sqlite_full = runtime.block_on(sqlite_repo(
            &dirs[1].path().join("db"),
            SqliteSynchronous::Full,
        ));
        bench_backend(
            &mut group,
            &runtime,
            "sqlite_es_full",
            clients,
            PersistedEventStore::<_, BankAccount>::new_event_store(sqlite_full),
        );
        let annals_buffered = annals_repo(dirs[2].path(), Durability::Buffered);
        bench_backend(
            &mut group,
            &runtime,
            "annals_buffered",
            clients,
            new_event_store(annals_buffered),
        );
        let sqlite_normal = runtime.block_on(sqlite_repo(
            &dirs[3].path().join("db"),
            SqliteSynchronous::Normal,
        ));
        bench_backend(
            &mut group,
            &runtime,
            "sqlite_es_normal",
            clients,
            PersistedEventStore::<_, BankAccount>::new_event_store(sqlite_normal),
        );
        bench_backend(
            &mut group,
            &runtime,
            "mem_store",
            clients,
            MemStore::<BankAccount>::default(),
        );
        group.finish();
    }

    let mut group = c.benchmark_group("bank_commands_ceiling");
    group.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().expect("dir");
    let mut file = std::fs::File::create(dir.path().join("plain")).expect("file");
    group.bench_function("fdatasync_ceiling", |b| {
        b.iter(|| {
            file.write_all(&[7u8; 100]).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    group.finish();
}

fn offload(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let repo = annals_repo(dir.path(), Durability::Buffered);
    let store = repo.store().clone();
    let next = AtomicU64::new(0);
    let payload = br#"{"CustomerDepositedMoney":{"amount":1000.0,"balance":1000.0}}"#;
    let metadata = br#"{"event_version":"1.0","metadata":{}}"#;
    let event =
        || EventData::new("CustomerDepositedMoney", &payload[..]).with_metadata(&metadata[..]);
    let mut group = c.benchmark_group("bank_offload_buffered");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append_inline", |b| {
        b.iter(|| {
            let stream = format!("account-i{}", next.fetch_add(1, Ordering::Relaxed));
            runtime.block_on(async {
                store
                    .append(&stream, ExpectedVersion::NoStream, vec![event()])
                    .expect("append")
                    .expect("fresh")
            })
        })
    });
    group.bench_function("append_spawn_blocking", |b| {
        b.iter(|| {
            let stream = format!("account-s{}", next.fetch_add(1, Ordering::Relaxed));
            let (store, event) = (store.clone(), event());
            runtime.block_on(async move {
                tokio::task::spawn_blocking(move || {
                    store.append(&stream, ExpectedVersion::NoStream, vec![event])
                })
                .await
                .expect("join")
                .expect("append")
                .expect("fresh")
            })
        })
    });
    group.bench_function("repository_persist", |b| {
        b.iter(|| {
            let id = format!("p{}", next.fetch_add(1, Ordering::Relaxed));
            let serialized = SerializedEvent::new(
                id,
                1,
                "account".into(),
                "CustomerDepositedMoney".into(),
                "1.0".into(),
                serde_json::json!({"CustomerDepositedMoney": {"amount": 1000.0, "balance": 1000.0}}),
                serde_json::json!({}),
            );
            runtime.block_on(repo.persist::<BankAccount>(&[serialized], None)).expect("persist")
        })
    });
    group.finish();
}

criterion_group!(benches, bank_commands, offload);
criterion_main!(benches);
