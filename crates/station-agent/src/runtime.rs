//! The tool-calling loop: render the agent, call the model, run the tools it asks for, until it
//! answers without tools or `max_steps` is reached.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use station_core::agent::{AgentDefinition, Role};
use station_core::redact::redact;
use station_core::{Error, Event, FileChange, Result, SessionId, Usage};
use tracing::Instrument;

use crate::llm::{ChatSpec, LlmClient, ModelRef, Turn};
use crate::tools::{CodingTools, ProgressFn};

/// `max_steps` when the agent sets none.
pub const DEFAULT_MAX_STEPS: u32 = 25;

/// What happens during a run, as it happens.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// A model step starts.
    Step {
        /// 1-based.
        step: u32,
        /// The limit.
        max_steps: u32,
    },
    /// The model said something.
    Text {
        /// What.
        text: String,
    },
    /// The model called a tool.
    ToolCall {
        /// Tool.
        name: String,
        /// Arguments.
        arguments: Value,
    },
    /// A tool returned.
    ToolResult {
        /// Tool.
        name: String,
        /// Its JSON result.
        result: Value,
    },
    /// Live progress of a coding task.
    Coding {
        /// The coding event.
        event: Event,
    },
}

/// One tool call of the run, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallReport {
    /// Tool.
    pub name: String,
    /// Arguments.
    pub arguments: Value,
    /// Whether it succeeded.
    pub success: bool,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct AgentReport {
    /// The agent's name.
    pub agent: String,
    /// The orchestrating model.
    pub model: String,
    /// Whether the agent finished (answered without tools) within its steps.
    pub success: bool,
    /// Its final answer.
    pub final_text: String,
    /// Why it did not finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Model steps used.
    pub steps: u32,
    /// Whether it stopped because it used all `max_steps` (a budget, not an error).
    pub max_steps_reached: bool,
    /// Tool calls made.
    pub tool_calls: Vec<ToolCallReport>,
    /// Coding sessions opened or continued.
    pub sessions: Vec<SessionId>,
    /// Files changed by coding tasks.
    pub files_changed: Vec<FileChange>,
    /// Tokens of the orchestrating model.
    pub usage: Usage,
}

/// Runs agents with one model client and (for coding agents) the coding tools.
#[derive(Debug, Clone)]
pub struct Runtime {
    llm: Arc<dyn LlmClient>,
    default_model: Option<String>,
    default_provider: Option<String>,
}

impl Runtime {
    /// A runtime; `default_model`/`default_provider` come from the config's `ai_model`/`ai_provider`.
    pub fn new(
        llm: Arc<dyn LlmClient>,
        default_model: Option<String>,
        default_provider: Option<String>,
    ) -> Self {
        Runtime {
            llm,
            default_model,
            default_provider,
        }
    }

