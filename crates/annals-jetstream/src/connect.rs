//! Connecting to NATS the way relays and mirrors need: never giving up on
//! a server that is down (the client keeps reconnecting in the
//! background), short timeouts so that a lost answer is noticed soon.

use std::time::Duration;

use async_nats::jetstream::{self, Context};

use crate::error::{Error, Result};

/// How long a JetStream request or publish acknowledgement may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A JetStream context on `url`; `acks_in_flight` bounds the client's own
/// queue of unanswered publishes. Returns at once even if the server is
/// down: requests fail until it is up.
pub(crate) async fn connect(url: &str, acks_in_flight: usize) -> Result<Context> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(REQUEST_TIMEOUT))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64).saturating_mul(50).min(1_000))
        })
        .connect(url)
        .await
        .map_err(|e| Error::nats(&format!("connect to {url}"), e))?;
    Ok(jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .max_ack_inflight(acks_in_flight.max(1) * 2)
        .build(client))
}

/// Sleeps before the next attempt and doubles `backoff` (up to `max`).
pub(crate) async fn back_off(backoff: &mut Duration, max: Duration) {
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(max);
}

/// Where a relay or mirror logs: one line each, on standard error.
pub(crate) fn log(who: &str, line: std::fmt::Arguments<'_>) {
    eprintln!("annals {who}: {line}");
}
