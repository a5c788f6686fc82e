//! Reading the daemon's answers over HTTP: [`Streamed`] (an SSE stream read
//! to its end or hang-up), and posting to any ChatKit URL, e.g. a daemon in a
//! child process. The in-process [`super::Daemon`] uses the same readers.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::is_text_delta;

/// A finished (or abandoned) event stream.
#[derive(Debug)]
pub struct Streamed {
    pub status: u16,
    pub content_type: String,
    pub events: Vec<Value>,
    pub raw: String,
    /// The client hung up before the end.
    pub hung_up: bool,
}

impl Streamed {
    /// The `type` of every event, in order.
    pub fn types(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Items of `thread.item.done` events, in order.
    pub fn done_items(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == "thread.item.done")
            .map(|e| e["item"].clone())
            .collect()
    }

    /// The text of the last finished assistant message.
    pub fn answer(&self) -> Option<String> {
        self.done_items()
            .iter()
            .rev()
            .find(|i| i["type"] == "assistant_message")
            .map(|i| {
                i["content"][0]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
    }

    /// The concatenated text deltas.
    pub fn streamed_text(&self) -> String {
        self.events
            .iter()
            .filter(|e| is_text_delta(e))
            .map(|e| e["update"]["delta"].as_str().unwrap_or_default())
            .collect()
    }

    /// The id of the thread of a `threads.create` stream, from its first
    /// event (`thread.created`).
    pub fn thread_id(&self) -> &str {
        self.events
            .first()
            .and_then(|e| e["thread"]["id"].as_str())
            .expect("thread.created first")
    }

    /// The `error` event, if any.
    pub fn error(&self) -> Option<&Value> {
        self.events.iter().find(|e| e["type"] == "error")
    }
}

/// Like [`Daemon::stream_until`], for any ChatKit URL (a daemon in a child
/// process, or one that is being stopped): POSTs `body` with a client of its
/// own and reads events until the stream ends, `stop` returns true (the client
/// hangs up) or the connection fails. `stop` sees every event as it arrives,
/// so it can also report progress. Returns the stream and, when the
/// connection failed, the transport error.
pub async fn stream_at(
    url: &str,
    body: Value,
    stop: impl Fn(&Value) -> bool,
) -> (Streamed, Option<String>) {
    read_stream(send_json(url, &body).await, stop).await
}

/// Like [`Daemon::post`], for any ChatKit URL (a daemon in a child process):
/// POSTs `body` as JSON with a client of its own; returns the status and the
/// parsed JSON answer (`Null` if none).
pub async fn post_at(url: &str, body: Value) -> (u16, Value) {
    read_json(send_json(url, &body).await).await
}

/// POSTs `body` as JSON to `url` with a client of its own.
async fn send_json(url: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// The status and the JSON body of an answer (`Null` if it is not JSON).
pub(super) async fn read_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Reads an SSE response until it ends, `stop` returns true (the client hangs
/// up) or the connection fails; returns the events and the transport error,
/// if any. `stop` sees every event as it arrives.
async fn read_stream(
    response: reqwest::Response,
    stop: impl Fn(&Value) -> bool,
) -> (Streamed, Option<String>) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut streamed = Streamed {
        status,
        content_type,
        events: Vec::new(),
        raw: String::new(),
        hung_up: false,
    };
    let mut failure = None;
    let mut bytes = response.bytes_stream();
    let mut buffer = String::new();
    'read: while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), bytes.next())
        .await
        .expect("stream stalls")
    {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        };
        let text = String::from_utf8(chunk.to_vec()).expect("utf-8");
        streamed.raw.push_str(&text);
        buffer.push_str(&text);
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.strip_prefix("data: ") {
                let event: Value = serde_json::from_str(data.trim_end()).expect("event is JSON");
                let done = stop(&event);
                streamed.events.push(event);
                if done {
                    streamed.hung_up = true;
                    break 'read;
                }
            }
        }
    }
    (streamed, failure)
}

/// [`read_stream`] for a connection that must not fail.
pub(super) async fn read_events(
    response: reqwest::Response,
    stop: impl Fn(&Value) -> bool,
) -> Streamed {
    let (streamed, failure) = read_stream(response, stop).await;
    assert!(
        failure.is_none(),
        "the stream failed: {failure:?}\n{}",
        streamed.raw
    );
    streamed
}
