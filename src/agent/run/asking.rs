//! A tool step's side of the questions its calls' servers ask the user
//! (see `elicitation/waiting.rs` for the whole flow): each call's elicitor hands its
//! questions to the step ([`asker`]); the step shows one at a time as a
//! pending `structured_input` item and parks its stream, then gives the
//! call its answer and the run the answer's stream, or closes the question
//! as skipped when it expires or its call ends without it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::tasks::{TaskState, task};
use super::{Run, Stop};
use crate::elicitation::Form;
use crate::elicitation::Submission;
use crate::elicitation::{Open, Questions, Reply};
use crate::llm::ToolCall;
use crate::mcp::{ElicitationAnswer, ElicitationRequest, Elicitor};
use crate::protocol::{IdKind, InputStatus, ItemKind, Task, ThreadItem, new_id};
use crate::store::StoreError;

/// Questions of one step waiting to be asked; more are answered `cancel`.
const QUEUE: usize = 8;

/// A question from the call at `index` of a step.
pub(super) struct Asked {
    index: usize,
    request: ElicitationRequest,
    reply: oneshot::Sender<ElicitationAnswer>,
}

/// The elicitor of the call at `index`: its questions go to the step
/// through `step`; a step already holding [`QUEUE`] of them, or gone,
/// answers `cancel`.
pub(super) fn asker(index: usize, step: mpsc::Sender<Asked>) -> Elicitor {
    Arc::new(move |request| {
        let step = step.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let asked = Asked {
                index,
                request,
                reply,
            };
            if step.try_send(asked).is_err() {
                return ElicitationAnswer::Cancel;
            }
            answer.await.unwrap_or(ElicitationAnswer::Cancel)
        })
    })
}

/// The channel the calls of one step ask through.
pub(super) fn channel() -> (mpsc::Sender<Asked>, mpsc::Receiver<Asked>) {
    mpsc::channel(QUEUE)
}

/// The questions of one tool step: at most one shown at a time, the others
/// queued. Dropped with the step, it withdraws the one still open.
pub(super) struct Asking {
    questions: Arc<Questions>,
    queue: VecDeque<Asked>,
    open: Option<Shown>,
}

/// The question the user sees now.
struct Shown {
    item: ThreadItem,
    index: usize,
    answer: oneshot::Receiver<Reply>,
    server: oneshot::Sender<ElicitationAnswer>,
    /// `None` once claimed: the answer is on its way.
    deadline: Option<Instant>,
}

/// What became of the open question.
pub(super) enum Settled {
    /// The user answered; the run goes on on the answer's stream.
    Answered(Reply),
    /// Nobody answered in time.
    Expired,
}

impl Asking {
    pub(super) fn new(questions: Arc<Questions>) -> Asking {
        Asking {
            questions,
            queue: VecDeque::new(),
            open: None,
        }
    }

    /// Queues a question; past [`QUEUE`] it is answered `cancel` at once.
    pub(super) fn queue(&mut self, asked: Asked) {
        if self.queue.len() >= QUEUE {
            let _ = asked.reply.send(ElicitationAnswer::Cancel);
            return;
        }
        self.queue.push_back(asked);
    }

    /// The call at `index` asks the user now.
    pub(super) fn asking(&self) -> Option<usize> {
        self.open.as_ref().map(|shown| shown.index)
    }

    /// Waits for the open question's answer or its deadline; forever when
    /// none is open. Cancel-safe: the state lives in `self`.
    pub(super) async fn settled(&mut self) -> Settled {
        let Some(shown) = self.open.as_mut() else {
            return std::future::pending().await;
        };
        let deadline = shown.deadline;
        let expiry = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reply = &mut shown.answer => Settled::Answered(reply.unwrap_or(Reply {
                answer: ElicitationAnswer::Cancel,
                next: None,
            })),
            () = expiry => Settled::Expired,
        }
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        if let Some(shown) = &self.open {
            self.questions.withdraw(&shown.item.id);
        }
    }
}

