//! A tool server's questions to the user (MCP elicitation, form mode): the
//! capability chatkitd declares, the route from a server's
//! `elicitation/create` to the call running on that instance, and the call's
//! clock, which stops while the user is being asked: `call_timeout` bounds
//! the server's work, not the user's thinking (the question's own wait is
//! bounded by whoever answers, the agent).

use std::future::Future;
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ElicitRequestParams, ElicitResult, ElicitationAction,
    ElicitationCapability, FormElicitationCapability,
};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ElicitationAnswer, ElicitationRequest, Elicitor};

/// Longest question text passed on, in bytes.
const MAX_MESSAGE_BYTES: usize = 4096;

/// What chatkitd declares it can do as an MCP client: ask the user
/// through forms (elicitation, form mode; not URLs).
pub(super) fn capabilities() -> ClientCapabilities {
    let mut elicitation = ElicitationCapability::new();
    elicitation.form = Some(FormElicitationCapability::new());
    let mut capabilities = ClientCapabilities::default();
    capabilities.elicitation = Some(elicitation);
    capabilities
}

/// One instance's questions: who answers them during the current call
/// (an instance serves one call at a time) and the call's clock.
#[derive(Default)]
pub struct Asking {
    elicitor: parking_lot::Mutex<Option<Elicitor>>,
    clock: watch::Sender<Clock>,
}

/// Time spent asking during the current call.
#[derive(Debug, Default, Clone, Copy)]
struct Clock {
    /// When the question now open was asked.
    since: Option<Instant>,
    /// Time spent on questions already answered.
    paused: Duration,
}

impl Asking {
    /// Hands a question to the current call's elicitor, with the call's
    /// clock stopped until it is answered; a URL-mode question, or one
    /// outside a call, is declined.
    pub(super) async fn ask(&self, server: &str, request: ElicitRequestParams) -> ElicitResult {
        let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        else {
            tracing::info!(%server, "a question to the user by URL: declined (only forms are asked)");
            return ElicitResult::new(ElicitationAction::Decline);
        };
        let elicitor = self.elicitor.lock().clone();
        let Some(ask) = elicitor else {
            tracing::info!(%server, "a question to the user outside a call: declined");
            return ElicitResult::new(ElicitationAction::Decline);
        };
        let schema = serde_json::to_value(&requested_schema).unwrap_or_default();
        let message = crate::text::cut_bytes_marked(&message, MAX_MESSAGE_BYTES).into_owned();
        let answer = {
            let _stopped = Stopped::start(&self.clock);
            ask(ElicitationRequest {
                server: server.to_owned(),
                message,
                schema,
            })
            .await
        };
        match answer {
            ElicitationAnswer::Accept(content) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(Value::Object(content))
            }
            ElicitationAnswer::Decline => ElicitResult::new(ElicitationAction::Decline),
            ElicitationAnswer::Cancel => ElicitResult::new(ElicitationAction::Cancel),
        }
    }

    /// Runs one call with `elicitor` answering its questions, bounded by
    /// `timeout` of time not spent asking. `None` when the time ran out.
    pub(super) async fn call<T>(
        &self,
        elicitor: Option<Elicitor>,
        timeout: Duration,
        call: impl Future<Output = T>,
    ) -> Option<T> {
        let _asking = AskingGuard::set(self, elicitor);
        self.clock.send_replace(Clock::default());
        let mut clock = self.clock.subscribe();
        let start = Instant::now();
        tokio::pin!(call);
        loop {
            let now = *clock.borrow_and_update();
            if now.since.is_some() {
                // A question is open: only its answer restarts the clock.
                tokio::select! {
                    done = &mut call => return Some(done),
                    _ = clock.changed() => continue,
                }
            }
            let deadline = start + timeout + now.paused;
            if Instant::now() >= deadline {
                return None;
            }
            tokio::select! {
                done = &mut call => return Some(done),
                _ = tokio::time::sleep_until(deadline) => {}
                _ = clock.changed() => {}
            }
        }
    }
}

/// Gives an instance its call's elicitor, and takes it back when the call
/// ends, however it ends.
struct AskingGuard<'a>(&'a Asking);

impl<'a> AskingGuard<'a> {
    fn set(asking: &'a Asking, elicitor: Option<Elicitor>) -> Self {
        *asking.elicitor.lock() = elicitor;
        AskingGuard(asking)
    }
}

impl Drop for AskingGuard<'_> {
    fn drop(&mut self) {
        *self.0.elicitor.lock() = None;
    }
}

/// The clock stopped while a question is open, restarted however the
/// question ends (answered, or its future dropped).
struct Stopped<'a>(&'a watch::Sender<Clock>);

impl<'a> Stopped<'a> {
    fn start(clock: &'a watch::Sender<Clock>) -> Self {
        clock.send_modify(|c| c.since = Some(Instant::now()));
        Stopped(clock)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|c| {
            if let Some(since) = c.since.take() {
                c.paused += since.elapsed();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn form(message: &str) -> ElicitRequestParams {
        serde_json::from_value(serde_json::json!({
            "mode": "form",
            "message": message,
            "requestedSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
        }))
        .expect("a form request")
    }

    #[tokio::test]
    async fn the_clock_stops_while_the_user_is_asked() {
        let asking = Arc::new(Asking::default());
        let elicitor: Elicitor = Arc::new(|_request| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                ElicitationAnswer::Decline
            })
        });
        let server = asking.clone();
        // 150 ms of work, a question answered in 600 ms, 150 ms of work:
        // within a 400 ms timeout.
        let work = async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let answer = server.ask("s", form("ok?")).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
            answer.action
        };
        let done = asking
            .call(Some(elicitor), Duration::from_millis(400), work)
            .await;
        assert_eq!(done, Some(ElicitationAction::Decline));

        // Without the question's pause the same work runs out of time.
        let slow = async {
            tokio::time::sleep(Duration::from_millis(900)).await;
        };
        assert_eq!(
            asking.call(None, Duration::from_millis(400), slow).await,
            None
        );
    }

    #[tokio::test]
    async fn questions_outside_a_call_are_declined() {
        let asking = Asking::default();
        assert_eq!(
            asking.ask("s", form("ok?")).await.action,
            ElicitationAction::Decline
        );
    }
}
