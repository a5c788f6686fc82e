//! The attachment routes beside the ChatKit endpoint: the two-phase upload
//! (`POST` or `PUT {path}/attachments/{id}/upload`, `multipart/form-data`
//! with a `file` field, or the raw bytes) and the image preview (`GET
//! {path}/attachments/{id}/preview`). Both take a signed URL's `expires` and
//! `signature`, or the owner's bearer; everything else about attachments is
//! [`ChatKit`](crate::chatkit::ChatKit)'s. A request on a signed URL counts
//! against its owner's rate, like one with the owner's bearer.
//!
//! An upload is checked before its body is read, its body is bounded by the
//! announced size, only `[attachments] max_concurrent_uploads` bodies (and
//! `max_concurrent_uploads_per_user` of one user's) are read at once, and a
//! body that pauses longer than `upload_idle_timeout`, or arrives slower than
//! `upload_min_bytes_per_second`, ends with 408 and frees its slot.
//!
//! A preview streams its image a chunk at a time, read only when the client
//! took the previous one, under a slot (`max_concurrent_previews`, and
//! `max_concurrent_previews_per_user` of one owner's images) held until the
//! body is dropped; a client that takes nothing for `[server]
//! stream_write_timeout` loses its connection, which drops the body, so a
//! stalled reader holds a chunk and a slot for that long at most.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Query, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::watch;

use super::serve::CloseConnection;
use super::{ApiError, AppState, counted};
use crate::attachments::PreviewBytes;
use crate::auth::Identity;
use crate::chatkit::Signed;
use crate::config::AttachmentsConfig;
use crate::limits::{RunSlot, RunSlots, SlotRefused};
use crate::protocol::{MAX_ID_LEN, is_id};

/// What multipart framing may add around the file's bytes.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// The least time an upload's body gets to arrive: files are larger than
/// requests, and phones are slow.
const MIN_UPLOAD_READ_TIME: Duration = Duration::from_secs(300);

/// The limits of the attachment routes: `[attachments]`'s, and `[server]
/// stream_write_timeout` for a preview's reader.
#[derive(Debug, Clone)]
pub struct AttachmentLimits {
    /// Largest attachment upload (`max_bytes`).
    max_upload_bytes: u64,
    /// Uploads being read, per user and in all.
    uploads: RunSlots,
    /// Previews streaming, per owner and in all.
    previews: RunSlots,
    /// Longest pause in an upload's body.
    upload_idle: Duration,
    /// Least average rate of an upload's body after `upload_idle` (0: none).
    upload_min_rate: u64,
    /// Time a preview's reader may take nothing before its connection closes.
    preview_stall: Duration,
}

impl AttachmentLimits {
    /// The limits `[attachments]` sets, with `stream_write_timeout` for
    /// previews' readers.
    pub fn new(config: &AttachmentsConfig, stream_write_timeout: Duration) -> AttachmentLimits {
        let cap = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        AttachmentLimits {
            max_upload_bytes: config.max_bytes,
            uploads: RunSlots::new(
                cap(config.max_concurrent_uploads_per_user),
                cap(config.max_concurrent_uploads),
            ),
            previews: RunSlots::new(
                cap(config.max_concurrent_previews_per_user),
                cap(config.max_concurrent_previews),
            ),
            upload_idle: config.upload_idle_timeout,
            upload_min_rate: config.upload_min_bytes_per_second,
            preview_stall: stream_write_timeout,
        }
    }
}

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
    rate_limit(state, &identity.user_id)?;
    Ok(Some(identity))
}

/// Refuses an attachment id in the path that no server could have issued
/// (a NUL, a control character, a megabyte), before any store or file work,
/// as the same id in a request body is.
fn path_id(id: &str) -> Result<(), ApiError> {
    if is_id(id) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "the attachment id in the path is not an id this server issues (1 to {MAX_ID_LEN} letters, digits, `_` or `-`)"
    )))
}

