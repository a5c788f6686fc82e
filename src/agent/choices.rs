//! The composer's choices for a turn (`inference_options`): the model the
//! user picked from `[llm] models`, and the tool they asked for. Checked
//! when the message arrives, so a choice the server does not offer is a
//! 400 before anything is stored; applied by the run from the stored
//! message, so a retry answers with the same model.

use super::Agent;
use super::run::Run;
use crate::protocol::{InferenceOptions, ItemKind, ThreadItem};

/// Most names an error lists.
const MAX_NAMES_LISTED: usize = 30;

impl Agent {
    /// Refuses a model outside `[llm] models`, or a `tool_choice` naming no
    /// tool offered to `user`, with what is offered.
    pub async fn check_choices(
        &self,
        user: &str,
        options: &InferenceOptions,
    ) -> Result<(), String> {
        if let Some(model) = &options.model {
            let offered = self.llm.models();
            if !offered.contains(model) {
                return Err(format!(
                    "the model {model:?} is not offered here; choose one of: {}",
                    listed(offered)
                ));
            }
        }
        if let Some(choice) = &options.tool_choice {
            let mut offered: Vec<String> = self
                .interactions
                .client_tools()
                .iter()
                .map(|t| t.name().to_owned())
                .collect();
            if let Some(mcp) = &self.mcp {
                offered.extend(mcp.tools_for(user).await.iter().map(|t| t.name.clone()));
            }
            if !offered.contains(&choice.id) {
                return Err(format!(
                    "tool_choice {:?} names no tool offered here; the tools are: {}",
                    choice.id,
                    if offered.is_empty() {
                        "none".to_owned()
                    } else {
                        listed(&offered)
                    }
                ));
            }
        }
        Ok(())
    }
}

fn listed(names: &[String]) -> String {
    let mut text = names
        .iter()
        .take(MAX_NAMES_LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_NAMES_LISTED {
        text.push_str(&format!(" (and {} more)", names.len() - MAX_NAMES_LISTED));
    }
    text
}

impl Run<'_> {
    /// Takes the turn's choices from the newest user message: its model
    /// (while it is still offered), and its tool only when the run answers
    /// that message itself, not when it resumes after a tool step.
    pub(super) fn apply_choices(&mut self, items: &[ThreadItem]) {
        let Some(index) = items
            .iter()
            .rposition(|i| matches!(i.kind, ItemKind::UserMessage(_)))
        else {
            return;
        };
        let ItemKind::UserMessage(message) = &items[index].kind else {
            return;
        };
        let options = &message.inference_options;
        if let Some(model) = &options.model {
            if self.agent.llm.models().contains(model) {
                self.model = Some(model.clone());
            } else {
                tracing::warn!(%model, "the message's model is no longer offered; answering with the default");
            }
        }
        if index + 1 == items.len() {
            self.forced_tool = options.tool_choice.as_ref().map(|c| c.id.clone());
        }
    }
}
