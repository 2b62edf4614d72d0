//! The `opencode run` JSON lines as lenient, borrowing serde types (only the fields read).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One line, as far as the parser reads it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Line<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Scalar<'a>,
    #[serde(rename = "sessionID", borrow)]
    pub(super) session_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) part: Obj<Part<'a>>,
    /// Whatever shape it has; only `error` lines carry it.
    pub(super) error: Value,
}

/// A line's `part`: the fields of every part type the parser reads, flattened.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Part<'a> {
    #[serde(borrow)]
    pub(super) id: Scalar<'a>,
    #[serde(rename = "sessionID", borrow)]
    pub(super) session_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) text: Scalar<'a>,
    #[serde(borrow)]
    pub(super) tool: Scalar<'a>,
    #[serde(rename = "callID", borrow)]
    pub(super) call_id: Scalar<'a>,
    #[serde(borrow)]
    pub(super) state: Obj<ToolState<'a>>,
    #[serde(borrow)]
    pub(super) reason: Scalar<'a>,
    #[serde(borrow)]
    pub(super) tokens: Obj<Tokens<'a>>,
    #[serde(borrow)]
    pub(super) cost: Scalar<'a>,
}

/// A `tool_use` part's `state`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct ToolState<'a> {
    #[serde(borrow)]
    pub(super) status: Scalar<'a>,
    /// Handed on as it is (redacted), so built whole.
    pub(super) input: Value,
    #[serde(borrow)]
    pub(super) output: Scalar<'a>,
    #[serde(borrow)]
    pub(super) error: Scalar<'a>,
    #[serde(borrow)]
    pub(super) time: Obj<Span<'a>>,
    #[serde(borrow)]
    pub(super) metadata: Obj<ToolMetadata<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Span<'a> {
    #[serde(borrow)]
    pub(super) start: Scalar<'a>,
    #[serde(borrow)]
    pub(super) end: Scalar<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct ToolMetadata<'a> {
    #[serde(borrow)]
    pub(super) filepath: Scalar<'a>,
    #[serde(borrow)]
    pub(super) filediff: Obj<FileDiff<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct FileDiff<'a> {
    #[serde(borrow)]
    pub(super) file: Scalar<'a>,
}

/// A `step_finish` part's `tokens`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Tokens<'a> {
    #[serde(borrow)]
    pub(super) input: Scalar<'a>,
    #[serde(borrow)]
    pub(super) output: Scalar<'a>,
    #[serde(borrow)]
    pub(super) reasoning: Scalar<'a>,
    #[serde(borrow)]
    pub(super) cache: Obj<TokenCache<'a>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct TokenCache<'a> {
    #[serde(borrow)]
    pub(super) read: Scalar<'a>,
    #[serde(borrow)]
    pub(super) write: Scalar<'a>,
}

/// A JSON value read as a string or a number; any other value reads as [`Scalar::Absent`] (as
/// `Value::as_str`/`as_u64` gave `None` for it), skipped without being built.
#[derive(Debug, Default)]
pub(super) enum Scalar<'a> {
    #[default]
    Absent,
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Scalar<'a> {
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A non-negative integer; floats are rounded down, negatives ignored.
    pub(super) fn as_u64(&self) -> Option<u64> {
        match *self {
            Scalar::U64(n) => Some(n),
            Scalar::I64(n) => u64::try_from(n).ok(),
            Scalar::F64(f) => (f.is_finite() && f >= 0.0).then_some(f as u64),
            _ => None,
        }
    }

    /// Any number, as `f64`.
    pub(super) fn as_f64(&self) -> Option<f64> {
        match *self {
            Scalar::U64(n) => Some(n as f64),
            Scalar::I64(n) => Some(n as f64),
            Scalar::F64(f) => Some(f),
            _ => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Absent)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Scalar::Absent)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| Scalar::Absent)
    }
}

/// A JSON object read into `T`; any other value reads as `T::default()` (as `Value::get` on a
/// non-object gave `None` for every key).
#[derive(Debug, Default)]
pub(super) struct Obj<T>(pub(super) T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| Obj(T::default()))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Obj(T::default()))
    }
}

/// The whole line: only a JSON object is accepted (a derived struct would also take an array).
pub(super) struct TopLevel<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TopLevel<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectOnly<T> {
            type Value = TopLevel<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(TopLevel)
            }
        }
        deserializer.deserialize_map(ObjectOnly(PhantomData))
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}
