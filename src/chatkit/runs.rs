//! The requests that start a run: a new thread, a new message, a retry, a
//! client tool's output (custom actions that start one are in
//! `actions.rs`), and the spawned run itself (`start_run`). Each is admitted
//! first (`admission.rs`: the thread, a question waiting in it, a run slot,
//! the thread's run lock), then checks and stores what it can before the
//! first event, so a refusal is a precise error rather than a cut stream.

use std::time::Duration;

use serde_json::Value;
use tracing::Instrument;

use super::admission::{Admitted, Door, not_open};
use super::{ChatKit, ChatKitError, EventStream, Response, STREAM_BUFFER, at_most};
use crate::agent::{RunInput, RunOutcome, Settle};
use crate::auth::Identity;
use crate::protocol::{
    Attachment, ClientToolCallStatus, IdKind, ItemKind, Page, RetryParams, Thread, ThreadItem,
    ThreadMetadata, ThreadStreamEvent, Timestamp, UserContent, UserMessage, UserMessageInput,
    new_id, scrub,
};
use crate::signal::Signal;
use crate::store::{Appended, PageRequest};
use crate::stream::EventSink;

/// How long a run cancelled by shutdown waits to tell its client why.
const SHUTDOWN_NOTICE_WAIT: Duration = Duration::from_millis(500);

impl ChatKit {
    pub(super) async fn create(
        &self,
        ctx: &Identity,
        input: UserMessageInput,
    ) -> Result<Response, ChatKitError> {
        self.check_input(&input)?;
        self.agent()
            .check_choices(&ctx.user_id, &input.inference_options)
            .await
            .map_err(ChatKitError::BadRequest)?;
        let attachments = self.message_attachments(ctx, &input, None).await?;
        let thread = ThreadMetadata::new(new_id(IdKind::Thread), Timestamp::now());
        let admitted = self.admit(ctx, Door::New(thread)).await?;
        let thread = admitted.thread();
        let item = user_item(&thread.id, input, attachments);
        self.store
            .create_thread_with_item(&ctx.user_id, thread, &item)
            .await?;
        self.claim_attachments(ctx, &item).await;
        let created = ThreadStreamEvent::ThreadCreated {
            thread: Thread::from_metadata(thread, Page::default()),
        };
        // The run starts from what was just written, without reading it back.
        let history = Some(vec![item.clone()]);
        let first = vec![created, ThreadStreamEvent::ItemDone { item }];
        Ok(self.start_run(ctx, admitted, history, first, None))
    }

    pub(super) async fn add_user_message(
        &self,
        ctx: &Identity,
        thread_id: &str,
        input: UserMessageInput,
    ) -> Result<Response, ChatKitError> {
        self.check_input(&input)?;
        self.agent()
            .check_choices(&ctx.user_id, &input.inference_options)
            .await
            .map_err(ChatKitError::BadRequest)?;
        let attachments = self
            .message_attachments(ctx, &input, Some(thread_id))
            .await?;
        let mut admitted = self.admit(ctx, Door::Existing(thread_id)).await?;
        // Under the lock, the thread's status is read again, and the message
        // written with the history read back, in one store call (one
        // statement on Postgres).
        let item = user_item(thread_id, input, attachments);
        let appended = self
            .store
            .append_to_open_thread(&ctx.user_id, &item, self.agent().history_limit())
            .await?;
        let history = match appended {
            Appended::Added { thread, history } => {
                admitted.refresh(thread);
                history
            }
            Appended::NotOpen(thread) => return Err(not_open(&thread)),
        };
        self.claim_attachments(ctx, &item).await;
        let first = vec![ThreadStreamEvent::ItemDone { item }];
        Ok(self.start_run(ctx, admitted, Some(history), first, None))
    }

