//! Shared helpers.

use std::path::Path;
use std::time::Duration;

use station_backend_http::{HttpBackend, HttpTuning};
use station_backend_http::{ManagedServer, OpencodeConfig};
use station_core::{Event, EventKind, Session};

/// The session of the captured sample.
pub(crate) const SAMPLE_SESSION: &str = "ses_df5173a6dffel5HVESKdRrzoZ7";

pub(crate) fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/it/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Deadlines short enough for tests.
pub(crate) fn quick_tuning() -> HttpTuning {
    let mut t = HttpTuning::default();
    t.connect_timeout = Duration::from_secs(2);
    t.request_timeout = Duration::from_secs(5);
    t.first_frame = Duration::from_secs(2);
    t.stream_idle = Duration::from_millis(300);
    t.backoff_base = Duration::from_millis(10);
    t.reconnect_attempts = 3;
    t.drain_quiet = Duration::from_millis(100);
    t.drain_max = Duration::from_millis(500);
    t
}

pub(crate) fn config(url: &str) -> OpencodeConfig {
    OpencodeConfig {
        url: url.to_string(),
        managed: ManagedServer::Never,
        ..Default::default()
    }
}

/// A backend for a fake server at `url`: never managed, quick deadlines.
pub(crate) fn backend(url: &str) -> HttpBackend {
    HttpBackend::from_opencode(config(url), 3, Duration::from_secs(600))
        .unwrap()
        .with_tuning(quick_tuning())
}

/// A session that already has a backend id, in `workspace`.
pub(crate) fn session(id: &str, workspace: &Path) -> Session {
    let mut s = Session::new("opencode");
    s.backend_session_id = Some(id.to_string());
    s.workspace = Some(workspace.to_path_buf());
    s
}

/// The event kinds, without sequence numbers and times.
pub(crate) fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind.clone()).collect()
}

/// A port nothing listens on.
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// SSE body made of `data:` frames.
pub(crate) fn sse(frames: &[String]) -> String {
    frames.iter().map(|f| format!("data: {f}\n\n")).collect()
}

/// The frames of the sample, as JSON texts.
pub(crate) fn sample_frames() -> Vec<String> {
    fixture("opencode-events.sse")
        .split("\n\n")
        .filter_map(|f| f.trim().strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// Poll `check` every 10 ms until it holds, for at most `within`.
pub(crate) async fn until(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
