//! The composer's choices for a turn (`inference_options`): the model the
//! user picked from `[llm] models`, and the tool they asked for, checked
//! when the message arrives, so a choice the server does not offer is a
//! 400 before anything is stored. The run applies them from the stored
//! message (`run/choices.rs`), so a retry answers with the same model.

use super::Agent;
use crate::protocol::InferenceOptions;

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
