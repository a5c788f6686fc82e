//! One run in progress, and the only place `impl Run` appears: the turn
//! loop (model answer, tool steps, again until the model answers in text or
//! the turns run out: here); failures, and what a cancelled or panicked run
//! keeps (`failures.rs`); the streamed message (`draft.rs`); the tool step and its tasks
//! (`tools.rs`), a tool server's question parking the step (`asking.rs`),
//! approval cards (`approvals.rs`); the model's thinking as a reasoning
//! workflow (`thinking.rs`); what a step shows besides text: widgets,
//! images, client tool calls (`outputs.rs`); titles (`title.rs`); the
//! composer's choices applied (`choices.rs`).
//!
//! Every item a run shows goes out through [`Run::publish`]: stored first,
//! then sent as `thread.item.done`, so what a client saw is in the store.

mod approvals;
mod asked;
mod asking;
mod choices;
mod draft;
mod failures;
mod guarding;
mod handoffs;
mod hosted;
mod outputs;
#[cfg(test)]
mod panic_tests;
mod tasks;
mod thinking;
mod title;
mod tools;

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use self::draft::Draft;
use self::guarding::{InputCheck, checked};
use self::hosted::{Drawing, Searches};
use self::thinking::Thinking;
use self::title::TITLE_WAIT;
use self::tools::Step;
use super::transcript::{Media, ReasoningRecord, build_messages_with_media, named_attachments};
use super::{Agent, RunInput, RunOutcome};
use crate::attachments::Attachments;
use crate::llm::{ChatMessage, LlmError, LlmEvent, LlmStream, ToolCall, ToolDefinition};
use crate::mcp::ModelTool;
use crate::protocol::{ItemKind, ItemUpdate, StreamOptions, ThreadItem, ThreadStreamEvent};
use crate::signal::Signal;
use crate::stream::{Disconnected, EventSink, Offer};

pub use approvals::{DENIED, Settle};

/// The state of one run in progress.
pub(super) struct Run<'a> {
    agent: &'a Agent,
    input: RunInput,
    sink: &'a EventSink,
    cancel: &'a CancellationToken,
    draft: Option<Draft>,
    /// The model's thinking shown while it streams (`thinking.rs`).
    thinking: Option<Thinking>,
    /// The hosted searches shown while the answer streams (`hosted.rs`).
    searches: Option<Searches>,
    /// The image the hosted image tool is drawing (`hosted.rs`).
    drawing: Option<Drawing>,
    /// Tool calls stored as asked for whose results are not stored yet; a
    /// cancelled run stores a result for each, so history never holds a call
    /// without its result.
    open_calls: Vec<ToolCall>,
    /// For the time-to-first-token metric.
    started: Instant,
    first_token_seen: bool,
    /// The model the user picked for this turn (`inference_options.model`).
    model: Option<String>,
    /// The tool the user asked for (`inference_options.tool_choice`):
    /// required of the turn's first model call only.
    forced_tool: Option<String>,
    /// The agent answering, by its index in the roster (0: the entry agent).
    active: usize,
    /// The tools the answering agent may call, when it may not call all.
    restricted: Option<Vec<String>>,
    /// The input guardrails' check of the message, until it is decided.
    input_check: Option<InputCheck>,
    /// The items this run showed (added or done), which a tripped input
    /// guardrail removes. Only touched as items begin and end.
    shown: std::sync::Mutex<Vec<String>>,
}

/// Why a run stopped early.
enum Stop {
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
            thinking: None,
            searches: None,
            drawing: None,
            open_calls: Vec::new(),
            started,
            first_token_seen: false,
            model: None,
            forced_tool: None,
            active: 0,
            restricted: None,
            input_check: None,
            shown: std::sync::Mutex::default(),
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

