//! Connecting to NATS and opening the KV buckets, shared by the client and the worker.

use std::path::Path;
use std::time::Duration;

use crate::NatsConfig;
use async_nats::jetstream::{self, kv};
use async_nats::rustls;
use async_nats::rustls::pki_types::pem::PemObject;
use async_nats::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use station_core::{Error, InputError, Result};

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
/// async-nats (subscriptions are restored on reconnect). `config.url` may list several
/// servers (comma-separated): the first connection tries each, and a reconnect goes to any
/// of them or to a cluster member the server announced. Waits on a reconnect are bounded
/// where a task waits (see the client's `reconnect_wait`).
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
    check_tls_files(config)?;
    if let Some(ca) = &config.tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = config.tls.client_certificate()? {
        options = options.add_client_certificate(cert.to_path_buf(), key.to_path_buf());
    }
    // Any TLS setting means TLS, as in nats.go: never fall back to plain text silently.
    if !config.tls.is_empty() {
        options = options.require_tls(true);
    }
    if let Some(creds) = &config.creds_file {
        options = options.credentials_file(creds).await.map_err(|e| {
            Error::config(format!(
                "cannot read the NATS credentials file {} (coding.nats.creds_file): {e}",
                creds.display()
            ))
        })?;
    }
    let servers = server_addrs(config)?;
    let attempt = async_nats::connect_with_options(servers, options);
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
                _ if tls_error(&e).is_some() || e.kind() == ConnectErrorKind::Tls => {
                    tls_failure(&e, &url, &detail, config)
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

/// The parsed servers of `coding.nats.url` (comma-separated).
fn server_addrs(config: &NatsConfig) -> Result<Vec<async_nats::ServerAddr>> {
    config.check()?;
    config
        .server_urls()
        .iter()
        .map(|url| {
            url.parse::<async_nats::ServerAddr>().map_err(|e| {
                InputError::new(format!("invalid NATS server URL {}: {e}", shown_url(url)))
                    .field("coding.nats.url")
                    .hint("use nats://host:port (tls:// for TLS), several separated by commas")
                    .into()
            })
        })
        .collect()
}

/// Check `coding.nats.tls` before connecting: cert and key come together, and every file
/// named is readable PEM of the right kind. async-nats reads the files again on each
/// (re)connect, so a renewed certificate is picked up on reconnect.
fn check_tls_files(config: &NatsConfig) -> Result<()> {
    let tls = &config.tls;
    if let Some(ca) = &tls.ca_file {
        let pem = read_tls_file(ca, "coding.nats.tls.ca_file", "--tls-ca / STN_NATS_TLS_CA")?;
        pem_certificates(&pem, ca, "coding.nats.tls.ca_file")?;
    }
    if let Some((cert, key)) = tls.client_certificate()? {
        let pem = read_tls_file(
            cert,
            "coding.nats.tls.cert_file",
            "--tls-cert / STN_NATS_TLS_CERT",
        )?;
        pem_certificates(&pem, cert, "coding.nats.tls.cert_file")?;
        let pem = read_tls_file(
            key,
            "coding.nats.tls.key_file",
            "--tls-key / STN_NATS_TLS_KEY",
        )?;
        // The parser's error is not shown: it could quote the file.
        if PrivateKeyDer::from_pem_slice(&pem).is_err() {
            return Err(InputError::new(format!(
                "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                key.display()
            ))
            .field("coding.nats.tls.key_file")
            .into());
        }
    }
    Ok(())
}

/// PEM files are a few KiB; this stops a mistyped path to a device or a huge file.
const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

fn read_tls_file(path: &Path, field: &str, overrides: &str) -> Result<Vec<u8>> {
    station_core::fsutil::read_bytes(path, MAX_TLS_FILE_BYTES, "TLS file").map_err(|e| {
        InputError::new(format!("cannot read {}: {e}", path.display()))
            .field(field)
            .hint(format!("fix the path in {field} or {overrides}"))
            .into()
    })
}

fn pem_certificates(pem: &[u8], path: &Path, field: &str) -> Result<()> {
    let parsed: std::result::Result<Vec<CertificateDer<'_>>, _> =
        CertificateDer::pem_slice_iter(pem).collect();
    match parsed {
        Ok(certs) if !certs.is_empty() => Ok(()),
        Ok(_) => Err(InputError::new(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))
        .field(field)
        .into()),
        Err(e) => Err(InputError::new(format!(
            "{} is not a valid PEM certificate file: {e}",
            path.display()
        ))
        .field(field)
        .into()),
    }
}

