//! Reporting: one system's [`Figure`], one workload's [`Comparison`] of
//! the systems (ratios, medians over rounds) and the plain-text [`table`].

use crate::workloads::Measured;

/// One figure of one system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// The headline value, in the comparison's unit.
    pub value: f64,
    /// Latency percentiles in µs, where measured.
    pub p50_us: Option<u64>,
    /// 99th percentile latency.
    pub p99_us: Option<u64>,
    /// 99.9th percentile latency.
    pub p999_us: Option<u64>,
    /// Device bytes written per event, where measured.
    pub device_bytes_per_event: Option<f64>,
}

impl Figure {
    pub(super) fn value(value: f64) -> Self {
        Figure {
            value,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            device_bytes_per_event: None,
        }
    }

    pub(super) fn rate(m: &Measured, events_per_op: Option<f64>) -> Self {
        let events = events_per_op.map_or(m.events as f64, |per| m.ops as f64 * per);
        Figure {
            value: m.ops_per_sec(),
            p50_us: Some(m.p50_us),
            p99_us: Some(m.p99_us),
            p999_us: Some(m.p999_us),
            device_bytes_per_event: Some(m.device_bytes as f64 / events.max(1.0)),
        }
    }
}

/// One workload on every system.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// What was run.
    pub workload: String,
    /// Unit of `value`.
    pub unit: &'static str,
    /// Whether more is better (rates) or less (times).
    pub higher_is_better: bool,
    /// Annals.
    pub annals: Figure,
    /// The SQLite peer.
    pub sqlite: Option<Figure>,
    /// The plain-file ceiling.
    pub ceiling: Option<Figure>,
    /// Rounds measured: each figure is the median over them.
    pub rounds: usize,
    /// With several rounds, the medians of each round's ratios (vs SQLite,
    /// vs the ceiling): each pairs measurements taken seconds apart, where
    /// a ratio of the medians pairs figures from different rounds.
    pub paired: Option<[Option<f64>; 2]>,
}

impl Comparison {
    /// How many times better Annals is than `other` (> 1: Annals ahead),
    /// from the figures.
    pub fn ratio(&self, other: Option<Figure>) -> Option<f64> {
        ratio_of(self.higher_is_better, self.annals, other?)
    }

    /// Annals vs SQLite: the median of the rounds' ratios, or (one round)
    /// the figures' ratio.
    pub fn vs_sqlite(&self) -> Option<f64> {
        match self.paired {
            Some([vs, _]) => vs,
            None => self.ratio(self.sqlite),
        }
    }

    /// Annals vs the ceiling, as [`Comparison::vs_sqlite`].
    pub fn vs_ceiling(&self) -> Option<f64> {
        match self.paired {
            Some([_, vs]) => vs,
            None => self.ratio(self.ceiling),
        }
    }

    /// A write workload measured in rounds: `runs` holds each round's
    /// figures, Annals' at `annals`, SQLite's at `sqlite`, the ceiling's at
    /// `ceiling`.
    pub(super) fn from_rounds<const N: usize>(
        workload: String,
        runs: &[[Figure; N]],
        annals: usize,
        sqlite: usize,
        ceiling: usize,
    ) -> Self {
        // Rates: more is better.
        let higher_is_better = true;
        let figures = medians(runs);
        let at = |i: usize| figures.get(i).copied();
        let paired = |other: usize| {
            median(
                runs.iter()
                    .filter_map(|run| {
                        ratio_of(higher_is_better, *run.get(annals)?, *run.get(other)?)
                    })
                    .collect(),
            )
        };
        Comparison {
            workload,
            unit: "commits/s",
            higher_is_better,
            annals: at(annals).unwrap_or(Figure::value(0.0)),
            sqlite: at(sqlite),
            ceiling: at(ceiling),
            rounds: runs.len(),
            paired: (runs.len() > 1).then(|| [paired(sqlite), paired(ceiling)]),
        }
    }
}

/// How many times better `annals` is than `other`.
fn ratio_of(higher_is_better: bool, annals: Figure, other: Figure) -> Option<f64> {
    let (annals, other) = (annals.value, other.value);
    if annals <= 0.0 || other <= 0.0 {
        return None;
    }
    Some(if higher_is_better {
        annals / other
    } else {
        other / annals
    })
}

/// Runs `measure` (one figure per system) `rounds` times.
pub(super) fn in_rounds<const N: usize>(
    rounds: usize,
    measure: impl FnMut(usize) -> [Figure; N],
) -> Vec<[Figure; N]> {
    (0..rounds.max(1)).map(measure).collect()
}

