//! `[agents.NAME]`: specialists the entry agent (`[agent]`) can hand a
//! conversation to, each with its own instructions, model, tools and
//! handoffs and the agents it asks as tools; `[agent] handoff_return`;
//! `[guardrails.NAME]`, small agents that check a message or an answer. Their rules are checked in
//! `validate/agents.rs`.

use std::path::PathBuf;

use serde::Deserialize;

use super::models::{ReasoningEffort, ReasoningSummary};

/// The name a handoff list gives the entry agent (`[agent]`).
pub const ENTRY_AGENT: &str = "entry";

/// Longest agent name: `transfer_to_NAME` must stay a valid tool name.
pub(super) const MAX_AGENT_NAME: usize = 50;

/// `[agents.NAME]`: one specialist.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpecialistConfig {
    /// What the user sees taking over ("Billing took over"); default: the name.
    pub display_name: Option<String>,
    /// Its system prompt, a file (relative to the config file).
    pub instructions: Option<PathBuf>,
    /// Its system prompt, inline (instead of a file).
    pub instructions_text: Option<String>,
    /// The model it answers with; default: the turn's (the composer's
    /// choice or `[llm] model`). Its reasoning options are the model's
    /// entry in `[llm] models`, else `[llm]`'s.
    pub model: Option<String>,
    /// The tool servers it may use; default: all.
    pub servers: Option<Vec<String>>,
    /// Only these tools (as the model calls them), when set.
    pub enabled_tools: Option<Vec<String>>,
    /// Never these tools.
    pub disabled_tools: Vec<String>,
    /// Its reasoning options, over those of its model (`[llm]`'s keys).
    pub reasoning_effort: Option<ReasoningEffort>,
    pub reasoning_summary: Option<ReasoningSummary>,
    /// The client tools (`[client_tools]`) it is offered; default: all.
    pub client_tools: Option<Vec<String>>,
    /// Model calls it may make in one answer; default: `[agent] max_turns`.
    pub max_turns: Option<u32>,
    /// What the agents that can hand off to it are told it does.
    pub handoff_description: String,
    /// The agents it may hand the conversation to (`entry` for `[agent]`).
    pub handoffs: Vec<String>,
    /// The agents it may ask as tools (`ask_NAME`): each runs to its final
    /// answer with its own tools, which is the tool's output.
    pub tools_from_agents: Vec<String>,
}

/// `[agent] handoff_return`: where the next message starts after a handoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffReturn {
    /// With the agent that answered last.
    #[default]
    Stay,
    /// With the entry agent, every message.
    Entry,
}

/// `[guardrails.NAME]`: a small agent that checks the user's message
/// (`on = "input"`) or the final answer (`on = "output"`) and can stop it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailConfig {
    /// What it checks for, a file (relative to the config file).
    pub instructions: Option<PathBuf>,
    /// What it checks for, inline (instead of a file).
    pub instructions_text: Option<String>,
    /// The model it asks; default: `[llm] model`.
    pub model: Option<String>,
    /// What it checks.
    pub on: GuardrailOn,
    /// What the user reads when it trips.
    pub message: String,
    /// When the check itself fails (the model errs or answers nonsense):
    /// `block` ends the answer, `allow` lets it through.
    pub on_error: GuardrailFailure,
}

impl Default for GuardrailConfig {
    fn default() -> Self {
        GuardrailConfig {
            instructions: None,
            instructions_text: None,
            model: None,
            on: GuardrailOn::Input,
            message: "Sorry, I can't help with that.".to_owned(),
            on_error: GuardrailFailure::Block,
        }
    }
}

/// What a guardrail checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailOn {
    /// The user's message, while the first model call streams.
    #[default]
    Input,
    /// The final answer, before it is marked done.
    Output,
}

/// What a guardrail whose check failed does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailFailure {
    #[default]
    Block,
    Allow,
}
