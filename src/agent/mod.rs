//! The agent: one run answers one user turn.
//!
//! A run builds the model's input from the stored thread ([`history`]), streams
//! the model's answer as ChatKit events, stores each item before its
//! `thread.item.done` goes out, and generates a title for a new thread
//! ([`title`]). It knows nothing of HTTP or SQL: it yields protocol events into
//! an [`EventSink`] and calls the [`Store`] trait.
//!
//! Failure rules (design decision 7): a model error keeps the partial answer
//! and ends with an `error` event; a cancelled run (the client went away, or
//! shutdown) keeps the non-blank partial answer plus a hidden marker telling
//! the next turn that the user stopped this one.

mod history;
mod records;
mod title;
mod tools;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use records::ToolRecord;

pub use history::{build_messages, user_text};

use crate::auth::Identity;
use crate::config::AgentConfig;
use crate::llm::{ChatMessage, LlmClient, LlmError, LlmEvent, LlmStream, ToolCall, ToolDefinition};
use crate::mcp::McpManager;
use crate::protocol::{
    AssistantContent, AssistantMessage, IdKind, ItemKind, ItemUpdate, Page, StreamOptions, Thread,
    ThreadItem, ThreadMetadata, ThreadStreamEvent, Timestamp, new_id, text,
};
use crate::store::{Store, StoreError};

/// What the reference stores when a run is cancelled, so the next model turn
/// does not try to continue the abandoned answer.
pub const CANCELLED_MARKER: &str =
    "The user cancelled the stream. Stop responding to the prior request.";

/// How long the end of a run waits for a title still being generated.
const TITLE_WAIT: Duration = Duration::from_secs(15);

/// Where a run's events go: the client's stream. A send fails once the client
/// has gone, which the run treats as the stop button.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<ThreadStreamEvent>,
}

/// The client is no longer listening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

impl EventSink {
    /// A sink and the receiving end of its stream.
    pub fn channel(capacity: usize) -> (EventSink, mpsc::Receiver<ThreadStreamEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (EventSink { tx }, rx)
    }

    /// Sends one event, waiting while the client is slow.
    pub async fn send(&self, event: ThreadStreamEvent) -> Result<(), Disconnected> {
        self.tx.send(event).await.map_err(|_| Disconnected)
    }
}

/// Everything a run needs to know about its request.
#[derive(Debug, Clone)]
pub struct RunInput {
    /// The authenticated user (never from the request body or the model),
    /// with the display claims offered to the system prompt as
    /// `{{user.name}}` and `{{user.email}}`.
    pub identity: Identity,
    /// The thread as loaded before the run (after the user message was stored).
    pub thread: ThreadMetadata,
}

/// The assistant: the model, the prompt and the limits of a run.
pub struct Agent {
    store: Arc<dyn Store>,
    llm: LlmClient,
    /// The tool servers; `None` when none are configured.
    mcp: Option<Arc<McpManager>>,
    system_prompt: String,
    config: AgentConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// How a run ended, for the caller's logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Completed,
    Failed,
    Cancelled,
}

/// The assistant message being streamed.
struct Draft {
    item: ThreadItem,
    text: String,
}

impl Agent {
    /// An agent answering with `llm` under `system_prompt`.
    pub fn new(
        store: Arc<dyn Store>,
        llm: LlmClient,
        mcp: Option<Arc<McpManager>>,
        system_prompt: String,
        config: AgentConfig,
    ) -> Agent {
        Agent {
            store,
            llm,
            mcp,
            system_prompt,
            config,
        }
    }

    /// Runs one turn: `stream_options`, the answer, the title. Never returns
    /// an error: failures become `error` events, and what was produced is kept.
    pub async fn run(
        &self,
        input: RunInput,
        sink: &EventSink,
        cancel: &CancellationToken,
    ) -> RunOutcome {
        let started = Instant::now();
        let mut run = Run {
            agent: self,
            input,
            sink,
            cancel,
            draft: None,
            open_calls: Vec::new(),
            started,
            first_token_seen: false,
        };
        let outcome = run.execute().await;
        if outcome == RunOutcome::Cancelled {
            run.persist_cancellation().await;
        }
        let label = match outcome {
            RunOutcome::Completed => "completed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
        };
        crate::metrics::get().run(label, started.elapsed());
        outcome
    }
}

