//! `annals bench`: runs the `annals-bench` executable of the benchmark
//! crate (Annals vs SQLite vs the plain-file ceiling), passing the
//! arguments through. The comparison lives there so that this binary does
//! not link SQLite.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::Failure;

/// Name of the benchmark executable.
const BENCH_EXE: &str = "annals-bench";

/// The one documented way to run the benchmark when it is not installed.
pub const BUILD_COMMAND: &str =
    "cargo run --release -p annals-benches --bin annals-bench -- [ARGS]";

/// Runs `annals-bench` with `args`, found next to the current executable or
/// on PATH; returns its exit code. Not found: a usage failure (exit 2)
/// naming [`BUILD_COMMAND`].
pub fn run(args: &[OsString]) -> Result<ExitCode, Failure> {
    let Some(exe) = find() else {
        return Err(Failure::usage(format!(
            "`annals bench` runs the {BENCH_EXE} executable, which was found neither next to this \
             executable nor on PATH; the benchmark lives in the benchmark crate: run it with\n    \
             {BUILD_COMMAND}"
        )));
    };
    let status = Command::new(&exe)
        .args(args)
        .status()
        .map_err(|e| Failure::error(format!("{}: {e}", exe.display())))?;
    match status.code() {
        Some(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        None => Err(Failure::error(format!(
            "{}: terminated by a signal ({status})",
            exe.display()
        ))),
    }
}

/// `annals-bench` next to the current executable, else on PATH.
fn find() -> Option<PathBuf> {
    let name = format!("{BENCH_EXE}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)));
    beside
        .into_iter()
        .chain(std::env::var_os("PATH").map_or_else(Vec::new, |paths| on_path(&paths, &name)))
        .find(|candidate| is_executable(candidate))
}

/// `name` in each directory of a PATH value.
fn on_path(paths: &OsStr, name: &str) -> Vec<PathBuf> {
    std::env::split_paths(paths)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .collect()
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}
