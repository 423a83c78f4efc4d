//! Helpers shared by the CLI's integration tests: running the built
//! `annals` binary and reading its exit code.

#![allow(dead_code)]

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