/// Each system's median figure over the rounds, field by field.
fn medians<const N: usize>(runs: &[[Figure; N]]) -> [Figure; N] {
    std::array::from_fn(|i| {
        let of = |field: fn(&Figure) -> Option<f64>| {
            median(
                runs.iter()
                    .filter_map(|run| run.get(i).and_then(field))
                    .collect(),
            )
        };
        Figure {
            value: of(|f| Some(f.value)).unwrap_or(0.0),
            p50_us: of(|f| f.p50_us.map(|v| v as f64)).map(|v| v as u64),
            p99_us: of(|f| f.p99_us.map(|v| v as f64)).map(|v| v as u64),
            p999_us: of(|f| f.p999_us.map(|v| v as f64)).map(|v| v as u64),
            device_bytes_per_event: of(|f| f.device_bytes_per_event),
        }
    })
}

/// The median (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => values.get(n / 2).copied(),
        _ => Some((values.get(n / 2 - 1)? + values.get(n / 2)?) / 2.0),
    }
}

/// The comparisons as a plain-text table.
pub fn table(rows: &[Comparison]) -> String {
    let mut out = String::new();
    let fmt = |f: Option<Figure>| f.map_or("-".to_owned(), |f| format!("{:.1}", f.value));
    let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}x"));
    out.push_str(&format!(
        "{:<52} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>18}\n",
        "workload",
        "unit",
        "annals",
        "sqlite",
        "ceiling",
        "vs sqlite",
        "vs ceiling",
        "annals p99/p99.9"
    ));
    for row in rows {
        let tail = match (row.annals.p99_us, row.annals.p999_us) {
            (Some(a), Some(b)) => format!("{a}/{b} us"),
            (Some(a), None) => format!("{a} us"),
            _ => "-".to_owned(),
        };
        out.push_str(&format!(
            "{:<52} {:>10} {:>12} {:>12} {:>12} {:>10} {:>10} {:>18}\n",
            row.workload,
            row.unit,
            fmt(Some(row.annals)),
            fmt(row.sqlite),
            fmt(row.ceiling),
            ratio(row.vs_sqlite()),
            ratio(row.vs_ceiling()),
            tail
        ));
    }
    out.push_str("ratios: > 1 means Annals is ahead (more per second, or less time)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(value: f64, p99: u64, bytes: f64) -> Figure {
        Figure {
            value,
            p50_us: Some(p99 / 2),
            p99_us: Some(p99),
            p999_us: None,
            device_bytes_per_event: Some(bytes),
        }
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![7.0]), Some(7.0));
        assert_eq!(median(vec![9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 100.0]), Some(3.5));
    }

    #[test]
    fn each_system_gets_the_median_of_its_own_figures_field_by_field() {
        let rounds = [
            [figure(100.0, 900, 300.0), figure(50.0, 10, 1.0)],
            [figure(300.0, 100, 320.0), figure(70.0, 30, 3.0)],
            [figure(200.0, 500, 310.0), figure(10.0, 20, 2.0)],
        ];
        let mut calls = Vec::new();
        let runs = in_rounds(3, |round| {
            calls.push(round);
            rounds[round]
        });
        assert_eq!(calls, [0, 1, 2]);
        let [a, b] = medians(&runs);
        assert_eq!(a.value, 200.0);
        assert_eq!(a.p99_us, Some(500));
        assert_eq!(a.p50_us, Some(250));
        assert_eq!(a.p999_us, None);
        assert_eq!(a.device_bytes_per_event, Some(310.0));
        assert_eq!(
            (b.value, b.p99_us, b.device_bytes_per_event),
            (50.0, Some(20), Some(2.0))
        );
    }

    #[test]
    fn ratios_over_rounds_pair_figures_of_the_same_round() {
        // The disk is fast in round 2 and slow in round 3: Annals equals the
        // ceiling in every round but the last, where it is half as fast.
        let runs = [
            [
                figure(100.0, 1, 1.0),
                figure(10.0, 1, 1.0),
                figure(100.0, 1, 1.0),
            ],
            [
                figure(300.0, 1, 1.0),
                figure(30.0, 1, 1.0),
                figure(300.0, 1, 1.0),
            ],
            [
                figure(200.0, 1, 1.0),
                figure(20.0, 1, 1.0),
                figure(400.0, 1, 1.0),
            ],
        ];
        let row = Comparison::from_rounds("w".into(), &runs, 0, 1, 2);
        assert_eq!(
            (row.annals.value, row.ceiling.unwrap().value),
            (200.0, 300.0)
        );
        assert_eq!(row.rounds, 3);
        assert_eq!(row.vs_ceiling(), Some(1.0), "not 200/300");
        assert_eq!(row.vs_sqlite(), Some(10.0));
        let one = Comparison::from_rounds("w".into(), &runs[2..], 0, 1, 2);
        assert_eq!((one.rounds, one.paired), (1, None));
        assert_eq!(one.vs_ceiling(), Some(0.5));
    }
}