    pub(super) async fn retry(
        &self,
        ctx: &Identity,
        params: RetryParams,
    ) -> Result<Response, ChatKitError> {
        let admitted = self.admit(ctx, Door::Existing(&params.thread_id)).await?;
        let thread = admitted.thread();
        let item = self
            .store
            .load_item(&ctx.user_id, &thread.id, &params.item_id)
            .await?;
        if !matches!(item.kind, ItemKind::UserMessage(_)) {
            return Err(ChatKitError::BadRequest(format!(
                "item {} is a {}, not a user message: only a user message can be answered again",
                item.id,
                item.type_name()
            )));
        }
        self.store
            .delete_items_after(&ctx.user_id, &thread.id, &item.id)
            .await?;
        Ok(self.start_run(ctx, admitted, None, Vec::new(), None))
    }

    /// Protocol 4.3: completes the pending client tool call that ends the
    /// thread and runs the agent again.
    pub(super) async fn client_tool_output(
        &self,
        ctx: &Identity,
        thread_id: &str,
        result: Value,
    ) -> Result<Response, ChatKitError> {
        at_most(
            "the JSON of a client tool output",
            result.to_string().chars().count(),
            self.sizes.max_message_chars,
        )?;
        let admitted = self.admit(ctx, Door::Existing(thread_id)).await?;
        let thread = admitted.thread();
        let newest = PageRequest {
            limit: 1,
            order: crate::protocol::Order::Desc,
            after: None,
        };
        let last = self
            .store
            .list_items(&ctx.user_id, &thread.id, &newest)
            .await?;
        let Some(mut item) = last.data.into_iter().next() else {
            return Err(no_pending_call(thread_id));
        };
        match &mut item.kind {
            ItemKind::ClientToolCall(call) if call.status == ClientToolCallStatus::Pending => {
                call.status = ClientToolCallStatus::Completed;
                call.output = Some(result);
            }
            _ => return Err(no_pending_call(thread_id)),
        }
        self.store.save_item(&ctx.user_id, &item).await?;
        Ok(self.start_run(ctx, admitted, None, Vec::new(), None))
    }

    /// Spawns the run; its events follow `first` on the returned stream.
    pub(super) fn start_run(
        &self,
        ctx: &Identity,
        admitted: Admitted,
        history: Option<Vec<ThreadItem>>,
        first: Vec<ThreadStreamEvent>,
        settle: Option<Settle>,
    ) -> Response {
        let (sink, events) = EventSink::channel(STREAM_BUFFER, self.stream_write_timeout);
        let stall = sink.stall_signal();
        let cancel = self.shutdown.child_token();
        let agent = self.agent();
        let (thread, held) = admitted.into_parts();
        let input = RunInput {
            identity: ctx.clone(),
            thread,
            history,
            settle,
            questions: self.questions.clone(),
        };
        let cancel_on_drop = sink.cancel_on_drop(cancel.clone());
        let run_cancel = cancel.clone();
        let shutdown = self.shutdown.clone();
        let panic_sink = sink.clone();
        // A child of the request's span: the run's log lines carry the
        // request id and the thread id.
        let span = tracing::info_span!("run", thread_id = %input.thread.id);
        let run = async move {
            // Held until the run has persisted everything, cancellation included.
            let lost = Signal::cancelled(held.lost());
            let _held = held;
            for event in first {
                let sent = tokio::select! {
                    biased;
                    _ = run_cancel.cancelled() => Err(crate::stream::Disconnected),
                    sent = sink.send(event) => sent,
                };
                if sent.is_err() {
                    run_cancel.cancel();
                    break;
                }
            }
            let thread_id = input.thread.id.clone();
            // A lock lost to another replica stops the run where it is: it
            // is dropped, so it writes nothing more, and the client is told.
            let outcome = tokio::select! {
                outcome = agent.run(input, &sink, &run_cancel) => outcome,
                () = lost => {
                    tracing::warn!(%thread_id, "run stopped: this replica lost the thread's run lock to another");
                    let _ = sink
                        .send_within(
                            ThreadStreamEvent::custom_error(
                                "This answer was stopped: another server took over the conversation. Reload it to see where it stands.",
                                true,
                            ),
                            SHUTDOWN_NOTICE_WAIT,
                        )
                        .await;
                    return;
                }
            };
            match outcome {
                RunOutcome::Completed => tracing::debug!(%thread_id, "run completed"),
                RunOutcome::Failed => tracing::info!(%thread_id, "run ended with an error event"),
                RunOutcome::Cancelled => {
                    tracing::info!(%thread_id, "run cancelled; partial answer kept")
                }
            }
            if outcome == RunOutcome::Cancelled && shutdown.is_cancelled() {
                // Still connected: end the stream with a reason, not a cut.
                // Briefly: a client that does not read must not hold up the exit.
                let _ = sink
                    .send_within(
                        ThreadStreamEvent::custom_error(
                            "The server is restarting and stopped this answer; what was written so far is kept.",
                            true,
                        ),
                        SHUTDOWN_NOTICE_WAIT,
                    )
                    .await;
            }
        };
        self.runs
            .spawn(super::panics::catch_panics(run, panic_sink).instrument(span));
        Response::Stream(EventStream {
            events,
            stall,
            _cancel_on_drop: cancel_on_drop,
        })
    }
}

