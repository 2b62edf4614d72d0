//! Text leaving the parser: redaction of strings and JSON, and cutting long tool output.

use std::borrow::Cow;

use serde_json::Value;
use station_core::redact::Redactor;

/// The text as it may leave the parser: every secret replaced. Copies only what it must.
pub(super) fn redacted(text: Cow<'_, str>) -> String {
    match Redactor::global().redact(&text) {
        Cow::Owned(clean) => clean,
        Cow::Borrowed(_) => text.into_owned(),
    }
}

/// Redact every string inside a JSON value (keys stay as they are).
pub(super) fn redact_json(mut value: Value) -> Value {
    redact_json_in_place(&mut value);
    value
}

fn redact_json_in_place(value: &mut Value) {
    match value {
        Value::String(s) => {
            let clean = match Redactor::global().redact(s) {
                Cow::Owned(clean) => Some(clean),
                Cow::Borrowed(_) => None,
            };
            if let Some(clean) = clean {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json_in_place),
        Value::Object(map) => map.values_mut().for_each(redact_json_in_place),
        _ => {}
    }
}

/// [`truncate`] that keeps the string it is given when it is short enough.
pub(super) fn truncate_owned(text: String, max: usize) -> String {
    if text.len() <= max {
        text
    } else {
        truncate(&text, max)
    }
}

/// At most `max` bytes of `text` (on a character boundary), saying how much was cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… [{} more bytes cut]", &text[..end], text.len() - end)
}