/// Takes one request from `user`'s rate: the bearer's, or the owner a
/// signed URL speaks for (known once its signature held).
fn rate_limit(state: &AppState, user: &str) -> Result<(), ApiError> {
    match &state.rate {
        Some(rate) => rate.check(user).map_err(ApiError::rate_limited),
        None => Ok(()),
    }
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
    path_id(id)?;
    let signed = signed(query)?;
    let (parts, body) = request.into_parts();
    let caller = caller(state, &parts.headers, signed.is_some()).await?;
    // Refused before a byte of the body is read: the wrong URL or caller,
    // an attachment uploaded already, a signed URL's owner over their rate,
    // or too many uploads in flight (the owner's or the replica's).
    let expected = state
        .chatkit
        .check_upload(caller.as_ref(), signed, id)
        .await?;
    if signed.is_some() {
        rate_limit(state, &expected.owner)?;
    }
    let limits = &state.attachments;
    let _slot = limits
        .uploads
        .try_acquire(&expected.owner)
        .map_err(|refused| {
            ApiError::busy(match refused {
                SlotRefused::User => {
                    "this user has as many uploads in progress as allowed; \
                                      try again when one is done"
                }
                SlotRefused::Replica => "too many uploads are in progress; try again shortly",
            })
        })?;
    let limit = usize::try_from(expected.size.min(limits.max_upload_bytes))
        .unwrap_or(usize::MAX)
        .saturating_add(MULTIPART_OVERHEAD);
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let pace = Pace {
        idle: limits.upload_idle,
        min_rate: limits.upload_min_rate,
        whole: state.body_read_timeout.max(MIN_UPLOAD_READ_TIME),
    };
    let body = read_upload(body, limit, pace).await?;
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

/// How fast an upload's body must arrive.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// Longest pause between two parts.
    idle: Duration,
    /// Least average bytes a second once `idle` has passed (0: none).
    min_rate: u64,
    /// Time for the whole body.
    whole: Duration,
}

impl Pace {
    /// When the next part must have arrived, `received` bytes in since
    /// `started`: within `idle` of now, in time for the least average rate
    /// (after a grace of `idle`), and within `whole` of the start.
    fn next_deadline(&self, started: Instant, received: usize) -> Instant {
        let now = Instant::now();
        let mut deadline = (now + self.idle).min(started + self.whole);
        if self.min_rate > 0 {
            let earned = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
            deadline = deadline.min(started + self.idle + earned);
        }
        deadline
    }
}

/// Reads an upload's body, refusing it with 413 as soon as it passes
/// `limit` and with 408 as soon as it falls behind `pace`: a stalled or
/// trickling upload gives its slot back in seconds.
async fn read_upload(mut body: Body, limit: usize, pace: Pace) -> Result<Bytes, ApiError> {
    if body.size_hint().lower() > limit as u64 {
        return Err(ApiError::too_large(limit));
    }
    let started = Instant::now();
    let mut received = BytesMut::new();
    loop {
        let deadline = pace.next_deadline(started, received.len());
        let Ok(frame) = tokio::time::timeout_at(deadline.into(), body.frame()).await else {
            let waited = started.elapsed();
            tracing::info!(
                received = received.len(),
                seconds = waited.as_secs_f64(),
                "an upload's body stalled or came too slowly; its slot is free again"
            );
            return Err(ApiError::body_timeout(pace.idle.min(waited)));
        };
        match frame {
            None => return Ok(received.freeze()),
            Some(Err(e)) => {
                return Err(ApiError::bad_request(format!(
                    "could not read the request body: {e}"
                )));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if received.len().saturating_add(data.len()) > limit {
                        return Err(ApiError::too_large(limit));
                    }
                    received.extend_from_slice(&data);
                }
            }
        }
    }
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
    request: HttpRequest,
) -> HttpResponse {
    let close = request.extensions().get::<CloseConnection>().cloned();
    counted(
        "attachments.preview",
        show_preview(&state, &id, &query, request.headers(), close).await,
    )
}

