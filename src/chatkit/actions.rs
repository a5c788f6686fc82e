//! Widget actions: `threads.custom_action` (streaming) and
//! `threads.sync_custom_action` (one JSON document).
//!
//! A payload longer than `[limits] max_message_chars` characters of JSON is
//! refused before anything else. The thread and the sending widget are
//! loaded for the caller first, so another user's ids are not found, and an
//! action the widget does not offer, or a type nobody configured, is refused
//! before anything runs. Then:
//!
//! - a type bound to a tool must name the widget that sends it (`item_id`),
//!   one that offers the action; it runs the tool and replaces the widget in
//!   place (`thread.item.replaced` when streaming, `updated_item` when sync),
//!   without the run lock, so it works while an answer streams;
//! - a type handed to the agent is stored as a hidden item saying what it
//!   means, and the agent answers it in the stream;
//! - `tool.approve` / `tool.deny` settle an approval card in a run, under
//!   the thread's run lock, and the agent goes on in the stream.
//!
//! The last two need a stream: as sync actions they are refused.

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::admission::Door;
use super::{ChatKit, ChatKitError, EventStream, Response, STREAM_BUFFER, at_most};
use crate::agent::{Action, ActionError, Settle, UiRecord, action_text};
use crate::auth::Identity;
use crate::protocol::{ActionParams, ItemKind, StreamOptions, ThreadItem, ThreadStreamEvent};
use crate::stream::EventSink;
use crate::widgets::offers_action;

impl ChatKit {
    pub(super) async fn custom_action(
        &self,
        ctx: &Identity,
        params: ActionParams,
        sync: bool,
    ) -> Result<Response, ChatKitError> {
        let user = ctx.user_id.as_str();
        let kind = params.action.kind.as_str();
        self.check_payload(kind, &params.action.payload)?;
        let thread = self.store.load_thread(user, &params.thread_id).await?;
        let sender = match &params.item_id {
            Some(item_id) => Some(self.store.load_item(user, &thread.id, item_id).await?),
            None => None,
        };
        let agent = self.agent();
        let interactions = agent.interactions();
        let Some(action) = interactions.action(kind) else {
            return Err(ChatKitError::BadRequest(format!(
                "no action of type {kind:?} is configured on this server (configured: {})",
                interactions.action_types().join(", ")
            )));
        };
        if let Some(item) = &sender {
            let ItemKind::Widget { widget, .. } = &item.kind else {
                return Err(ChatKitError::BadRequest(format!(
                    "item {} is a {}, not a widget: only widgets send actions",
                    item.id,
                    item.type_name()
                )));
            };
            // A settled approval card has no buttons left, yet a second
            // click must change nothing rather than fail: settling checks
            // the card's state itself.
            let settles = matches!(action, Action::Approve | Action::Deny);
            if !settles && !offers_action(widget, kind) {
                return Err(ChatKitError::BadRequest(format!(
                    "widget {} offers no {kind:?} action",
                    item.id
                )));
            }
        }
        let payload = &params.action.payload;
        let (server, tool) = match action {
            // Without its widget, nothing would say the action was offered:
            // any configured tool could be called with any payload.
            Action::Tool { tool, .. } if sender.is_none() => {
                return Err(ChatKitError::BadRequest(format!(
                    "a {kind:?} action calls the {tool} tool, so it must name the widget that offers it in `item_id`"
                )));
            }
            Action::Tool { server, tool } => (server.as_str(), tool.as_str()),
            _ if sync => {
                return Err(ChatKitError::BadRequest(format!(
                    "a {kind:?} action continues the conversation, so it must be sent as threads.custom_action (streaming)"
                )));
            }
            Action::Agent { message } => {
                let text = action_text(message, kind, payload).map_err(|e| {
                    ChatKitError::BadRequest(format!(
                        "the {kind:?} action's payload does not fit its message: {e}"
                    ))
                })?;
                return self.action_for_agent(ctx, &thread.id, kind, text).await;
            }
            Action::Approve | Action::Deny => {
                let Some(card) = sender else {
                    return Err(ChatKitError::BadRequest(format!(
                        "a {kind:?} action must name its approval card in `item_id`"
                    )));
                };
                let settle = Settle {
                    widget_id: card.id,
                    approve: matches!(action, Action::Approve),
                    call_ids: call_ids(payload).ok_or_else(|| {
                        ChatKitError::BadRequest(format!(
                            "a {kind:?} action's payload is {{\"call_ids\": [ids]}}"
                        ))
                    })?,
                };
                let admitted = self.admit(ctx, Door::Existing(&thread.id)).await?;
                return Ok(self.start_run(ctx, admitted, None, Vec::new(), Some(settle)));
            }
        };
        let bound = crate::agent::ToolAction {
            kind,
            server,
            tool,
            payload,
        };
        match self
            .agent()
            .tool_action(ctx, &thread.id, sender, bound)
            .await
        {
            Ok(updated) if sync => Ok(Response::Json(match updated {
                Some(item) => json!({ "updated_item": item }).to_string(),
                None => "{}".to_owned(),
            })),
            Ok(updated) => Ok(ready_stream(
                updated
                    .map(|item| ThreadStreamEvent::ItemReplaced { item })
                    .into_iter()
                    .collect(),
            )),
            Err(ActionError::Tool(message)) if sync => Err(ChatKitError::ActionFailed(message)),
            Err(ActionError::Tool(message)) => {
                Ok(ready_stream(vec![ThreadStreamEvent::custom_error(
                    message, false,
                )]))
            }
            Err(ActionError::BadPayload { .. }) => Err(ChatKitError::BadRequest(
                ActionError::BadPayload {
                    kind: kind.to_owned(),
                    tool: tool.to_owned(),
                }
                .to_string(),
            )),
            Err(ActionError::Store(e)) => Err(e.into()),
        }
    }

