//! Agent definitions: `.prompt` files with YAML frontmatter and a Handlebars body.
//!
//! ```text
//! ---
//! metadata:
//!   name: code-assistant
//!   description: AI coding assistant
//! model: anthropic/claude-sonnet-4-5-20250929
//! max_steps: 10
//! coding:
//!   enabled: true
//! ---
//! {{role "system"}}You are a coding assistant.
//! {{role "user"}}{{userInput}}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use handlebars::{Handlebars, no_escape};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, InputError, Result};
use crate::yaml;

/// The coding section of an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodingSettings {
    /// Give this agent the coding tools.
    #[serde(default)]
    pub enabled: bool,
    /// Default workspace for `coding_open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_path: Option<String>,
    /// Accepted for compatibility; the station config chooses the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "keys Station agents carry; accepted so existing files validate"
)]
struct Metadata {
    name: Option<String>,
    description: Option<String>,
    max_steps: Option<u32>,
    tags: Option<Vec<String>>,
    version: Option<String>,
    author: Option<String>,
    app: Option<String>,
    app_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "keys Station agents carry; accepted so existing files validate"
)]
struct Frontmatter {
    model: Option<String>,
    metadata: Option<Metadata>,
    max_steps: Option<u32>,
    coding: Option<CodingSettings>,
    tools: Option<Vec<String>>,
    config: Option<serde_json::Value>,
    input: Option<serde_json::Value>,
    output: Option<serde_json::Value>,
    sandbox: Option<serde_json::Value>,
    notify: Option<serde_json::Value>,
}

/// A parsed, validated agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentDefinition {
    /// `metadata.name`, else the file name without extension.
    pub name: String,
    /// `metadata.description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The orchestrating model, e.g. `openai/gpt-4o`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Limit of model steps (`max_steps`, or `metadata.max_steps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u32>,
    /// The coding section.
    pub coding: CodingSettings,
    /// Other tools the agent names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Tags from metadata.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Generation settings (`config:`), passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// The Handlebars body.
    pub body: String,
    /// Variables the body uses (besides `userInput`, which Station supplies).
    pub variables: Vec<String>,
    /// Where it was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<PathBuf>,
    /// Things worth telling the user that do not stop the agent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip)]
    body_first_line: usize,
}

/// A role of a rendered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System instructions.
    System,
    /// The user.
    User,
    /// The model (few-shot examples).
    Model,
}

/// One rendered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptMessage {
    /// Its role.
    pub role: Role,
    /// Its text.
    pub text: String,
}

const ROLE_MARK: char = '\u{1e}';
static USER_INPUT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{\{?~?\s*userInput\s*~?\}?\}\}").expect("regex compiles"));
static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{\{?~?\s*([A-Za-z_][A-Za-z0-9_]*)\s*~?\}?\}\}").expect("regex compiles")
});

/// Split a file into (frontmatter YAML, body, first line of the body). Lines are 1-based.
#[allow(
    clippy::result_large_err,
    reason = "private; every caller boxes it into Error::Config"
)]
fn split_frontmatter(text: &str) -> std::result::Result<(&str, &str, usize), InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "---" {
        return Err(InputError::new("the file does not start with a `---` frontmatter line")
            .at(1, 1)
            .hint("start the file with `---`, the YAML frontmatter, a closing `---`, then the prompt body"));
    }
    let yaml_start = first.len();
    let mut offset = yaml_start;
    let mut line_no = 1;
    for line in lines {
        line_no += 1;
        if line.trim_end() == "---" {
            let yaml = &text[yaml_start..offset];
            let body = &text[offset + line.len()..];
            return Ok((yaml, body, line_no + 1));
        }
        offset += line.len();
    }
    Err(InputError::new("the frontmatter is never closed")
        .at(1, 1)
        .hint("add a line with only `---` after the YAML frontmatter"))
}

/// The largest `.prompt` file read.
pub const MAX_AGENT_FILE_BYTES: u64 = 1024 * 1024;