/// The stored form of a user's message, with its checked attachments: what
/// the stream echoes must be exactly what every store keeps (U+0000
/// replaced, see [`scrub_item`]).
fn user_item(thread_id: &str, input: UserMessageInput, attachments: Vec<Attachment>) -> ThreadItem {
    let attachments = attachments
        .into_iter()
        .map(|attachment| Attachment {
            thread_id: Some(thread_id.to_owned()),
            ..attachment
        })
        .collect();
    let mut item = ThreadItem::new(
        new_id(IdKind::Message),
        thread_id,
        ItemKind::UserMessage(UserMessage {
            content: input.content,
            attachments,
            quoted_text: input.quoted_text,
            inference_options: input.inference_options,
        }),
    );
    scrub_item(&mut item);
    item
}

/// Replaces U+0000 in an item's text (see [`scrub`]).
fn scrub_item(item: &mut ThreadItem) {
    if let Ok(mut value) = serde_json::to_value(&*item) {
        scrub::scrub_value(&mut value);
        if let Ok(clean) = serde_json::from_value(value) {
            *item = clean;
        }
    }
}

impl ChatKit {
    /// Refuses a message of more than `max_message_chars` characters
    /// (attachments are checked by [`ChatKit::message_attachments`]).
    fn check_input(&self, input: &UserMessageInput) -> Result<(), ChatKitError> {
        at_most(
            "a message",
            message_chars(input),
            self.sizes.max_message_chars,
        )
    }
}

/// The characters of everything a message stores that a client chose: typed
/// text, tags with their data, the quoted text and the inference options.
fn message_chars(input: &UserMessageInput) -> usize {
    let content: usize = input
        .content
        .iter()
        .map(|part| match part {
            UserContent::InputText { text } => text.chars().count(),
            UserContent::InputTag {
                id,
                text,
                data,
                group,
                ..
            } => {
                id.chars().count()
                    + text.chars().count()
                    + Value::Object(data.clone()).to_string().chars().count()
                    + group.as_ref().map_or(0, |g| g.chars().count())
            }
        })
        .sum();
    let options = &input.inference_options;
    let option_chars = options
        .tool_choice
        .as_ref()
        .map_or(0, |c| c.id.chars().count())
        + options.model.as_ref().map_or(0, |m| m.chars().count());
    content + input.quoted_text.as_ref().map_or(0, |q| q.chars().count()) + option_chars
}

fn no_pending_call(thread_id: &str) -> ChatKitError {
    ChatKitError::BadRequest(format!(
        "thread {thread_id} has no pending client tool call to complete"
    ))
}
