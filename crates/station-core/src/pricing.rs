//! `coding.pricing`: USD per million tokens per model, so that a task whose backend reports
//! tokens but no cost (Codex, Gemini CLI) still gets one, marked as estimated.
//!
//! ```yaml
//! coding:
//!   pricing:
//!     gpt-5.5: { input: 1.5, cached_input: 0.15, output: 12 }   # add a model
//!     gpt-5: { input: 1.0, output: 8 }                           # override a built-in one
//! ```
//!
//! The built-in table ([`BUILTIN_PRICES`]) holds a few well-known OpenAI, Anthropic and Google
//! models at their public list prices; those change, so override them where it matters.
//! `cached_input` defaults to `input`; cache writes are priced as input.
//!
//! A model is looked up case-insensitively: the exact name, then without a provider prefix
//! (`openai/gpt-5` → `gpt-5`), then the longest known name it extends with a dated or numbered
//! suffix (`claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`). An unknown model gets no cost.
//! The runner applies the table once, to every outcome ([`PriceTable::apply`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{Outcome, Usage};

/// Built-in list prices, USD per million tokens: (model, input, cached input, output).
/// Public list prices as of late 2025; they may change. Override them in `coding.pricing`.
pub const BUILTIN_PRICES: &[(&str, f64, f64, f64)] = &[
    // OpenAI
    ("gpt-5", 1.25, 0.125, 10.0),
    ("gpt-5-codex", 1.25, 0.125, 10.0),
    ("gpt-5-mini", 0.25, 0.025, 2.0),
    ("gpt-5-nano", 0.05, 0.005, 0.40),
    ("gpt-4.1", 2.0, 0.50, 8.0),
    ("gpt-4.1-mini", 0.40, 0.10, 1.60),
    ("gpt-4o", 2.50, 1.25, 10.0),
    ("o3", 2.0, 0.50, 8.0),
    ("o4-mini", 1.10, 0.275, 4.40),
    // Anthropic
    ("claude-opus-4-1", 15.0, 1.50, 75.0),
    ("claude-opus-4-5", 5.0, 0.50, 25.0),
    ("claude-sonnet-4", 3.0, 0.30, 15.0),
    ("claude-sonnet-4-5", 3.0, 0.30, 15.0),
    ("claude-haiku-4-5", 1.0, 0.10, 5.0),
    // Google (prompts up to 200k tokens)
    ("gemini-2.5-pro", 1.25, 0.125, 10.0),
    ("gemini-2.5-flash", 0.30, 0.03, 2.50),
    ("gemini-2.5-flash-lite", 0.10, 0.01, 0.40),
];

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Input (prompt) tokens.
    #[serde(deserialize_with = "usd")]
    pub input: f64,
    /// Input tokens read from the prompt cache; `input` when not set.
    #[serde(
        default,
        deserialize_with = "usd_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cached_input: Option<f64>,
    /// Output tokens (reasoning included).
    #[serde(deserialize_with = "usd")]
    pub output: f64,
}

impl ModelPrice {
    /// The cost of `usage` in USD.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let per_token = |price: f64, tokens: u64| price * tokens as f64 / 1_000_000.0;
        per_token(self.input, usage.input_tokens + usage.cache_write_tokens)
            + per_token(
                self.cached_input.unwrap_or(self.input),
                usage.cache_read_tokens,
            )
            + per_token(self.output, usage.output_tokens + usage.reasoning_tokens)
    }
}

fn usd<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(d)?;
    if !value.is_finite() || value < 0.0 {
        return Err(serde::de::Error::custom(format!(
            "{value} is not a price: give USD per million tokens as a number of 0 or more"
        )));
    }
    Ok(value)
}

fn usd_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    usd(d).map(Some)
}

/// `coding.pricing` as written: model names (non-empty, no spaces) to prices.
pub(crate) fn price_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ModelPrice>, D::Error> {
    let map = BTreeMap::<String, ModelPrice>::deserialize(d)?;
    if let Some(bad) = map
        .keys()
        .find(|k| k.trim().is_empty() || k.contains(char::is_whitespace))
    {
        return Err(serde::de::Error::custom(format!(
            "{bad:?} under coding.pricing is not a model name: use the model id the agent reports, e.g. `gpt-5`"
        )));
    }
    Ok(map)
}

/// Prices by model: the built-in ones with the configured ones on top. Cheap to clone.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    models: Arc<BTreeMap<String, ModelPrice>>,
}

impl Default for PriceTable {
    /// The built-in prices.
    fn default() -> Self {
        PriceTable::builtin()
    }
}

impl PriceTable {
    /// [`BUILTIN_PRICES`] only.
    pub fn builtin() -> Self {
        PriceTable::with_overrides(&BTreeMap::new())
    }

    /// No prices at all: nothing is estimated.
    pub fn empty() -> Self {
        PriceTable {
            models: Arc::new(BTreeMap::new()),
        }
    }

