//! The attachment routes beside the ChatKit endpoint: the two-phase upload
//! (`POST` or `PUT {path}/attachments/{id}/upload`, `multipart/form-data`
//! with a `file` field, or the raw bytes) and the image preview (`GET
//! {path}/attachments/{id}/preview`). Both take a signed URL's `expires` and
//! `signature`, or the owner's bearer; everything else about attachments is
//! [`ChatKit`](crate::chatkit::ChatKit)'s. An upload is checked before its body is read, its body is
//! bounded by the announced size, and only `[attachments]
//! max_concurrent_uploads` bodies are held in memory at once.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response as HttpResponse};

use super::{ApiError, AppState, counted, read_body};
use crate::auth::Identity;
use crate::chatkit::Signed;

/// What multipart framing may add around the file's bytes.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// The least time an upload's body gets to arrive: files are larger than
/// requests, and phones are slow.
const MIN_UPLOAD_READ_TIME: Duration = Duration::from_secs(300);

/// The signed URL's query, when it has one; a malformed `expires` is a 400.
fn signed(query: &HashMap<String, String>) -> Result<Option<Signed<'_>>, ApiError> {
    match (query.get("expires"), query.get("signature")) {
        (Some(expires), Some(signature)) => {
            let expires = expires
                .parse()
                .map_err(|_| ApiError::bad_request("`expires` must be Unix seconds"))?;
            Ok(Some(Signed { expires, signature }))
        }
        _ => Ok(None),
    }
}

/// The bearer's identity when there is no signature (one with a signature
/// needs none; one without either is refused by the ChatKit layer).
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    signed: bool,
) -> Result<Option<Identity>, ApiError> {
    if signed {
        return Ok(None);
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity = state.auth.authenticate(authorization.as_deref()).await?;
    if let Some(rate) = &state.rate
        && let Err(wait) = rate.check(&identity.user_id)
    {
        return Err(ApiError::rate_limited(wait));
    }
    Ok(Some(identity))
}

pub(super) async fn upload(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    request: HttpRequest,
) -> HttpResponse {
    counted(
        "attachments.upload",
        take_upload(&state, &id, &query, request).await,
    )
}

async fn take_upload(
    state: &AppState,
    id: &str,
    query: &HashMap<String, String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let signed = signed(query)?;
    let (parts, body) = request.into_parts();
    let caller = caller(state, &parts.headers, signed.is_some()).await?;
    // Refused before a byte of the body is read: the wrong URL or caller,
    // an attachment uploaded already, or too many uploads in flight.
    let size = state
        .chatkit
        .check_upload(caller.as_ref(), signed, id)
        .await?;
    let _slot = state
        .uploads
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::busy("too many uploads are in progress; try again shortly"))?;
    let limit = usize::try_from(size.min(state.max_upload_bytes))
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_OVERHEAD);
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let wait = state.body_read_timeout.max(MIN_UPLOAD_READ_TIME);
    let body = tokio::time::timeout(wait, read_body(body, limit))
        .await
        .map_err(|_| ApiError::body_timeout(wait))??;
    let bytes = if multipart {
        file_field(HttpRequest::from_parts(parts, Body::from(body))).await?
    } else {
        body
    };
    let answer = state
        .chatkit
        .upload_attachment(caller.as_ref(), signed, id, &bytes)
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}

/// The bytes of the form's `file` field.
async fn file_field(request: HttpRequest) -> Result<bytes::Bytes, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request(format!("malformed multipart/form-data: {}", e.body_text()))
    };
    let mut form = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::bad_request(format!("malformed multipart/form-data: {}", e.body_text()))
    })?;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() == Some("file") {
            return field.bytes().await.map_err(bad);
        }
    }
    Err(ApiError::bad_request(
        "the multipart/form-data body has no `file` field",
    ))
}

pub(super) async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> HttpResponse {
    counted(
        "attachments.preview",
        show_preview(&state, &id, &query, &headers).await,
    )
}

async fn show_preview(
    state: &AppState,
    id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<HttpResponse, ApiError> {
    let signed = signed(query)?;
    let caller = caller(state, headers, signed.is_some()).await?;
    let (mime, bytes) = state
        .chatkit
        .preview_attachment(caller.as_ref(), signed, id)
        .await?;
    let content_type = HeaderValue::from_str(&mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=300"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("inline"),
            ),
        ],
        bytes,
    )
        .into_response())
}
