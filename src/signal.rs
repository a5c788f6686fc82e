//! Waiting on a rare signal (a stop button, a lost lock, a shutdown) beside
//! a busy future without paying for it on every wake-up.
//!
//! A task that streams an answer is woken for every chunk, and
//! `tokio::select!` polls each of its branches at every wake-up. A
//! `CancellationToken`'s wait takes a mutex to read the token and another
//! to refresh its waker each time it is polled: two locks per chunk per
//! signal for nothing. [`Signal`] polls its future only when that future's
//! own waker has fired (the way a set of futures polls only those woken),
//! so a signal costs one atomic check per wake-up until it fires.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A future polled only when its own waker fires; see the module doc.
/// After it has completed, it stays pending.
#[must_use = "a signal does nothing unless awaited or polled in a select"]
pub struct Signal<F> {
    /// Holds the one future; a set of futures wakes its holder's task but
    /// polls a future only after that future asked to be.
    future: FuturesUnordered<F>,
}

impl<F: Future> Signal<F> {
    /// Waits on `future`.
    pub fn new(future: F) -> Signal<F> {
        let set = FuturesUnordered::new();
        set.push(future);
        Signal { future: set }
    }
}

impl Signal<WaitForCancellationFutureOwned> {
    /// Waits until `token` is cancelled.
    pub fn cancelled(token: CancellationToken) -> Self {
        Signal::new(token.cancelled_owned())
    }
}

impl<F: Future> Future for Signal<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.future.poll_next_unpin(cx) {
            Poll::Ready(Some(output)) => Poll::Ready(output),
            // Completed before: a signal that fired stays fired for whoever
            // selected on it, and is not polled again.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A future that counts its polls and completes once `token` is cancelled.
    fn counted(token: CancellationToken, polls: Arc<AtomicUsize>) -> impl Future<Output = ()> {
        let mut wait = Box::pin(token.cancelled_owned());
        std::future::poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            wait.as_mut().poll(cx)
        })
    }

    #[tokio::test]
    async fn a_signal_is_polled_when_it_wakes_not_when_its_neighbour_does() {
        let token = CancellationToken::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let mut signal = Box::pin(Signal::new(counted(token.clone(), polls.clone())));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
        let producer = tokio::spawn(async move {
            for i in 0..100 {
                tx.send(i).await.expect("sent");
                tokio::task::yield_now().await;
            }
        });
        let mut received = 0;
        while received < 100 {
            tokio::select! {
                biased;
                () = signal.as_mut() => panic!("not cancelled yet"),
                Some(_) = rx.recv() => received += 1,
            }
        }
        producer.await.expect("producer");
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, to start");
        token.cancel();
        signal.as_mut().await;
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_fired_signal_stays_pending_after_it_completed() {
        let token = CancellationToken::new();
        token.cancel();
        let mut signal = Box::pin(Signal::cancelled(token));
        signal.as_mut().await;
        let again = futures::poll!(signal.as_mut());
        assert!(again.is_pending());
    }
}
