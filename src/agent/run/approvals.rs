//! Tool calls that wait for the user's approval.
//!
//! A call whose tool needs approval ends the run with an approval card (each
//! call with its arguments; Approve and Deny fire `tool.approve` and
//! `tool.deny` with the calls' ids) and a hidden state record holding the
//! calls, so the decision can come after a restart or to another replica.
//! Settling runs under the thread's run lock, and only a `pending` state
//! changes, once: a second click, or a click on a card the conversation has
//! moved past (any visible item after it), runs nothing. Approving runs the
//! calls and goes on with the model; denying stores a refusal as each call's
//! result and lets the model answer that.

use serde_json::Value;

use super::outputs::widget_item;
use super::{Run, Stop};
use crate::agent::transcript::{
    ApprovalState, PendingApproval, PendingCall, StoredCall, ToolRecord, UiRecord, state_id,
};
use crate::llm::ToolCall;
use crate::mcp::ModelTool;
use crate::protocol::{ItemKind, Order, ThreadItem, ThreadStreamEvent};
use crate::store::{PageRequest, StoreError};
use crate::widgets::{ApprovalCall, Verdict, approval_card, resolved_card};

/// What the model reads for a call the user denied.
pub const DENIED: &str =
    "The user denied this tool call, so it did not run. Do not call it again unless the user asks.";

/// A request to settle an approval card (`tool.approve` / `tool.deny`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settle {
    /// The approval card's item id.
    pub widget_id: String,
    pub approve: bool,
    /// The call ids the button carried; they must be the card's.
    pub call_ids: Vec<String>,
}

impl Run<'_> {
    /// Ends the turn with an approval card for `gated`.
    pub(super) async fn ask_approval(
        &mut self,
        gated: &[ToolCall],
        tools: &[ModelTool],
    ) -> Result<(), Stop> {
        let calls: Vec<PendingCall> = gated
            .iter()
            .map(|call| PendingCall {
                call: StoredCall {
                    id: call.id.clone(),
                    name: call.function.name.clone(),
                    arguments: call.function.arguments.clone(),
                },
                server: tools
                    .iter()
                    .find(|t| t.name == call.function.name)
                    .map(|t| t.server.clone())
                    .unwrap_or_default(),
            })
            .collect();
        let ids: Vec<String> = gated.iter().map(|c| c.id.clone()).collect();
        let thread_id = self.input.thread.id.clone();
        let item = widget_item(&thread_id, approval_card(&card_calls(&calls), &ids));
        let state = UiRecord::WidgetState {
            widget_id: item.id.clone(),
            source: None,
            approval: Some(PendingApproval {
                calls,
                state: ApprovalState::Pending,
            }),
        }
        .into_item(&thread_id);
        self.publish(item, &[&state]).await?;
        crate::metrics::get().approval("asked");
        Ok(())
    }

    /// Settles an approval card. True when the model should answer next (the
    /// calls ran or were denied); false when nothing changed.
    pub(super) async fn settle_approval(&mut self, settle: Settle) -> Result<bool, Stop> {
        let user = self.input.identity.user_id.clone();
        let thread_id = self.input.thread.id.clone();
        let store = self.agent.store.clone();
        let loaded = async {
            let widget = store
                .load_item(&user, &thread_id, &settle.widget_id)
                .await?;
            let state = store
                .load_item(&user, &thread_id, &state_id(&settle.widget_id))
                .await?;
            let after = store
                .list_items(
                    &user,
                    &thread_id,
                    &PageRequest {
                        limit: 1,
                        order: Order::Asc,
                        after: Some(settle.widget_id.clone()),
                    },
                )
                .await?;
            Ok::<_, StoreError>((widget, state, !after.data.is_empty()))
        };
        let (mut widget, mut state, moved_on) = match loaded.await {
            Ok(loaded) => loaded,
            Err(StoreError::NotFound(_)) => return self.unchanged(None).await,
            Err(e) => return Err(self.fail_store(e).await),
        };
        let Some(mut pending) = pending_approval(&state) else {
            return self.unchanged(Some(widget)).await;
        };
        let ids: Vec<&str> = pending.calls.iter().map(|c| c.call.id.as_str()).collect();
        if pending.state != ApprovalState::Pending || ids != settle.call_ids {
            return self.unchanged(Some(widget)).await;
        }
        let (verdict, new_state) = match (moved_on, settle.approve) {
            (true, _) => (Verdict::Expired, ApprovalState::Expired),
            (false, true) => (Verdict::Approved, ApprovalState::Approved),
            (false, false) => (Verdict::Denied, ApprovalState::Denied),
        };
        pending.state = new_state;
        let widget_id = settle.widget_id.clone();
        state.kind = ItemKind::HiddenContextItem {
            content: serde_json::to_value(UiRecord::WidgetState {
                widget_id,
                source: None,
                approval: Some(pending.clone()),
            })
            .unwrap_or(Value::Null),
        };
        widget.kind = ItemKind::Widget {
            widget: resolved_card(&card_calls(&pending.calls), verdict),
            copy_text: None,
        };
        for item in [&state, &widget] {
            if let Err(e) = store.save_item(&user, item).await {
                return Err(self.fail_store(e).await);
            }
        }
        tracing::info!(%thread_id, calls = pending.calls.len(), ?verdict, "approval settled");
        crate::metrics::get().approval(match verdict {
            Verdict::Approved => "approved",
            Verdict::Denied => "denied",
            Verdict::Expired => "expired",
        });
        self.emit(ThreadStreamEvent::ItemReplaced { item: widget })
            .await?;
        let calls: Vec<ToolCall> = pending
            .calls
            .iter()
            .map(|c| ToolCall::function(&c.call.id, &c.call.name, &c.call.arguments))
            .collect();
        match verdict {
            Verdict::Expired => Ok(false),
            Verdict::Denied => {
                let results: Vec<ThreadItem> = calls
                    .iter()
                    .map(|call| ToolRecord::result(call, DENIED, true).into_item(&thread_id))
                    .collect();
                self.store(&results.iter().collect::<Vec<_>>()).await?;
                Ok(true)
            }
            Verdict::Approved => {
                self.run_tools(&calls).await?;
                Ok(true)
            }
        }
    }

    /// A click that changes nothing: the card is sent again as it is stored,
    /// so a client showing a stale copy catches up.
    async fn unchanged(&mut self, widget: Option<ThreadItem>) -> Result<bool, Stop> {
        crate::metrics::get().approval("unchanged");
        if let Some(item) = widget {
            self.emit(ThreadStreamEvent::ItemReplaced { item }).await?;
        }
        Ok(false)
    }
}

/// The approval an item's state record holds, if any.
fn pending_approval(state: &ThreadItem) -> Option<PendingApproval> {
    match &state.kind {
        ItemKind::HiddenContextItem { content } => match UiRecord::from_content(content) {
            Some(UiRecord::WidgetState { approval, .. }) => approval,
            _ => None,
        },
        _ => None,
    }
}

/// The calls as the card shows them.
fn card_calls(calls: &[PendingCall]) -> Vec<ApprovalCall> {
    calls
        .iter()
        .map(|c| ApprovalCall {
            tool: c.call.name.clone(),
            server: c.server.clone(),
            arguments: serde_json::from_str(&c.call.arguments)
                .unwrap_or_else(|_| Value::String(c.call.arguments.clone())),
        })
        .collect()
}
