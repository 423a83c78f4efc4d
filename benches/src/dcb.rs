//! Dynamic Consistency Boundary workloads (issue 22), run the same way on
//! Annals and on SQLite: conditional appends beside plain ones (commits/s,
//! with the plain-file ceiling), the cost of a condition check as the
//! number of matching events grows, and reading the events of one tag
//! among many. SQLite keeps tags in a `tags(tag, position)` table with an
//! index (and, for reads, a copy of each event's tags in an `events.tags`
//! column, so that a read returns the same fields as Annals') and does the
//! check and the insert in one `BEGIN IMMEDIATE` transaction.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::{
    AppendCondition, Durability, EventData, ExpectedVersion, Options, Query, QueryItem, Store,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::workloads::{run_threads, Measured};

/// Bytes of each event's data.
pub const DATA_BYTES: usize = 100;

/// The query "subscriptions to this course".
pub fn course_query(course: u64) -> Query {
    Query::new([QueryItem::new()
        .types(["StudentSubscribed"])
        .tags([format!("course:{course}")])])
}

fn subscribed(student: u64, course: u64) -> EventData {
    EventData::new("StudentSubscribed", vec![0x5A; DATA_BYTES])
        .with_tags([format!("student:{student}"), format!("course:{course}")])
}

/// Single-event appends in `durability` mode, each thread to its own
/// stream, tagged; with `conditional`, each fails if its course got a
/// subscription after the end the writer saw (it never does: each thread
/// has its own course).
pub fn annals_appends(
    threads: usize,
    secs: Duration,
    conditional: bool,
    durability: Durability,
) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options::default().durability(durability);
    let store = Store::open_with(dir.path().join("a"), options).expect("open");
    run_threads(dir.path(), threads, secs, move |t, i| {
        append_once(&store, t as u64, i, conditional);
        1
    })
}

/// One append of [`annals_appends`]: thread `t`'s `i`-th subscription, to
/// its own stream; with `conditional`, only if its course got no
/// subscription after the end read just before (it never does).
pub fn append_once(store: &Store, t: u64, i: u64, conditional: bool) {
    let event = subscribed(i, t);
    let appends = vec![(format!("student-{t}"), ExpectedVersion::Any, vec![event])];
    if conditional {
        let after = store.position_end().checked_sub(1);
        let condition = AppendCondition::new(course_query(t)).after(after);
        let written = store.append_with_condition(appends, condition);
        assert!(matches!(written, Ok(Ok(_))), "{written:?}");
    } else {
        assert!(matches!(store.append_many(appends), Ok(Ok(_))));
    }
}

/// A SQLite database with events and their tags.
pub fn sqlite_open(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("sqlite");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.pragma_update(None, "synchronous", "FULL")
        .expect("sync");
    conn.busy_timeout(Duration::from_secs(30)).expect("busy");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events(
            position INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            type TEXT NOT NULL,
            data BLOB NOT NULL,
            tags TEXT NOT NULL DEFAULT '');
         CREATE TABLE IF NOT EXISTS tags(
            tag TEXT NOT NULL,
            position INTEGER NOT NULL,
            PRIMARY KEY(tag, position)) WITHOUT ROWID;",
    )
    .expect("schema");
    conn
}

/// Inserts one event and its tags in `tx`; returns its position.
fn sqlite_insert(tx: &rusqlite::Transaction<'_>, stream: &str, tags: &[String]) -> i64 {
    tx.prepare_cached(
        "INSERT INTO events(stream, type, data, tags) VALUES (?1, 'StudentSubscribed', ?2, ?3)",
    )
    .expect("prepare")
    .execute(params![stream, vec![0x5Au8; DATA_BYTES], tags.join(",")])
    .expect("insert");
    let position = tx.last_insert_rowid();
    let mut insert = tx
        .prepare_cached("INSERT INTO tags(tag, position) VALUES (?1, ?2)")
        .expect("prepare");
    for tag in tags {
        insert.execute(params![tag, position]).expect("tag");
    }
    position
}