/// The rustls error behind a connect failure, if TLS failed.
fn tls_error(error: &async_nats::ConnectError) -> Option<&rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    // Error chains are short; the bound only guards against a cyclic `source`.
    for _ in 0..16 {
        let err = current?;
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // `io::Error::source` skips the wrapped error itself, so look inside.
        if let Some(found) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// A failed TLS connection, saying which setting to check.
fn tls_failure(
    error: &async_nats::ConnectError,
    url: &str,
    detail: &str,
    config: &NatsConfig,
) -> Error {
    match tls_error(error) {
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        )) => Error::Auth {
            message: format!(
                "the certificate of the NATS server at {url} does not name that host ({detail}); \
                 connect by a host name or IP address the certificate lists"
            ),
        },
        Some(rustls::Error::InvalidCertificate(_)) => {
            let hint = if config.tls.ca_file.is_some() {
                "check that coding.nats.tls.ca_file (--tls-ca / STN_NATS_TLS_CA) holds the CA that \
                 signed the server's certificate"
            } else {
                "set coding.nats.tls.ca_file (--tls-ca / STN_NATS_TLS_CA) to the PEM of the CA that \
                 signed the server's certificate"
            };
            Error::Auth {
                message: format!(
                    "the NATS server at {url} presented a certificate this client does not trust ({detail}); {hint}"
                ),
            }
        }
        Some(rustls::Error::AlertReceived(alert)) if rejected_client_certificate(*alert) => {
            let hint = if config.tls.cert_file.is_some() {
                "check that coding.nats.tls.cert_file and coding.nats.tls.key_file (--tls-cert / \
                 --tls-key) hold a client certificate signed by a CA the server trusts"
            } else {
                "the server requires a client certificate (mutual TLS): set \
                 coding.nats.tls.cert_file and coding.nats.tls.key_file (--tls-cert / --tls-key)"
            };
            Error::Auth {
                message: format!(
                    "the NATS server at {url} refused the TLS connection ({detail}); {hint}"
                ),
            }
        }
        _ if error.kind() == ConnectErrorKind::Tls => Error::config(format!(
            "cannot set up TLS for NATS at {url}: {detail}; check coding.nats.tls"
        )),
        _ => unavailable(format!(
            "the TLS handshake with NATS at {url} failed ({detail}); check that the server has \
             TLS enabled, or use a nats:// URL without coding.nats.tls settings"
        )),
    }
}

/// Alerts a server sends when it does not accept the client's certificate (or its absence).
fn rejected_client_certificate(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::CertificateRequired
            | A::BadCertificate
            | A::CertificateUnknown
            | A::UnknownCA
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::AccessDenied
            | A::HandshakeFailure
    )
}

/// A bucket opened by [`open_bucket`], and a warning when it exists with another replica
/// count than `coding.nats.replicas`.
pub(crate) struct OpenedBucket {
    pub(crate) store: kv::Store,
    pub(crate) warning: Option<String>,
}

/// Open `bucket`, creating it (history 1, `max_age`, file storage, `replicas` copies) when
/// missing. An existing bucket is used as it is; a different replica count is a warning
/// (logged, and kept for health checks).
pub(crate) async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
) -> Result<OpenedBucket> {
    let opened = open_or_create_bucket(js, bucket, max_age, replicas).await?;
    let warning = match opened.status().await {
        Ok(status) if status.info.config.num_replicas != replicas => Some(format!(
            "the JetStream KV bucket `{bucket}` has {} replica(s) but coding.nats.replicas is {replicas}; \
             it is used as it is (change it with `nats stream edit KV_{bucket} --replicas {replicas}`, \
             or set coding.nats.replicas to match)",
            status.info.config.num_replicas
        )),
        _ => None,
    };
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    Ok(OpenedBucket {
        store: opened,
        warning,
    })
}

async fn open_or_create_bucket(
    js: &jetstream::Context,
    bucket: &str,
    max_age: Duration,
    replicas: usize,
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
            num_replicas: replicas,
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
