//! Shared workloads for the benchmarks: the SQLite event store that teams
//! roll by hand (the peer), and helpers to build the same data everywhere.

#![allow(missing_docs)]

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

pub mod dcb;
pub mod suite;
pub mod workloads;

/// Scale factor from `ANNALS_BENCH_SCALE` (default 1).
pub fn scale() -> usize {
    std::env::var("ANNALS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// A 16-byte id for event `n` of a workload.
pub fn event_id(n: u64) -> [u8; 16] {
    (u128::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) | 1).to_le_bytes()
}

/// Event payload of `bytes` bytes.
pub fn payload(n: u64, bytes: usize) -> Vec<u8> {
    (0..bytes).map(|i| (n as usize + i) as u8).collect()
}

/// The hand-rolled SQLite event store: WAL, synchronous=FULL, the
/// expected-version check inside `BEGIN IMMEDIATE`.
pub struct SqliteStore {
    pub conn: Connection,
}

impl SqliteStore {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events(
                position INTEGER PRIMARY KEY,
                stream TEXT NOT NULL,
                version INTEGER NOT NULL,
                id BLOB UNIQUE NOT NULL,
                type TEXT NOT NULL,
                data BLOB NOT NULL,
                UNIQUE(stream, version))",
        )?;
        Ok(SqliteStore { conn })
    }

    /// Appends events to a stream if its last version is `expected`
    /// (`None` = the stream must not exist). Returns false on a conflict.
    pub fn append(
        &mut self,
        stream: &str,
        expected: Option<u64>,
        events: &[([u8; 16], &str, &[u8])],
    ) -> rusqlite::Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: Option<u64> = tx
            .query_row(
                "SELECT MAX(version) FROM events WHERE stream = ?1",
                params![stream],
                |r| r.get::<_, Option<u64>>(0),
            )
            .optional()?
            .flatten();
        if current != expected {
            return Ok(false);
        }
        let mut next = current.map_or(0, |v| v + 1);
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events(stream, version, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (id, event_type, data) in events {
                insert.execute(params![stream, next, &id[..], event_type, data])?;
                next += 1;
            }
        }
        tx.commit()?;
        Ok(true)
    }

    /// Folds up to `max` events of a stream, oldest first, into `fold`
    /// without copying them out of SQLite (what loading an aggregate does).
    /// Returns the number of events.
    pub fn fold_stream(
        &self,
        stream: &str,
        max: usize,
        mut fold: impl FnMut(u64, u64, &[u8]),
    ) -> rusqlite::Result<usize> {
        let mut query = self.conn.prepare_cached(
            "SELECT version, position, data FROM events WHERE stream = ?1 ORDER BY version LIMIT ?2",
        )?;
        let mut rows = query.query(params![stream, max as i64])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let data = row.get_ref(2)?.as_blob().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                )
            })?;
            fold(row.get(0)?, row.get(1)?, data);
            count += 1;
        }
        Ok(count)
    }

    /// Loads up to `max` events of a stream, oldest first.
    pub fn read_stream(
        &self,
        stream: &str,
        max: usize,
    ) -> rusqlite::Result<Vec<(u64, u64, Vec<u8>)>> {
        let mut query = self
            .conn
            .prepare_cached("SELECT version, position, id, type, data FROM events WHERE stream = ?1 ORDER BY version LIMIT ?2")?;
        let rows = query.query_map(params![stream, max as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(4)?))
        })?;
        rows.collect()
    }
}
