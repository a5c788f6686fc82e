//! `chatkitd check`'s lines for `[agents]`: each agent with its model, the
//! tools it is offered of those the servers listed, and whom it hands off
//! to.

use std::time::Instant;

use super::{Line, Status};
use crate::agent::Roster;
use crate::config::Config;
use crate::mcp::ModelTool;

/// With `[agents]`: each agent, its model, the tools it is offered (of
/// those the servers listed) and whom it hands off to.
pub(super) fn check_agents(config: &Config, tools: &[ModelTool]) -> Vec<Line> {
    if config.agents.is_empty() {
        return Vec::new();
    }
    let started = Instant::now();
    let roster = match config
        .system_prompt()
        .and_then(|prompt| Roster::load(config, prompt))
    {
        Ok(roster) => roster,
        Err(e) => {
            return vec![
                Line::new(Status::Fail, "agents", "[agents]")
                    .since(started)
                    .detail(e.to_string()),
            ];
        }
    };
    roster
        .profiles()
        .iter()
        .enumerate()
        .map(|(index, profile)| {
            let model = profile
                .model
                .clone()
                .unwrap_or_else(|| config.llm.model.clone());
            let offered: Vec<&str> = tools
                .iter()
                .filter(|t| profile.offers(t))
                .map(|t| t.name.as_str())
                .collect();
            let handoffs = roster.handoff_names(index);
            let mut detail = format!("{} tools: {}", offered.len(), offered.join(", "));
            if !handoffs.is_empty() {
                detail.push_str(&format!("; hands off to {}", handoffs.join(", ")));
            }
            Line::new(Status::Ok, format!("agent {}", profile.name), model)
                .since(started)
                .detail(detail)
        })
        .collect()
}
