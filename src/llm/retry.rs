//! The retry policy of the model's HTTP service: bounded retries of 429, 5xx
//! (but 501) and connection failures, with exponential backoff and jitter,
//! honouring `Retry-After` up to a cap.
//!
//! It replaces async-openai's default policy, which retries three times and
//! waits as long as the server asks. Retries act before a stream starts only;
//! a stream that fails midway is not retried here.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;

/// First backoff wait, doubled on each attempt.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest backoff wait before jitter.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The retry state of one request.
#[derive(Debug, Clone)]
pub(super) struct RetryPolicy {
    remaining: u32,
    attempt: u32,
    max_retry_after: Duration,
}

impl RetryPolicy {
    /// At most `max_retries` retries; a `Retry-After` over `max_retry_after`
    /// is taken as "not soon" and not waited for.
    pub(super) fn new(max_retries: u32, max_retry_after: Duration) -> Self {
        RetryPolicy {
            remaining: max_retries,
            attempt: 0,
            max_retry_after,
        }
    }

    /// How long to wait before retrying after `result`, or `None` when it is
    /// not worth a retry.
    fn delay(&self, result: &Result<reqwest::Response, OpenAIError>) -> Option<Duration> {
        let retryable = match result {
            Ok(response) => {
                let status = response.status();
                status.as_u16() == 429 || (status.is_server_error() && status.as_u16() != 501)
            }
            Err(OpenAIError::Reqwest(e)) => e.is_connect(),
            Err(_) => false,
        };
        if !retryable {
            return None;
        }
        let asked = result
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get(reqwest::header::RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        match asked {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => {
                let base = BACKOFF_START * 2u32.saturating_pow(self.attempt);
                let jitter = rand::random_range(0.5..1.0);
                Some(base.min(BACKOFF_CAP).mul_f64(jitter))
            }
        }
    }
}

impl tower::retry::Policy<HttpRequestFactory, reqwest::Response, OpenAIError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn retry(
        &mut self,
        _request: &mut HttpRequestFactory,
        result: &mut Result<reqwest::Response, OpenAIError>,
    ) -> Option<Self::Future> {
        if self.remaining == 0 {
            return None;
        }
        let delay = self.delay(result)?;
        self.remaining -= 1;
        self.attempt += 1;
        tracing::warn!(
            attempt = self.attempt,
            delay_ms = delay.as_millis() as u64,
            "model service failed; retrying"
        );
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, request: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(request.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<&str>) -> Result<reqwest::Response, OpenAIError> {
        let mut response = http::Response::builder().status(status);
        if let Some(value) = retry_after {
            response = response.header(reqwest::header::RETRY_AFTER, value);
        }
        Ok(reqwest::Response::from(
            response.body(Vec::<u8>::new()).expect("a response"),
        ))
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::new(3, Duration::from_secs(2))
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let policy = policy();
        assert_eq!(
            policy.delay(&answer(429, Some("1.5"))),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            policy.delay(&answer(503, Some(" 2 "))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(policy.delay(&answer(503, Some("0"))), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_over_the_cap_means_no_retry() {
        assert_eq!(policy().delay(&answer(429, Some("3"))), None);
        assert_eq!(policy().delay(&answer(503, Some("120"))), None);
    }

    #[test]
    fn an_unreadable_retry_after_falls_back_to_backoff() {
        // An HTTP date is not parsed: the backoff decides.
        for value in ["Wed, 21 Oct 2026 07:28:00 GMT", "-1", "NaN"] {
            let delay = policy().delay(&answer(429, Some(value))).expect("a retry");
            assert!(
                delay >= BACKOFF_START / 2 && delay < BACKOFF_START,
                "{value}: {delay:?}"
            );
        }
    }

    #[test]
    fn only_rate_limits_and_server_errors_but_501_are_retried() {
        for status in [400, 401, 403, 404, 422, 501] {
            assert_eq!(policy().delay(&answer(status, None)), None, "{status}");
        }
        for status in [429, 500, 502, 503, 504] {
            assert!(policy().delay(&answer(status, None)).is_some(), "{status}");
        }
        let not_http = OpenAIError::InvalidArgument("bad".to_owned());
        assert_eq!(policy().delay(&Err(not_http)), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let mut policy = policy();
        for (attempt, base) in [
            (0, 200),
            (1, 400),
            (2, 800),
            (4, 3200),
            (5, 5000),
            (40, 5000),
        ] {
            policy.attempt = attempt;
            let base = Duration::from_millis(base);
            let delay = policy.delay(&answer(503, None)).expect("a retry");
            assert!(
                delay >= base / 2 && delay < base,
                "attempt {attempt}: {delay:?} not in [{:?}, {base:?})",
                base / 2
            );
        }
    }
}
