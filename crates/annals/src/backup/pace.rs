//! A backup's pace: at most `rate` bytes per second on average since the
//! backup started ([`BackupOptions::rate_bytes_per_sec`](super::BackupOptions)),
//! by sleeping after a chunk that got ahead. No rate: full speed.

use std::time::{Duration, Instant};

/// Bytes copied so far against the time allowed for them.
#[derive(Debug)]
pub(super) struct Pace {
    rate_bytes_per_sec: Option<u64>,
    started: Instant,
    bytes: u64,
}

/// The longest single sleep (bounds a wait whatever the rate).
const SLEEP_MAX: Duration = Duration::from_secs(10);

impl Pace {
    pub(super) fn new(rate_bytes_per_sec: Option<u64>) -> Self {
        Pace {
            rate_bytes_per_sec: rate_bytes_per_sec.filter(|r| *r > 0),
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes copied; sleeps until they are due.
    pub(super) fn account(&mut self, n: u64) {
        self.bytes = self.bytes.saturating_add(n);
        let Some(rate) = self.rate_bytes_per_sec else {
            return;
        };
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(ahead.min(SLEEP_MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_holds_the_copy_back_and_none_does_not() {
        let started = Instant::now();
        let mut free = Pace::new(None);
        free.account(1 << 30);
        assert!(started.elapsed() < Duration::from_millis(100));
        let mut paced = Pace::new(Some(10 << 20));
        paced.account(2 << 20);
        assert!(
            started.elapsed() >= Duration::from_millis(190),
            "2 MiB at 10 MiB/s takes 200 ms"
        );
    }
}
