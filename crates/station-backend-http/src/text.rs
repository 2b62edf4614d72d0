//! Small text helpers: redaction and clipping of what goes into events, outcomes and errors.

/// Longest tool output kept in events and outcomes.
pub(crate) const MAX_TOOL_OUTPUT: usize = 32 * 1024;
/// Longest response body quoted in an error.
const MAX_BODY_IN_ERROR: usize = 300;

/// Redact secrets with the process-wide redactor.
pub(crate) fn redact(text: &str) -> String {
    station_core::redact::redact(text)
}

/// `text` cut to [`MAX_TOOL_OUTPUT`] bytes (on a character boundary), saying how much was cut.
pub(crate) fn clip(text: &str) -> String {
    clip_to(text, MAX_TOOL_OUTPUT)
}

pub(crate) fn clip_to(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &text[..end], text.len() - end)
}

/// A response body for an error message: OpenCode's `{name, data:{message}}` as `name: message`,
/// anything else as (clipped) text; always redacted.
pub(crate) fn body_for_error(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let shown = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => {
            let name = v
                .get("name")
                .or_else(|| v.get("_tag"))
                .and_then(|n| n.as_str());
            let message = v
                .get("data")
                .and_then(|d| d.get("message"))
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str());
            match (name, message) {
                (Some(n), Some(m)) => format!("{n}: {m}"),
                (None, Some(m)) => m.to_string(),
                (Some(n), None) => n.to_string(),
                (None, None) => text.trim().to_string(),
            }
        }
        Err(_) => text.trim().to_string(),
    };
    if shown.is_empty() {
        return "(empty body)".to_string();
    }
    redact(&clip_to(&shown, MAX_BODY_IN_ERROR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_respects_char_boundaries() {
        let s = "é".repeat(10);
        let c = clip_to(&s, 5);
        assert!(c.starts_with("éé") && c.contains("more bytes"), "{c}");
        assert_eq!(clip_to("short", 10), "short");
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            body_for_error(br#"{"name":"NotFoundError","data":{"message":"Session not found"}}"#),
            "NotFoundError: Session not found"
        );
        assert_eq!(body_for_error(b""), "(empty body)");
        assert!(!body_for_error(b"password=hunter2hunter2").contains("hunter2"));
    }
}