/// The first event above `after` of type StudentSubscribed with `tag`.
fn sqlite_first_match(tx: &rusqlite::Transaction<'_>, tag: &str, after: i64) -> Option<i64> {
    tx.prepare_cached(
        "SELECT t.position FROM tags t JOIN events e ON e.position = t.position
         WHERE t.tag = ?1 AND t.position > ?2 AND e.type = 'StudentSubscribed'
         ORDER BY t.position LIMIT 1",
    )
    .expect("prepare")
    .query_row(params![tag, after], |row| row.get(0))
    .optional()
    .expect("select")
}

/// The same workload on SQLite: with `conditional`, the check and the
/// insert in one `BEGIN IMMEDIATE` transaction.
pub fn sqlite_appends(threads: usize, secs: Duration, conditional: bool) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("peer.sqlite");
    drop(sqlite_open(&path));
    let conns: Arc<Vec<Mutex<Connection>>> = Arc::new(
        (0..threads)
            .map(|_| Mutex::new(sqlite_open(&path)))
            .collect(),
    );
    run_threads(dir.path(), threads, secs, move |t, i| {
        let mut conn = conns[t].lock().expect("conn");
        let after: i64 = conn
            .query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
                r.get(0)
            })
            .expect("end");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("tx");
        let course = format!("course:{t}");
        if conditional {
            assert_eq!(sqlite_first_match(&tx, &course, after), None);
        }
        sqlite_insert(
            &tx,
            &format!("student-{t}"),
            &[format!("student:{i}"), course],
        );
        tx.commit().expect("commit");
        1
    })
}

/// Median of the times `op` takes, over `runs` runs.
pub fn median_us(runs: usize, mut op: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            op();
            started.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(0.0)
}

/// The Annals store of the read rows, opened without the query cache
/// (the rows that measure it reopen the store with it).
fn open_uncached(dir: &Path) -> Store {
    let options = Options::default().query_cache_bytes(0);
    Store::open_with(dir.join("annals"), options).expect("open")
}

/// Fills an Annals store (without the query cache) and a SQLite database
/// with `events` events, event n tagged `student:{n % students}` and
/// `course:{n % 1000}`, 1,000 per commit.
pub fn build_tagged(dir: &Path, events: u64, students: u64) -> (Store, Connection) {
    let store = open_uncached(dir);
    let mut conn = sqlite_open(&dir.join("peer.sqlite"));
    let chunk = 1000u64;
    for first in (0..events).step_by(chunk as usize) {
        let range = first..(first + chunk).min(events);
        let batch = range
            .clone()
            .map(|n| subscribed(n % students, n % 1000))
            .collect();
        let written = store.append(
            &format!("batch-{}", first / chunk),
            ExpectedVersion::Any,
            batch,
        );
        assert!(matches!(written, Ok(Ok(_))));
        let tx = conn.transaction().expect("tx");
        for n in range {
            let tags = [
                format!("student:{}", n % students),
                format!("course:{}", n % 1000),
            ];
            sqlite_insert(&tx, &format!("batch-{}", first / chunk), &tags);
        }
        tx.commit().expect("commit");
    }
    store.maintain_index().expect("index maintenance");
    (store, conn)
}

/// Fills an Annals store (without the query cache: its rows measure the
/// walk) and a SQLite database with `events` events, event n tagged
/// `a:{n % 100}`, `b:{n % 101}` and `c:{n % 7}` (an `a` or `b` tag on 1 %
/// of the events, an `a` and a `b` together on 0.01 %, a `c` on 1/7, with
/// an `a` on 1/700), 1,000 per commit.
pub fn build_pairs(dir: &Path, events: u64) -> (Store, Connection) {
    let store = open_uncached(dir);
    let mut conn = sqlite_open(&dir.join("peer.sqlite"));
    let tags = |n: u64| {
        [
            format!("a:{}", n % 100),
            format!("b:{}", n % 101),
            format!("c:{}", n % 7),
        ]
    };
    for first in (0..events).step_by(1000) {
        let range = first..(first + 1000).min(events);
        let stream = format!("batch-{}", first / 1000);
        let batch = range
            .clone()
            .map(|n| EventData::new("StudentSubscribed", vec![0x5A; DATA_BYTES]).with_tags(tags(n)))
            .collect();
        let written = store.append(&stream, ExpectedVersion::Any, batch);
        assert!(matches!(written, Ok(Ok(_))));
        let tx = conn.transaction().expect("tx");
        for n in range {
            sqlite_insert(&tx, &stream, &tags(n));
        }
        tx.commit().expect("commit");
    }
    store.maintain_index().expect("index maintenance");
    (store, conn)
}

