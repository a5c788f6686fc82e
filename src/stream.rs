//! Where a run's events go: the client's stream, with a write timeout so a
//! reader that stalls cannot pin a run, and, for a run that waits on the
//! user mid-step (a tool server's question), the hand-over of the run from
//! the stream that asked to the stream of the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::protocol::ThreadStreamEvent;

/// Where a run's events go: the client's stream. A send fails once the client
/// has gone, which the run treats as the stop button; a client that does not
/// take an event within the write timeout is treated the same way, so a
/// reader that stalls cannot pin the run (its thread lock, run slot and
/// connections) for longer than that.
///
/// A run waiting on the user between two streams is *parked*: its stream has
/// ended (see [`EventSink::park`]), its events are dropped (what matters is
/// stored), and the answer's stream takes over ([`EventSink::resume`]).
#[derive(Debug, Clone)]
pub struct EventSink {
    /// The stream the events go to; `None` while parked. Shared by the
    /// sink's clones, so they all follow a hand-over.
    target: Arc<parking_lot::Mutex<Option<Target>>>,
    write_timeout: Duration,
}

/// One client stream.
#[derive(Debug, Clone)]
struct Target {
    tx: mpsc::Sender<ThreadStreamEvent>,
    /// Set once a send timed out: the client is gone for good, and every
    /// later send fails at once instead of waiting out the timeout again.
    /// Read at every event, so a flag rather than the watch's lock.
    stalled_now: Arc<AtomicBool>,
    /// The same, for whoever holds the client's connection (a
    /// [`StallSignal`]).
    stalled: Arc<watch::Sender<bool>>,
    /// Set when the run leaves this stream for a later one: its end is then
    /// no longer the client leaving (see [`CancelOnDrop`]).
    handed_over: Arc<AtomicBool>,
}

impl Target {
    fn new(capacity: usize) -> (Target, mpsc::Receiver<ThreadStreamEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        let target = Target {
            tx,
            stalled_now: Arc::new(AtomicBool::new(false)),
            stalled: Arc::new(watch::Sender::new(false)),
            handed_over: Arc::new(AtomicBool::new(false)),
        };
        (target, rx)
    }
}

/// Tells whoever holds the client's connection that the client stopped
/// taking events (see [`EventSink::stall_signal`]).
#[derive(Debug, Clone)]
pub struct StallSignal(watch::Receiver<bool>);

impl StallSignal {
    /// Waits until the client stalls past the write timeout (`true`) or
    /// every sink of the stream is gone without that (`false`).
    pub async fn stalled(mut self) -> bool {
        self.0.wait_for(|stalled| *stalled).await.is_ok()
    }
}

/// What became of an event offered to a stream ([`EventSink::offer`]).
#[derive(Debug)]
pub enum Offer {
    /// In the stream's buffer (or dropped while the run is parked).
    Taken,
    /// The client is no longer listening.
    Gone,
    /// The buffer is full: the event, to send with a wait (boxed: the
    /// rare case carries it, the usual ones stay small).
    Full(Box<ThreadStreamEvent>),
}

/// The client is no longer listening (it left, or stopped reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// Cancels a run when its client's stream is dropped (the client went
/// away), unless the run has moved on to a later stream.
#[derive(Debug)]
pub struct CancelOnDrop {
    run: CancellationToken,
    handed_over: Arc<AtomicBool>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.handed_over.load(Ordering::Acquire) {
            self.run.cancel();
        }
    }
}

/// A new stream for a parked run: the answer's. Events can be queued on it
/// before the run takes it over.
#[derive(Debug)]
pub struct NextStream {
    target: Target,
}

impl NextStream {
    /// A stream of `capacity` buffered events for the run cancelled by
    /// `run`, with its receiving end, its stall signal and the guard that
    /// cancels the run if the receiver is dropped before the run ends.
    pub fn channel(
        capacity: usize,
        run: CancellationToken,
    ) -> (
        NextStream,
        mpsc::Receiver<ThreadStreamEvent>,
        StallSignal,
        CancelOnDrop,
    ) {
        let (target, rx) = Target::new(capacity);
        let stall = StallSignal(target.stalled.subscribe());
        let guard = CancelOnDrop {
            run,
            handed_over: target.handed_over.clone(),
        };
        (NextStream { target }, rx, stall, guard)
    }

    /// Queues an event ahead of the run's own; fails when the buffer is full
    /// or the client has gone.
    pub fn try_send(&self, event: ThreadStreamEvent) -> Result<(), Disconnected> {
        self.target.tx.try_send(event).map_err(|_| Disconnected)
    }
}

impl EventSink {
    /// A sink and the receiving end of its stream, which must take each
    /// event within `write_timeout` once the `capacity` buffered ones are full.
    pub fn channel(
        capacity: usize,
        write_timeout: Duration,
    ) -> (EventSink, mpsc::Receiver<ThreadStreamEvent>) {
        let (target, rx) = Target::new(capacity);
        let sink = EventSink {
            target: Arc::new(parking_lot::Mutex::new(Some(target))),
            write_timeout,
        };
        (sink, rx)
    }

