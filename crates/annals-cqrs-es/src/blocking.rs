//! Running the store's blocking calls off the executor's threads.
//!
//! Every call of the [`annals::Store`] that can wait on the disk (an
//! append waits for its group's `fdatasync`) runs on Tokio's blocking pool
//! through `spawn_blocking`, so an executor thread never sleeps in
//! `fdatasync`. Outside a Tokio runtime (another executor) the call runs
//! on the caller's thread instead: there is no blocking pool to hand it
//! to, and that executor is the caller's to size.

use crate::error::Error;

/// Runs `call` on Tokio's blocking pool (inline without a runtime) and
/// waits for it without blocking the executor.
pub async fn run<T, F>(call: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(call)
            .await
            .map_err(|join| Error::Blocking(join.to_string()))?,
        Err(_) => call(),
    }
}
