//! Property: the zero-copy `$all` visitor visits exactly what `read_all`
//! returns (same fields, same order, from any position, bounded by `max`
//! and by `Break`), and the backward read returns the same events newest
//! first from any position. Method: a store over several small segments,
//! every start position checked.

use std::ops::ControlFlow;

use annals::{EventData, ExpectedVersion, Options, Store};

fn filled() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), Options::default().segment_bytes(16 << 10)).unwrap();
    for i in 0..120u64 {
        let events = (0..1 + i % 4)
            .map(|k| EventData::new(format!("T{k}"), vec![i as u8; (i * 13 % 300) as usize]))
            .collect();
        store
            .append(&format!("s-{}", i % 7), ExpectedVersion::Any, events)
            .unwrap()
            .unwrap();
    }
    assert!(store.stats().segments > 3);
    (dir, store)
}

#[test]
fn the_visitor_sees_what_read_all_returns() {
    let (_dir, store) = filled();
    let all = store.read_all(0, usize::MAX).unwrap();
    let end = all.len() as u64;
    for from in (0..=end + 1).step_by(7) {
        for max in [0, 1, 5, usize::MAX] {
            let mut seen = Vec::new();
            let n = store
                .read_all_with(from, max, |e| {
                    seen.push(e.to_recorded());
                    ControlFlow::Continue(())
                })
                .unwrap();
            let want: Vec<_> = all.iter().skip(from as usize).take(max).cloned().collect();
            assert_eq!(n, want.len());
            assert_eq!(seen, want, "from {from} max {max}");
        }
    }
    let mut visited = 0;
    let n = store
        .read_all_with(3, usize::MAX, |_| {
            visited += 1;
            if visited == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!((n, visited), (4, 4));
}

#[test]
fn the_backward_read_is_read_all_reversed() {
    let (_dir, store) = filled();
    let all = store.read_all(0, usize::MAX).unwrap();
    let end = all.len() as u64;
    for from in (0..end).step_by(5).chain([end - 1, end, u64::MAX]) {
        for max in [0, 1, 300, usize::MAX] {
            let got = store.read_all_backward(from, max).unwrap();
            let top = from.min(end - 1) as usize;
            let want: Vec<_> = all[..=top].iter().rev().take(max).cloned().collect();
            assert_eq!(got, want, "from {from} max {max}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = Store::open(dir.path()).unwrap();
    assert!(empty.read_all_backward(u64::MAX, 10).unwrap().is_empty());
}