    /// Refuses a payload of more than `max_message_chars` characters of
    /// JSON, before anything is loaded or stored.
    fn check_payload(&self, kind: &str, payload: &Value) -> Result<(), ChatKitError> {
        at_most(
            format_args!("the JSON payload of a {kind:?} action"),
            payload.to_string().chars().count(),
            self.sizes.max_message_chars,
        )
    }

    /// Stores an action handed to the agent as what it means, and starts
    /// the agent's answer to it.
    async fn action_for_agent(
        &self,
        ctx: &Identity,
        thread_id: &str,
        kind: &str,
        text: String,
    ) -> Result<Response, ChatKitError> {
        at_most(
            format_args!("the message a {kind:?} action means"),
            text.chars().count(),
            self.sizes.max_message_chars,
        )?;
        let admitted = self.admit(ctx, Door::Existing(thread_id)).await?;
        let record: ThreadItem = UiRecord::Action {
            action: kind.to_owned(),
            text,
        }
        .into_item(thread_id);
        self.store.add_item(&ctx.user_id, &record).await?;
        Ok(self.start_run(ctx, admitted, None, Vec::new(), None))
    }
}

/// The `call_ids` of an approval button's payload.
fn call_ids(payload: &Value) -> Option<Vec<String>> {
    payload
        .get("call_ids")?
        .as_array()?
        .iter()
        .map(|id| id.as_str().map(str::to_owned))
        .collect()
}

/// A stream of events known at once: `stream_options`, then `events`.
fn ready_stream(events: Vec<ThreadStreamEvent>) -> Response {
    let (sink, receiver) = EventSink::channel(STREAM_BUFFER.max(events.len() + 1), {
        // Nothing waits on this sink: every event fits its buffer.
        std::time::Duration::from_secs(1)
    });
    let stall = sink.stall_signal();
    let first = ThreadStreamEvent::StreamOptions {
        stream_options: StreamOptions {
            allow_cancel: false,
        },
    };
    for event in std::iter::once(first).chain(events) {
        if sink.try_send(event).is_err() {
            break;
        }
    }
    Response::Stream(EventStream {
        events: receiver,
        stall,
        _cancel_on_drop: sink.cancel_on_drop(CancellationToken::new()),
    })
}
