//! Backend sections of `coding`, each read by the backend crate that owns it.
//!
//! The file is parsed again for each section with a wrapper that walks `coding` and
//! deserialises only that section's key, so errors inside it keep their file, line, column and
//! suggestion exactly as when core parsed every section itself.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::LoadedConfig;
use crate::error::Result;
use crate::yaml;

/// A backend's section of `coding` (e.g. `coding.cli`), defined and deserialised in its
/// backend crate. Use `#[serde(deny_unknown_fields, default)]` on it so that typos are
/// reported with their position.
pub trait ConfigSection: DeserializeOwned + Default {
    /// Its key under `coding`: `cli` for `coding.cli`.
    const KEY: &'static str;
}

/// A key directly under `coding`, with where it is in the file when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAt {
    /// The key.
    pub key: String,
    /// 1-based line and column of the key.
    pub position: Option<(usize, usize)>,
}

impl LoadedConfig {
    /// The section `T` of `coding`, deserialised from the config text (its defaults when the
    /// file or the section is absent). Errors name the file, line, column and field.
    pub fn section<T: ConfigSection>(&self) -> Result<T> {
        let Some(text) = self.source.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(T::default());
        };
        let whole: Whole<T> = yaml::parse(text, self.path.as_deref(), 1, "")?;
        Ok(whole.0.unwrap_or_default())
    }

    /// The keys written directly under `coding`, in file order where known.
    pub fn coding_keys(&self) -> Result<Vec<KeyAt>> {
        #[derive(Deserialize)]
        struct Top {
            #[serde(default)]
            coding: Option<BTreeMap<String, IgnoredAny>>,
        }
        let Some(text) = self.source.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(Vec::new());
        };
        let top: Top = yaml::parse(text, self.path.as_deref(), 1, "")?;
        let mut keys: Vec<KeyAt> = top
            .coding
            .unwrap_or_default()
            .into_keys()
            .map(|key| {
                let position = key_position(text, &key);
                KeyAt { key, position }
            })
            .collect();
        keys.sort_by_key(|k| k.position.unwrap_or((usize::MAX, 0)));
        Ok(keys)
    }
}

/// Line and column of `coding.<key>` in block-style YAML.
fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let wanted = format!("coding.{key}");
    text.lines().enumerate().find_map(|(i, line)| {
        (yaml::field_path_at(text, i + 1).as_deref() == Some(wanted.as_str()))
            .then(|| (i + 1, line.len() - line.trim_start().len() + 1))
    })
}

/// The whole file, keeping only `coding.<T::KEY>`.
struct Whole<T>(Option<T>);

/// `coding`, keeping only `T::KEY`.
struct Coding<T>(Option<T>);

struct WholeVisitor<T>(PhantomData<T>);
struct CodingVisitor<T>(PhantomData<T>);

impl<'de, T: ConfigSection> Deserialize<'de> for Whole<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(WholeVisitor(PhantomData))
    }
}

impl<'de, T: ConfigSection> Deserialize<'de> for Coding<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(CodingVisitor(PhantomData))
    }
}

impl<'de, T: ConfigSection> Visitor<'de> for WholeVisitor<T> {
    type Value = Whole<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(Whole(None))
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut section = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "coding" {
                section = map.next_value::<Option<Coding<T>>>()?.and_then(|c| c.0);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Whole(section))
    }
}

impl<'de, T: ConfigSection> Visitor<'de> for CodingVisitor<T> {
    type Value = Coding<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(Coding(None))
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut section = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == T::KEY {
                section = map.next_value::<Option<T>>()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Coding(section))
    }
}
