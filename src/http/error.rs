//! HTTP errors: one JSON shape, `{"error":{"code","message"}}`, with the
//! status that says what went wrong. Messages never carry internals (a
//! library's words or type names); those are logged at debug. Errors the
//! framework answers by itself (a path or query it cannot read, an unknown
//! route, a method a route does not take) are turned into the same shape by
//! [`json_errors`], so every error the daemon answers is JSON.

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
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

    /// 404 for a path no route serves.
    pub(super) fn unknown_route() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "there is no endpoint at this path",
        )
    }

    /// A body `Request::parse` refused: a body that is not JSON at all gets
    /// a fixed message with the position (serde_json's own words only go to
    /// the log); any other refusal is the protocol's own message, with the
    /// serde type names in it put in plain words.
    pub(super) fn unparsed(error: RequestError, body: &[u8]) -> Self {
        if let RequestError::InvalidJson(detail) = &error {
            tracing::debug!(%detail, "the request body is not valid JSON");
            // serde_json's own limit, met before the syntax is read to its end.
            if detail.starts_with("recursion limit exceeded") {
                return ApiError::bad_request(
                    "the request body nests JSON more than 128 levels deep",
                );
            }
            if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                return ApiError::bad_request(not_json(&syntax));
            }
        }
        ApiError::bad_request(plain_serde(&error.to_string()))
    }

    /// The JSON error answered instead of a framework's own (plain text or
    /// empty) answer with `status`.
    fn framework(status: StatusCode, method: &Method) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => (
                "invalid_request",
                "the request's path or query string cannot be read (each part must be UTF-8 once percent-decoded)".to_owned(),
            ),
            StatusCode::NOT_FOUND => return ApiError::unknown_route(),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                match method.as_str().len() {
                    ..=16 => format!("this endpoint does not take {method} requests (see `Allow`)"),
                    _ => "this endpoint does not take this method (see `Allow`)".to_owned(),
                },
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "the request body is larger than this endpoint takes".to_owned(),
            ),
            StatusCode::REQUEST_TIMEOUT => (
                "request_timeout",
                "the request did not arrive in time".to_owned(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "the request body's content type is not one this endpoint takes".to_owned(),
            ),
            StatusCode::TOO_MANY_REQUESTS => (
                "rate_limited",
                "too many requests; try again shortly".to_owned(),
            ),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => (
                "unavailable",
                "the server cannot answer right now; try again shortly".to_owned(),
            ),
            status if status.is_server_error() => (
                "internal",
                "the server failed to handle the request".to_owned(),
            ),
            status => (
                "invalid_request",
                format!(
                    "the request was refused ({})",
                    status.canonical_reason().unwrap_or("client error").to_lowercase()
                ),
            ),
        };
        ApiError::new(status, code, message)
    }
}

/// Largest framework error body read for the log.
const FRAMEWORK_DETAIL_BYTES: usize = 4096;

/// Middleware: an error answer (4xx, 5xx) that is not JSON, which only the
/// framework gives (a path or query extractor's rejection, a method a route
/// does not take, an unknown route), is answered as [`ApiError`]'s JSON
/// with the same status and headers (`Allow` stays); its own text is logged
/// at debug. Every other answer passes untouched.
pub(super) async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let detail = axum::body::to_bytes(body, FRAMEWORK_DETAIL_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    tracing::debug!(status = status.as_u16(), %detail, "a request refused before its handler");
    let mut answer = ApiError::framework(status, &method).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::TRANSFER_ENCODING
        {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

/// The client's words for a body that is not JSON: where it stops being
/// JSON.
fn not_json(error: &serde_json::Error) -> String {
    if error.is_eof() {
        return format!(
            "the request body is not valid JSON: it ends too early (line {}, column {})",
            error.line(),
            error.column()
        );
    }
    format!(
        "the request body is not valid JSON (line {}, column {})",
        error.line(),
        error.column()
    )
}

/// A serde message with the type names it quotes (`expected struct
/// UserMessageInput`) put as what the JSON should have been.
fn plain_serde(message: &str) -> String {
    const NAMED: [(&str, &str); 7] = [
        (
            "data did not match any variant of untagged enum ",
            "it matches none of the accepted shapes",
        ),
        ("internally tagged enum ", "an object with a known `type`"),
        ("adjacently tagged enum ", "an object with a known `type`"),
        ("untagged enum ", "one of the accepted shapes"),
        ("tuple struct ", "a list"),
        ("struct ", "a JSON object"),
        ("enum ", "one of the accepted values"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        let word_starts = !out.ends_with(|c: char| c.is_alphanumeric() || c == '_');
        for (prefix, plain) in NAMED.iter().filter(|_| word_starts) {
            if let Some(after) = rest.strip_prefix(prefix) {
                let name_len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(after.len());
                let name = &after[..name_len];
                if name.starts_with(|c: char| c.is_ascii_uppercase()) {
                    out.push_str(plain);
                    rest = &after[name_len..];
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
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
        ApiError::bad_request(plain_serde(&error.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(error: ApiError) -> String {
        error.message
    }

    #[test]
    fn a_body_that_is_not_json_gets_its_position_not_the_parsers_words() {
        let cases: [(&[u8], &str); 4] = [
            (
                br#"{"type": "threads.list" "params": {}}"#,
                "the request body is not valid JSON (line 1, column 25)",
            ),
            (
                b"{\"type\":",
                "the request body is not valid JSON: it ends too early (line 1, column 8)",
            ),
            (
                b"",
                "the request body is not valid JSON: it ends too early (line 1, column 0)",
            ),
            (
                &[b'['; 200],
                "the request body nests JSON more than 128 levels deep",
            ),
        ];
        for (body, expected) in cases {
            let detail = serde_json::from_slice::<serde_json::Value>(body)
                .expect_err("not JSON")
                .to_string();
            let answered = message(ApiError::unparsed(RequestError::InvalidJson(detail), body));
            assert_eq!(answered, expected);
        }
        // A refusal of JSON that parses (a key given twice, say) keeps its words.
        let twice = || RequestError::InvalidJson("\"type\" appears twice".to_owned());
        assert_eq!(
            message(ApiError::unparsed(twice(), br#"{"type":"a","type":"b"}"#)),
            twice().to_string()
        );
    }

    #[test]
    fn serde_type_names_become_plain_words() {
        assert_eq!(
            plain_serde("invalid type: integer `5`, expected struct UserMessageInput"),
            "invalid type: integer `5`, expected a JSON object"
        );
        assert_eq!(
            plain_serde("data did not match any variant of untagged enum Input"),
            "it matches none of the accepted shapes"
        );
        assert_eq!(
            plain_serde("expected internally tagged enum UserContent at line 1"),
            "expected an object with a known `type` at line 1"
        );
        assert_eq!(
            plain_serde("unknown variant `x`, expected `a` or `b`"),
            "unknown variant `x`, expected `a` or `b`"
        );
        assert_eq!(
            plain_serde("destruct Foo, a struct field"),
            "destruct Foo, a struct field"
        );
    }
}
