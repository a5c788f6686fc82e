//! HTTP errors: one JSON shape, `{"error":{"code","message"}}`, with the
//! status that says what went wrong. Messages never carry internals; those are
//! logged.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::AuthError;
use crate::chatkit::ChatKitError;
use crate::protocol::RequestError;

/// An error answered before any stream started.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Extra headers: `WWW-Authenticate` with a 401, `Retry-After` with a 429.
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// 400: the request is malformed or invalid.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 413: the body is over the configured limit.
    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 408: the body did not arrive within the configured time.
    pub fn body_timeout(limit: std::time::Duration) -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                limit.as_secs_f64()
            ),
        )
    }

    /// 401: missing or bad credentials, with the RFC 6750 challenge.
    pub fn unauthorized(message: impl Into<String>, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            r#"Bearer realm="chatkitd", error="invalid_token""#
        } else {
            r#"Bearer realm="chatkitd""#
        };
        ApiError {
            headers: vec![(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            )],
            ..ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    /// 429: too many requests; try again after `wait`.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            headers: vec![(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string())
                    .unwrap_or(HeaderValue::from_static("1")),
            )],
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; try again in {seconds}s"),
            )
        }
    }

    /// 429 with `Retry-After: 1`: the replica is doing as much of this as
    /// it allows at once.
    pub fn busy(message: impl Into<String>) -> Self {
        ApiError {
            headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", message)
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => ApiError::unauthorized(error.to_string(), false),
            AuthError::Malformed(_) | AuthError::Rejected(_) => {
                ApiError::unauthorized(error.to_string(), true)
            }
            AuthError::KeysUnavailable(cause) => {
                tracing::error!(%cause, "cannot verify tokens");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "auth_unavailable",
                    "tokens cannot be verified right now; try again shortly",
                )
            }
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        ApiError::bad_request(error.to_string())
    }
}

impl From<ChatKitError> for ApiError {
    fn from(error: ChatKitError) -> Self {
        match error {
            ChatKitError::BadRequest(message) => ApiError::bad_request(message),
            ChatKitError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            ChatKitError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
            ChatKitError::TooManyRuns(message) => ApiError {
                headers: vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_runs", message)
            },
            ChatKitError::NotImplemented(message) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", message)
            }
            ChatKitError::TooLarge(message) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            ChatKitError::Forbidden(message) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            ChatKitError::Unauthorized(message) => ApiError::unauthorized(message, false),
            ChatKitError::ActionFailed(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "action_failed", message)
            }
            ChatKitError::Upstream(message) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "upstream_failed", message)
            }
            ChatKitError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to handle the request",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}}).to_string();
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
