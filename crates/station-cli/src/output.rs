//! Everything `stn` prints goes through here: results to stdout, diagnostics to stderr, all
//! redacted.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is the CLI's output"
)]

use station_core::redact::redact;

/// A result line on stdout.
pub(crate) fn line(text: &str) {
    println!("{}", redact(text));
}

/// A JSON document on stdout.
pub(crate) fn json(value: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(value).expect("output serializes");
    println!("{}", redact(&text));
}

/// An error on stderr.
pub(crate) fn error_line(text: &str) {
    eprintln!("error: {}", redact(text));
}

/// A warning on stderr.
pub(crate) fn warn_line(text: &str) {
    eprintln!("warning: {}", redact(text));
}

/// Progress on stderr.
pub(crate) fn progress(text: &str) {
    eprintln!("{}", redact(text));
}
