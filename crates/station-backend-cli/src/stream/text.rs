//! Text leaving the parser: redaction of strings and JSON, and cutting long output.

use std::borrow::Cow;

use serde_json::Value;
use station_core::redact::Redactor;

/// `text` through the global redactor, copied only when it was borrowed and had nothing to cut.
pub(super) fn redacted(text: Cow<'_, str>) -> String {
    let changed = match Redactor::global().redact(&text) {
        Cow::Owned(r) => Some(r),
        Cow::Borrowed(_) => None,
    };
    changed.unwrap_or_else(|| text.into_owned())
}

/// Redact every string inside a JSON value, in place (keys are names, not data).
pub(super) fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            if let Cow::Owned(r) = Redactor::global().redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(map) => map.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// `text` cut to about `max` bytes: its start and end, with a marker saying how much is missing.
pub(crate) fn truncate_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let head_len = floor_char_boundary(text, max * 3 / 4);
    let tail_start = ceil_char_boundary(text, text.len() - max / 4);
    format!(
        "{}\n… [{} bytes cut] …\n{}",
        &text[..head_len],
        tail_start - head_len,
        &text[tail_start..]
    )
}

/// [`truncate_middle`] of an owned text, which is kept as it is when short enough.
pub(super) fn truncate_middle_owned(text: String, max: usize) -> String {
    if text.len() <= max {
        text
    } else {
        truncate_middle(&text, max)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}
