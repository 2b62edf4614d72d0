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

/// Progress on stderr (above the spinner, when one is shown).
pub(crate) fn progress(text: &str) {
    let text = redact(text);
    match SPINNER.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        Some(bar) => bar.println(text),
        None => eprintln!("{text}"),
    }
}

static SPINNER: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Show a spinner with `message` under the progress lines, when stderr is a terminal (plain
/// lines otherwise).
pub(crate) fn spinner_start(message: &str) {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(redact(message));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    *SPINNER.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
}

/// What the spinner says.
pub(crate) fn spinner_message(message: &str) {
    if let Some(bar) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        bar.set_message(redact(message));
    }
}

/// Remove the spinner.
pub(crate) fn spinner_stop() {
    if let Some(bar) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bar.finish_and_clear();
    }
}

/// The spinner's message while a question hides it.
static HIDDEN_SPINNER: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A question on stderr, with the cursor left after it; the spinner, if shown, is removed
/// until [`question_done`] so it does not draw over the question.
pub(crate) fn question(text: &str) {
    use std::io::Write;
    if let Some(bar) = SPINNER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        *HIDDEN_SPINNER.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.message());
        bar.finish_and_clear();
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{}", redact(text));
    let _ = err.flush();
}

/// The end of a question: `text` on its own line, and the spinner back.
pub(crate) fn question_done(text: &str) {
    eprintln!("{}", redact(text));
    let hidden = HIDDEN_SPINNER
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(message) = hidden {
        spinner_start(&message);
    }
}
