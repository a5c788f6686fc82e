//! Server-sent event framing, byte for byte as the reference writes it:
//! `data: <compact JSON>\n\n` per event, nothing else (no `event:`, `id:`,
//! keepalive comments or end marker). The response ends when the run does.

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};
use futures::stream;

use crate::chatkit::EventStream;
use crate::protocol::ThreadStreamEvent;

/// Appends one event's frame to `out`, serializing the event straight into
/// it. The JSON is compact, so it holds no raw newline.
fn frame_into(out: &mut BytesMut, event: &ThreadStreamEvent) {
    let start = out.len();
    out.extend_from_slice(b"data: ");
    if let Err(e) = serde_json::to_writer(out.writer(), event) {
        tracing::error!(error = %e, "could not serialize an event");
        out.truncate(start);
        out.extend_from_slice(
            br#"data: {"type":"error","code":"stream.error","allow_retry":true}"#,
        );
    }
    out.extend_from_slice(b"\n\n");
}

/// Room the frames of one stream are written into: each write is cut from
/// it, so a stream allocates once per this many bytes of events, not once
/// per event.
const FRAME_ROOM: usize = 4 * 1024;

/// Room for a typical event, so that most need no regrowth.
const EVENT_ROOM: usize = 512;

/// Most bytes of events written together: the events that are ready when
/// the body is polled go out in one write, up to this.
const COALESCE_BYTES: usize = 16 * 1024;

/// The streaming response. Dropping the body (the client went away) drops the
/// [`EventStream`], which cancels the run.
///
/// Each poll of the body waits for one event, then takes every event already
/// waiting (up to [`COALESCE_BYTES`]) into the same frame: a burst, like the
/// first events of a run, costs one write, and a lone event, like the first
/// text, goes out at once, never held for a timer.
pub fn response(events: EventStream) -> Response {
    let room = BytesMut::new();
    let body = stream::unfold((events, room), |(mut events, mut room)| async move {
        let event = events.events.recv().await?;
        // Cut from the stream's room while it lasts (the frames already
        // sent keep their part of it alive until written).
        if room.capacity() < EVENT_ROOM {
            room = BytesMut::with_capacity(FRAME_ROOM);
        }
        frame_into(&mut room, &event);
        while room.len() < COALESCE_BYTES {
            match events.events.try_recv() {
                Ok(event) => frame_into(&mut room, &event),
                Err(_) => break,
            }
        }
        let frames = room.split().freeze();
        Some((Ok::<_, std::convert::Infallible>(frames), (events, room)))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // Ask reverse proxies (nginx) not to buffer the stream.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Bytes;

    use super::*;

    fn frame(event: &ThreadStreamEvent) -> Bytes {
        let mut out = BytesMut::new();
        frame_into(&mut out, event);
        out.freeze()
    }

    #[test]
    fn frames_like_the_reference() {
        let event = ThreadStreamEvent::custom_error("line one\nline \"two\"", false);
        assert_eq!(
            frame(&event),
            Bytes::from_static(
                b"data: {\"type\":\"error\",\"code\":\"custom\",\"message\":\"line one\\nline \\\"two\\\"\",\"allow_retry\":false}\n\n"
            )
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::ItemUpdate;

        /// Text with every character class that could break a frame: line
        /// ends of every kind, other controls, quotes, non-ASCII.
        fn hostile_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("\n".to_owned()),
                Just("\r".to_owned()),
                Just("\r\n".to_owned()),
                Just("\n\ndata: {}\n\n".to_owned()),
                Just("\u{2028}\u{0}\u{1b}\"\\".to_owned()),
                any::<String>(),
            ];
            prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
        }

        /// The one frame holds one `data:` line that reads back as `event`.
        fn assert_one_frame(event: &ThreadStreamEvent) -> Result<(), TestCaseError> {
            let framed = frame(event);
            let text = std::str::from_utf8(&framed).expect("frames are UTF-8");
            let json = text
                .strip_prefix("data: ")
                .and_then(|rest| rest.strip_suffix("\n\n"));
            prop_assert!(json.is_some(), "{text:?}");
            let json = json.unwrap_or_default();
            prop_assert!(!json.contains(['\n', '\r']), "{text:?}");
            let back: ThreadStreamEvent = serde_json::from_str(json).expect("reads back");
            prop_assert_eq!(&back, event);
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_error_text_stays_one_frame(message in hostile_text(), retry in any::<bool>()) {
                assert_one_frame(&ThreadStreamEvent::custom_error(message, retry))?;
            }

            #[test]
            fn any_text_delta_stays_one_frame(item_id in hostile_text(), delta in hostile_text()) {
                assert_one_frame(&ThreadStreamEvent::ItemUpdated {
                    item_id,
                    update: ItemUpdate::TextDelta { content_index: 0, delta },
                })?;
            }
        }
    }
}
