//! The orchestrating model behind a small trait of ours ([`LlmClient`]), implemented with the
//! `genai` multi-provider client (OpenAI Chat Completions and Anthropic Messages).

use std::time::Duration;

use genai::ServiceTarget;
use genai::adapter::AdapterKind;
use genai::chat::{
    ChatMessage, ChatRequest, ContentPart, MessageContent, Tool, ToolCall, ToolResponse,
};
use genai::resolver::{AuthData, Endpoint};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use station_core::config::{Config, EnvLookup};
use station_core::{Error, Redactor, Result, Secret, Usage};

/// The API family of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenAI Chat Completions (and compatible servers).
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// `provider/model`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Which API.
    pub provider: Provider,
    /// The model name the API knows.
    pub name: String,
}

impl ModelRef {
    /// Parse `openai/gpt-4o` or `anthropic/claude-sonnet-4-5-20250929`; a bare name uses
    /// `default_provider` (the config's `ai_provider`), else is guessed from the name.
    pub fn parse(model: &str, default_provider: Option<&str>) -> Result<ModelRef> {
        let model = model.trim();
        let (provider, name) = match model.split_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (default_provider, model),
        };
        if name.is_empty() {
            return Err(Error::config(format!(
                "`{model}` is not a model name; use provider/model, e.g. openai/gpt-4o"
            )));
        }
        let provider = match provider.map(str::to_ascii_lowercase).as_deref() {
            Some("openai") => Provider::OpenAi,
            Some("anthropic") => Provider::Anthropic,
            Some(other) => {
                return Err(Error::config(format!(
                    "model provider `{other}` is not supported for the orchestrating model; use openai/... or anthropic/..."
                )));
            }
            None if name.starts_with("claude") => Provider::Anthropic,
            None => Provider::OpenAi,
        };
        Ok(ModelRef {
            provider,
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.provider {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        };
        write!(f, "{p}/{}", self.name)
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of its arguments.
    pub schema: Value,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallRequest {
    /// The model's call id.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments.
    pub arguments: Value,
}

/// One entry of the conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Turn {
    /// The user.
    User(String),
    /// The model: text and/or tool calls.
    Assistant {
        /// Its text.
        text: Option<String>,
        /// Its tool calls.
        tool_calls: Vec<ToolCallRequest>,
    },
    /// What a tool returned.
    ToolResult {
        /// The call it answers.
        call_id: String,
        /// Result text (JSON).
        content: String,
    },
}

/// One request to the model.
#[derive(Debug, Clone)]
pub struct ChatSpec {
    /// Which model.
    pub model: ModelRef,
    /// System prompt.
    pub system: Option<String>,
    /// The conversation so far.
    pub turns: Vec<Turn>,
    /// Tools offered.
    pub tools: Vec<ToolSpec>,
}

/// The model's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// Text, if any.
    pub text: Option<String>,
    /// Tool calls, if any.
    pub tool_calls: Vec<ToolCallRequest>,
    /// Tokens.
    pub usage: Usage,
}

/// The orchestrating model.
#[async_trait::async_trait]
pub trait LlmClient: Send + Sync + std::fmt::Debug {
    /// One model call.
    async fn chat(&self, spec: &ChatSpec) -> Result<Reply>;
}

/// Endpoints and keys of the orchestrating model.
#[derive(Debug, Clone, Default)]
pub struct LlmSettings {
    /// OpenAI API base (ends in `/v1/`).
    pub openai_base_url: Option<String>,
    /// Anthropic API base (ends in `/v1/`).
    pub anthropic_base_url: Option<String>,
    /// `OPENAI_API_KEY`.
    pub openai_key: Option<Secret>,
    /// `ANTHROPIC_API_KEY`.
    pub anthropic_key: Option<Secret>,
    /// Deadline of one model call.
    pub request_timeout: Duration,
}

/// `http://h:p` or `http://h:p/v1` → `http://h:p/v1/`.
fn api_base(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    if trimmed.ends_with("/v1") {
        format!("{trimmed}/")
    } else {
        format!("{trimmed}/v1/")
    }
}

impl LlmSettings {
    /// From the config's `ai_base_url` (already merged with `STN_AI_BASE_URL`), then
    /// `OPENAI_BASE_URL` / `ANTHROPIC_BASE_URL`, and the providers' API keys. Keys are registered
    /// with the global redactor.
    pub fn from_config(config: &Config, env: EnvLookup<'_>) -> Self {
        let common = config
            .ai_base_url
            .as_deref()
            .filter(|u| !u.trim().is_empty());
        let pick = |var: &str| {
            common.map(api_base).or_else(|| {
                env(var)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| api_base(&v))
            })
        };
        let key = |var: &str| {
            env(var).filter(|v| !v.is_empty()).map(|v| {
                let s = Secret::new(v);
                Redactor::global().register(&s);
                s
            })
        };
        LlmSettings {
            openai_base_url: pick("OPENAI_BASE_URL"),
            anthropic_base_url: pick("ANTHROPIC_BASE_URL"),
            openai_key: key("OPENAI_API_KEY"),
            anthropic_key: key("ANTHROPIC_API_KEY"),
            request_timeout: Duration::from_secs(300),
        }
    }
}