/// The state of one run in progress.
struct Run<'a> {
    agent: &'a Agent,
    input: RunInput,
    sink: &'a EventSink,
    cancel: &'a CancellationToken,
    draft: Option<Draft>,
    /// Tool calls stored as asked for whose results are not stored yet; a
    /// cancelled run stores a result for each, so history never holds a call
    /// without its result.
    open_calls: Vec<ToolCall>,
    /// For the time-to-first-token metric.
    started: Instant,
    first_token_seen: bool,
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

impl Run<'_> {
    async fn execute(&mut self) -> RunOutcome {
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
        let user = self.input.identity.user_id.clone();
        let thread_id = self.input.thread.id.clone();
        let items = match self
            .agent
            .store
            .load_history(&user, &thread_id, self.agent.config.history_max_items)
            .await
        {
            Ok(items) => items,
            Err(e) => return self.fail_store(e).await,
        };
        let title_task = self.start_title(&items);
        let system_prompt = self.system_prompt();
        let messages = build_messages(
            &system_prompt,
            &items,
            self.agent.config.history_token_budget,
        );

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
    fn system_prompt(&self) -> String {
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
    async fn agent_loop(&mut self, mut messages: Vec<ChatMessage>) -> Result<(), Stop> {
        let tools = match &self.agent.mcp {
            Some(mcp) => mcp.tools_for(&self.input.identity.user_id).await,
            None => Arc::new(Vec::new()),
        };
        let definitions: Vec<ToolDefinition> = tools
            .iter()
            .map(|t| ToolDefinition::new(&t.name, &t.description, t.parameters.clone()))
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
            let results = self.run_tools(&calls).await?;
            messages.extend(results);
        }
        self.out_of_turns().await
    }

    /// Streams one model answer into an assistant message; returns the tool
    /// calls the model asked for (none for a final answer).
    async fn stream_answer(
        &mut self,
        messages: &[ChatMessage],
        tools: &[ToolDefinition],
    ) -> Result<Vec<ToolCall>, Stop> {
        let mut stream = tokio::select! {
            biased;
            _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
            started = self.agent.llm.stream(messages, tools) => match started {
                Ok(stream) => stream,
                Err(e) => return self.fail_llm(e).await.map(|()| Vec::new()),
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
                Some(Err(e)) => return self.fail_llm(e).await.map(|()| Vec::new()),
                None => return self.fail_llm(LlmError::Cut).await.map(|()| Vec::new()),
            }
        }
    }

    /// A final answer: closes the message, or reports an empty one.
    async fn finish_or_empty(&mut self) -> Result<(), Stop> {
        if self.draft.is_none() {
            return self
                .fail_llm(LlmError::Protocol(
                    "the model returned an empty answer".to_owned(),
                ))
                .await;
        }
        self.finish_draft().await
    }

    /// The model kept asking for tools: say so instead of ending in silence.
    async fn out_of_turns(&mut self) -> Result<(), Stop> {
        let turns = self.agent.config.max_turns;
        self.push_text(format!(
            "I stopped after {turns} steps without reaching an answer. Tell me to continue if you want me to go on."
        ))
        .await?;
        self.finish_draft().await
    }

    async fn push_text(&mut self, mut delta: String) -> Result<(), Stop> {
        text::scrub_in_place(&mut delta);
        if !self.first_token_seen {
            self.first_token_seen = true;
            crate::metrics::get()
                .time_to_first_token
                .observe(self.started.elapsed().as_secs_f64());
        }
        if self.draft.is_none() {
            let item = ThreadItem {
                id: new_id(IdKind::Message),
                thread_id: self.input.thread.id.clone(),
                created_at: Timestamp::now(),
                kind: ItemKind::AssistantMessage(AssistantMessage::default()),
            };
            let item_id = item.id.clone();
            self.draft = Some(Draft {
                item: item.clone(),
                text: String::new(),
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

    /// Closes the streamed message: part done, stored, item done.
    async fn finish_draft(&mut self) -> Result<(), Stop> {
        let Some(draft) = self.draft.take() else {
            return Ok(());
        };
        let item = finished_item(draft);
        let ItemKind::AssistantMessage(message) = &item.kind else {
            return Ok(());
        };
        let part = message.content.first().cloned().unwrap_or_default();
        self.emit(ThreadStreamEvent::ItemUpdated {
            item_id: item.id.clone(),
            update: ItemUpdate::ContentPartDone {
                content_index: 0,
                content: part,
            },
        })
        .await?;
        if let Err(e) = self
            .agent
            .store
            .add_item(&self.input.identity.user_id, &item)
            .await
        {
            return self.fail_store(e).await;
        }
        self.emit(ThreadStreamEvent::ItemDone { item }).await
    }

    /// A model failure: keep the partial text, tell the user, end the stream.
    async fn fail_llm(&mut self, error: LlmError) -> Result<(), Stop> {
        tracing::warn!(thread_id = %self.input.thread.id, error = %error, "model call failed");
        if self
            .draft
            .as_ref()
            .is_some_and(|d| !d.text.trim().is_empty())
        {
            self.finish_draft().await?;
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
        self.emit(event).await?;
        Err(Stop::Failed)
    }

    async fn fail_store(&mut self, error: StoreError) -> Result<(), Stop> {
        tracing::error!(thread_id = %self.input.thread.id, error = %error, "store failed during a run");
        self.draft = None;
        self.emit(ThreadStreamEvent::stream_error()).await?;
        Err(Stop::Failed)
    }

    async fn emit(&self, event: ThreadStreamEvent) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        self.sink.send(event).await.map_err(Stop::from)
    }

    /// Starts title generation when this is the first exchange of an untitled thread.
    fn start_title(&self, items: &[ThreadItem]) -> Option<tokio::task::JoinHandle<Option<String>>> {
        if !self.agent.config.title_generation
            || self.input.thread.title.is_some()
            || !self.agent.llm.is_configured()
        {
            return None;
        }
        let mut users = items.iter().filter_map(|item| match &item.kind {
            ItemKind::UserMessage(message) => Some(message),
            _ => None,
        });
        let first = users.next()?;
        if users.next().is_some() {
            return None;
        }
        let text = user_text(first);
        if text.trim().is_empty() {
            return None;
        }
        let llm = self.agent.llm.clone();
        Some(tokio::spawn(async move {
            match title::generate(&llm, &text).await {
                Ok(title) => title,
                Err(e) => {
                    tracing::warn!(error = %e, "title generation failed");
                    None
                }
            }
        }))
    }

    async fn apply_title(&mut self, title: &str) -> Result<(), Stop> {
        let thread = &mut self.input.thread;
        match self
            .agent
            .store
            .set_title_if_unset(&self.input.identity.user_id, &thread.id, title)
            .await
        {
            Ok(true) => {
                thread.title = Some(title.to_owned());
                let thread = Thread::from_metadata(thread, Page::default());
                self.emit(ThreadStreamEvent::ThreadUpdated { thread }).await
            }
            // The user named the thread meanwhile: theirs wins.
            Ok(false) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "could not save the generated title");
                Ok(())
            }
        }
    }

    /// After a cancellation: store what the user saw and the hidden marker.
    async fn persist_cancellation(&mut self) {
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
        let marker = ThreadItem {
            id: new_id(IdKind::SdkHiddenContext),
            thread_id: self.input.thread.id.clone(),
            created_at: Timestamp::now(),
            kind: ItemKind::SdkHiddenContext {
                content: CANCELLED_MARKER.to_owned(),
            },
        };
        if let Err(e) = self.agent.store.add_item(&user, &marker).await {
            tracing::error!(error = %e, "could not store the cancellation marker");
        }
    }
}

/// The draft as a complete assistant message.
fn finished_item(draft: Draft) -> ThreadItem {
    let mut item = draft.item;
    item.kind = ItemKind::AssistantMessage(AssistantMessage {
        content: vec![AssistantContent::text(draft.text)],
    });
    item
}
