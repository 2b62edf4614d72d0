//! The stream-json lines as typed, borrowing structs: only the fields the parser reads, strings
//! borrowed from the line where they hold no escapes, everything else skipped without
//! allocating.
//!
//! Every field is lenient the way `serde_json::Value` lookups are: a field of another JSON type
//! than expected reads as absent instead of failing the line (`Value::as_str` and friends give
//! `None`), and a nested struct only reads from a JSON object. So typed parsing fails only on
//! input that is not JSON (or on duplicate keys, which the parser hands to the `Value` path).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Visitor methods that read every JSON type other than the ones a lenient type accepts as
/// `$absent` (containers are skipped without allocating).
macro_rules! absent_otherwise {
    ($absent:expr; $($method:ident),*) => {
        $(absent_otherwise!(@one $method, $absent);)*
    };
    (@one bool, $absent:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($absent) }
    };
    (@one i64, $absent:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($absent) }
    };
    (@one u64, $absent:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($absent) }
    };
    (@one f64, $absent:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($absent) }
    };
    (@one str, $absent:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($absent) }
    };
    (@one unit, $absent:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($absent) }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> { Ok($absent) }
    };
    (@one seq, $absent:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($absent)
        }
    };
    (@one map, $absent:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($absent)
        }
    };
}

/// A JSON string, borrowed when it has no escapes; `None` for any other JSON type.
#[derive(Debug, Default)]
pub(super) struct Str<'a>(pub(super) Option<Cow<'a, str>>);

impl<'a> Str<'a> {
    pub(super) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Some(Cow::Owned(v))))
            }
            absent_otherwise!(Str(None); bool, i64, u64, f64, unit, seq, map);
        }
        deserializer.deserialize_any(StrVisitor)
    }
}

/// A non-negative JSON integer (`Value::as_u64`); `None` for anything else.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct U64(pub(super) Option<u64>);

impl<'de> Deserialize<'de> for U64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct U64Visitor;
        impl<'de> Visitor<'de> for U64Visitor {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(U64(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(U64(u64::try_from(v).ok()))
            }
            absent_otherwise!(U64(None); bool, f64, str, unit, seq, map);
        }
        deserializer.deserialize_any(U64Visitor)
    }
}

/// Any JSON number as `f64` (`Value::as_f64`); `None` for anything else.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct F64(pub(super) Option<f64>);

impl<'de> Deserialize<'de> for F64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct F64Visitor;
        impl<'de> Visitor<'de> for F64Visitor {
            type Value = F64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(F64(Some(v as f64)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(F64(Some(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(F64(Some(v)))
            }
            absent_otherwise!(F64(None); bool, str, unit, seq, map);
        }
        deserializer.deserialize_any(F64Visitor)
    }
}

/// A JSON boolean; `None` for anything else.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Bool(pub(super) Option<bool>);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoolVisitor;
        impl<'de> Visitor<'de> for BoolVisitor {
            type Value = Bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Bool(Some(v)))
            }
            absent_otherwise!(Bool(None); i64, u64, f64, str, unit, seq, map);
        }
        deserializer.deserialize_any(BoolVisitor)
    }
}

/// `T` read from a JSON object; `None` for any other JSON type (as `Value::get` on a
/// non-object finds nothing).
#[derive(Debug)]
pub(super) struct Obj<T>(pub(super) Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
            }
            absent_otherwise!(Obj(None); bool, i64, u64, f64, str, unit, seq);
        }
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

/// The elements of a JSON array; empty for any other JSON type (`Value::as_array`).
#[derive(Debug)]
pub(super) struct List<T>(pub(super) Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(List(items))
            }
            absent_otherwise!(List(Vec::new()); bool, i64, u64, f64, str, unit, map);
        }
        deserializer.deserialize_any(ListVisitor(PhantomData))
    }
}

/// A tool result's `content`: usually a string (borrowed when it can be); anything else is kept
/// as a `Value` for [`super::tool_result_text`].
#[derive(Debug, Default)]
pub(super) enum ResultContent<'a> {
    /// Absent or `null`.
    #[default]
    Missing,
    Text(Cow<'a, str>),
    Json(Value),
}