/// [`LlmClient`] over `genai`.
#[derive(Debug)]
pub struct GenaiClient {
    client: genai::Client,
    settings: LlmSettings,
}

impl GenaiClient {
    /// A client with these endpoints and keys.
    pub fn new(settings: LlmSettings) -> Result<Self> {
        let web = genai::WebConfig::default()
            .with_timeout(settings.request_timeout)
            .with_connect_timeout(Duration::from_secs(10));
        let client = genai::Client::builder()
            .with_web_config(web)
            .build()
            .map_err(|e| Error::config(format!("cannot build the model client: {e}")))?;
        Ok(GenaiClient { client, settings })
    }

    fn target(&self, model: &ModelRef) -> Result<ServiceTarget> {
        let (kind, base, key, key_var, default_base) = match model.provider {
            Provider::OpenAi => (
                AdapterKind::OpenAI,
                &self.settings.openai_base_url,
                &self.settings.openai_key,
                "OPENAI_API_KEY",
                "https://api.openai.com/v1/",
            ),
            Provider::Anthropic => (
                AdapterKind::Anthropic,
                &self.settings.anthropic_base_url,
                &self.settings.anthropic_key,
                "ANTHROPIC_API_KEY",
                "https://api.anthropic.com/v1/",
            ),
        };
        let key = match (key, base) {
            (Some(k), _) => k.expose().to_string(),
            // A custom endpoint (a local or scripted server) may need no key.
            (None, Some(_)) => "unused".to_string(),
            (None, None) => {
                return Err(Error::Auth {
                    message: format!(
                        "the orchestrating model {model} needs {key_var}; export it, or point ai_base_url at a compatible server"
                    ),
                });
            }
        };
        let endpoint =
            Endpoint::from_owned(base.clone().unwrap_or_else(|| default_base.to_string()));
        Ok(ServiceTarget {
            endpoint,
            auth: AuthData::from_single(key),
            model: genai::ModelIden::new(kind, model.name.clone()),
        })
    }
}

