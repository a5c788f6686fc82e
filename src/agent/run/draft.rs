//! The assistant message being streamed: its first delta opens the item,
//! each delta is sent and kept, and closing it stores the whole message
//! before its `content_part.done` and `thread.item.done` go out; a final
//! answer checked first, an empty one reported, and the note of a model
//! that ran out of turns.

use super::{Run, Stop};
use crate::llm::LlmError;
use crate::protocol::{
    Annotation, AssistantContent, AssistantMessage, IdKind, ItemKind, ItemUpdate, ThreadItem,
    ThreadStreamEvent, new_id, scrub,
};

/// The assistant message being streamed.
pub(super) struct Draft {
    pub(super) item: ThreadItem,
    pub(super) text: String,
    /// Citations of the text (hosted searches), in the order they came.
    pub(super) annotations: Vec<Annotation>,
}

impl Run<'_> {
    pub(super) async fn push_text(&mut self, mut delta: String) -> Result<(), Stop> {
        scrub::scrub_in_place(&mut delta);
        if !self.first_token_seen {
            self.first_token_seen = true;
            crate::metrics::get()
                .time_to_first_token
                .observe(self.started.elapsed().as_secs_f64());
        }
        if self.draft.is_none() {
            // The thinking and searching that led to this text are done.
            self.finish_thinking().await?;
            self.finish_searches().await?;
            let item = ThreadItem::new(
                new_id(IdKind::Message),
                self.input.thread.id.clone(),
                ItemKind::AssistantMessage(AssistantMessage::default()),
            );
            let item_id = item.id.clone();
            self.draft = Some(Draft {
                item: item.clone(),
                text: String::new(),
                annotations: Vec::new(),
            });
            self.emit(ThreadStreamEvent::ItemAdded { item }).await?;
            self.emit(ThreadStreamEvent::ItemUpdated {
                item_id,
                update: ItemUpdate::ContentPartAdded {
                    content_index: 0,
                    content: AssistantContent::text(""),
                },
            })
            .await?;
        }
        let Some(draft) = self.draft.as_mut() else {
            return Ok(());
        };
        draft.text.push_str(&delta);
        let item_id = draft.item.id.clone();
        self.emit(ThreadStreamEvent::ItemUpdated {
            item_id,
            update: ItemUpdate::TextDelta {
                content_index: 0,
                delta,
            },
        })
        .await
    }

    /// Closes the streamed message: stored, then part done and item done on
    /// the wire ([`Run::publish`]); the message is stored before either
    /// event goes out.
    ///
    /// The reference stores the item between `content_part.done` and
    /// `thread.item.done`. Storing it first instead cannot be observed: an
    /// event only enters the stream's buffer here, so the client may receive
    /// `content_part.done` after the store write either way, and the order of
    /// the events on the wire is unchanged. What storing first buys is that a
    /// send that fails (the client left or stopped reading at this very
    /// moment) can no longer lose the answer: once taken out of the draft it
    /// is already stored, and the cancellation path finds nothing left to keep.
    pub(super) async fn finish_draft(&mut self) -> Result<(), Stop> {
        let Some(draft) = self.draft.take() else {
            return Ok(());
        };
        self.publish(finished_item(draft), &[]).await
    }
}

impl Run<'_> {
    /// A final answer: checked by the output guardrails, then closed; or
    /// an empty one reported.
    pub(super) async fn finish_or_empty(&mut self) -> Result<(), Stop> {
        if self.draft.is_none() {
            return Err(self
                .fail_llm(LlmError::Protocol(
                    "the model returned an empty answer".to_owned(),
                ))
                .await);
        }
        self.check_output().await?;
        self.finish_draft().await
    }

    /// The model kept asking for tools: say so instead of ending in silence.
    pub(super) async fn out_of_turns(&mut self) -> Result<(), Stop> {
        let turns = self.agent.roster.get(self.active).max_turns;
        self.push_text(format!(
            "I stopped after {turns} steps without reaching an answer. Tell me to continue if you want me to go on."
        ))
        .await?;
        self.finish_draft().await
    }
}

/// The draft as a complete assistant message.
pub(super) fn finished_item(draft: Draft) -> ThreadItem {
    let mut item = draft.item;
    item.kind = ItemKind::AssistantMessage(AssistantMessage {
        content: vec![AssistantContent {
            annotations: draft.annotations,
            text: draft.text,
        }],
    });
    item
}
