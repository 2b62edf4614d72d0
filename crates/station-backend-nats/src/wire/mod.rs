//! The messages on the wire: the plugin protocol (field names exactly as the Go Station and the
//! TypeScript plugin spell them) plus our additive extensions. See `PROTOCOL.md`.
//!
//! Receiving is tolerant (missing fields default, unknown fields are ignored) because the other
//! side may be a deployed plugin or a newer worker; sending is exact.

mod events;
mod mapping;
mod records;
mod result;
mod subjects;
mod task;
#[cfg(test)]
mod tests;

pub use events::*;
pub use mapping::*;
pub use records::*;
pub use result::*;
pub use subjects::*;
pub use task::*;

/// Queue group every Station worker joins on the task subject.
pub const QUEUE_GROUP: &str = "station-coding-workers";
/// Default bucket for per-task claims and final results (an extension; the plugin never reads it).
pub const TASKS_BUCKET: &str = "station-coding-tasks";
