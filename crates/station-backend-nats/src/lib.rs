//! Station's distributed coding backend (`backend: opencode-nats`): tasks travel over NATS to
//! workers next to OpenCode; sessions live in JetStream KV so any Station instance can continue
//! any session.
//!
//! Both sides are here:
//!
//! * [`NatsBackend`]: the client, a [`CodingBackend`](station_core::CodingBackend). It speaks
//!   the Station OpenCode plugin's protocol, so it works with deployed plugins, and uses our
//!   extensions (ack, heartbeats, cancel, stored results) when a Station worker answers.
//! * [`Worker`]: runs tasks from the task subject on any injected `CodingBackend` (the OpenCode
//!   HTTP backend in `stn worker`), in a queue group so many workers share the load.
//!
//! The wire protocol, plugin-compatible part and extensions, is in `PROTOCOL.md`; the message
//! types are in [`wire`].
//!
//! ```no_run
//! # async fn demo(executor: std::sync::Arc<dyn station_core::CodingBackend>) -> station_core::Result<()> {
//! use std::time::Duration;
//! use station_backend_nats::{NatsBackend, NatsBackendOptions, NatsConfig, Worker, WorkerOptions};
//! use station_core::config::LoadedConfig;
//!
//! let loaded = LoadedConfig::defaults("/etc/station");
//! let (coding, nats) = (&loaded.config.coding, NatsConfig::from_loaded(&loaded)?);
//! // Station side.
//! let backend = NatsBackend::connect(
//!     &nats,
//!     NatsBackendOptions { task_timeout: coding.task_timeout(), ..Default::default() },
//! )
//! .await?;
//! // Worker side (`stn worker`): run tasks on `executor` until Ctrl-C.
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let worker = Worker::new(
//!     nats.clone(),
//!     executor,
//!     coding.workspace_base(),
//!     WorkerOptions { task_timeout: coding.task_timeout(), ..Default::default() },
//! );
//! worker.run(shutdown).await?;
//! # let _ = (backend, Duration::ZERO);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod conn;
pub mod git;
pub mod names;
pub mod wire;
mod worker;

pub use client::{NatsBackend, NatsBackendOptions, meta};
pub use config::{
    NatsConfig, NatsFactory, NatsKv, NatsSubjects, NatsTls, NatsWorker, TLS_CA_ENV, TLS_CERT_ENV,
    TLS_KEY_ENV, URL_ENV,
};
pub use worker::{BoundWorker, PrepareWorkspace, Worker, WorkerOptions};
