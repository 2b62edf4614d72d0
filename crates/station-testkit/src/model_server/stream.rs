//! Playing a reply as a response body: data, pauses, stalls and dropped connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// The longest a stall lasts.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(600);

/// One piece of a response body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Chunk {
    Data(Bytes),
    Sleep(Duration),
    /// Send nothing until the client leaves, the server stops, or [`STALL_LIMIT`]; then drop.
    Stall,
    /// Drop the connection.
    Abort,
}

impl Chunk {
    pub(crate) fn data(text: impl Into<String>) -> Chunk {
        Chunk::Data(Bytes::from(text.into()))
    }
}

/// Counts bodies still being sent.
#[derive(Debug)]
struct OpenStream(Arc<AtomicUsize>);

impl OpenStream {
    fn new(count: Arc<AtomicUsize>) -> OpenStream {
        count.fetch_add(1, Ordering::SeqCst);
        OpenStream(count)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Player {
    chunks: std::vec::IntoIter<Chunk>,
    shutdown: CancellationToken,
    finished: bool,
    _open: OpenStream,
}

fn dropped() -> std::io::Error {
    std::io::Error::other("scripted connection drop")
}

/// A body that plays `chunks`. An error item makes hyper drop the connection mid-body; when
/// the client leaves, the body (and any pause) is dropped with it.
pub(crate) fn body(
    chunks: Vec<Chunk>,
    shutdown: CancellationToken,
    open: Arc<AtomicUsize>,
) -> Body {
    let player = Player {
        chunks: chunks.into_iter(),
        shutdown,
        finished: false,
        _open: OpenStream::new(open),
    };
    Body::from_stream(futures_util::stream::unfold(player, |mut p| async move {
        if p.finished {
            return None;
        }
        // Bounded by the number of chunks.
        loop {
            match p.chunks.next()? {
                Chunk::Data(bytes) => return Some((Ok(bytes), p)),
                Chunk::Sleep(pause) => {
                    let stopped = tokio::select! {
                        () = tokio::time::sleep(pause) => false,
                        () = p.shutdown.cancelled() => true,
                    };
                    if stopped {
                        p.finished = true;
                        return Some((Err(dropped()), p));
                    }
                }
                Chunk::Stall => {
                    tokio::select! {
                        () = tokio::time::sleep(STALL_LIMIT) => {}
                        () = p.shutdown.cancelled() => {}
                    }
                    p.finished = true;
                    return Some((Err(dropped()), p));
                }
                Chunk::Abort => {
                    p.finished = true;
                    return Some((Err(dropped()), p));
                }
            }
        }
    }))
}

/// `text` split for streaming: one word per piece when `per_word`, else pieces of at least
/// 8 bytes at word boundaries. Concatenating the pieces gives `text` back.
pub(crate) fn text_pieces(text: &str, per_word: bool) -> Vec<String> {
    let mut pieces: Vec<String> = Vec::new();
    for word in text.split_inclusive(char::is_whitespace) {
        match pieces.last_mut() {
            Some(last) if !per_word && last.len() < 8 => last.push_str(word),
            _ => pieces.push(word.to_owned()),
        }
    }
    pieces
}

/// `json` in three pieces (fewer when short), split at char boundaries.
pub(crate) fn json_pieces(json: &str) -> Vec<String> {
    let chars: Vec<char> = json.chars().collect();
    if chars.len() < 6 {
        return vec![json.to_owned()];
    }
    let third = chars.len().div_ceil(3);
    chars.chunks(third).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_rebuild_the_input() {
        let text = "Hello there, this is a longer reply with ünïcode words.";
        assert_eq!(text_pieces(text, true).concat(), text);
        assert_eq!(text_pieces(text, true).len(), 10);
        assert!(text_pieces(text, false).len() < 10);
        assert_eq!(text_pieces(text, false).concat(), text);
        assert_eq!(text_pieces("", false), Vec::<String>::new());
        let json = r#"{"filePath":"/ws/ä.py","content":"x"}"#;
        assert_eq!(json_pieces(json).len(), 3);
        assert_eq!(json_pieces(json).concat(), json);
        assert_eq!(json_pieces("{}"), vec!["{}"]);
    }
}