async fn show_preview(
    state: &AppState,
    id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    close: Option<CloseConnection>,
) -> Result<HttpResponse, ApiError> {
    path_id(id)?;
    let signed = signed(query)?;
    let caller = caller(state, headers, signed.is_some()).await?;
    let preview = state
        .chatkit
        .preview_attachment(caller.as_ref(), signed, id)
        .await?;
    if signed.is_some() {
        rate_limit(state, &preview.owner)?;
    }
    let limits = &state.attachments;
    let slot = limits
        .previews
        .try_acquire(&preview.owner)
        .map_err(|refused| {
            ApiError::busy(match refused {
                SlotRefused::User => {
                    "too many previews of this user's images are streaming; \
                                      try again shortly"
                }
                SlotRefused::Replica => "too many previews are streaming; try again shortly",
            })
        })?;
    let content_type = HeaderValue::from_str(&preview.mime)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let body = streamed(preview.bytes, slot, limits.preview_stall, close);
    Ok((
        [
            (header::CONTENT_LENGTH, HeaderValue::from(preview.size)),
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
        body,
    )
        .into_response())
}

/// Where a preview's body is: reading a chunk, or waiting since an instant
/// for its client to take the chunk it was handed.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Reading,
    Handed(Instant),
}

/// What a preview's body owns while it streams.
struct Streaming {
    bytes: PreviewBytes,
    /// Held until the body is dropped.
    _slot: RunSlot,
    phase: watch::Sender<Phase>,
    failed: bool,
}

/// A preview's body: `bytes` a chunk at a time, each read only when the
/// previous one was taken, holding `slot` until the body is dropped. With
/// `close`, a client that takes nothing for `stall` after a chunk loses its
/// connection (an HTTP/2 client can withhold its window while reading its
/// socket, which no socket-level guard sees), which drops the body.
fn streamed(
    bytes: PreviewBytes,
    slot: RunSlot,
    stall: Duration,
    close: Option<CloseConnection>,
) -> Body {
    let (phase, watched) = watch::channel(Phase::Reading);
    if let Some(close) = close {
        tokio::spawn(close_when_stalled(watched, stall, close));
    }
    let streaming = Streaming {
        bytes,
        _slot: slot,
        phase,
        failed: false,
    };
    Body::from_stream(futures::stream::unfold(
        streaming,
        |mut streaming| async move {
            if streaming.failed {
                return None;
            }
            // Polled again: the client took the chunk before.
            streaming.phase.send_replace(Phase::Reading);
            match streaming.bytes.next_chunk().await {
                Ok(Some(chunk)) => {
                    streaming.phase.send_replace(Phase::Handed(Instant::now()));
                    Some((Ok(chunk), streaming))
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "a preview could not be read to its end");
                    streaming.failed = true;
                    Some((Err(e), streaming))
                }
            }
        },
    ))
}

/// Closes the connection once a chunk has waited `stall` for its client;
/// returns when the body is dropped.
async fn close_when_stalled(
    mut phase: watch::Receiver<Phase>,
    stall: Duration,
    close: CloseConnection,
) {
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Reading => {
                if phase.changed().await.is_err() {
                    return;
                }
            }
            Phase::Handed(at) => {
                tokio::select! {
                    changed = phase.changed() => if changed.is_err() {
                        return;
                    },
                    () = tokio::time::sleep_until((at + stall).into()) => {
                        tracing::info!("closing the connection of a client that stopped taking a preview");
                        close.close();
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_must_keep_coming_and_keep_its_rate() {
        let pace = Pace {
            idle: Duration::from_secs(10),
            min_rate: 1024,
            whole: Duration::from_secs(300),
        };
        let now = Instant::now();
        // Just started: within the idle timeout (the grace of the rate).
        let first = pace.next_deadline(now, 0);
        assert!(
            first <= now + Duration::from_millis(10_050),
            "{:?}",
            first - now
        );
        // 20 s in with 4 bytes: behind the rate at once.
        let started = now - Duration::from_secs(20);
        assert!(pace.next_deadline(started, 4) < now);
        // 20 s in with 100 KiB: on pace, the idle timeout applies.
        let ahead = pace.next_deadline(started, 100 * 1024);
        assert!(ahead > now + Duration::from_secs(9), "{:?}", ahead - now);
        // No rate: only the pause and the whole body's time count.
        let unpaced = Pace {
            min_rate: 0,
            ..pace
        };
        assert!(unpaced.next_deadline(started, 4) > now + Duration::from_secs(9));
        let late = now - Duration::from_secs(295);
        assert!(unpaced.next_deadline(late, 4) <= now + Duration::from_secs(5));
    }
}