/// What a read returned: how many events, and the bytes of the fields it
/// took of each (position aside): stream, type, data and every tag — so
/// that every side provably reads the same fields.
pub type ReadSum = (usize, u64);

fn event_bytes<'a>(
    stream: &str,
    event_type: &str,
    data: &[u8],
    tags: impl Iterator<Item = &'a str>,
) -> u64 {
    (stream.len() + event_type.len() + data.len()) as u64
        + tags.map(|t| t.len() as u64).sum::<u64>()
}

/// A query item with these tags (and no type).
pub fn tags_query(tags: &[impl AsRef<str>]) -> Query {
    Query::new([QueryItem::new().tags(tags.iter().map(AsRef::as_ref))])
}

/// The tags a read bench reads, read after read.
#[derive(Clone, Copy, Debug)]
pub enum ReadTags {
    /// The same tags every read, and the number of the first event of the
    /// log carrying them all.
    Fixed(&'static [&'static str], usize),
    /// `student:{s}` for a different `s` each read: 42, 43, … (mod
    /// `students`), in a store built by [`build_tagged`] with `students`.
    Rotating {
        /// The number of students in the store.
        students: u64,
    },
}

impl ReadTags {
    /// The tags of read `read`, and the number of the first event of the
    /// log carrying them all (for [`PlainCopy::read`]: in a store built by
    /// [`build_tagged`], event n carries `student:{n % students}`).
    pub fn at(self, read: usize) -> (Vec<String>, usize) {
        match self {
            ReadTags::Fixed(tags, first) => (tags.iter().map(|t| t.to_string()).collect(), first),
            ReadTags::Rotating { students } => {
                let student = (42 + read as u64) % students.max(1);
                (vec![format!("student:{student}")], student as usize)
            }
        }
    }
}

/// Annals `read_query`: owned events (stream, type and tags copied, data
/// shared with the mapped log).
pub fn annals_read_owned(store: &Store, query: &Query) -> ReadSum {
    let read = store.read_query(query, 0, usize::MAX).expect("read");
    let bytes = read
        .events
        .iter()
        .map(|e| {
            event_bytes(
                &e.stream,
                &e.event_type,
                &e.data,
                e.tags.iter().map(String::as_str),
            )
        })
        .sum();
    (read.events.len(), bytes)
}

/// Annals `read_query_with`: events borrowed from the mapped log.
pub fn annals_read_visit(store: &Store, query: &Query) -> ReadSum {
    let (mut events, mut bytes) = (0, 0);
    store
        .read_query_with(query, 0, usize::MAX, |e| {
            events += 1;
            bytes += event_bytes(e.stream, e.event_type, e.data, e.tags.iter());
            ControlFlow::Continue(())
        })
        .expect("read");
    (events, bytes)
}

/// The physical ceiling of a read of `count` events: copying their bytes
/// (`record_bytes` each, `stride` records apart, as the matches of one tag
/// lie in the log) out of an in-memory buffer of all `events` records — no
/// lookup, no checksum, no decoding.
pub struct PlainCopy {
    buffer: Vec<u8>,
    record_bytes: usize,
}

impl PlainCopy {
    /// A buffer of `events` records of `record_bytes` each (touched once).
    pub fn new(events: u64, record_bytes: usize) -> Self {
        PlainCopy {
            buffer: vec![0x5A; events as usize * record_bytes],
            record_bytes,
        }
    }

    /// Copies record `first`, `first + stride`, …, `count` of them.
    pub fn read(&self, first: usize, stride: usize, count: usize) -> ReadSum {
        let mut out = Vec::with_capacity(count * self.record_bytes);
        for k in 0..count {
            let at = (first + k * stride) * self.record_bytes;
            out.extend_from_slice(&self.buffer[at..at + self.record_bytes]);
        }
        (count, std::hint::black_box(out).len() as u64)
    }
}

/// The SQLite statement reading the events that carry every tag of `tags`
/// (one to three), in position order: the first tag's index entries, each
/// further tag's entry looked up, joined to the events.
fn sqlite_tags_select(tags: usize) -> String {
    let mut sql = String::from("SELECT e.position, e.stream, e.type, e.data, e.tags FROM tags t1");
    for k in 2..=tags {
        sql.push_str(&format!(
            " JOIN tags t{k} ON t{k}.tag = ?{k} AND t{k}.position = t1.position"
        ));
    }
    sql.push_str(
        " JOIN events e ON e.position = t1.position WHERE t1.tag = ?1 ORDER BY t1.position",
    );
    sql
}