#[async_trait::async_trait]
impl LlmClient for GenaiClient {
    async fn chat(&self, spec: &ChatSpec) -> Result<Reply> {
        let target = self.target(&spec.model)?;
        let mut messages = Vec::with_capacity(spec.turns.len());
        for turn in &spec.turns {
            messages.push(match turn {
                Turn::User(text) => ChatMessage::user(text.clone()),
                Turn::Assistant { text, tool_calls } => {
                    let mut parts: Vec<ContentPart> = Vec::new();
                    if let Some(t) = text.as_ref().filter(|t| !t.is_empty()) {
                        parts.push(ContentPart::Text(t.clone()));
                    }
                    for c in tool_calls {
                        parts.push(ContentPart::ToolCall(ToolCall {
                            call_id: c.id.clone(),
                            fn_name: c.name.clone(),
                            fn_arguments: c.arguments.clone(),
                            thought_signatures: None,
                        }));
                    }
                    ChatMessage::assistant(MessageContent::from_parts(parts))
                }
                Turn::ToolResult { call_id, content } => {
                    ChatMessage::from(ToolResponse::new(call_id.clone(), content.clone()))
                }
            });
        }
        let mut req = ChatRequest::new(messages);
        if let Some(system) = &spec.system {
            req = req.with_system(system.clone());
        }
        if !spec.tools.is_empty() {
            req = req.with_tools(spec.tools.iter().map(|t| {
                Tool::new(t.name.clone())
                    .with_description(t.description.clone())
                    .with_schema(t.schema.clone())
            }));
        }
        let response = self
            .client
            .exec_chat(genai::ModelSpec::Target(target), req, None)
            .await
            .map_err(|e| map_error(&spec.model, e))?;
        let usage = Usage {
            input_tokens: response.usage.prompt_tokens.unwrap_or(0).max(0) as u64,
            output_tokens: response.usage.completion_tokens.unwrap_or(0).max(0) as u64,
            cache_read_tokens: response
                .usage
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .max(0) as u64,
            cache_write_tokens: response
                .usage
                .prompt_tokens_details
                .as_ref()
                .and_then(|d| d.cache_creation_tokens)
                .unwrap_or(0)
                .max(0) as u64,
            ..Usage::default()
        };
        let texts: Vec<String> = response
            .content
            .texts()
            .into_iter()
            .map(str::to_string)
            .collect();
        let tool_calls = response
            .content
            .tool_calls()
            .into_iter()
            .map(|c| ToolCallRequest {
                id: c.call_id.clone(),
                name: c.fn_name.clone(),
                arguments: c.fn_arguments.clone(),
            })
            .collect();
        let text = (!texts.is_empty()).then(|| texts.join("\n"));
        Ok(Reply {
            text,
            tool_calls,
            usage,
        })
    }
}

fn map_error(model: &ModelRef, e: genai::Error) -> Error {
    let message = station_core::redact::redact(&e.to_string());
    let lower = message.to_lowercase();
    if lower.contains("401")
        || lower.contains("403")
        || lower.contains("api key")
        || lower.contains("unauthorized")
    {
        Error::Auth {
            message: format!("the model API rejected the credentials for {model}: {message}"),
        }
    } else if lower.contains("connect") || lower.contains("dns") {
        Error::Unavailable {
            backend: format!("model {model}"),
            message,
        }
    } else {
        Error::Backend {
            backend: format!("model {model}"),
            message: format!("the model API failed: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs() {
        assert_eq!(
            ModelRef::parse("openai/gpt-4o", None).unwrap(),
            ModelRef {
                provider: Provider::OpenAi,
                name: "gpt-4o".into()
            }
        );
        assert_eq!(
            ModelRef::parse("anthropic/claude-sonnet-4-5-20250929", None)
                .unwrap()
                .provider,
            Provider::Anthropic
        );
        assert_eq!(
            ModelRef::parse("claude-x", None).unwrap().provider,
            Provider::Anthropic
        );
        assert_eq!(
            ModelRef::parse("gpt-5-mini", Some("anthropic"))
                .unwrap()
                .provider,
            Provider::Anthropic
        );
        assert!(
            ModelRef::parse("gemini/x", None)
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
    }

    #[test]
    fn api_bases() {
        assert_eq!(api_base("http://127.0.0.1:9/"), "http://127.0.0.1:9/v1/");
        assert_eq!(api_base("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1/");
    }
}
