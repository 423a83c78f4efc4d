//! Reading back what a JetStream stream holds, message by message: what
//! tests, benchmarks and operators use to check a relay's work.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures_util::StreamExt;

use annals::{ReplicatedEvent, StoreId};

use crate::connect::connect;
use crate::error::{Error, Result};
use crate::message::event_from_message;

/// One message of the stream, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its subject.
    pub subject: String,
    /// The store it came from.
    pub store: StoreId,
    /// The event.
    pub event: ReplicatedEvent,
}

/// Every message of JetStream stream `stream` on `nats_url`, in sequence
/// order, decoded; a [`Error::BadMessage`] for one that is not a relay's.
pub async fn published(nats_url: &str, stream: &str) -> Result<Vec<Published>> {
    let (handle, count, last) = open_stream(nats_url, stream).await?;
    let mut out = Vec::with_capacity(count as usize);
    if count == 0 {
        return Ok(out);
    }
    let consumer = handle
        .create_consumer(OrderedConfig::default())
        .await
        .map_err(|e| Error::nats("create consumer", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::nats("consume", e))?;
    while out.len() < count as usize {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next()).await;
        let message = match next {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(e))) => return Err(Error::nats("consume", e)),
            Ok(None) | Err(_) => return Err(Error::Nats("the stream ended early".into())),
        };
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let (store, event) =
            event_from_message(sequence, message.headers.as_ref(), message.payload.clone())?;
        out.push(Published {
            sequence,
            subject: message.subject.to_string(),
            store,
            event,
        });
        if sequence >= last {
            break;
        }
    }
    Ok(out)
}

/// Stream `stream` on `nats_url`, with its message count and last sequence.
async fn open_stream(
    nats_url: &str,
    stream: &str,
) -> Result<(async_nats::jetstream::stream::Stream, u64, u64)> {
    let js = connect(nats_url, 1).await?;
    let mut handle = js
        .get_stream(stream)
        .await
        .map_err(|e| Error::nats("get stream", e))?;
    let info = handle
        .info()
        .await
        .map_err(|e| Error::nats("stream info", e))?;
    let (count, last) = (info.state.messages, info.state.last_sequence);
    Ok((handle, count, last))
}

/// The position of the last message of JetStream stream `stream` on
/// `nats_url`; `None` while it holds none.
pub async fn last_position(nats_url: &str, stream: &str) -> Result<Option<u64>> {
    let (handle, count, last) = open_stream(nats_url, stream).await?;
    if count == 0 {
        return Ok(None);
    }
    let message = handle
        .get_raw_message(last)
        .await
        .map_err(|e| Error::nats("read the last message", e))?;
    let (_, event) = event_from_message(last, Some(&message.headers), message.payload)?;
    Ok(Some(event.event.position))
}
