//! How a run ends early, and what it keeps: a model failure keeps the
//! thinking and searches shown and the partial answer (an image not done is
//! removed) and ends with an `error` event; a store failure drops it
//! (it cannot be kept) and ends the stream; a panic and a cancellation keep
//! the thinking shown, the non-blank partial answer and a result for every open tool call, so
//! history never holds a call without its result, and a cancellation adds
//! the hidden marker that tells the next turn the user stopped this one.

use super::draft::finished_item;
use super::{Run, Stop};
use crate::agent::transcript::ToolRecord;
use crate::agent::{CANCELLED_MARKER, PANIC_MESSAGE};
use crate::llm::LlmError;
use crate::protocol::{IdKind, ItemKind, ThreadItem, ThreadStreamEvent, new_id};
use crate::store::StoreError;

impl Run<'_> {
    /// A model failure: keep the partial text, tell the user, end the stream.
    /// Returns how the run stops.
    pub(super) async fn fail_llm(&mut self, error: LlmError) -> Stop {
        tracing::warn!(thread_id = %self.input.thread.id, error = %error, "model call failed");
        if let Err(stop) = self.finish_thinking().await {
            return stop;
        }
        if let Err(stop) = self.finish_searches().await {
            return stop;
        }
        if let Err(stop) = self.drop_drawing().await {
            return stop;
        }
        if self
            .draft
            .as_ref()
            .is_some_and(|d| !d.text.trim().is_empty())
            && let Err(stop) = self.finish_draft().await
        {
            return stop;
        }
        let event = match &error {
            LlmError::NotConfigured(message) => {
                ThreadStreamEvent::custom_error(message.clone(), false)
            }
            other => ThreadStreamEvent::custom_error(
                format!("The assistant could not answer: {other}."),
                other.is_transient(),
            ),
        };
        if let Err(stop) = self.emit(event).await {
            return stop;
        }
        Stop::Failed
    }

    /// After a panic inside the run: store the non-blank partial answer and
    /// a result for every open tool call before anything is sent (the
    /// stream may be gone), then close the message and end the stream with
    /// an `error` event if the client still listens.
    pub(in crate::agent) async fn fail_panicked(&mut self, panic: &str) {
        tracing::error!(thread_id = %self.input.thread.id, panic, "a run panicked; what it wrote is kept");
        let stored = self
            .keep_interrupted(
                "failed",
                "The server failed before this call finished; it may or may not have run.",
            )
            .await;
        if let Some(item) = stored
            && self.announce(item).await.is_err()
        {
            return;
        }
        let _ = self
            .emit(ThreadStreamEvent::custom_error(PANIC_MESSAGE, true))
            .await;
    }

    /// A store failure: drop the partial text, end the stream. Returns how
    /// the run stops.
    pub(super) async fn fail_store(&mut self, error: StoreError) -> Stop {
        match &error {
            // The user deleted the thread while its run went on (a tool
            // server's question waiting, say): expected, nothing is lost.
            StoreError::NotFound(_) => tracing::info!(
                thread_id = %self.input.thread.id,
                "the thread was deleted during its run; the run ends"
            ),
            _ => tracing::error!(
                thread_id = %self.input.thread.id,
                error = %error,
                "store failed during a run"
            ),
        }
        self.draft = None;
        self.thinking = None;
        self.searches = None;
        self.drawing = None;
        if let Err(stop) = self.emit(ThreadStreamEvent::stream_error()).await {
            return stop;
        }
        Stop::Failed
    }

    /// After a cancellation: store what the user saw and the hidden marker.
    pub(in crate::agent) async fn persist_cancellation(&mut self) {
        self.keep_interrupted(
            "cancelled",
            "The user stopped the conversation before this call finished; it may or may not have run.",
        )
        .await;
        let marker = ThreadItem::new(
            new_id(IdKind::SdkHiddenContext),
            self.input.thread.id.clone(),
            ItemKind::SdkHiddenContext {
                content: CANCELLED_MARKER.to_owned(),
            },
        );
        let user = &self.input.identity.user_id;
        if let Err(e) = self.agent.store.add_item(user, &marker).await {
            tracing::error!(error = %e, "could not store the cancellation marker");
        }
    }

    /// Stores what an interrupted (`ended`: failed or cancelled) run leaves
    /// behind: its non-blank partial answer, returned when stored, and for
    /// every open tool call a result saying `unfinished`, so history never
    /// holds a call without its result. Nothing is sent: the stream may be
    /// gone.
    async fn keep_interrupted(&mut self, ended: &str, unfinished: &str) -> Option<ThreadItem> {
        let user = self.input.identity.user_id.clone();
        for shown in [self.take_thinking(), self.take_searches()]
            .into_iter()
            .flatten()
        {
            if let Err(e) = self.agent.store.add_item(&user, &shown).await {
                tracing::error!(error = %e, ended, "could not store the thinking or searches of an interrupted run");
            }
        }
        let mut stored = None;
        if let Some(draft) = self.draft.take().filter(|d| !d.text.trim().is_empty()) {
            let item = finished_item(draft);
            match self.agent.store.add_item(&user, &item).await {
                Ok(()) => stored = Some(item),
                Err(e) => {
                    tracing::error!(error = %e, ended, "could not store the partial answer of an interrupted run")
                }
            }
        }
        for call in std::mem::take(&mut self.open_calls) {
            let result =
                ToolRecord::result(&call, unfinished, true).into_item(&self.input.thread.id);
            if let Err(e) = self.agent.store.add_item(&user, &result).await {
                tracing::error!(error = %e, ended, "could not store the result of an interrupted tool call");
            }
        }
        stored
    }
}