/// SQLite, owned rows: stream, type and data copied out, the tags column
/// split into owned strings (what Annals' `read_query` returns).
pub fn sqlite_read_owned(conn: &Connection, tags: &[String]) -> ReadSum {
    let mut select = conn
        .prepare_cached(&sqlite_tags_select(tags.len()))
        .expect("prepare");
    let mut rows = select
        .query(rusqlite::params_from_iter(tags.iter()))
        .expect("query");
    let (mut events, mut bytes) = (0, 0);
    while let Some(row) = rows.next().expect("row") {
        let _position: i64 = row.get(0).expect("position");
        let stream: String = row.get(1).expect("stream");
        let event_type: String = row.get(2).expect("type");
        let data: Vec<u8> = row.get(3).expect("data");
        let joined: String = row.get(4).expect("tags");
        let owned: Vec<String> = joined.split(',').map(str::to_owned).collect();
        events += 1;
        bytes += event_bytes(
            &stream,
            &event_type,
            &data,
            owned.iter().map(String::as_str),
        );
    }
    (events, bytes)
}

/// SQLite, borrowed columns (no copy: what Annals' visitor form does).
pub fn sqlite_read_borrowed(conn: &Connection, tags: &[String]) -> ReadSum {
    let mut select = conn
        .prepare_cached(&sqlite_tags_select(tags.len()))
        .expect("prepare");
    let mut rows = select
        .query(rusqlite::params_from_iter(tags.iter()))
        .expect("query");
    let (mut events, mut bytes) = (0, 0);
    while let Some(row) = rows.next().expect("row") {
        let _position = row.get_ref(0).expect("position").as_i64().expect("int");
        let stream = row.get_ref(1).expect("stream").as_str().expect("text");
        let event_type = row.get_ref(2).expect("type").as_str().expect("text");
        let data = row.get_ref(3).expect("data").as_blob().expect("blob");
        let joined = row.get_ref(4).expect("tags").as_str().expect("text");
        events += 1;
        bytes += event_bytes(stream, event_type, data, joined.split(','));
    }
    (events, bytes)
}

/// Events appended after the decision's read in [`condition_lookup_cost`].
pub const WRITTEN_SINCE: u64 = 1000;

/// Times the lookup a condition check makes: [`WRITTEN_SINCE`] events that
/// match nothing are appended, then the first event matching `tag` (type
/// StudentSubscribed) after the position before them is looked up, while
/// `matches` stored events match at or below it — without an append or its
/// fsync: Annals `read_query(query, after + 1, 1)` (the same indexed lookup
/// the write path runs), SQLite the `SELECT` of its check-then-insert.
/// Medians of `runs`, microseconds.
pub fn condition_lookup_cost(
    store: &Store,
    conn: &mut Connection,
    tag: &str,
    runs: usize,
) -> (f64, f64) {
    let query = Query::new([QueryItem::new().types(["StudentSubscribed"]).tags([tag])]);
    let from = store.position_end();
    let since = (0..WRITTEN_SINCE)
        .map(|_| EventData::new("Other", vec![0u8; DATA_BYTES]))
        .collect();
    assert!(matches!(
        store.append("since", ExpectedVersion::Any, since),
        Ok(Ok(_))
    ));
    let annals = median_us(runs, || {
        let read = store.read_query(&query, from, 1).expect("read");
        assert!(read.events.is_empty());
    });
    let after: i64 = conn
        .query_row("SELECT coalesce(max(position), 0) FROM events", [], |r| {
            r.get(0)
        })
        .expect("end");
    let tx = conn.transaction().expect("tx");
    for _ in 0..WRITTEN_SINCE {
        sqlite_insert(&tx, "since", &[]);
    }
    tx.commit().expect("commit");
    let sqlite = median_us(runs, || {
        let tx = conn.transaction().expect("tx");
        assert_eq!(sqlite_first_match(&tx, tag, after), None);
        tx.commit().expect("commit");
    });
    (annals, sqlite)
}
