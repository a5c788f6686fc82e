//! The guardrails within a run. Input guardrails read the user's message
//! while the first model call streams (as the Agents SDK runs them), so one
//! that passes adds nothing to the first text; the run waits for their
//! verdict only before anything acts on the answer: before a tool runs and
//! before the answer is marked done. One that trips ends the run: what it
//! showed is removed (`thread.item.removed` for each item, and from the
//! store: everything after the user's message, which is kept), and an
//! `error` event carries the guardrail's message. Output guardrails read
//! the final answer before it is marked done; one that trips replaces the
//! answer with its message. Every decision is stored as a hidden record.

use tokio::task::JoinHandle;

use super::{Run, Stop};
use crate::agent::guardrails::{self, Decision, Trip};
use crate::agent::transcript::{GuardrailRecord, GuardrailVerdict, user_text};
use crate::protocol::{ItemKind, ThreadItem, ThreadStreamEvent};

/// The input guardrails' check of this run's message, while it runs.
pub(super) struct InputCheck {
    /// The user's message the check reads; what follows it is removed when
    /// it trips.
    message_id: String,
    task: JoinHandle<Decision>,
}

impl InputCheck {
    /// The decision, once it comes (a check that panicked decides nothing).
    pub(super) async fn decided(&mut self) -> Decision {
        (&mut self.task).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "an input guardrail check panicked");
            Decision::default()
        })
    }
}

impl Run<'_> {
    /// The ids of the items this run showed.
    pub(super) fn shown_items(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes an item shown (added or done).
    pub(super) fn note_shown(&self, item_id: &str) {
        let mut shown = self.shown_items();
        if !shown.iter().any(|id| id == item_id) {
            shown.push(item_id.to_owned());
        }
    }

    /// Starts the input guardrails on the message this run answers, if the
    /// run answers one (its history ends with it) and any are configured.
    pub(super) fn start_input_check(&mut self, items: &[ThreadItem]) {
        let guardrails = self.agent.guardrails.clone();
        if guardrails.input.is_empty() {
            return;
        }
        let Some(ThreadItem {
            id,
            kind: ItemKind::UserMessage(message),
            ..
        }) = items.last()
        else {
            return;
        };
        let text = user_text(message);
        let llm = self.agent.llm.clone();
        let task =
            tokio::spawn(async move { guardrails::check(&llm, &guardrails.input, &text).await });
        self.input_check = Some(InputCheck {
            message_id: id.clone(),
            task,
        });
    }

    /// Waits for the input guardrails' verdict, if it is still to come,
    /// and acts on it.
    pub(super) async fn settle_input_check(&mut self) -> Result<(), Stop> {
        let Some(check) = self.input_check.as_mut() else {
            return Ok(());
        };
        let decision = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            decision = check.decided() => decision,
        };
        self.input_decided(decision).await
    }

    /// Acts on the input guardrails' decision: stores it; a trip ends the
    /// run with what it showed removed.
    pub(super) async fn input_decided(&mut self, decision: Decision) -> Result<(), Stop> {
        let Some(check) = self.input_check.take() else {
            return Ok(());
        };
        let record = record("input", &decision).into_item(&self.input.thread.id);
        let Some(trip) = decision.trip else {
            return self.store(&[&record]).await;
        };
        self.remove_shown(&check.message_id).await?;
        self.store(&[&record]).await?;
        tracing::info!(thread_id = %self.input.thread.id, guardrail = %trip.guardrail, reason = %trip.reason, "an input guardrail tripped");
        self.emit(ThreadStreamEvent::custom_error(trip.message, false))
            .await?;
        Err(Stop::Failed)
    }

    /// The output guardrails' check of the final answer: a trip replaces
    /// its text with the guardrail's message (and drops its citations).
    pub(super) async fn check_output(&mut self) -> Result<(), Stop> {
        let guardrails = self.agent.guardrails.clone();
        let Some(draft) = self
            .draft
            .as_ref()
            .filter(|_| !guardrails.output.is_empty())
        else {
            return Ok(());
        };
        let text = draft.text.clone();
        let decision = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            decision = guardrails::check(&self.agent.llm, &guardrails.output, &text) => decision,
        };
        let record = record("output", &decision).into_item(&self.input.thread.id);
        self.store(&[&record]).await?;
        if let (Some(Trip { message, .. }), Some(draft)) = (decision.trip, self.draft.as_mut()) {
            tracing::info!(thread_id = %self.input.thread.id, "an output guardrail replaced the answer");
            draft.text = message;
            draft.annotations.clear();
        }
        Ok(())
    }

    /// Removes every item this run showed, from the client and from the
    /// store (everything after the user's message `message_id`).
    async fn remove_shown(&mut self, message_id: &str) -> Result<(), Stop> {
        self.draft = None;
        self.thinking = None;
        self.searches = None;
        self.drawing = None;
        self.open_calls.clear();
        let user = self.input.identity.user_id.clone();
        let thread_id = self.input.thread.id.clone();
        if let Err(e) = self
            .agent
            .store
            .delete_items_after(&user, &thread_id, message_id)
            .await
        {
            return Err(self.fail_store(e).await);
        }
        let shown = std::mem::take(&mut *self.shown_items());
        for item_id in shown {
            self.emit(ThreadStreamEvent::ItemRemoved { item_id })
                .await?;
        }
        Ok(())
    }
}

/// The record of a decision.
fn record(on: &str, decision: &Decision) -> GuardrailRecord {
    GuardrailRecord {
        on: on.to_owned(),
        verdicts: decision
            .verdicts
            .iter()
            .map(|(guardrail, tripped, reason)| GuardrailVerdict {
                guardrail: guardrail.clone(),
                tripped: *tripped,
                reason: reason.clone(),
            })
            .collect(),
    }
}

/// The input guardrails' decision, once it comes (never without a check).
pub(super) async fn checked(check: &mut Option<InputCheck>) -> crate::agent::Decision {
    match check {
        Some(check) => check.decided().await,
        None => std::future::pending().await,
    }
}
