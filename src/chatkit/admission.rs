//! Admission: the one way a request starts a run. A run needs its thread
//! (the caller's, accepting messages; or a new one), no question of a tool
//! server waiting in it, one of the user's run slots, and the thread's run
//! lock, taken in that order, so a refusal comes before anything is waited
//! for or stored. [`ChatKit::admit`] takes them all and returns them as one
//! [`Admitted`], which releases all of it when dropped.

use tokio_util::sync::CancellationToken;

use super::{ChatKit, ChatKitError};
use crate::auth::Identity;
use crate::limits::{RunSlot, SlotRefused};
use crate::protocol::{ThreadMetadata, ThreadStatus};
use crate::store::RunLock;

/// The thread a request wants to run on.
pub(super) enum Door<'a> {
    /// A thread about to be created: nobody knows its id yet, so its lock
    /// is free and no question can wait in it; the lock is taken before the
    /// id is revealed to the client.
    New(ThreadMetadata),
    /// A thread of the caller's, which must accept messages. Its owner is
    /// checked before the lock is waited for: a request for someone else's
    /// thread is not found at once, without queueing on that thread's lock
    /// or learning that it is busy.
    Existing(&'a str),
}

/// A run admitted: its thread as loaded, and what it holds until it ends.
pub(super) struct Admitted {
    thread: ThreadMetadata,
    held: Held,
}

/// What an admitted run holds: the thread's run lock and a run slot of
/// its user's, released together when dropped.
pub(super) struct Held {
    // Field order is drop order: the slot goes back, then the lock.
    _slot: RunSlot,
    lock: RunLock,
}

impl Held {
    /// Fires when another replica took the thread's lock: the run must stop.
    pub(super) fn lost(&self) -> CancellationToken {
        self.lock.lost()
    }
}

impl Admitted {
    /// The thread, as loaded (or as it is about to be created).
    pub(super) fn thread(&self) -> &ThreadMetadata {
        &self.thread
    }

    /// Replaces the thread with the one read again under the lock.
    pub(super) fn refresh(&mut self, thread: ThreadMetadata) {
        self.thread = thread;
    }

    /// The thread, and what the run holds.
    pub(super) fn into_parts(self) -> (ThreadMetadata, Held) {
        (self.thread, self.held)
    }
}

impl ChatKit {
    /// Admits a run on `door`'s thread, or refuses it: not found, not
    /// accepting messages, a question waiting in it, no run slot, or busy
    /// beyond the lock timeout.
    pub(super) async fn admit(
        &self,
        ctx: &Identity,
        door: Door<'_>,
    ) -> Result<Admitted, ChatKitError> {
        let (thread, existing) = match door {
            Door::New(thread) => (thread, false),
            Door::Existing(thread_id) => (self.open_thread(ctx, thread_id).await?, true),
        };
        let slot = self.run_slot(ctx)?;
        if existing {
            self.no_open_question(ctx, &thread.id)?;
        }
        let lock = self.store.lock_thread(&thread.id).await?;
        Ok(Admitted {
            thread,
            held: Held { _slot: slot, lock },
        })
    }

    /// One of the user's answer slots, or a refusal before anything is stored.
    fn run_slot(&self, ctx: &Identity) -> Result<RunSlot, ChatKitError> {
        self.slots
            .try_acquire(&ctx.user_id)
            .map_err(|refused| match refused {
                SlotRefused::User => ChatKitError::TooManyRuns(
                    "you already have as many answers in progress as allowed; wait for one to finish"
                        .to_owned(),
                ),
                SlotRefused::Replica => ChatKitError::TooManyRuns(
                    "the server is answering as many conversations as it allows at once; try again shortly"
                        .to_owned(),
                ),
            })
    }

    /// Refuses a new run on a thread whose run waits for the user's answer
    /// to a tool server's question here: it holds the thread until answered.
    fn no_open_question(&self, ctx: &Identity, thread_id: &str) -> Result<(), ChatKitError> {
        if self.questions.waits_in(&ctx.user_id, thread_id) {
            return Err(ChatKitError::Conflict(format!(
                "a tool is waiting for your answer to its question in thread {thread_id}: answer or skip it first"
            )));
        }
        Ok(())
    }

    /// Loads a thread that accepts new runs.
    async fn open_thread(
        &self,
        ctx: &Identity,
        thread_id: &str,
    ) -> Result<ThreadMetadata, ChatKitError> {
        let thread = self.store.load_thread(&ctx.user_id, thread_id).await?;
        if !thread.takes_messages() {
            return Err(not_open(&thread));
        }
        Ok(thread)
    }
}

/// The refusal of a run on a locked or closed thread, with its reason.
pub(super) fn not_open(thread: &ThreadMetadata) -> ChatKitError {
    let reason = match &thread.status {
        ThreadStatus::Locked { reason } | ThreadStatus::Closed { reason } => reason.as_deref(),
        ThreadStatus::Active => None,
    };
    ChatKitError::Conflict(format!(
        "thread {} does not accept messages{}",
        thread.id,
        reason.map(|r| format!(": {r}")).unwrap_or_default()
    ))
}
