//! Property: a directory is recognisably a store or not. Read-only commands
//! on a missing, empty or foreign directory exit 1 with `not an Annals
//! store: DIR` and create, change and remove nothing; writing commands
//! create a store in a missing or empty directory but refuse a foreign one;
//! a store made before the identity file existed still opens and gets one.
//! Method: run the built binary; list and checksum the directory (names,
//! sizes, modes, a hash of the contents) before and after each command.

use std::collections::BTreeMap;
use std::path::Path;

mod common;
use common::annals;

/// Every entry under `dir` (recursively): name → (mode, length, checksum).
fn snapshot(dir: &Path) -> Option<BTreeMap<String, (u32, u64, u64)>> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.exists() {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            let name = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .display()
                .to_string();
            let sum = if meta.is_dir() {
                stack.push(entry.path());
                0
            } else {
                {
                    use std::hash::{Hash, Hasher};
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    std::fs::read(entry.path()).unwrap().hash(&mut hasher);
                    hasher.finish()
                }
            };
            out.insert(name, (meta.permissions().mode(), meta.len(), sum));
        }
    }
    Some(out)
}

const READ_ONLY: [&[&str]; 6] = [
    &["read", "DIR", "s-1"],
    &["all", "DIR"],
    &["tail", "DIR", "--no-follow"],
    &["stats", "DIR"],
    &["verify", "DIR"],
    &["all", "DIR", "--type", "T"],
];

fn with_dir<'a>(args: &[&'a str], dir: &'a str) -> Vec<&'a str> {
    args.iter()
        .map(|a| if *a == "DIR" { dir } else { a })
        .collect()
}

fn assert_refused_untouched(dir: &Path) {
    let text = dir.to_str().unwrap();
    for command in READ_ONLY {
        let before = snapshot(dir);
        let output = annals(&with_dir(command, text));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!("not an Annals store: {text}")),
            "{command:?}: {stderr}"
        );
        assert_eq!(snapshot(dir), before, "{command:?} changed {text}");
    }
}

#[test]
fn read_only_commands_on_a_missing_directory_create_nothing() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("typo");
    assert_refused_untouched(&dir);
    assert!(!dir.exists());
    assert_eq!(snapshot(parent.path()).unwrap().len(), 0);
}

#[test]
fn read_only_commands_on_an_empty_directory_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert_refused_untouched(dir.path());
    assert_eq!(snapshot(dir.path()).unwrap().len(), 0);
}

#[test]
fn read_only_commands_on_a_foreign_directory_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("CLEAN"), b"my notes, not a marker").unwrap();
    std::fs::write(dir.path().join("draft.tmp"), b"unsaved work").unwrap();
    std::fs::write(dir.path().join("index-x.run"), b"a script").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/file"), b"nested").unwrap();
    let before = snapshot(dir.path());
    assert_refused_untouched(dir.path());
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn writing_commands_refuse_a_foreign_directory_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("CLEAN"), b"my notes").unwrap();
    std::fs::write(dir.path().join("draft.tmp"), b"unsaved work").unwrap();
    let text = dir.path().to_str().unwrap();
    let before = snapshot(dir.path());
    let commands: [&[&str]; 5] = [
        &["append", text, "s-1", "--type", "T", "--data", "{}"],
        &["delete", text, "s-1"],
        &["stress", text, "--seconds", "0.1", "--threads", "1"],
        &[
            "stress",
            text,
            "--seconds",
            "0.1",
            "--segment-bytes",
            "1048576",
        ],
        &["demo", text, "--threads", "1", "--commands", "1"],
    ];
    for command in commands {
        let output = annals(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command:?}: {stderr}");
        assert!(stderr.contains("not an Annals store"), "{stderr}");
        assert!(stderr.contains("not empty"), "{stderr}");
        assert_eq!(snapshot(dir.path()), before, "{command:?}");
    }
}

#[test]
fn writing_commands_create_a_store_with_an_identity_in_missing_and_empty_directories() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("new");
    let empty = parent.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for dir in [&missing, &empty] {
        let text = dir.to_str().unwrap();
        let output = annals(&["append", text, "s-1", "--type", "T", "--data", "1"]);
        assert!(output.status.success(), "{output:?}");
        let identity = std::fs::read(dir.join("IDENTITY")).unwrap();
        assert_eq!(identity.len(), 40);
        assert_eq!(&identity[..8], b"ANNALSID");
        let output = annals(&["read", text, "s-1"]);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    }
    // Two stores, two ids.
    let a = std::fs::read(missing.join("IDENTITY")).unwrap();
    let b = std::fs::read(empty.join("IDENTITY")).unwrap();
    assert_ne!(a[16..32], b[16..32]);
}
