//! The JetStream stream a relay publishes into: its settings, creating it
//! when missing, and refusing an existing one whose settings would not keep
//! the feed (memory storage, a retention that deletes on ack or interest,
//! other subjects, another store's id).

use std::time::Duration;

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::Context;

use annals::StoreId;

use crate::encoding::valid_prefix;
use crate::error::{Error, Result};

/// Subject prefix of a relay that is given none.
pub const DEFAULT_SUBJECT_PREFIX: &str = "annals";

/// Key of the stream's metadata that holds the source store's id.
pub(crate) const METADATA_STORE_ID: &str = "annals-store-id";

/// Which JetStream stream, and how a relay creates it.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The JetStream stream's name.
    pub name: String,
    /// Subjects are `PREFIX.CATEGORY.STREAM`; the stream takes `PREFIX.>`.
    pub subject_prefix: String,
    /// JetStream's duplicate window for `Nats-Msg-Id`, when the relay
    /// creates the stream (JetStream's default: 2 minutes). Exactly-once
    /// does not rest on it.
    pub duplicate_window: Duration,
}

impl StreamSettings {
    /// A stream named `name` with the default prefix and window.
    pub fn new(name: impl Into<String>) -> Self {
        StreamSettings {
            name: name.into(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            duplicate_window: Duration::from_secs(120),
        }
    }

    /// Refuses a name or prefix JetStream would not take.
    pub fn check(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.bytes().all(|b| {
                (0x21..=0x7E).contains(&b) && !matches!(b, b'.' | b'*' | b'>' | b'/' | b'\\')
            });
        if !name_ok {
            return Err(Error::Refused(format!(
                "{:?} is not a JetStream stream name (printable ASCII without '.', '*', '>', '/', '\\\\' or spaces)",
                self.name
            )));
        }
        if !valid_prefix(&self.subject_prefix) {
            return Err(Error::Refused(format!(
                "{:?} is not a subject prefix (dot-separated tokens of printable ASCII, no wildcards)",
                self.subject_prefix
            )));
        }
        Ok(())
    }

    fn filter(&self) -> String {
        format!("{}.>", self.subject_prefix)
    }
}

/// The stream, created (file storage, limits retention) if missing; an
/// existing one is checked and refused if it does not fit.
pub(crate) async fn ensure(
    js: &Context,
    settings: &StreamSettings,
    store: StoreId,
) -> Result<Stream> {
    settings.check()?;
    match js.get_stream(&settings.name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| Error::nats("stream info", e))?;
            check_existing(&info.config, settings, Some(store))?;
            Ok(stream)
        }
        Err(e) if is_not_found(&e) => {
            let config = Config {
                name: settings.name.clone(),
                subjects: vec![settings.filter()],
                storage: StorageType::File,
                retention: RetentionPolicy::Limits,
                duplicate_window: settings.duplicate_window,
                description: Some(format!("Annals feed of store {store}")),
                metadata: [(METADATA_STORE_ID.to_owned(), store.to_string())].into(),
                ..Config::default()
            };
            js.create_stream(config).await.map_err(|e| {
                use async_nats::jetstream::context::CreateStreamErrorKind;
                match e.kind() {
                    // The server's answer (subjects that overlap another
                    // stream's, limits): asking again will not change it.
                    CreateStreamErrorKind::JetStream(answer) => Error::Refused(format!(
                        "JetStream refused to create stream {}: {answer}",
                        settings.name
                    )),
                    _ => Error::nats("create stream", e),
                }
            })
        }
        Err(e) => Err(Error::nats("get stream", e)),
    }
}

fn is_not_found(error: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    matches!(error.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Refuses settings under which the stream would not hold the feed as the
/// relay publishes it. `store`: the store the caller relays or mirrors, if
/// known.
pub(crate) fn check_existing(
    config: &Config,
    settings: &StreamSettings,
    store: Option<StoreId>,
) -> Result<()> {
    let name = &settings.name;
    let refuse = |what: String| Err(Error::Refused(format!("JetStream stream {name}: {what}")));
    if config.subjects != [settings.filter()] {
        return refuse(format!(
            "its subjects are {:?}, the relay needs exactly [{:?}]",
            config.subjects,
            settings.filter()
        ));
    }
    if config.storage != StorageType::File {
        return refuse("it keeps messages in memory; the relay needs file storage".into());
    }
    if config.retention != RetentionPolicy::Limits {
        return refuse(format!(
            "its retention is {:?}; the relay needs limits retention (messages stay after they are consumed)",
            config.retention
        ));
    }
    if config.sealed || config.mirror.is_some() {
        return refuse("it is sealed or a mirror: nothing can be published into it".into());
    }
    if let (Some(want), Some(have)) = (store, config.metadata.get(METADATA_STORE_ID)) {
        if *have != want.to_string() {
            return refuse(format!(
                "it holds the feed of store {have}, not of store {want}"
            ));
        }
    }
    Ok(())
}
