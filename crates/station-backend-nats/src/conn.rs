//! Connecting to NATS and opening the KV buckets, shared by the client and the worker.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use station_core::config::NatsConfig;
use station_core::{Error, Result};

/// The backend's configured name.
pub(crate) const BACKEND: &str = "opencode-nats";

/// Sessions expire when unused for this long (the Go Station's bucket TTL).
pub(crate) const SESSIONS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Task claims and stored results expire after this long.
pub(crate) const TASKS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

const START_HINT: &str = "start a server with JetStream (`nats-server -js`) or point coding.nats.url / STN_NATS_URL at one";

/// The URL for messages: credentials in it are redacted.
pub(crate) fn shown_url(url: &str) -> String {
    station_core::redact::redact(url)
}

pub(crate) fn unavailable(message: impl Into<String>) -> Error {
    Error::Unavailable {
        backend: BACKEND.into(),
        message: message.into(),
    }
}

/// Connect with a bounded first attempt; later reconnects are unlimited and handled by
/// async-nats (subscriptions are restored on reconnect).
pub(crate) async fn connect(
    config: &NatsConfig,
    connection_name: &str,
    timeout: Duration,
) -> Result<Client> {
    let url = shown_url(&config.url);
    let mut options = ConnectOptions::new()
        .name(connection_name)
        .connection_timeout(timeout)
        .max_reconnects(None)
        // Faster than the default back-off (up to 4 s): tasks wait on this.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64).saturating_mul(100).min(1_000))
        });
    if let Some(creds) = &config.creds_file {
        options = options.credentials_file(creds).await.map_err(|e| {
            Error::config(format!(
                "cannot read the NATS credentials file {} (coding.nats.creds_file): {e}",
                creds.display()
            ))
        })?;
    }
    let attempt = async_nats::connect_with_options(config.url.as_str(), options);
    let client = match tokio::time::timeout(timeout + Duration::from_secs(1), attempt).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            let detail = station_core::redact::redact(&e.to_string());
            return Err(match e.kind() {
                ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                    Error::Auth {
                        message: format!(
                            "NATS at {url} refused the credentials ({detail}); check coding.nats.creds_file"
                        ),
                    }
                }
                ConnectErrorKind::ServerParse => {
                    Error::config(format!("invalid NATS URL {url}: {detail}"))
                }
                _ => unavailable(format!(
                    "cannot connect to NATS at {url}: {detail}; {START_HINT}"
                )),
            });
        }
        Err(_) => {
            return Err(unavailable(format!(
                "connecting to NATS at {url} timed out after {}s; {START_HINT}",
                timeout.as_secs()
            )));
        }
    };
    Ok(client)
}

/// Open `bucket`, creating it (history 1, `max_age`, file storage) when missing.
pub(crate) async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
) -> Result<kv::Store> {
    if let Ok(store) = js.get_key_value(bucket).await {
        return Ok(store);
    }
    // The stream behind a KV bucket, made by hand: `create_key_value` first asks for account
    // info in a shape nats-server 2.9 does not send. Same layout as the plugin's fallback.
    let created = js
        .create_stream(jetstream::stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..jetstream::stream::Config::default()
        })
        .await;
    let created = match created {
        Ok(_) => js.get_key_value(bucket).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match created {
        Ok(store) => Ok(store),
        // Someone else created it meanwhile (with their own settings): use theirs.
        Err(create_err) => js.get_key_value(bucket).await.map_err(|_| {
            let detail = create_err;
            let hint = if detail.to_lowercase().contains("not enabled")
                || detail.to_lowercase().contains("no responders")
            {
                "JetStream is not enabled on the server; start it with `nats-server -js`"
            } else {
                "is JetStream enabled (`nats-server -js`)?"
            };
            unavailable(format!(
                "cannot open the JetStream KV bucket `{bucket}`: {detail}; {hint}"
            ))
        }),
    }
}

/// A JetStream context with a request deadline that suits KV calls.
pub(crate) fn jetstream(client: &Client) -> jetstream::Context {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(5));
    js
}