    async fn answer(&mut self) -> Result<(), Stop> {
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
        self.resume_agent(&items);
        self.start_input_check(&items);
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

    /// Model calls until a final answer: each answer that asks for tools runs
    /// them and goes back to the model with the results, up to the answering
    /// agent's `max_turns`; a handoff goes on with the other agent.
    async fn agent_loop(&mut self, mut messages: Vec<ChatMessage>) -> Result<(), Stop> {
        let all_tools = match &self.agent.mcp {
            Some(mcp) => mcp.tools_for(&self.input.identity.user_id).await,
            None => Arc::new(Vec::new()),
        };
        let mut handoffs = 0;
        'agents: loop {
            let (tools, definitions) = self.offered_tools(&all_tools);
            for _ in 0..self.agent.roster.get(self.active).max_turns {
                let Some(next) = self
                    .agent_step(&mut messages, &tools, &definitions, &mut handoffs)
                    .await?
                else {
                    return Ok(());
                };
                if let Some(target) = next {
                    self.switch_to(target, &mut messages);
                    continue 'agents;
                }
            }
            return self.out_of_turns().await;
        }
    }

    /// One model answer and its tool step. `None`: the turn is over (a
    /// final answer, or it waits on the user); `Some(None)`: back to the
    /// model; `Some(Some(agent))`: back to the model as that agent.
    async fn agent_step(
        &mut self,
        messages: &mut Vec<ChatMessage>,
        tools: &[ModelTool],
        definitions: &[ToolDefinition],
        handoffs: &mut u32,
    ) -> Result<Option<Option<usize>>, Stop> {
        {
            let (calls, reasoning) = self.stream_answer(messages, definitions).await?;
            if calls.is_empty() {
                return Ok(None);
            }
            // The model's reasoning goes back before what it led to.
            if !reasoning.is_empty() {
                messages.push(ChatMessage::Reasoning { items: reasoning });
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
            let (handed, calls) = self.split_handoffs(calls);
            let mut target = None;
            if !handed.is_empty() {
                let (results, to) = self.hand_off(&handed, handoffs).await?;
                messages.extend(results);
                target = Some(to);
            }
            if !calls.is_empty() {
                match self.tool_step(&calls, tools).await? {
                    Step::Continue(results) => messages.extend(results),
                    Step::Wait => return Ok(None),
                }
            }
            Ok(Some(target))
        }
    }

    /// Streams one model answer into an assistant message; returns the tool
    /// calls the model asked for (none for a final answer) and its reasoning
    /// items (Responses API), already stored.
    async fn stream_answer(
        &mut self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
    ) -> Result<(Vec<ToolCall>, Vec<Value>), Stop> {
        let forced = self.forced_tool.take();
        let turn = self.turn(forced.as_deref());
        let mut stream = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            started = self.agent.llm.stream(messages, tools, turn) => match started {
                Ok(stream) => stream,
                Err(e) => return Err(self.fail_llm(e).await),
            },
        };
        // One wait on the stop button for the whole answer, not one
        // registered and dropped per chunk.
        let cancel = self.cancel;
        let mut cancelled = Signal::new(cancel.cancelled());
        loop {
            let event = tokio::select! {
                biased;
                _ = &mut cancelled => return Err(Stop::Cancelled),
                decided = checked(&mut self.input_check), if self.input_check.is_some() => {
                    Err(decided)
                }
                event = LlmStream::next(&mut stream) => Ok(event),
            };
            let event = match event {
                Ok(event) => event,
                Err(decided) => {
                    self.input_decided(decided).await?;
                    continue;
                }
            };
            if let Some(Ok(LlmEvent::Finished { reasoning, .. })) = &event {
                // Nothing acts on the answer before the input guardrails pass.
                self.settle_input_check().await?;
                self.finish_thinking().await?;
                self.finish_searches().await?;
                self.drop_drawing().await?;
                self.keep_reasoning(reasoning).await?;
            }
            match event {
                Some(Ok(LlmEvent::Reasoning { delta, new_part })) => {
                    self.push_reasoning(delta, new_part).await?;
                }
                Some(Ok(LlmEvent::Hosted(event))) => self.push_hosted(event).await?,
                Some(Ok(LlmEvent::Text(delta))) => self.push_text(delta).await?,
                Some(Ok(LlmEvent::Finished {
                    tool_calls,
                    reasoning,
                    ..
                })) if !tool_calls.is_empty() => {
                    if tools.is_empty() {
                        // Nothing was offered: a model misbehaving. Keep its text.
                        tracing::warn!(
                            calls = tool_calls.len(),
                            "model asked for tools that were not offered"
                        );
                    } else {
                        return Ok((tool_calls, reasoning));
                    }
                    return self
                        .finish_or_empty()
                        .await
                        .map(|()| (Vec::new(), Vec::new()));
                }
                Some(Ok(LlmEvent::Finished { .. })) => {
                    return self
                        .finish_or_empty()
                        .await
                        .map(|()| (Vec::new(), Vec::new()));
                }
                Some(Err(e)) => return Err(self.fail_llm(e).await),
                None => return Err(self.fail_llm(LlmError::Cut).await),
            }
        }
    }