    /// Run `agent` on `task`. `tools` must be given when the agent has coding enabled.
    /// `on_event` sees every step, tool call and coding event live.
    pub async fn run(
        &self,
        agent: &AgentDefinition,
        task: &str,
        variables: &BTreeMap<String, Value>,
        tools: Option<&CodingTools>,
        on_event: Arc<dyn Fn(AgentEvent) + Send + Sync>,
    ) -> Result<AgentReport> {
        let model_name = agent.model.clone().or_else(|| self.default_model.clone()).ok_or_else(|| {
            Error::config(format!("agent `{}` names no model and the station config has no ai_model; add `model: openai/gpt-4o` to the agent", agent.name))
        })?;
        let model = ModelRef::parse(&model_name, self.default_provider.as_deref())?;
        let tools = if agent.coding.enabled {
            Some(tools.ok_or_else(|| {
                Error::config(format!(
                    "agent `{}` has coding enabled but no coding backend is configured",
                    agent.name
                ))
            })?)
        } else {
            None
        };
        let max_steps = agent.max_steps.unwrap_or(DEFAULT_MAX_STEPS);
        let (system, mut turns) = initial_conversation(agent, task, variables)?;
        let specs = if tools.is_some() {
            CodingTools::specs()
        } else {
            Vec::new()
        };
        let mut report = AgentReport {
            agent: agent.name.clone(),
            model: model.to_string(),
            success: false,
            final_text: String::new(),
            error: None,
            steps: 0,
            max_steps_reached: false,
            tool_calls: Vec::new(),
            sessions: Vec::new(),
            files_changed: Vec::new(),
            usage: Usage::default(),
        };
        let progress: ProgressFn = {
            let on_event = on_event.clone();
            Arc::new(move |e: &Event| on_event(AgentEvent::Coding { event: e.clone() }))
        };
        let mut finished = false;
        let run_span = tracing::info_span!(
            target: "station::agent",
            "agent.run",
            station.agent = %redact(&agent.name),
            station.model = %redact(&model.to_string()),
        );
        for step in 1..=max_steps {
            report.steps = step;
            on_event(AgentEvent::Step { step, max_steps });
            // One span per model step; the coding tasks its tool calls start are its children.
            let step_span = tracing::info_span!(
                target: "station::agent",
                parent: &run_span,
                "agent.step",
                station.step = step,
                station.tokens.input = tracing::field::Empty,
                station.tokens.output = tracing::field::Empty,
                station.tool_calls = tracing::field::Empty,
            );
            let spec = ChatSpec {
                model: model.clone(),
                system: system.clone(),
                turns: turns.clone(),
                tools: specs.clone(),
            };
            let reply = self.llm.chat(&spec).instrument(step_span.clone()).await?;
            step_span.record("station.tokens.input", reply.usage.input_tokens);
            step_span.record("station.tokens.output", reply.usage.output_tokens);
            step_span.record("station.tool_calls", reply.tool_calls.len() as u64);
            report.usage += reply.usage;
            if let Some(text) = reply.text.as_ref().filter(|t| !t.trim().is_empty()) {
                on_event(AgentEvent::Text { text: text.clone() });
            }
            turns.push(Turn::Assistant {
                text: reply.text.clone(),
                tool_calls: reply.tool_calls.clone(),
            });
            if reply.tool_calls.is_empty() {
                report.final_text = reply.text.unwrap_or_default();
                finished = true;
                break;
            }
            for call in reply.tool_calls {
                on_event(AgentEvent::ToolCall {
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                });
                let result = match tools {
                    Some(t) => {
                        t.call(&call.name, &call.arguments, Some(progress.clone()))
                            .instrument(step_span.clone())
                            .await
                    }
                    None => {
                        serde_json::json!({"success": false, "error": format!("unknown tool `{}`", call.name), "fix": "this agent has no tools; answer directly"})
                    }
                };
                let success = result
                    .get("success")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                report.tool_calls.push(ToolCallReport {
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    success,
                });
                on_event(AgentEvent::ToolResult {
                    name: call.name.clone(),
                    result: result.clone(),
                });
                turns.push(Turn::ToolResult {
                    call_id: call.id,
                    content: result.to_string(),
                });
            }
        }
        if let Some(t) = tools {
            for s in t.opened_sessions() {
                if !report.sessions.contains(&s.id) {
                    report.sessions.push(s.id.clone());
                }
                // Release what the model left open; the index keeps it for continuation.
                if let Err(e) = t.service().close(&s.id).await {
                    tracing::warn!(session = %s.id, "closing the session failed: {e}");
                }
            }
            report.files_changed = t.files_changed();
        }
        if finished {
            report.success = true;
        } else {
            report.max_steps_reached = true;
            report.error = Some(format!(
                "the agent used all {max_steps} steps (max_steps) without finishing; raise max_steps or simplify the task"
            ));
        }
        Ok(report)
    }
}

/// System prompt and first turns from the agent's rendered body. The task is always in the
/// conversation: when the body does not place `{{userInput}}` in a user message, it is added as
/// the last user message.
fn initial_conversation(
    agent: &AgentDefinition,
    task: &str,
    variables: &BTreeMap<String, Value>,
) -> Result<(Option<String>, Vec<Turn>)> {
    let messages = agent.render(task, variables)?;
    let mut system = Vec::new();
    let mut turns = Vec::new();
    for m in messages {
        match m.role {
            Role::System => system.push(m.text),
            Role::User => turns.push(Turn::User(m.text)),
            Role::Model => turns.push(Turn::Assistant {
                text: Some(m.text),
                tool_calls: Vec::new(),
            }),
        }
    }
    let task_in_user_turn = turns
        .iter()
        .any(|t| matches!(t, Turn::User(text) if text.contains(task.trim())));
    if !task_in_user_turn || !matches!(turns.last(), Some(Turn::User(_))) {
        turns.push(Turn::User(task.to_string()));
    }
    Ok(((!system.is_empty()).then(|| system.join("\n\n")), turns))
}
