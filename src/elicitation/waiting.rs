//! A tool server's question to the user mid-call (MCP elicitation), asked
//! as a ChatKit `structured_input` item, the way the protocol asks any
//! question (section 4.4):
//!
//! 1. The server's `elicitation/create` reaches the call's elicitor, which
//!    hands it to the run's tool step (`agent/run/asking.rs`).
//! 2. The step stores and streams a pending `structured_input` item (the
//!    requested schema read by [`Form`]), registers the question in
//!    [`Questions`] and *parks*: the stream ends, the call keeps its instance
//!    and the run keeps the thread's lock and the user's run slot.
//! 3. `threads.add_structured_input` (the dispatcher) checks the answer
//!    against the schema, claims the question, stores the answered item and
//!    hands the run the answer with its own new stream: the call gets its
//!    content (or `decline` for a skip), and the rest of the run streams to
//!    the client that answered.
//!
//! A question not answered within `[agent] question_timeout` is stored as
//! skipped and the call told `cancel`; the run then goes on unseen and
//! stores what it does. A question lives in the process whose run asked it:
//! after a restart, or on another replica, nobody waits for it (the
//! dispatcher says so).
//!
//! Here: [`Questions`], the questions waiting in this process, where a run
//! registers each and an answer claims it. The step's side is `agent/run/asking.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Answer;
use super::Form;
use crate::mcp::ElicitationAnswer;
use crate::stream::NextStream;

/// The questions tool servers are asking users now, in this process, by
/// the id of their `structured_input` item.
#[derive(Debug, Default)]
pub struct Questions {
    open: parking_lot::Mutex<HashMap<String, Open>>,
    /// Questions answered lately, so a second answer (a double click, two
    /// tabs) is told it came too late rather than taken for one nobody
    /// waits for; kept [`ANSWERED_KEPT`].
    answered: parking_lot::Mutex<HashMap<String, Answered>>,
}

/// How long an answered question is remembered as answered.
const ANSWERED_KEPT: Duration = Duration::from_secs(600);

/// Whose question was answered, and when.
#[derive(Debug)]
struct Answered {
    user: String,
    thread_id: String,
    at: Instant,
}

/// A question waiting for its answer.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) user: String,
    pub(crate) thread_id: String,
    pub(crate) form: Arc<Form>,
    /// The run's cancellation: the answer's stream cancels the run if its
    /// client leaves.
    pub(crate) run: CancellationToken,
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// The user's answer, and the stream the run goes on with.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) answer: ElicitationAnswer,
    pub(crate) next: Option<NextStream>,
}

/// A question taken out of [`Questions`] to be answered: nobody else can
/// answer it, and it can no longer time out.
#[derive(Debug)]
pub struct Claimed {
    run: CancellationToken,
    reply: oneshot::Sender<Reply>,
}

impl Claimed {
    /// The waiting run's cancellation, for the guard of its next stream.
    pub fn run(&self) -> CancellationToken {
        self.run.clone()
    }

    /// Gives the run its answer and the stream to go on with. `false` when
    /// the run is gone meanwhile.
    pub fn answer(self, answer: Answer, next: NextStream) -> bool {
        let event = match answer.0 {
            ElicitationAnswer::Accept(_) => "answered",
            _ => "skipped",
        };
        crate::metrics::get().question(event);
        self.reply
            .send(Reply {
                answer: answer.0,
                next: Some(next),
            })
            .is_ok()
    }

    /// Tells the run no answer will come (the answer could not be stored):
    /// its call is told `cancel`, and the run goes on unseen.
    pub fn abandon(self) {
        let _ = self.reply.send(Reply {
            answer: ElicitationAnswer::Cancel,
            next: None,
        });
    }
}

impl Questions {
    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Open>> {
        self.open.lock()
    }

    /// Whether a question in `user`'s `thread_id` waits for its answer here.
    pub fn waits_in(&self, user: &str, thread_id: &str) -> bool {
        self.lock()
            .values()
            .any(|open| open.user == user && open.thread_id == thread_id)
    }

    /// The form of `user`'s question `item_id`, if it waits here.
    pub fn form(&self, user: &str, thread_id: &str, item_id: &str) -> Option<Arc<Form>> {
        self.lock()
            .get(item_id)
            .filter(|open| open.user == user && open.thread_id == thread_id)
            .map(|open| open.form.clone())
    }

    /// Takes `user`'s question `item_id` to answer it, if it still waits.
    /// Only the first of several answers gets it; the others then find it
    /// [answered](Questions::was_answered).
    pub fn claim(&self, user: &str, thread_id: &str, item_id: &str) -> Option<Claimed> {
        let mut open = self.lock();
        let mine = open
            .get(item_id)
            .is_some_and(|o| o.user == user && o.thread_id == thread_id);
        if !mine {
            return None;
        }
        let taken = open.remove(item_id)?;
        let mut answered = self.answered.lock();
        let now = Instant::now();
        answered.retain(|_, a| now.duration_since(a.at) < ANSWERED_KEPT);
        answered.insert(
            item_id.to_owned(),
            Answered {
                user: taken.user,
                thread_id: taken.thread_id,
                at: now,
            },
        );
        Some(Claimed {
            run: taken.run,
            reply: taken.reply,
        })
    }

    /// Whether `user`'s question `item_id` was claimed by an answer here
    /// lately (within ten minutes).
    pub fn was_answered(&self, user: &str, thread_id: &str, item_id: &str) -> bool {
        self.answered
            .lock()
            .get(item_id)
            .is_some_and(|a| a.user == user && a.thread_id == thread_id)
    }

    /// Ends the questions of `user`'s deleted `thread_id`: their calls are
    /// told `cancel` at once rather than holding their instances, the
    /// thread's lock and the user's run slot until they expire.
    pub fn abandon_thread(&self, user: &str, thread_id: &str) {
        let abandoned: Vec<Open> = {
            let mut open = self.lock();
            let ids: Vec<String> = open
                .iter()
                .filter(|(_, o)| o.user == user && o.thread_id == thread_id)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| open.remove(id)).collect()
        };
        for question in abandoned {
            crate::metrics::get().question("abandoned");
            let _ = question.reply.send(Reply {
                answer: ElicitationAnswer::Cancel,
                next: None,
            });
        }
    }

    /// Registers a question shown as item `item_id`.
    pub(crate) fn open(&self, item_id: String, open: Open) {
        self.lock().insert(item_id, open);
    }

    /// Removes a question nobody answered; `false` if it was claimed first.
    pub(crate) fn withdraw(&self, item_id: &str) -> bool {
        self.lock().remove(item_id).is_some()
    }
}
