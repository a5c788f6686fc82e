//! The rules of `[agents]` and the entry agent's handoffs: known names, no
//! agent handing off to itself, instructions that exist, servers that
//! exist, names that make valid tool names; each guardrail's prompt,
//! model and message.

use crate::config::ConfigError;
use crate::config::agents::{ENTRY_AGENT, MAX_AGENT_NAME};
use crate::config::document::Document;
use crate::config::schema::Config;

/// Checks `[agents]` and the entry agent's handoffs.
pub(in crate::config) fn validate(
    config: &Config,
    document: &Document<'_>,
) -> Result<(), ConfigError> {
    let invalid = |keys: &[&str], message: String| super::invalid_at(document, keys, message);
    let known = |name: &str| name == ENTRY_AGENT || config.agents.contains_key(name);
    for (index, target) in config.agent.handoffs.iter().enumerate() {
        if !known(target) || target == ENTRY_AGENT {
            return Err(invalid(
                &["agent", "handoffs"],
                format!("entry {index}: {target:?} is not an agent of [agents]"),
            ));
        }
    }
    for target in &config.agent.tools_from_agents {
        if !config.agents.contains_key(target) {
            return Err(invalid(
                &["agent", "tools_from_agents"],
                format!("{target:?} is not an agent of [agents]"),
            ));
        }
    }
    if let Some(cycle) = agent_tool_cycle(config) {
        return Err(invalid(
            &["agents", &cycle[0], "tools_from_agents"],
            format!(
                "agents ask each other as tools in a circle ({}), which could never end",
                cycle.join(" → ")
            ),
        ));
    }
    if config.agent.max_handoffs == 0 && !config.agent.handoffs.is_empty() {
        return Err(invalid(
            &["agent", "max_handoffs"],
            "must be at least 1 when [agent] hands off".to_owned(),
        ));
    }
    for (name, agent) in &config.agents {
        let valid_name = !name.is_empty()
            && name.len() <= MAX_AGENT_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid_name || name == ENTRY_AGENT {
            return Err(invalid(
                &["agents", name],
                format!(
                    "an agent's name is 1 to {MAX_AGENT_NAME} of a-z, 0-9, `_` and `-`, and not {ENTRY_AGENT:?}"
                ),
            ));
        }
        instructions(
            config,
            &invalid,
            &["agents", name],
            (
                agent.instructions.as_ref(),
                agent.instructions_text.as_ref(),
            ),
        )?;
        if agent.model.as_ref().is_some_and(|m| m.trim().is_empty()) {
            return Err(invalid(
                &["agents", name, "model"],
                "must not be empty".to_owned(),
            ));
        }
        if agent.reasoning_summary.is_some() && config.llm.api != crate::config::LlmApi::Responses {
            return Err(invalid(
                &["agents", name, "reasoning_summary"],
                "needs api = \"responses\" (chat completions stream no reasoning summary)"
                    .to_owned(),
            ));
        }
        for tool in agent.client_tools.iter().flatten() {
            if !config.client_tools.contains_key(tool) {
                return Err(invalid(
                    &["agents", name, "client_tools"],
                    format!("{tool:?} is not a tool of [client_tools]"),
                ));
            }
        }
        if agent.max_turns == Some(0) {
            return Err(invalid(
                &["agents", name, "max_turns"],
                "must be at least 1".to_owned(),
            ));
        }
        for server in agent.servers.iter().flatten() {
            if !config.mcp_servers.contains_key(server) {
                return Err(invalid(
                    &["agents", name, "servers"],
                    format!("{server:?} is not a server of [mcp_servers]"),
                ));
            }
        }
        for target in &agent.tools_from_agents {
            if !config.agents.contains_key(target) || target == name {
                return Err(invalid(
                    &["agents", name, "tools_from_agents"],
                    format!("{target:?} is not another agent of [agents]"),
                ));
            }
        }
        for target in &agent.handoffs {
            if !known(target) {
                return Err(invalid(
                    &["agents", name, "handoffs"],
                    format!("{target:?} is not an agent of [agents] (or \"{ENTRY_AGENT}\")"),
                ));
            }
            if target == name {
                return Err(invalid(
                    &["agents", name, "handoffs"],
                    "an agent cannot hand off to itself".to_owned(),
                ));
            }
        }
    }
    for (name, guardrail) in &config.guardrails {
        instructions(
            config,
            &invalid,
            &["guardrails", name],
            (
                guardrail.instructions.as_ref(),
                guardrail.instructions_text.as_ref(),
            ),
        )?;
        if guardrail
            .model
            .as_ref()
            .is_some_and(|m| m.trim().is_empty())
        {
            return Err(invalid(
                &["guardrails", name, "model"],
                "must not be empty".to_owned(),
            ));
        }
        if guardrail.message.trim().is_empty() {
            return Err(invalid(
                &["guardrails", name, "message"],
                "must not be empty: it is what the user reads".to_owned(),
            ));
        }
    }
    Ok(())
}

/// An agent's or a guardrail's prompt: a file that exists, or inline
/// text, not both.
fn instructions<'a>(
    config: &Config,
    invalid: &dyn Fn(&[&str], String) -> ConfigError,
    at: &[&'a str],
    (file, text): (Option<&std::path::PathBuf>, Option<&String>),
) -> Result<(), ConfigError> {
    let key = |last: &'a str| -> Vec<&'a str> { at.iter().copied().chain([last]).collect() };
    match (file, text) {
        (Some(_), Some(_)) => Err(invalid(
            &key("instructions_text"),
            "set `instructions` (a file) or `instructions_text`, not both".to_owned(),
        )),
        (None, None) => Err(invalid(
            at,
            "needs `instructions` (a file) or `instructions_text`".to_owned(),
        )),
        (Some(file), None) => {
            let full = config.base_dir.join(file);
            if full.is_file() {
                Ok(())
            } else {
                Err(invalid(
                    &key("instructions"),
                    format!("prompt file {} does not exist", full.display()),
                ))
            }
        }
        (None, Some(_)) => Ok(()),
    }
}

/// A circle of specialists asking each other as tools, if any: the agents
/// on it, the first repeated at the end.
fn agent_tool_cycle(config: &Config) -> Option<Vec<String>> {
    fn visit(
        config: &Config,
        name: &str,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == name) {
            let mut cycle = path[start..].to_vec();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        if done.iter().any(|n| n == name) {
            return None;
        }
        path.push(name.to_owned());
        for next in config
            .agents
            .get(name)
            .map(|a| a.tools_from_agents.as_slice())
            .unwrap_or(&[])
        {
            if let Some(cycle) = visit(config, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(name.to_owned());
        None
    }
    let mut done = Vec::new();
    config
        .agents
        .keys()
        .find_map(|name| visit(config, name, &mut Vec::new(), &mut done))
}