    /// The built-in prices, with `overrides` (`coding.pricing`) replacing or adding models.
    pub fn with_overrides(overrides: &BTreeMap<String, ModelPrice>) -> Self {
        let mut models: BTreeMap<String, ModelPrice> = BUILTIN_PRICES
            .iter()
            .map(|(name, input, cached, output)| {
                (
                    (*name).to_owned(),
                    ModelPrice {
                        input: *input,
                        cached_input: Some(*cached),
                        output: *output,
                    },
                )
            })
            .collect();
        for (name, price) in overrides {
            models.insert(name.trim().to_lowercase(), *price);
        }
        PriceTable {
            models: Arc::new(models),
        }
    }

    /// The price of `model` (see the [module docs](self) for how names match).
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        let name = model.trim().to_lowercase();
        let bare = name.rsplit('/').next().unwrap_or(&name);
        if let Some(price) = self.models.get(&name).or_else(|| self.models.get(bare)) {
            return Some(price);
        }
        // A dated or numbered snapshot of a known model: `<known>-<digit>...`.
        self.models
            .iter()
            .filter(|(known, _)| {
                bare.strip_prefix(known.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .max_by_key(|(known, _)| known.len())
            .map(|(_, price)| price)
    }

    /// Give `outcome` an estimated cost when its backend reported none, it used tokens, and
    /// its model has a price; otherwise leave it as it is.
    pub fn apply(&self, outcome: &mut Outcome) {
        let used = &outcome.usage;
        let tokens = used.total() + used.cache_read_tokens + used.cache_write_tokens;
        if outcome.cost_usd.is_some() || tokens == 0 {
            return;
        }
        let Some(price) = outcome.model.as_deref().and_then(|m| self.price(m)) else {
            return;
        };
        outcome.cost_usd = Some(price.cost(used));
        outcome.cost_estimated = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StopReason;

    fn usage(input: u64, cached: u64, output: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            reasoning_tokens: reasoning,
            cache_read_tokens: cached,
            cache_write_tokens: 0,
        }
    }

    #[test]
    fn names_match_exactly_without_provider_or_with_a_dated_suffix() {
        let table = PriceTable::builtin();
        let gpt5 = table.price("gpt-5").copied().unwrap();
        assert_eq!(table.price("OpenAI/GPT-5"), Some(&gpt5));
        assert_eq!(table.price("gpt-5-2025-08-07"), Some(&gpt5));
        assert_ne!(table.price("gpt-5-mini"), Some(&gpt5));
        assert_eq!(
            table.price("claude-sonnet-4-5-20250929"),
            table.price("claude-sonnet-4-5")
        );
        assert_eq!(table.price("gpt-5.5"), None, "a different model, not gpt-5");
        assert_eq!(table.price("fake-model"), None);
    }

    #[test]
    fn cost_counts_cached_input_and_reasoning() {
        let price = ModelPrice {
            input: 2.0,
            cached_input: Some(0.5),
            output: 10.0,
        };
        let cost = price.cost(&usage(1_000_000, 2_000_000, 100_000, 100_000));
        assert!((cost - (2.0 + 1.0 + 2.0)).abs() < 1e-9, "{cost}");
        let no_cache_price = ModelPrice {
            cached_input: None,
            ..price
        };
        assert!((no_cache_price.cost(&usage(0, 1_000_000, 0, 0)) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn apply_estimates_only_a_missing_cost_of_a_known_model() {
        let table = PriceTable::builtin();
        let mut outcome = Outcome::new(true, StopReason::Completed);
        outcome.model = Some("gpt-5".into());
        outcome.usage = usage(1_000_000, 0, 1_000_000, 0);
        table.apply(&mut outcome);
        assert_eq!(outcome.cost_usd, Some(11.25));
        assert!(outcome.cost_estimated);

        let mut reported = Outcome::new(true, StopReason::Completed);
        reported.model = Some("gpt-5".into());
        reported.usage = usage(10, 0, 10, 0);
        reported.cost_usd = Some(0.5);
        table.apply(&mut reported);
        assert_eq!(
            (reported.cost_usd, reported.cost_estimated),
            (Some(0.5), false)
        );

        let mut unknown = Outcome::new(true, StopReason::Completed);
        unknown.model = Some("fake-model".into());
        unknown.usage = usage(10, 0, 10, 0);
        table.apply(&mut unknown);
        assert_eq!((unknown.cost_usd, unknown.cost_estimated), (None, false));

        let mut idle = Outcome::new(true, StopReason::Completed);
        idle.model = Some("gpt-5".into());
        table.apply(&mut idle);
        assert_eq!(idle.cost_usd, None, "no tokens, no cost");
    }

    #[test]
    fn overrides_replace_and_extend_the_builtin_prices() {
        let overrides = BTreeMap::from([
            (
                "GPT-5".to_owned(),
                ModelPrice {
                    input: 1.0,
                    cached_input: None,
                    output: 1.0,
                },
            ),
            (
                "gpt-5.5".to_owned(),
                ModelPrice {
                    input: 3.0,
                    cached_input: None,
                    output: 3.0,
                },
            ),
        ]);
        let table = PriceTable::with_overrides(&overrides);
        assert_eq!(table.price("gpt-5").unwrap().input, 1.0);
        assert_eq!(table.price("gpt-5.5").unwrap().output, 3.0);
        assert_eq!(table.price("o3"), PriceTable::builtin().price("o3"));
        assert_eq!(PriceTable::empty().price("gpt-5"), None);
    }
}
