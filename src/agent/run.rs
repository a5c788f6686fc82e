//! One run in progress: the turn loop (model answer, tool steps, again
//! until the model answers in text or the turns run out), failures, and what
//! a cancelled run stores. The streamed text is in `draft.rs`, the tool step
//! in `tools.rs`, titles in `title.rs`.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::draft::{Draft, finished_item};
use super::history::build_messages_with_media;
use super::media::load_media;
use super::records::ToolRecord;
use super::title::TITLE_WAIT;
use super::tools::Step;
use super::{
    Agent, CANCELLED_MARKER, Disconnected, EventSink, PANIC_MESSAGE, RunInput, RunOutcome,
};
use crate::llm::{ChatMessage, LlmError, LlmEvent, LlmStream, ToolCall, ToolDefinition, Turn};
use crate::protocol::{
    IdKind, ItemKind, ItemUpdate, StreamOptions, ThreadItem, ThreadStreamEvent, new_id,
};
use crate::store::StoreError;

/// The state of one run in progress.
pub(super) struct Run<'a> {
    pub(super) agent: &'a Agent,
    pub(super) input: RunInput,
    pub(super) sink: &'a EventSink,
    pub(super) cancel: &'a CancellationToken,
    pub(super) draft: Option<Draft>,
    /// Tool calls stored as asked for whose results are not stored yet; a
    /// cancelled run stores a result for each, so history never holds a call
    /// without its result.
    pub(super) open_calls: Vec<ToolCall>,
    /// For the time-to-first-token metric.
    pub(super) started: Instant,
    pub(super) first_token_seen: bool,
    /// The model the user picked for this turn (`inference_options.model`).
    pub(super) model: Option<String>,
    /// The tool the user asked for (`inference_options.tool_choice`):
    /// required of the turn's first model call only.
    pub(super) forced_tool: Option<String>,
}

/// Why a run stopped early.
pub(super) enum Stop {
    Cancelled,
    Failed,
}

impl From<Disconnected> for Stop {
    fn from(_: Disconnected) -> Self {
        Stop::Cancelled
    }
}