impl Run<'_> {
    /// Shows the next queued question of a step's calls, with its call's
    /// task saying what it waits for, then parks the stream (`crate::stream`).
    pub(super) async fn ask_next_of(
        &mut self,
        asking: &mut Asking,
        workflow_id: &str,
        calls: &[ToolCall],
        tasks: &mut [Task],
    ) -> Result<(), Stop> {
        if let Some((index, message)) = self.ask_next(asking).await? {
            tasks[index] = task(&calls[index], TaskState::Asking(&message));
            self.task_updated(workflow_id, index, &tasks[index]).await?;
            self.sink.park();
        }
        Ok(())
    }

    /// Shows the next queued question, if none is open: stores and streams
    /// its item and registers it. Returns the asking call's index and the
    /// server's message; the caller then parks the stream.
    async fn ask_next(&mut self, asking: &mut Asking) -> Result<Option<(usize, String)>, Stop> {
        while asking.open.is_none() {
            let Some(asked) = asking.queue.pop_front() else {
                return Ok(None);
            };
            if asked.reply.is_closed() {
                continue; // its call ended meanwhile
            }
            let form = match Form::from_schema(&asked.request.schema) {
                Ok(form) => form,
                Err(e) => {
                    tracing::warn!(server = %asked.request.server, error = %e, "a tool server's question cannot be asked as a form: answered cancel");
                    let _ = asked.reply.send(ElicitationAnswer::Cancel);
                    continue;
                }
            };
            let item = question_item(&self.input.thread.id, &asked.request, &form);
            self.publish(item.clone(), &[]).await?;
            let (reply, answer) = oneshot::channel();
            asking.questions.open(
                item.id.clone(),
                Open {
                    user: self.input.identity.user_id.clone(),
                    thread_id: self.input.thread.id.clone(),
                    form: Arc::new(form),
                    run: self.cancel.clone(),
                    reply,
                },
            );
            tracing::info!(server = %asked.request.server, item_id = %item.id, "a tool server asks the user; waiting for the answer");
            crate::metrics::get().question("asked");
            let message = asked.request.message.clone();
            asking.open = Some(Shown {
                item,
                index: asked.index,
                answer,
                server: asked.reply,
                deadline: Some(Instant::now() + self.agent.config.question_timeout),
            });
            return Ok(Some((asked.index, message)));
        }
        Ok(None)
    }

    /// Acts on what became of the open question: the answer goes to the
    /// server (and the run to the answer's stream); an expired question is
    /// stored as skipped and the server told `cancel`. Returns the index of
    /// the call whose question closed.
    pub(super) async fn settle(
        &mut self,
        asking: &mut Asking,
        settled: Settled,
    ) -> Result<Option<usize>, Stop> {
        if asking.open.is_none() {
            return Ok(None);
        }
        let answer = match settled {
            Settled::Answered(Reply { answer, next }) => {
                if let Some(next) = next {
                    self.sink.resume(next);
                }
                answer
            }
            Settled::Expired => {
                if !self.close_unanswered(asking, "expired").await {
                    return Ok(None);
                }
                tracing::info!(timeout = ?self.agent.config.question_timeout, "nobody answered a tool server's question in time; the call is told");
                ElicitationAnswer::Cancel
            }
        };
        let Some(shown) = asking.open.take() else {
            return Ok(None);
        };
        let _ = shown.server.send(answer);
        Ok(Some(shown.index))
    }
}

impl Run<'_> {
    /// The call whose question is open has ended without its answer (its
    /// server gave up or stopped): the question is closed as skipped, and
    /// the next queued one, if any, is asked.
    pub(super) async fn call_ended_asking(
        &mut self,
        asking: &mut Asking,
        index: usize,
    ) -> Result<(), Stop> {
        if asking.asking() == Some(index) && self.close_unanswered(asking, "abandoned").await {
            tracing::info!("a tool call ended while its question waited; the question is closed");
            asking.open = None;
        }
        Ok(())
    }

    /// Withdraws the open question and stores it as skipped; `false` when
    /// an answer claimed it first (the answer is then on its way, and the
    /// question stays open for it, with no deadline).
    async fn close_unanswered(&mut self, asking: &mut Asking, event: &'static str) -> bool {
        let Some(shown) = asking.open.as_mut() else {
            return false;
        };
        if !asking.questions.withdraw(&shown.item.id) {
            shown.deadline = None;
            return false;
        }
        crate::metrics::get().question(event);
        let mut item = shown.item.clone();
        Submission::skipped().apply(&mut item);
        let user = self.input.identity.user_id.clone();
        match self.agent.store.save_item(&user, &item).await {
            Ok(()) => {}
            // Its thread was deleted meanwhile: nothing left to close.
            Err(StoreError::NotFound(_)) => {
                tracing::info!(item_id = %item.id, "a question's thread was deleted before it closed");
            }
            Err(e) => {
                tracing::error!(error = %e, item_id = %item.id, "could not store an unanswered question as skipped");
            }
        }
        true
    }
}

