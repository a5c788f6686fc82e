//! The HTTP face of the daemon: `POST /api/chatkit`, health and readiness.
//!
//! Only this module knows HTTP: status codes, headers, body limits and SSE
//! framing. It authenticates the caller, parses the body into a typed
//! [`Request`], hands it to [`ChatKit`] and writes the answer: one JSON
//! document, or an event stream framed exactly as the reference frames it.
//! `serve.rs` accepts and serves the connections, within `[server]`'s limits.

mod attachments;
mod error;
pub mod serve;
mod sse;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use tracing::Instrument;

pub use attachments::AttachmentLimits;
pub use error::ApiError;

use crate::auth::Authenticator;
use crate::chatkit::{ChatKit, Response};
use crate::limits::RateLimiter;
use crate::metrics::Exporter;
use crate::protocol::Request;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub chatkit: Arc<ChatKit>,
    /// What `/metrics` serves, gauges of this daemon's components included.
    pub metrics: Arc<Exporter>,
    pub auth: Authenticator,
    /// Requests per user; `None` when unlimited.
    pub rate: Option<Arc<RateLimiter>>,
    pub max_body_bytes: usize,
    /// Time for a whole request body to arrive; slower ones get 408.
    pub body_read_timeout: std::time::Duration,
    /// The attachment routes' limits: uploads and previews at once, an
    /// upload's pace, a preview reader's stall.
    pub attachments: AttachmentLimits,
}

/// The router: the ChatKit endpoint at `path` with its attachment routes
/// under `{path}/attachments`, `/healthz` and `/readyz`, with CORS for the
/// configured browser origins (none: no CORS headers). Every error it
/// answers is JSON ([`error::json_errors`]), an unknown path's 404 too.
pub fn router(state: AppState, path: &str, cors_origins: &[String]) -> Router {
    let attachments = format!("{}/attachments", path.trim_end_matches('/'));
    let router = Router::new()
        .route(path, post(chatkit_endpoint))
        .route(
            &format!("{attachments}/{{id}}/upload"),
            // The body is read within `[attachments] max_bytes` before the
            // form is parsed, so the form needs no limit of its own.
            post(attachments::upload)
                .put(attachments::upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            &format!("{attachments}/{{id}}/preview"),
            get(attachments::preview),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(unknown_route)
        // Last, so that it sees every route's answer and the fallback's.
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state);
    match cors(cors_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                axum::http::Method::POST,
                axum::http::Method::PUT,
                axum::http::Method::GET,
            ])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT_LANGUAGE,
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

async fn chatkit_endpoint(State(state): State<AppState>, request: HttpRequest) -> HttpResponse {
    // Every log line of this request, and of the run it starts, carries the
    // request id (the run's span adds the thread id).
    let span = tracing::info_span!("request", id = %new_request_id(), kind = tracing::field::Empty);
    let mut kind = "unauthenticated";
    let result = answer(&state, request, &mut kind).instrument(span).await;
    counted(kind, result)
}

/// The response, counted in the requests metric under `kind` with its
/// outcome (`ok` or the error's status).
fn counted(kind: &str, result: Result<HttpResponse, ApiError>) -> HttpResponse {
    let metrics = crate::metrics::get();
    match result {
        Ok(response) => {
            metrics.request(kind, "ok");
            response
        }
        Err(error) => {
            metrics.request(kind, error.status().as_str());
            error.into_response()
        }
    }
}

/// A short random id for log correlation.
fn new_request_id() -> String {
    let mut bytes = [0u8; 6];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

async fn answer(
    state: &AppState,
    request: HttpRequest,
    kind: &mut &'static str,
) -> Result<HttpResponse, ApiError> {
    // Credentials first: an unauthenticated caller learns nothing and costs
    // nothing, not even the read of its body.
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = state.auth.authenticate(authorization).await?;
    let close = request
        .extensions()
        .get::<serve::CloseConnection>()
        .cloned();
    if let Some(rate) = &state.rate
        && let Err(wait) = rate.check(&identity.user_id)
    {
        return Err(ApiError::rate_limited(wait));
    }
    *kind = "invalid";
    let body = tokio::time::timeout(
        state.body_read_timeout,
        read_body(request.into_body(), state.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::body_timeout(state.body_read_timeout))??;
    let request = Request::parse(&body).map_err(|e| ApiError::unparsed(e, &body))?;
    *kind = request.type_name();
    tracing::Span::current().record("kind", *kind);
    tracing::debug!("chatkit request");
    match state.chatkit.handle(&identity, request).await? {
        Response::Json(body) => Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()),
        Response::Stream(stream) => {
            // The run ends by itself when its client stalls; the connection
            // is closed here, since it may outlive the stream (HTTP/2).
            if let Some(close) = close {
                let stall = stream.stall.clone();
                tokio::spawn(async move {
                    if stall.stalled().await {
                        close.close();
                    }
                });
            }
            Ok(sse::response(stream))
        }
    }
}

/// Reads the whole body, refusing it with 413 as soon as it passes `limit`.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            ApiError::too_large(limit)
        } else {
            tracing::debug!(error = %e, "a request body could not be read");
            ApiError::bad_request("the request body could not be read to its end")
        }
    })
}

async fn unknown_route() -> ApiError {
    ApiError::unknown_route()
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// Prometheus metrics (OpenMetrics text); component gauges are read now.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.chatkit.ready().await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#.to_owned(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"unavailable","reason":"the store does not answer"}"#.to_owned(),
            )
        }
    }
}
