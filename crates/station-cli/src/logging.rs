//! Logs go to stderr, never stdout, and pass through the redactor.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(station_core::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[derive(Clone, Copy)]
struct MakeRedactingStderr;

impl<'a> MakeWriter<'a> for MakeRedactingStderr {
    type Writer = RedactingStderr;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingStderr
    }
}

/// `-v` → info, `-vv` → debug, `-vvv` → trace; `RUST_LOG` wins when set. Default: warnings.
/// With an OTLP endpoint configured (see [`crate::telemetry`]), Station's task spans are also
/// exported, whatever the log level.
pub(crate) fn init(verbose: u8, config: Option<&std::path::Path>) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Task and agent spans are for the exporter; log lines stay as they were.
    for quiet in ["station::task=off", "station::agent=off"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let logs = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(MakeRedactingStderr)
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(crate::telemetry::start(config))
        .with(logs)
        .try_init();
}