impl AgentDefinition {
    /// Read and parse a `.prompt` file (a regular file of at most [`MAX_AGENT_FILE_BYTES`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::fsutil::read_text(path, MAX_AGENT_FILE_BYTES, "agent file").map_err(
            |e| match e {
                Error::NotFound { id, .. } => Error::NotFound {
                    what: "agent file",
                    id,
                },
                other => other,
            },
        )?;
        Self::parse(&text, Some(path))
    }

    /// Parse an agent from text; `path` names it in errors and gives the default name.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Self> {
        let located = |e: InputError| match path {
            Some(p) if e.file.is_none() => e.in_file(p),
            _ => e,
        };
        let (yaml_text, body, body_first_line) = split_frontmatter(text).map_err(located)?;
        let fm: Frontmatter = if yaml_text.trim().is_empty() {
            Frontmatter::default()
        } else {
            yaml::parse(yaml_text, path, 2, "")?
        };
        let key_line = |key: &str| {
            yaml_text
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("{key}:")))
                .map(|i| i + 2)
                .unwrap_or(1)
        };
        let metadata = fm.metadata.unwrap_or_default();
        let mut warnings = Vec::new();
        let name = match metadata.name.filter(|n| !n.trim().is_empty()) {
            Some(n) => n,
            None => match path
                .and_then(|p| p.file_stem())
                .map(|s| s.to_string_lossy().into_owned())
            {
                Some(stem) => stem,
                None => {
                    return Err(located(
                        InputError::new("the agent has no name")
                            .field("metadata.name")
                            .at(1, 1)
                            .hint("add `metadata: {name: my-agent}`"),
                    )
                    .into());
                }
            },
        };
        let max_steps = match (fm.max_steps, metadata.max_steps) {
            (Some(top), Some(meta)) if top != meta => {
                warnings.push(format!(
                    "max_steps is {top} but metadata.max_steps is {meta}; using {top}"
                ));
                Some(top)
            }
            (top, meta) => top.or(meta),
        };
        if max_steps == Some(0) {
            let line = key_line("max_steps");
            return Err(located(
                InputError::new("must be at least 1")
                    .field("max_steps")
                    .at(line, 1)
                    .hint("remove it for the default, or set a positive number"),
            )
            .into());
        }
        if let Some(model) = &fm.model
            && (model.trim().is_empty() || model.starts_with('/') || model.ends_with('/'))
        {
            let line = key_line("model");
            return Err(located(InputError::new(format!("`{model}` is not a model name")).field("model").at(line, 1).hint("use provider/model, e.g. openai/gpt-4o or anthropic/claude-sonnet-4-5-20250929")).into());
        }
        let coding = fm.coding.unwrap_or_default();
        // The body must compile as a template.
        let mut hb = Handlebars::new();
        if let Err(e) = hb.register_template_string("agent", body) {
            let (line, col) = e.pos().unwrap_or((1, 1));
            let reason = e.reason().to_string();
            return Err(located(
                InputError::new(format!("the prompt body is not a valid template: {reason}"))
                    .at(line + body_first_line - 1, col),
            )
            .into());
        }
        if coding.enabled && !USER_INPUT.is_match(body) {
            let line = yaml_text
                .lines()
                .position(|l| l.trim_start().starts_with("enabled:"))
                .map(|i| i + 2)
                .unwrap_or(1);
            return Err(located(
                InputError::new("coding is enabled but the body never uses {{userInput}}, so the task would never reach the coding tools")
                    .field("coding.enabled")
                    .at(line, 1)
                    .hint("add {{userInput}} to the body, e.g. `{{role \"user\"}}{{userInput}}`"),
            )
            .into());
        }
        let mut variables: Vec<String> = VARIABLE
            .captures_iter(body)
            .map(|c| c[1].to_string())
            .filter(|v| v != "userInput" && v != "else" && v != "this")
            .collect();
        variables.sort();
        variables.dedup();
        Ok(AgentDefinition {
            name,
            description: metadata.description,
            model: fm.model,
            max_steps,
            coding,
            tools: fm.tools.unwrap_or_default(),
            tags: metadata.tags.unwrap_or_default(),
            config: fm.config,
            body: body.to_string(),
            variables,
            source: path.map(Path::to_path_buf),
            warnings,
            body_first_line,
        })
    }

    /// A warning when the agent names a backend other than the configured one.
    pub fn backend_warning(&self, configured: &str) -> Option<String> {
        match &self.coding.backend {
            Some(b) if b != configured => Some(format!(
                "agent `{}` asks for coding backend `{b}`, but the station config uses `{configured}`; the station config wins",
                self.name
            )),
            _ => None,
        }
    }

    /// Render the body with `userInput` and other variables into role-tagged messages.
    /// Text before any `{{role}}` is a user message (dotprompt semantics). A variable the body
    /// uses but `variables` lacks is an error naming it.
    pub fn render(
        &self,
        user_input: &str,
        variables: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Vec<PromptMessage>> {
        let mut hb = Handlebars::new();
        hb.register_escape_fn(no_escape);
        hb.set_strict_mode(true);
        hb.register_helper(
            "role",
            Box::new(
                |h: &handlebars::Helper<'_>,
                 _: &Handlebars<'_>,
                 _: &handlebars::Context,
                 _: &mut handlebars::RenderContext<'_, '_>,
                 out: &mut dyn handlebars::Output|
                 -> handlebars::HelperResult {
                    let role = h
                        .param(0)
                        .and_then(|p| p.value().as_str())
                        .unwrap_or("user");
                    out.write(&format!("{ROLE_MARK}{role}{ROLE_MARK}"))?;
                    Ok(())
                },
            ),
        );
        hb.register_template_string("agent", &self.body)
            .map_err(|e| self.render_error(e.to_string()))?;
        let mut data = serde_json::Map::new();
        for (k, v) in variables {
            data.insert(k.clone(), v.clone());
        }
        data.insert(
            "userInput".to_string(),
            serde_json::Value::String(user_input.to_string()),
        );
        let rendered = hb.render("agent", &data).map_err(|e| {
            let missing = match &e.reason() {
                handlebars::RenderErrorReason::MissingVariable(Some(v)) => Some(v.clone()),
                _ => None,
            };
            match missing {
                Some(v) => self.render_error(format!(
                    "the body uses `{{{{{v}}}}}` but no value was given for it"
                )),
                None => self.render_error(e.to_string()),
            }
        })?;
        let mut messages = Vec::new();
        let mut role = Role::User;
        let mut parts = rendered.split(ROLE_MARK);
        let mut push = |role: Role, text: &str| {
            let text = text.trim();
            if !text.is_empty() {
                messages.push(PromptMessage {
                    role,
                    text: text.to_string(),
                });
            }
        };
        push(role, parts.next().unwrap_or(""));
        while let (Some(name), Some(text)) = (parts.next(), parts.next()) {
            role = match name {
                "system" => Role::System,
                "model" | "assistant" => Role::Model,
                _ => Role::User,
            };
            push(role, text);
        }
        Ok(messages)
    }

    fn render_error(&self, message: String) -> Error {
        let mut e = InputError::new(message).at(self.body_first_line, 1);
        if let Some(p) = &self.source {
            e = e.in_file(p);
        }
        e.into()
    }
}