    /// Stores the reasoning items of an answer (Responses API) as a hidden
    /// record, before the message and calls they led to, so later turns
    /// send them back.
    async fn keep_reasoning(&mut self, items: &[Value]) -> Result<(), Stop> {
        if items.is_empty() {
            return Ok(());
        }
        let record = ReasoningRecord {
            items: items.to_vec(),
        }
        .into_item(&self.input.thread.id);
        self.store(&[&record]).await
    }

    /// Stores items in order; a store failure ends the run.
    async fn store(&mut self, items: &[&ThreadItem]) -> Result<(), Stop> {
        for item in items {
            if let Err(e) = self
                .agent
                .store
                .add_item(&self.input.identity.user_id, item)
                .await
            {
                return Err(self.fail_store(e).await);
            }
        }
        Ok(())
    }

    /// Shows a finished item, the one way a run does: stores it, then the
    /// hidden `records` that go with it (a widget's state), then sends it
    /// ([`Run::announce`]). What a client saw is therefore in the store, and
    /// a send that fails (the client left) loses nothing. A store failure
    /// ends the run before anything is sent.
    async fn publish(&mut self, item: ThreadItem, records: &[&ThreadItem]) -> Result<(), Stop> {
        let mut all = Vec::with_capacity(records.len() + 1);
        all.push(&item);
        all.extend_from_slice(records);
        self.store(&all).await?;
        self.announce(item).await
    }

    /// Sends a stored item: an assistant message's `content_part.done`
    /// first, then `thread.item.done`.
    async fn announce(&self, item: ThreadItem) -> Result<(), Stop> {
        self.note_shown(&item.id);
        if let ItemKind::AssistantMessage(message) = &item.kind {
            self.emit(ThreadStreamEvent::ItemUpdated {
                item_id: item.id.clone(),
                update: ItemUpdate::ContentPartDone {
                    content_index: 0,
                    content: message.content.first().cloned().unwrap_or_default(),
                },
            })
            .await?;
        }
        self.emit(ThreadStreamEvent::ItemDone { item }).await
    }

    /// Sends one event. A cancellation (the stop button, or shutdown after
    /// its grace) interrupts a send that waits on a slow client; a send the
    /// stream's buffer takes at once (the usual case, a client keeping up)
    /// does not wait, so there is nothing to interrupt, and the run sees a
    /// cancellation at its next wait.
    async fn emit(&self, event: ThreadStreamEvent) -> Result<(), Stop> {
        if let ThreadStreamEvent::ItemAdded { item } = &event {
            self.note_shown(&item.id);
        }
        let event = match self.sink.offer(event) {
            Offer::Taken => return Ok(()),
            Offer::Gone => return Err(Stop::from(Disconnected)),
            Offer::Full(event) => *event,
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Stop::Cancelled),
            sent = self.sink.send(event) => sent.map_err(Stop::from),
        }
    }
}

/// Loads what the model reads of the attachments `items` name, newest
/// first, until `max_history_bytes`; one that fails to load is logged and
/// named only.
async fn load_media(attachments: &Attachments, user: &str, items: &[ThreadItem]) -> Media {
    let budget = usize::try_from(attachments.config().max_history_bytes).unwrap_or(usize::MAX);
    let mut used = 0usize;
    let mut media = Media::new();
    for item in items.iter().rev() {
        for attachment in named_attachments(item) {
            if media.contains_key(&attachment.id) {
                continue;
            }
            match attachments.for_model(user, &attachment).await {
                Ok(content) if used + content.weight() <= budget => {
                    used += content.weight();
                    media.insert(attachment.id, content);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(attachment = %attachment.id, error = %e, "attachment not shown to the model");
                }
            }
        }
    }
    media
}