impl<'de: 'a, 'a> Deserialize<'de> for ResultContent<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ContentVisitor;
        impl<'de> Visitor<'de> for ContentVisitor {
            type Value = ResultContent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ResultContent::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ResultContent::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(ResultContent::Text(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ResultContent::Missing)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ResultContent::Missing)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ResultContent::Json(Value::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ResultContent::Json(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ResultContent::Json(Value::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ResultContent::Json(Value::from(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(ResultContent::Json)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(ResultContent::Json)
            }
        }
        deserializer.deserialize_any(ContentVisitor)
    }
}

/// One stdout line (the fields of every line type, as they are all objects with a `type`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Line<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Str<'a>,
    #[serde(borrow)]
    pub(super) session_id: Str<'a>,
    #[serde(borrow)]
    pub(super) subtype: Str<'a>,
    /// `system` `init`.
    #[serde(borrow)]
    pub(super) model: Str<'a>,
    #[serde(borrow)]
    pub(super) cwd: Str<'a>,
    /// `stream_event`.
    #[serde(borrow)]
    pub(super) event: Obj<StreamEvent<'a>>,
    /// `assistant`, `user`.
    #[serde(borrow)]
    pub(super) message: Obj<Message<'a>>,
    /// `result` from here on.
    pub(super) is_error: Bool,
    pub(super) api_error_status: U64,
    pub(super) num_turns: U64,
    #[serde(borrow)]
    pub(super) result: Str<'a>,
    pub(super) errors: List<Value>,
    #[serde(borrow)]
    pub(super) terminal_reason: Str<'a>,
    pub(super) usage: Obj<WireUsage>,
    pub(super) total_cost_usd: F64,
    /// `system` `api_retry` (and `error` on a synthetic `assistant` API-error line).
    pub(super) attempt: U64,
    pub(super) max_retries: U64,
    pub(super) retry_delay_ms: F64,
    pub(super) error_status: U64,
    #[serde(borrow)]
    pub(super) error: Str<'a>,
}

/// `stream_event`'s `event` (an Anthropic streaming event).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct StreamEvent<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Str<'a>,
    /// `message_start`.
    #[serde(borrow)]
    pub(super) message: Obj<EventMessage<'a>>,
    /// `content_block_delta`.
    #[serde(borrow)]
    pub(super) delta: Obj<Delta<'a>>,
    /// `message_delta`.
    pub(super) usage: Obj<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct EventMessage<'a> {
    #[serde(borrow)]
    pub(super) id: Str<'a>,
    pub(super) usage: Obj<WireUsage>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Delta<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Str<'a>,
    #[serde(borrow)]
    pub(super) text: Str<'a>,
}

/// `assistant`/`user` `message`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Message<'a> {
    #[serde(borrow)]
    pub(super) id: Str<'a>,
    #[serde(borrow)]
    pub(super) model: Str<'a>,
    pub(super) usage: Obj<WireUsage>,
    #[serde(borrow)]
    pub(super) content: List<Obj<Block<'a>>>,
}

/// A content block of either side: `text`, `thinking`, `tool_use` (assistant), `tool_result`
/// (user).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Block<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Str<'a>,
    #[serde(borrow)]
    pub(super) text: Str<'a>,
    #[serde(borrow)]
    pub(super) thinking: Str<'a>,
    #[serde(borrow)]
    pub(super) id: Str<'a>,
    #[serde(borrow)]
    pub(super) name: Str<'a>,
    /// Handed on as JSON, so parsed as JSON.
    pub(super) input: Option<Value>,
    #[serde(borrow)]
    pub(super) tool_use_id: Str<'a>,
    #[serde(borrow)]
    pub(super) content: ResultContent<'a>,
    pub(super) is_error: Bool,
}

/// Anthropic usage, each count lenient.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireUsage {
    input_tokens: U64,
    output_tokens: U64,
    cache_read_input_tokens: U64,
    cache_creation_input_tokens: U64,
}

impl From<&WireUsage> for station_core::Usage {
    fn from(u: &WireUsage) -> Self {
        station_core::Usage {
            input_tokens: u.input_tokens.0.unwrap_or(0),
            output_tokens: u.output_tokens.0.unwrap_or(0),
            reasoning_tokens: 0,
            cache_read_tokens: u.cache_read_input_tokens.0.unwrap_or(0),
            cache_write_tokens: u.cache_creation_input_tokens.0.unwrap_or(0),
        }
    }
}