/// Write a new agent file's text: frontmatter from the arguments, a body that forwards
/// `{{userInput}}`.
pub fn new_agent_text(
    name: &str,
    description: &str,
    prompt: &str,
    model: Option<&str>,
    max_steps: u32,
    coding: Option<&serde_json::Value>,
) -> Result<String> {
    let mut fm = serde_json::Map::new();
    let mut meta = serde_json::Map::new();
    meta.insert("name".into(), name.into());
    meta.insert("description".into(), description.into());
    fm.insert("metadata".into(), meta.into());
    if let Some(m) = model {
        fm.insert("model".into(), m.into());
    }
    fm.insert("max_steps".into(), max_steps.into());
    if let Some(c) = coding {
        fm.insert("coding".into(), c.clone());
    }
    let yaml = serde_saphyr::to_string(&serde_json::Value::Object(fm))
        .map_err(|e| Error::config(format!("cannot write the frontmatter: {e}")))?;
    let text = format!(
        "---\n{yaml}---\n{{{{role \"system\"}}}}\n{}\n{{{{role \"user\"}}}}\n{{{{userInput}}}}\n",
        prompt.trim()
    );
    // What we write must read back.
    AgentDefinition::parse(&text, Some(Path::new(&format!("{name}.prompt"))))?;
    Ok(text)
}

#[cfg(test)]
mod tests;
