//! Reading the model's server-sent events with bounded memory: [`SseReader`]
//! pulls the response body only as fast as the answer is consumed and holds
//! at most one event of `max_event_bytes`.
//!
//! This is ours rather than async-openai's reader because that one buffers
//! an event (or a line, or everything after an invalid UTF-8 byte) whole
//! before anything can bound it, and forwards events through an unbounded
//! channel from a task of its own: a model server that floods, or sends one
//! endless `data:` line, would grow the daemon's memory without limit.
//!
//! The framing follows the HTML standard's event-stream format: lines end in
//! `\n`, `\r\n` or `\r`; `data` lines of one event join with `\n`; a blank line
//! ends the event; lines starting with `:` are comments; a byte-order mark at
//! the start is skipped; an event cut by the end of the body is dropped.

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SseError {
    /// The body failed to arrive (connection reset, bad chunked encoding, …).
    Transport(String),
    /// One event, or one line of it, went beyond the bound.
    TooLarge { max: usize },
    /// An event's data is not UTF-8.
    NotUtf8,
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SseEvent {
    /// The `event:` field; empty for the default type.
    pub(super) kind: String,
    pub(super) data: String,
}

/// The events of one response body, read on demand.
pub(super) struct SseReader<S> {
    body: S,
    /// Received bytes not yet taken apart into lines.
    buffer: BytesMut,
    /// How far into `buffer` no line end was found.
    scanned: usize,
    /// The last line ended in `\r`: a `\n` right after it belongs to it.
    after_cr: bool,
    at_start: bool,
    kind: String,
    data: Vec<u8>,
    has_data: bool,
    max_event_bytes: usize,
    ended: bool,
}

impl<S, E> SseReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    /// Reads `body`, refusing any event or line over `max_event_bytes`.
    pub(super) fn new(body: S, max_event_bytes: usize) -> Self {
        SseReader {
            body,
            buffer: BytesMut::new(),
            scanned: 0,
            after_cr: false,
            at_start: true,
            kind: String::new(),
            data: Vec::new(),
            has_data: false,
            max_event_bytes,
            ended: false,
        }
    }

    /// The next event; `None` at the end of the body. After an error the
    /// reader ends.
    pub(super) async fn next(&mut self) -> Option<Result<SseEvent, SseError>> {
        if self.ended {
            return None;
        }
        loop {
            match self.next_buffered() {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => {}
                Err(error) => return self.fail(error),
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => return self.fail(SseError::Transport(error.to_string())),
                None => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    fn fail(&mut self, error: SseError) -> Option<Result<SseEvent, SseError>> {
        self.ended = true;
        self.buffer = BytesMut::new();
        self.data = Vec::new();
        Some(Err(error))
    }

    /// An event from the lines already received, if they complete one.
    fn next_buffered(&mut self) -> Result<Option<SseEvent>, SseError> {
        if self.at_start {
            if self.buffer.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buffer) {
                return Ok(None);
            }
            if self.buffer.starts_with(b"\xEF\xBB\xBF") {
                self.buffer.advance(3);
            }
            self.at_start = false;
        }
        loop {
            if self.after_cr && !self.buffer.is_empty() {
                if self.buffer[0] == b'\n' {
                    self.buffer.advance(1);
                }
                self.after_cr = false;
            }
            let found = self.buffer[self.scanned..]
                .iter()
                .position(|b| *b == b'\n' || *b == b'\r');
            let Some(offset) = found else {
                self.scanned = self.buffer.len();
                if self.buffer.len() > self.max_event_bytes {
                    return Err(SseError::TooLarge {
                        max: self.max_event_bytes,
                    });
                }
                return Ok(None);
            };
            let end = self.scanned + offset;
            if end > self.max_event_bytes {
                return Err(SseError::TooLarge {
                    max: self.max_event_bytes,
                });
            }
            self.after_cr = self.buffer[end] == b'\r';
            let line = self.buffer.split_to(end);
            self.buffer.advance(1);
            self.scanned = 0;
            if let Some(event) = self.take_line(&line)? {
                return Ok(Some(event));
            }
        }
    }

    /// Applies one line to the event being built; a blank line dispatches it.
    fn take_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    return Err(SseError::TooLarge {
                        max: self.max_event_bytes,
                    });
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => self.kind = String::from_utf8_lossy(value).into_owned(),
            // `id` and `retry` matter to reconnecting browsers, not here.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Result<Option<SseEvent>, SseError> {
        let kind = std::mem::take(&mut self.kind);
        if !std::mem::take(&mut self.has_data) {
            return Ok(None);
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        let data = String::from_utf8(data).map_err(|_| SseError::NotUtf8)?;
        Ok(Some(SseEvent { kind, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Body = futures::stream::Iter<std::vec::IntoIter<Result<Bytes, String>>>;

    fn reader(parts: Vec<&[u8]>, max: usize) -> SseReader<Body> {
        let parts: Vec<Result<Bytes, String>> = parts
            .into_iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        SseReader::new(futures::stream::iter(parts), max)
    }

    async fn all(mut reader: SseReader<Body>) -> Vec<Result<SseEvent, SseError>> {
        let mut events = Vec::new();
        while let Some(event) = reader.next().await {
            events.push(event);
        }
        events
    }

    fn data(text: &str) -> Result<SseEvent, SseError> {
        Ok(SseEvent {
            kind: String::new(),
            data: text.to_owned(),
        })
    }

    #[tokio::test]
    async fn events_are_framed_by_blank_lines_whatever_the_line_ends() {
        let body: &[u8] =
            b"\xEF\xBB\xBFdata: a\n\ndata:b\r\ndata: c\r\n\r\n: comment\nevent: keepalive\ndata: k\r\rid: 7\ndata: last\n\ndata: cut";
        let events = all(reader(vec![body], 1024)).await;
        assert_eq!(
            events,
            vec![
                data("a"),
                data("b\nc"),
                Ok(SseEvent {
                    kind: "keepalive".to_owned(),
                    data: "k".to_owned()
                }),
                data("last"),
            ]
        );
    }

    #[tokio::test]
    async fn an_event_over_the_bound_is_refused_before_it_is_buffered_whole() {
        // One endless line arriving in pieces: refused as soon as it passes
        // the bound, not when it ends.
        let piece = [b'x'; 100];
        let mut parts: Vec<&[u8]> = vec![b"data: "];
        parts.extend(std::iter::repeat_n(&piece[..], 1000));
        let mut endless = reader(parts, 1024);
        assert_eq!(
            endless.next().await,
            Some(Err(SseError::TooLarge { max: 1024 }))
        );
        assert_eq!(endless.next().await, None);
        // Many short data lines of one event add up too.
        let lines = "data: 0123456789\n".repeat(100);
        let events = all(reader(vec![lines.as_bytes()], 1024)).await;
        assert_eq!(events, vec![Err(SseError::TooLarge { max: 1024 })]);
    }

    #[tokio::test]
    async fn data_that_is_not_utf8_is_an_error() {
        let events = all(reader(vec![b"data: \xFF\xFE\n\n", b"data: more\n\n"], 64)).await;
        assert_eq!(events, vec![Err(SseError::NotUtf8)]);
    }

    #[tokio::test]
    async fn a_failing_body_ends_the_events() {
        let parts: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"data: a\n\n")),
            Err("reset".to_owned()),
            Ok(Bytes::from_static(b"data: b\n\n")),
        ];
        let events = all(SseReader::new(futures::stream::iter(parts), 64)).await;
        assert_eq!(
            events,
            vec![data("a"), Err(SseError::Transport("reset".to_owned()))]
        );
    }

    proptest! {
        /// However the body is cut into reads, the same events come out, and
        /// arbitrary bytes never panic the reader.
        #[test]
        fn the_events_do_not_depend_on_how_the_body_is_cut(
            body in proptest::collection::vec(
                prop_oneof![
                    Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(0xEF), Just(0xFF),
                    Just(b'd'), Just(b'a'), Just(b't'), any::<u8>()
                ],
                0..300,
            ),
            cuts in proptest::collection::vec(0usize..300, 0..10),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let whole = runtime.block_on(all(reader(vec![&body], 64)));
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= body.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut parts = Vec::new();
            let mut from = 0;
            for cut in cuts {
                parts.push(&body[from..cut]);
                from = cut;
            }
            parts.push(&body[from..]);
            let pieces = runtime.block_on(all(reader(parts, 64)));
            prop_assert_eq!(whole, pieces);
        }
    }
}