/// The pending `structured_input` item asking `form`; the server's message
/// leads the first question.
fn question_item(thread_id: &str, request: &ElicitationRequest, form: &Form) -> ThreadItem {
    let mut inputs = form.questions();
    let message = request.message.trim();
    if let Some(first) = inputs.first_mut()
        && !message.is_empty()
    {
        let led = format!("{message}\n\n{}", first.question());
        first.set_question(led);
    }
    ThreadItem::new(
        new_id(IdKind::Message),
        thread_id,
        ItemKind::StructuredInput {
            status: InputStatus::Pending,
            inputs,
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::Question;

    fn item() -> ThreadItem {
        let form = Form::from_schema(&json!({
            "type": "object",
            "properties": {
                "color": {"type": "string", "enum": ["red", "blue"]},
                "note": {"type": "string"}
            },
            "required": ["color"]
        }))
        .expect("form");
        let request = ElicitationRequest {
            server: "s".into(),
            message: "Pick one".into(),
            schema: serde_json::Value::Null,
        };
        question_item("thr_1", &request, &form)
    }

    #[tokio::test]
    async fn a_step_holds_a_bounded_queue_of_questions() {
        let (tx, mut rx) = channel();
        let mut asking = Asking::new(Arc::default());
        let request = ElicitationRequest {
            server: "s".into(),
            message: "?".into(),
            schema: json!({"type": "object", "properties": {}}),
        };
        // The channel itself takes QUEUE; the next is answered at once.
        let ask = asker(0, tx);
        let mut waiting = Vec::new();
        for _ in 0..QUEUE {
            waiting.push(tokio::spawn(ask(request.clone())));
        }
        // Each spawned question needs one turn of this single-threaded
        // runtime to be queued; a thousand turns without all of them queued
        // means one is stuck, and the test fails saying so.
        let mut turns = 0;
        while rx.len() < QUEUE {
            assert!(turns < 1_000, "{} of {QUEUE} questions queued", rx.len());
            turns += 1;
            tokio::task::yield_now().await;
        }
        assert_eq!(ask(request.clone()).await, ElicitationAnswer::Cancel);
        // Queued past QUEUE by the step: answered at once too.
        while let Ok(asked) = rx.try_recv() {
            asking.queue(asked);
        }
        let (reply, answer) = oneshot::channel();
        asking.queue(Asked {
            index: 1,
            request,
            reply,
        });
        assert_eq!(answer.await.ok(), Some(ElicitationAnswer::Cancel));
        // The queued ones are cancelled when the step ends.
        drop(asking);
        for waiter in waiting {
            assert_eq!(waiter.await.ok(), Some(ElicitationAnswer::Cancel));
        }
    }

    #[test]
    fn the_message_leads_the_first_question() {
        let item = item();
        let mut json = serde_json::to_value(&item).expect("json");
        if let Some(object) = json.as_object_mut() {
            object.retain(|key, _| matches!(key.as_str(), "type" | "status" | "inputs"));
        }
        assert_eq!(
            json,
            json!({"type": "structured_input", "status": "pending", "inputs": [
                {"type": "multiple_choice", "id": "color", "question": "Pick one\n\ncolor",
                 "options": [{"value": "red", "label": "red"}, {"value": "blue", "label": "blue"}],
                 "multiple": false},
                {"type": "freeform", "id": "note", "question": "note"}
            ]})
        );
        // With no message, the questions are the form's own.
        let request = ElicitationRequest {
            server: "s".into(),
            message: "  ".into(),
            schema: serde_json::Value::Null,
        };
        let form =
            Form::from_schema(&json!({"properties": {"note": {"type": "string"}}})).expect("form");
        let ItemKind::StructuredInput { inputs, .. } = question_item("thr_1", &request, &form).kind
        else {
            panic!("a structured input");
        };
        assert_eq!(inputs, [Question::freeform("note", "note")]);
    }
}
