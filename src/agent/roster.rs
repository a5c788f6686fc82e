//! The agents of one assistant: the entry agent (`[agent]`) and the
//! specialists of `[agents]` a conversation can be handed to, each with its
//! system prompt, model, the tools it may use and the agents it may hand
//! off to; and the `transfer_to_NAME` tools that hand over.
//!
//! A handoff continues the same answer with another agent over the same
//! history (as the OpenAI Agents SDK's `handoffs` do): the run swaps the
//! system prompt, the model and the tools, and the thread remembers who
//! answers (`transcript::active_agent`).

use serde_json::{Value, json};

use crate::config::{
    AgentConfig, Config, ConfigError, ENTRY_AGENT, HandoffReturn, ReasoningEffort, ReasoningSummary,
};
use crate::llm::ToolDefinition;
use crate::mcp::ModelTool;

/// What the name of every handoff tool starts with.
const HANDOFF_PREFIX: &str = "transfer_to_";
/// What the name of every agent asked as a tool starts with.
const AGENT_TOOL_PREFIX: &str = "ask_";

/// The agents of one assistant; the entry agent is the first.
#[derive(Debug, Clone)]
pub struct Roster {
    profiles: Vec<Profile>,
    /// Where the next message starts after a handoff.
    pub return_to: HandoffReturn,
    /// Handoffs allowed in one answer.
    pub max_handoffs: u32,
}

/// One agent.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name in `agent.toml` ([`ENTRY_AGENT`] for `[agent]`).
    pub name: String,
    /// What the user sees taking over.
    pub display_name: String,
    /// Its system prompt, as read.
    pub prompt: String,
    /// Its own model, if any.
    pub model: Option<String>,
    /// Its own reasoning options, over its model's.
    pub reasoning_effort: Option<ReasoningEffort>,
    pub reasoning_summary: Option<ReasoningSummary>,
    /// Model calls it may make in one answer.
    pub max_turns: u32,
    /// The client tools it is offered, when not all.
    client_tools: Option<Vec<String>>,
    servers: Option<Vec<String>>,
    enabled_tools: Option<Vec<String>>,
    disabled_tools: Vec<String>,
    handoff_description: String,
    /// The agents it may hand off to, by index.
    handoffs: Vec<usize>,
    /// The agents it may ask as tools, by index.
    agent_tools: Vec<usize>,
}

impl Profile {
    /// Whether it may use `tool` (the entry agent may use every tool).
    pub fn offers(&self, tool: &ModelTool) -> bool {
        self.servers
            .as_ref()
            .is_none_or(|servers| servers.contains(&tool.server))
            && self
                .enabled_tools
                .as_ref()
                .is_none_or(|enabled| enabled.contains(&tool.name))
            && !self.disabled_tools.contains(&tool.name)
    }

    /// Whether it is offered the client tool `name`.
    pub fn offers_client_tool(&self, name: &str) -> bool {
        self.client_tools
            .as_ref()
            .is_none_or(|tools| tools.iter().any(|t| t == name))
    }

    /// Whether some tools are kept from it.
    pub fn is_restricted(&self) -> bool {
        self.servers.is_some() || self.enabled_tools.is_some() || !self.disabled_tools.is_empty()
    }
}

impl Roster {
    /// The agents of `config`, the entry agent's prompt already read;
    /// each specialist's prompt is read here.
    pub fn load(config: &Config, entry_prompt: String) -> Result<Roster, ConfigError> {
        let names: Vec<&str> = std::iter::once(ENTRY_AGENT)
            .chain(config.agents.keys().map(String::as_str))
            .collect();
        let indexes = |targets: &[String]| -> Vec<usize> {
            targets
                .iter()
                .filter_map(|t| names.iter().position(|n| n == t))
                .collect()
        };
        let mut entry = entry_profile(&config.agent, entry_prompt);
        entry.handoffs = indexes(&config.agent.handoffs);
        entry.agent_tools = indexes(&config.agent.tools_from_agents);
        let mut profiles = vec![entry];
        for (name, specialist) in &config.agents {
            profiles.push(Profile {
                name: name.clone(),
                display_name: specialist
                    .display_name
                    .clone()
                    .unwrap_or_else(|| capitalized(name)),
                prompt: config.read_instructions(
                    specialist.instructions.as_deref(),
                    specialist.instructions_text.as_deref(),
                )?,
                model: specialist.model.clone(),
                reasoning_effort: specialist.reasoning_effort,
                reasoning_summary: specialist.reasoning_summary,
                max_turns: specialist.max_turns.unwrap_or(config.agent.max_turns),
                client_tools: specialist.client_tools.clone(),
                servers: specialist.servers.clone(),
                enabled_tools: specialist.enabled_tools.clone(),
                disabled_tools: specialist.disabled_tools.clone(),
                handoff_description: specialist.handoff_description.clone(),
                handoffs: indexes(&specialist.handoffs),
                agent_tools: indexes(&specialist.tools_from_agents),
            });
        }
        Ok(Roster {
            profiles,
            return_to: config.agent.handoff_return,
            max_handoffs: config.agent.max_handoffs,
        })
    }

    /// The entry agent alone, with `prompt`.
    pub fn single(prompt: String, agent: &AgentConfig) -> Roster {
        Roster {
            profiles: vec![entry_profile(agent, prompt)],
            return_to: HandoffReturn::Stay,
            max_handoffs: 0,
        }
    }

    /// The agent at `index` (the entry agent for one out of range).
    pub fn get(&self, index: usize) -> &Profile {
        self.profiles.get(index).unwrap_or(&self.profiles[0])
    }

