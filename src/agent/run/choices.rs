//! The composer's choices applied to a run: the model and the tool of the
//! message it answers, read from the stored message (checked when it
//! arrived: `agent/composer.rs`), so a retry answers with the same model.

use super::Run;
use crate::protocol::{ItemKind, ThreadItem};

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
