//! Widget actions bound to a tool (`[actions."TYPE"] server, tool`): the
//! tool runs with the action's payload as arguments (identity injected as on
//! every call), then the widget that sent the action is rendered afresh from
//! the call it shows and replaced in place. No model call: one or two tool
//! calls and two store writes, one of them a hidden record of what the
//! action did, which the model reads on its next turn (see
//! [`super::transcript::in_reading_order`] for where it sits in history).

use serde_json::Value;

use super::Agent;
use super::transcript::{UiRecord, state_id};
use crate::auth::Identity;
use crate::protocol::{ItemKind, ThreadItem};
use crate::store::StoreError;

/// Why a tool-bound action did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The payload is not the tool's arguments.
    #[error("the payload of a {kind:?} action must be a JSON object: the {tool} tool's arguments")]
    BadPayload { kind: String, tool: String },
    /// The tool answered with an error (its text), or could not be called.
    #[error("{0}")]
    Tool(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One tool-bound action to run.
#[derive(Debug, Clone, Copy)]
pub struct ToolAction<'a> {
    pub kind: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub payload: &'a Value,
}

impl Agent {
    /// Runs a tool-bound action for `identity`. Returns the sending widget
    /// rendered afresh and stored, or `None` when there is nothing to
    /// re-render (no sender, or a widget not rendered from a tool call).
    pub async fn tool_action(
        &self,
        identity: &Identity,
        thread_id: &str,
        sender: Option<ThreadItem>,
        action: ToolAction<'_>,
    ) -> Result<Option<ThreadItem>, ActionError> {
        let user = identity.user_id.as_str();
        let arguments = match action.payload {
            Value::Object(_) => action.payload.to_string(),
            Value::Null => "{}".to_owned(),
            _ => {
                return Err(ActionError::BadPayload {
                    kind: action.kind.to_owned(),
                    tool: action.tool.to_owned(),
                });
            }
        };
        let Some(mcp) = &self.mcp else {
            return Err(ActionError::Tool(
                "no tool servers are configured".to_owned(),
            ));
        };
        let outcome = mcp
            .call_tool(user, action.server, action.tool, &arguments)
            .await;
        tracing::info!(
            action = action.kind,
            server = action.server,
            tool = action.tool,
            is_error = outcome.is_error,
            elapsed_ms = outcome.elapsed.as_millis() as u64,
            "widget action ran its tool"
        );
        if outcome.is_error {
            return Err(ActionError::Tool(outcome.output));
        }
        // The model reads what the action did before it next answers.
        let record = UiRecord::ActionRun {
            action: action.kind.to_owned(),
            tool: action.tool.to_owned(),
            arguments,
            output: outcome.output,
        }
        .into_item(thread_id);
        if let Err(e) = self.store.add_item(user, &record).await {
            tracing::error!(error = %e, "could not record a widget action for the model");
        }
        let Some(mut widget) = sender else {
            return Ok(None);
        };
        let state = match self
            .store
            .load_item(user, thread_id, &state_id(&widget.id))
            .await
        {
            Ok(state) => state,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let source = match &state.kind {
            ItemKind::HiddenContextItem { content } => match UiRecord::from_content(content) {
                Some(UiRecord::WidgetState {
                    source: Some(source),
                    ..
                }) => source,
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        let again = mcp
            .call_tool(user, &source.server, &source.tool, &source.arguments)
            .await;
        if again.is_error {
            tracing::warn!(server = %source.server, tool = %source.tool, error = %again.output,
                "the widget's own call failed after an action; the widget is left as it was");
            return Ok(None);
        }
        let Some(rendered) = self.interactions.render_result(
            &source.server,
            &source.tool,
            again.structured.as_ref(),
        ) else {
            return Ok(None);
        };
        widget.kind = ItemKind::Widget {
            widget: rendered,
            copy_text: None,
        };
        self.store.save_item(user, &widget).await?;
        Ok(Some(widget))
    }
}