    /// The index of the agent named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.profiles.iter().position(|p| p.name == name)
    }

    /// Every agent, the entry agent first.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The names of the agents the agent at `index` may hand off to.
    pub fn handoff_names(&self, index: usize) -> Vec<&str> {
        self.get(index)
            .handoffs
            .iter()
            .map(|&target| self.profiles[target].name.as_str())
            .collect()
    }

    /// The handoff tools the agent at `index` is offered.
    pub fn handoff_tools(&self, index: usize) -> Vec<ToolDefinition> {
        let parameters = json!({"type": "object", "properties": {}, "additionalProperties": false});
        self.get(index)
            .handoffs
            .iter()
            .map(|&target| {
                let to = &self.profiles[target];
                let lead = format!("Hand the conversation over to {}", to.display_name);
                agent_tool(to, HANDOFF_PREFIX, &lead, parameters.clone())
            })
            .collect()
    }

    /// The tools that ask other agents, offered to the agent at `index`:
    /// `ask_NAME`, whose one argument is what to ask.
    pub fn agent_tools(&self, index: usize) -> Vec<ToolDefinition> {
        let parameters = json!({"type": "object",
            "properties": {"input": {"type": "string", "description": "What to ask, with everything it needs to know."}},
            "required": ["input"], "additionalProperties": false});
        self.get(index)
            .agent_tools
            .iter()
            .map(|&target| {
                let to = &self.profiles[target];
                let lead = format!("Ask {} and get its answer", to.display_name);
                agent_tool(to, AGENT_TOOL_PREFIX, &lead, parameters.clone())
            })
            .collect()
    }

    /// The agent a call of `tool` by the agent at `index` asks.
    pub fn agent_tool_target(&self, index: usize, tool: &str) -> Option<usize> {
        self.target(&self.get(index).agent_tools, AGENT_TOOL_PREFIX, tool)
    }

    /// The agent a call of `tool` by the agent at `index` hands off to.
    pub fn handoff_target(&self, index: usize, tool: &str) -> Option<usize> {
        self.target(&self.get(index).handoffs, HANDOFF_PREFIX, tool)
    }

    /// The agent of `targets` that the tool `tool` (`PREFIX` and a name) names.
    fn target(&self, targets: &[usize], prefix: &str, tool: &str) -> Option<usize> {
        let name = tool.strip_prefix(prefix)?;
        targets
            .iter()
            .copied()
            .find(|&target| self.profiles[target].name == name)
    }
}

/// The tool `PREFIX` + `to`'s name, described by `lead` and what `to` does.
fn agent_tool(to: &Profile, prefix: &str, lead: &str, parameters: Value) -> ToolDefinition {
    let description = if to.handoff_description.is_empty() {
        format!("{lead}.")
    } else {
        format!("{lead}: {}", to.handoff_description)
    };
    ToolDefinition::new(format!("{prefix}{}", to.name), &description, parameters)
}

/// The entry agent of `config`, without its handoffs.
fn entry_profile(agent: &AgentConfig, prompt: String) -> Profile {
    Profile {
        name: ENTRY_AGENT.to_owned(),
        display_name: agent.name.clone(),
        prompt,
        model: None,
        reasoning_effort: None,
        reasoning_summary: None,
        max_turns: agent.max_turns,
        client_tools: None,
        servers: None,
        enabled_tools: None,
        disabled_tools: Vec::new(),
        handoff_description: format!("{}, the assistant the conversation began with.", agent.name),
        handoffs: Vec::new(),
        agent_tools: Vec::new(),
    }
}

/// `billing_team` as `Billing team`.
fn capitalized(name: &str) -> String {
    let spaced = name.replace(['_', '-'], " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => spaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster() -> Roster {
        let toml = r#"
[agent]
name = "Helper"
handoffs = ["billing"]

[agents.billing]
instructions_text = "You handle invoices."
handoff_description = "Invoices and refunds."
servers = ["tasks"]
disabled_tools = ["tasks__delete"]
handoffs = ["entry"]
"#;
        let mut config: Config = toml::from_str(toml).expect("a config");
        config.mcp_servers.clear();
        Roster::load(&config, "You help.".to_owned()).expect("a roster")
    }

    fn tool(server: &str, name: &str) -> ModelTool {
        ModelTool {
            name: name.to_owned(),
            server: server.to_owned(),
            tool: name.to_owned(),
            description: String::new(),
            parameters: json!({"type": "object"}),
            needs_approval: false,
        }
    }

    #[test]
    fn each_agent_is_offered_its_handoffs_and_its_tools() {
        let roster = roster();
        let billing = roster.index_of("billing").expect("billing");
        let names = |index| -> Vec<String> {
            roster
                .handoff_tools(index)
                .iter()
                .map(|t| t.name().to_owned())
                .collect()
        };
        assert_eq!(names(0), ["transfer_to_billing"]);
        assert_eq!(names(billing), ["transfer_to_entry"]);
        assert_eq!(
            roster.handoff_target(0, "transfer_to_billing"),
            Some(billing)
        );
        assert_eq!(roster.handoff_target(billing, "transfer_to_billing"), None);
        assert_eq!(roster.handoff_target(0, "billing"), None);
        assert_eq!(roster.get(billing).display_name, "Billing");
        assert_eq!(roster.get(billing).prompt, "You handle invoices.");
        let profile = roster.get(billing);
        assert!(profile.offers(&tool("tasks", "tasks__add")));
        assert!(!profile.offers(&tool("tasks", "tasks__delete")));
        assert!(!profile.offers(&tool("web", "web__search")));
        assert!(roster.get(0).offers(&tool("web", "web__search")));
    }
}