    /// The guard a stream's holder keeps: dropping it cancels the run `run`
    /// unless the run has parked and left this stream by then.
    pub fn cancel_on_drop(&self, run: CancellationToken) -> CancelOnDrop {
        let handed_over = self
            .current()
            .map_or_else(|| Arc::new(AtomicBool::new(true)), |t| t.handed_over);
        CancelOnDrop { run, handed_over }
    }

    /// A signal that fires when a send times out. The run then ends as if
    /// the client had left, but a connection can outlive its stream (an
    /// HTTP/2 client that grants no flow-control window holds the last
    /// event forever): its holder closes it on this signal.
    pub fn stall_signal(&self) -> StallSignal {
        match self.current() {
            Some(target) => StallSignal(target.stalled.subscribe()),
            // Parked: there is no stream to stall.
            None => StallSignal(watch::Sender::new(false).subscribe()),
        }
    }

    /// Ends the current stream without cancelling the run: the run waits on
    /// the user, and its events are dropped until [`EventSink::resume`].
    pub fn park(&self) {
        let target = self.target.lock().take();
        if let Some(target) = target {
            target.handed_over.store(true, Ordering::Release);
        }
    }

    /// Sends the run's next events to `next`.
    pub fn resume(&self, next: NextStream) {
        *self.target.lock() = Some(next.target);
    }

    fn current(&self) -> Option<Target> {
        self.target.lock().clone()
    }

    /// Hands one event to the stream if its buffer has room, without
    /// waiting and without arming a timer: [`Offer::Full`] gives it back for
    /// [`EventSink::send`]. While the run is parked the event is dropped.
    pub fn offer(&self, event: ThreadStreamEvent) -> Offer {
        let target = self.target.lock();
        let Some(target) = target.as_ref() else {
            return Offer::Taken;
        };
        if target.stalled_now.load(Ordering::Acquire) {
            return Offer::Gone;
        }
        match target.tx.try_send(event) {
            Ok(()) => Offer::Taken,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
            Err(mpsc::error::TrySendError::Full(event)) => Offer::Full(Box::new(event)),
        }
    }

    /// Sends one event if the buffer has room, without waiting.
    pub fn try_send(&self, event: ThreadStreamEvent) -> Result<(), Disconnected> {
        match self.offer(event) {
            Offer::Taken => Ok(()),
            Offer::Gone | Offer::Full(_) => Err(Disconnected),
        }
    }

    /// Sends one event, waiting while the client is slow, up to the write timeout.
    pub async fn send(&self, event: ThreadStreamEvent) -> Result<(), Disconnected> {
        self.send_within(event, self.write_timeout).await
    }

    /// Sends one event, waiting at most `limit` (and never longer than the
    /// write timeout): for courtesy notices that must not delay a shutdown.
    /// While the run is parked the event is dropped.
    pub async fn send_within(
        &self,
        event: ThreadStreamEvent,
        limit: Duration,
    ) -> Result<(), Disconnected> {
        // The usual case, a client keeping up: no timer to arm.
        let event = match self.offer(event) {
            Offer::Taken => return Ok(()),
            Offer::Gone => return Err(Disconnected),
            Offer::Full(event) => *event,
        };
        let Some(target) = self.current() else {
            return Ok(());
        };
        match tokio::time::timeout(limit.min(self.write_timeout), target.tx.send(event)).await {
            Ok(sent) => sent.map_err(|_| Disconnected),
            Err(_) => {
                target.stalled_now.store(true, Ordering::Release);
                target.stalled.send_replace(true);
                tracing::info!(
                    timeout = ?limit.min(self.write_timeout),
                    "the client did not take an event in time; treating it as gone"
                );
                Err(Disconnected)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_parked_run_moves_to_the_next_stream_and_the_first_ends_uncancelled() {
        let (sink, mut first) = EventSink::channel(4, Duration::from_secs(5));
        let run = CancellationToken::new();
        let guard = sink.cancel_on_drop(run.clone());
        sink.send(ThreadStreamEvent::custom_error("one", false))
            .await
            .expect("sent");
        sink.park();
        assert!(first.recv().await.is_some());
        assert!(first.recv().await.is_none(), "the first stream ended");
        drop(guard);
        assert!(
            !run.is_cancelled(),
            "ending the first stream is not a cancel"
        );
        // Parked: dropped, not an error.
        sink.send(ThreadStreamEvent::custom_error("lost", false))
            .await
            .expect("dropped");

        let (next, mut second, _stall, guard) = NextStream::channel(4, run.clone());
        next.try_send(ThreadStreamEvent::custom_error("first", false))
            .expect("queued");
        sink.resume(next);
        sink.send(ThreadStreamEvent::custom_error("two", false))
            .await
            .expect("sent");
        assert!(second.recv().await.is_some());
        assert!(second.recv().await.is_some());
        drop(second);
        drop(guard);
        assert!(
            run.is_cancelled(),
            "the second stream's client leaving cancels"
        );
    }
}