impl<'a> Run<'a> {
    pub(super) fn new(
        agent: &'a Agent,
        input: RunInput,
        sink: &'a EventSink,
        cancel: &'a CancellationToken,
        started: Instant,
    ) -> Run<'a> {
        Run {
            agent,
            input,
            sink,
            cancel,
            draft: None,
            open_calls: Vec::new(),
            started,
            first_token_seen: false,
            model: None,
            forced_tool: None,
        }
    }

    pub(super) async fn execute(&mut self) -> RunOutcome {
        let result = self.answer().await;
        match result {
            Ok(()) => RunOutcome::Completed,
            Err(Stop::Cancelled) => RunOutcome::Cancelled,
            Err(Stop::Failed) => RunOutcome::Failed,
        }
    }

    pub(super) async fn answer(&mut self) -> Result<(), Stop> {
        self.emit(ThreadStreamEvent::StreamOptions {
            stream_options: StreamOptions { allow_cancel: true },
        })
        .await?;
        if let Some(settle) = self.input.settle.take()
            && !self.settle_approval(settle).await?
        {
            return Ok(());
        }
        let user = self.input.identity.user_id.clone();
        let thread_id = self.input.thread.id.clone();
        let known = self.input.history.take();
        let items = match known {
            Some(items) => items,
            None => match self
                .agent
                .store
                .load_history(&user, &thread_id, self.agent.config.history_max_items)
                .await
            {
                Ok(items) => items,
                Err(e) => return Err(self.fail_store(e).await),
            },
        };
        self.apply_choices(&items);
        let system_prompt = self.system_prompt();
        let media = load_media(&self.agent.attachments, &user, &items).await;
        let messages = match build_messages_with_media(
            &system_prompt,
            &items,
            self.agent.config.history_token_budget,
            &media,
        ) {
            Ok(messages) => messages,
            Err(too_long) => {
                tracing::info!(%thread_id, tokens = too_long.tokens, budget = too_long.budget, "message refused: over the history budget");
                self.emit(ThreadStreamEvent::custom_error(too_long.to_string(), false))
                    .await?;
                return Err(Stop::Failed);
            }
        };
        // After the budget check: a refused message is not sent to the model
        // for a title either.
        let title_task = self.start_title(&items);

        let answered = self.agent_loop(messages).await;
        let title = match (&answered, title_task) {
            (Err(Stop::Cancelled), Some(task)) => {
                task.abort();
                None
            }
            (_, Some(task)) => tokio::time::timeout(TITLE_WAIT, task)
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            (_, None) => None,
        };
        if let Some(title) = title {
            self.apply_title(&title).await?;
        }
        answered
    }

    /// The system prompt with `{{user.id}}`, `{{user.name}}` and
    /// `{{user.email}}` filled in (empty when the token has no such claim).
    pub(super) fn system_prompt(&self) -> String {
        let prompt = &self.agent.system_prompt;
        if !prompt.contains("{{user.") {
            return prompt.clone();
        }
        prompt
            .replace("{{user.id}}", &self.input.identity.user_id)
            .replace(
                "{{user.name}}",
                self.input.identity.name.as_deref().unwrap_or(""),
            )
            .replace(
                "{{user.email}}",
                self.input.identity.email.as_deref().unwrap_or(""),
            )
    }

    /// Model calls until a final answer: each answer that asks for tools runs
    /// them and goes back to the model with the results, up to `max_turns`.
    pub(super) async fn agent_loop(&mut self, mut messages: Vec<ChatMessage>) -> Result<(), Stop> {
        let tools = match &self.agent.mcp {
            Some(mcp) => mcp.tools_for(&self.input.identity.user_id).await,
            None => Arc::new(Vec::new()),
        };
        let interactions = self.agent.interactions.clone();
        // A client tool takes the name from a server's tool of the same name.
        let definitions: Vec<ToolDefinition> = tools
            .iter()
            .filter(|t| !interactions.is_client_tool(&t.name))
            .map(|t| ToolDefinition::new(&t.name, &t.description, t.parameters.clone()))
            .chain(interactions.client_tools().iter().cloned())
            .collect();
        for _ in 0..self.agent.config.max_turns {
            let calls = self.stream_answer(&messages, &definitions).await?;
            if calls.is_empty() {
                return Ok(());
            }
            // The text the model wrote before asking for tools goes with the
            // calls, as one assistant message.
            let text = match self.draft.as_ref() {
                Some(draft) if !draft.text.trim().is_empty() => Some(draft.text.clone()),
                _ => None,
            };
            if text.is_some() {
                self.finish_draft().await?;
            } else if let Some(blank) = self.draft.take() {
                // Only whitespace before the calls: not worth a message.
                self.emit(ThreadStreamEvent::ItemRemoved {
                    item_id: blank.item.id,
                })
                .await?;
            }
            messages.push(ChatMessage::Assistant {
                content: text,
                tool_calls: calls.clone(),
            });
            match self.tool_step(&calls, &tools).await? {
                Step::Continue(results) => messages.extend(results),
                Step::Wait => return Ok(()),
            }
        }
        self.out_of_turns().await
    }

    /// Streams one model answer into an assistant message; returns the tool
    /// calls the model asked for (none for a final answer).
    pub(super) async fn stream_answer(
        &mut self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
    ) -> Result<Vec<ToolCall>, Stop> {
        let forced = self.forced_tool.take();
        let turn = Turn {
            model: self.model.as_deref(),
            tool_choice: forced.as_deref(),
        };
        let mut stream = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            started = self.agent.llm.stream(messages, tools, turn) => match started {
                Ok(stream) => stream,
                Err(e) => return Err(self.fail_llm(e).await),
            },
        };
        loop {
            let event = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
                event = LlmStream::next(&mut stream) => event,
            };
            match event {
                Some(Ok(LlmEvent::Text(delta))) => self.push_text(delta).await?,
                Some(Ok(LlmEvent::Finished { tool_calls, .. })) if !tool_calls.is_empty() => {
                    if tools.is_empty() {
                        // Nothing was offered: a model misbehaving. Keep its text.
                        tracing::warn!(
                            calls = tool_calls.len(),
                            "model asked for tools that were not offered"
                        );
                    } else {
                        return Ok(tool_calls);
                    }
                    return self.finish_or_empty().await.map(|()| Vec::new());
                }
                Some(Ok(LlmEvent::Finished { .. })) => {
                    return self.finish_or_empty().await.map(|()| Vec::new());
                }
                Some(Err(e)) => return Err(self.fail_llm(e).await),
                None => return Err(self.fail_llm(LlmError::Cut).await),
            }
        }
    }

    /// A final answer: closes the message, or reports an empty one.
    pub(super) async fn finish_or_empty(&mut self) -> Result<(), Stop> {
        if self.draft.is_none() {
            return Err(self
                .fail_llm(LlmError::Protocol(
                    "the model returned an empty answer".to_owned(),
                ))
                .await);
        }
        self.finish_draft().await
    }

    /// The model kept asking for tools: say so instead of ending in silence.
    pub(super) async fn out_of_turns(&mut self) -> Result<(), Stop> {
        let turns = self.agent.config.max_turns;
        self.push_text(format!(
            "I stopped after {turns} steps without reaching an answer. Tell me to continue if you want me to go on."
        ))
        .await?;
        self.finish_draft().await
    }

    /// A model failure: keep the partial text, tell the user, end the stream.
    /// Returns how the run stops.
    pub(super) async fn fail_llm(&mut self, error: LlmError) -> Stop {
        tracing::warn!(thread_id = %self.input.thread.id, error = %error, "model call failed");
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
    pub(super) async fn fail_panicked(&mut self, panic: &str) {
        tracing::error!(thread_id = %self.input.thread.id, panic, "a run panicked; what it wrote is kept");
        let user = self.input.identity.user_id.clone();
        let mut stored = None;
        if let Some(draft) = self.draft.take().filter(|d| !d.text.trim().is_empty()) {
            let item = finished_item(draft);
            match self.agent.store.add_item(&user, &item).await {
                Ok(()) => stored = Some(item),
                Err(e) => {
                    tracing::error!(error = %e, "could not store the partial answer of a failed run")
                }
            }
        }
        for call in std::mem::take(&mut self.open_calls) {
            let result = ToolRecord::result(
                &call,
                "The server failed before this call finished; it may or may not have run.",
                true,
            )
            .into_item(&self.input.thread.id);
            if let Err(e) = self.agent.store.add_item(&user, &result).await {
                tracing::error!(error = %e, "could not store the result of an interrupted tool call");
            }
        }
        if let Some(item) = stored {
            let part = match &item.kind {
                ItemKind::AssistantMessage(message) => message.content.first().cloned(),
                _ => None,
            };
            let done = ThreadStreamEvent::ItemUpdated {
                item_id: item.id.clone(),
                update: ItemUpdate::ContentPartDone {
                    content_index: 0,
                    content: part.unwrap_or_default(),
                },
            };
            if self.emit(done).await.is_err()
                || self
                    .emit(ThreadStreamEvent::ItemDone { item })
                    .await
                    .is_err()
            {
                return;
            }
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
        if let Err(stop) = self.emit(ThreadStreamEvent::stream_error()).await {
            return stop;
        }
        Stop::Failed
    }

    /// Sends one event. A cancellation (the stop button, or shutdown after
    /// its grace) interrupts a send that waits on a slow client.
    pub(super) async fn emit(&self, event: ThreadStreamEvent) -> Result<(), Stop> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Stop::Cancelled),
            sent = self.sink.send(event) => sent.map_err(Stop::from),
        }
    }

    /// After a cancellation: store what the user saw and the hidden marker.
    pub(super) async fn persist_cancellation(&mut self) {
        let user = self.input.identity.user_id.clone();
        if let Some(draft) = self.draft.take().filter(|d| !d.text.trim().is_empty()) {
            let item = finished_item(draft);
            if let Err(e) = self.agent.store.add_item(&user, &item).await {
                tracing::error!(error = %e, "could not store the partial answer of a cancelled run");
            }
        }
        for call in std::mem::take(&mut self.open_calls) {
            let result = ToolRecord::result(
                &call,
                "The user stopped the conversation before this call finished; it may or may not have run.",
                true,
            )
            .into_item(&self.input.thread.id);
            if let Err(e) = self.agent.store.add_item(&user, &result).await {
                tracing::error!(error = %e, "could not store the result of a cancelled tool call");
            }
        }
        let marker = ThreadItem::new(
            new_id(IdKind::SdkHiddenContext),
            self.input.thread.id.clone(),
            ItemKind::SdkHiddenContext {
                content: CANCELLED_MARKER.to_owned(),
            },
        );
        if let Err(e) = self.agent.store.add_item(&user, &marker).await {
            tracing::error!(error = %e, "could not store the cancellation marker");
        }
    }
}
