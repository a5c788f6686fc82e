//! The boundary of a spawned run: [`catch_panics`] turns a panic that
//! escaped the run into a logged error and an `error` event, after
//! everything the run held (its thread lock, its run slot) is released.
//!
//! The agent already catches panics inside a run and keeps its partial
//! answer; this catches the rest (the first events, the cancellation
//! bookkeeping), so that no panic ends a stream silently or keeps a thread
//! locked. It knows nothing of what the run does.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

use crate::agent::{PANIC_MESSAGE, panic_message};
use crate::protocol::ThreadStreamEvent;
use crate::stream::EventSink;

/// How long the `error` event after a panic waits for a slow client; the
/// task must end even if nobody reads.
const PANIC_EVENT_WAIT: Duration = Duration::from_secs(5);

/// Runs `run` to its end. If it panics, the run (and all it owns) is dropped
/// first, then the panic is logged and an `error` event goes to `sink` if
/// the client still listens. `sink` must be a clone of the run's own, so
/// the stream stays open for that event.
pub(super) async fn catch_panics(run: impl Future<Output = ()>, sink: EventSink) {
    // Unwind safety: nothing the run touched is read after a panic; its
    // state is dropped whole when this statement ends.
    let caught = AssertUnwindSafe(run).catch_unwind().await;
    let Err(panic) = caught else {
        return;
    };
    tracing::error!(panic = %panic_message(panic.as_ref()), "a run panicked outside the agent; its stream ends with an error");
    let event = ThreadStreamEvent::custom_error(PANIC_MESSAGE, true);
    let _ = tokio::time::timeout(PANIC_EVENT_WAIT, sink.send(event)).await;
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::limits::RunSlots;

    #[tokio::test]
    async fn a_panicking_run_releases_its_slot_and_ends_with_an_error_event() {
        let slots = RunSlots::new(1, 0);
        let slot = slots.try_acquire("u").expect("a free slot");
        let (sink, mut events) = EventSink::channel(4, std::time::Duration::from_secs(30));
        let run_sink = sink.clone();
        let run = async move {
            let _slot = slot;
            run_sink
                .send(ThreadStreamEvent::stream_error())
                .await
                .expect("the client listens");
            tokio::task::yield_now().await;
            panic!("a defect");
        };
        // Spawned like a real run: the panic must not reach the runtime.
        let task = tokio::spawn(catch_panics(run, sink));
        task.await.expect("the panic was caught at the boundary");

        assert_eq!(events.recv().await, Some(ThreadStreamEvent::stream_error()));
        assert_eq!(
            events.recv().await,
            Some(ThreadStreamEvent::custom_error(PANIC_MESSAGE, true))
        );
        assert_eq!(events.recv().await, None, "the stream ends after it");
        assert!(slots.try_acquire("u").is_ok(), "the slot was released");
    }

    #[tokio::test]
    async fn a_run_that_ends_normally_adds_nothing() {
        let (sink, mut events) = EventSink::channel(4, std::time::Duration::from_secs(30));
        catch_panics(async {}, sink).await;
        assert_eq!(events.recv().await, None);
    }

    #[tokio::test]
    async fn a_panic_after_the_client_left_is_only_logged() {
        let (sink, events) = EventSink::channel(1, std::time::Duration::from_secs(30));
        drop(events);
        let run = async { panic!("{}", String::from("with a formatted message")) };
        tokio::time::timeout(Duration::from_secs(1), catch_panics(run, sink))
            .await
            .expect("no wait for a client that is gone");
    }
}
