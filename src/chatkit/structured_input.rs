//! `threads.add_structured_input`: the user's answer to a tool server's
//! question (see `elicitation::waiting` for the whole flow). The answer is
//! checked against the question's schema before anything changes; a wrong
//! one is refused with why, and the question stays open. An accepted one is
//! stored, and its stream carries the rest of the run that asked.

use std::time::Duration;

use super::{ChatKit, ChatKitError, EventStream, Response, STREAM_BUFFER, at_most};
use crate::auth::Identity;
use crate::elicitation::Submission;
use crate::protocol::{
    InputStatus, ItemKind, StreamOptions, StructuredInputParams, ThreadItem, ThreadStreamEvent,
};
use crate::store::StoreError;
use crate::stream::NextStream;

/// How long an answer to a question this process does not hold waits for
/// the thread's lock, to tell a run elsewhere from no run at all.
const ELSEWHERE_WAIT: Duration = Duration::from_secs(1);

impl ChatKit {
    /// Protocol 4.4, for a question a tool server asked during a run.
    pub(super) async fn structured_input(
        &self,
        ctx: &Identity,
        params: StructuredInputParams,
    ) -> Result<Response, ChatKitError> {
        let user = ctx.user_id.as_str();
        let json = serde_json::to_string(&params.input)
            .map_err(|e| ChatKitError::Internal(e.to_string()))?;
        at_most(
            "the JSON of an answer",
            json.chars().count(),
            self.sizes.max_message_chars,
        )?;
        let thread = self.store.load_thread(user, &params.thread_id).await?;
        let mut item = self
            .store
            .load_item(user, &thread.id, &params.item_id)
            .await?;
        match &item.kind {
            ItemKind::StructuredInput { .. } if is_pending(&item) => {}
            ItemKind::StructuredInput { .. } => return Err(already_answered(&item.id)),
            _ => {
                return Err(ChatKitError::BadRequest(format!(
                    "item {} is not a pending structured input",
                    item.id
                )));
            }
        }
        let submission = Submission::from(params.input);
        let Some(form) = self.questions.form(user, &thread.id, &item.id) else {
            return Err(self.unclaimed(ctx, item).await);
        };
        let answer = submission.answer(&form).map_err(|e| {
            ChatKitError::BadRequest(format!(
                "the answer was not accepted, and the question stays open: {e}"
            ))
        })?;
        // The one point where answers (and the question's timeout) race:
        // exactly one claims the question, and only that one stores it.
        let Some(claimed) = self.questions.claim(user, &thread.id, &item.id) else {
            return Err(self.unclaimed(ctx, item).await);
        };
        submission.apply(&mut item);
        if let Err(e) = self.store.save_item(user, &item).await {
            claimed.abandon();
            return Err(e.into());
        }
        let (next, events, stall, guard) = NextStream::channel(STREAM_BUFFER, claimed.run());
        for event in [
            ThreadStreamEvent::StreamOptions {
                stream_options: StreamOptions { allow_cancel: true },
            },
            ThreadStreamEvent::ItemReplaced { item },
        ] {
            // A fresh stream: both fit its buffer.
            let _ = next.try_send(event);
        }
        if !claimed.answer(answer, next) {
            tracing::info!(thread_id = %thread.id, "the run that asked ended as the answer came");
        }
        Ok(Response::Stream(EventStream {
            events,
            stall,
            _cancel_on_drop: guard,
        }))
    }

    /// The refusal of an answer that could not claim its question: another
    /// answer did, here, or no run of this process waits for it. It changes
    /// nothing of the first answer's.
    async fn unclaimed(&self, ctx: &Identity, item: ThreadItem) -> ChatKitError {
        if self
            .questions
            .was_answered(&ctx.user_id, &item.thread_id, &item.id)
        {
            return already_answered(&item.id);
        }
        self.not_waiting(ctx, item).await
    }

    /// The refusal of an answer to a question that no run of this process
    /// waits for. With no run on the thread anywhere, nobody ever will (the
    /// question timed out, its run stopped, or the server restarted): the
    /// item is stored as skipped so the form closes, unless, read again
    /// under the thread's lock, it is no longer pending (an answer or the
    /// timeout closed it meanwhile). A run on another replica holds it
    /// otherwise.
    async fn not_waiting(&self, ctx: &Identity, item: ThreadItem) -> ChatKitError {
        match self
            .store
            .lock_thread_within(&item.thread_id, ELSEWHERE_WAIT)
            .await
        {
            Ok(_lock) => {
                let mut item = match self
                    .store
                    .load_item(&ctx.user_id, &item.thread_id, &item.id)
                    .await
                {
                    Ok(item) => item,
                    Err(e) => return e.into(),
                };
                if !is_pending(&item) {
                    return already_answered(&item.id);
                }
                Submission::skipped().apply(&mut item);
                if let Err(e) = self.store.save_item(&ctx.user_id, &item).await {
                    return e.into();
                }
                ChatKitError::Conflict(format!(
                    "nobody waits for the answer to item {} any more: the tool call that asked ended (no answer in time, the answer stopped, or the server restarted). The question is closed as skipped; say what you wanted in a message",
                    item.id
                ))
            }
            Err(StoreError::Busy(_)) => ChatKitError::Conflict(format!(
                "the question in item {} waits on another server of this deployment; send the answer to that server (route each thread's requests to one server)",
                item.id
            )),
            Err(e) => e.into(),
        }
    }
}

/// Whether `item` is a question still waiting for its answer.
fn is_pending(item: &ThreadItem) -> bool {
    matches!(
        &item.kind,
        ItemKind::StructuredInput {
            status: InputStatus::Pending,
            ..
        }
    )
}

/// The refusal of an answer to a question already closed, most often the
/// second of two answers sent at once.
fn already_answered(item_id: &str) -> ChatKitError {
    ChatKitError::Conflict(format!(
        "the question in item {item_id} is already closed (answered, skipped or expired); this answer changed nothing"
    ))
}
