//! Waiting on a rare signal (a stop button, a lost lock, a shutdown) beside
//! a busy future without paying for it on every wake-up.
//!
//! A task that streams an answer is woken for every chunk, and
//! `tokio::select!` polls each of its branches at every wake-up. A
//! `CancellationToken`'s wait takes a mutex to read the token and another
//! to refresh its waker each time it is polled: two locks per chunk per
//! signal for nothing. [`Signal`] gives its future a waker of its own and
//! polls the future only after that waker has fired, so until the signal
//! fires a wake-up of its task costs one comparison of wakers and one
//! atomic load: no lock and no atomic write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A future polled only when its own waker fires; see the module doc.
/// After it has completed, it stays pending.
#[must_use = "a signal does nothing unless awaited or polled in a select"]
pub struct Signal<F> {
    /// The future, until it completes.
    future: Option<Pin<Box<F>>>,
    /// Shared with the future's waker.
    flag: Arc<Flag>,
    /// The waker the future is polled with: it sets `flag` and wakes the
    /// task that polls the signal.
    own: Waker,
    /// The task's waker last handed to `flag`, compared at each poll
    /// without a lock: it changes only if the signal moves to another task.
    registered: Option<Waker>,
}

/// What the future's waker reaches: whether it fired since the future was
/// last polled, and the task to wake when it does.
struct Flag {
    woken: AtomicBool,
    task: parking_lot::Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Set before the task is read, and the task is stored before the
        // flag is read (`Signal::poll`): a wake-up is never lost.
        self.woken.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> Signal<F> {
    /// Waits on `future`.
    pub fn new(future: F) -> Signal<F> {
        let flag = Arc::new(Flag {
            // The first poll polls the future.
            woken: AtomicBool::new(true),
            task: parking_lot::Mutex::new(None),
        });
        Signal {
            future: Some(Box::pin(future)),
            own: Waker::from(flag.clone()),
            flag,
            registered: None,
        }
    }
}

impl Signal<WaitForCancellationFutureOwned> {
    /// Waits until `token` is cancelled.
    pub fn cancelled(token: CancellationToken) -> Self {
        Signal::new(token.cancelled_owned())
    }
}

// The future is boxed, so moving the signal moves no pinned value.
impl<F> Unpin for Signal<F> {}

impl<F: Future> Future for Signal<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // Completed before: a signal that fired stays fired for whoever
        // selected on it, and is not polled again.
        let Some(future) = this.future.as_mut() else {
            return Poll::Pending;
        };
        if !this
            .registered
            .as_ref()
            .is_some_and(|task| task.will_wake(cx.waker()))
        {
            *this.flag.task.lock() = Some(cx.waker().clone());
            this.registered = Some(cx.waker().clone());
        }
        if !this.flag.woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Cleared before the poll: a wake-up during or after it sets it again.
        this.flag.woken.store(false, Ordering::Release);
        match future.as_mut().poll(&mut Context::from_waker(&this.own)) {
            Poll::Ready(output) => {
                this.future = None;
                Poll::Ready(output)
            }
            Poll::Pending => Poll::Pending,
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
    async fn a_signal_moved_to_another_task_wakes_that_task() {
        let token = CancellationToken::new();
        let mut signal = Box::pin(Signal::cancelled(token.clone()));
        // Polled once by this task, then awaited by another.
        assert!(futures::poll!(signal.as_mut()).is_pending());
        let waiter = tokio::spawn(async move { signal.as_mut().await });
        tokio::task::yield_now().await;
        token.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the second task was woken")
            .expect("joined");
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
