//! Helpers shared by the CLI's integration tests: running the built
//! `annals` binary and reading its exit code.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the built `annals` binary with `args`, stdin closed; waits for it.
pub fn annals(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The exit code (a test fails if the process died of a signal).
pub fn code(output: &Output) -> i32 {
    output.status.code().unwrap()
}

/// Runs the built `annals` binary with `args`, feeding it `stdin`; waits
/// for it. A command that refuses its arguments may exit before reading
/// its input: a write that meets the closed pipe is ignored.
pub fn annals_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}
