//! How one [`Script`] plays out as an answer of the Responses API
//! (`POST /v1/responses`): the named events of a stream, with the names and
//! shapes of the OpenAI SDK's `types/responses` (`response.created`,
//! `response.output_item.added`, `response.output_text.delta`,
//! `response.reasoning_summary_text.delta`,
//! `response.function_call_arguments.delta`, `response.completed`,
//! `response.failed`, …), or one response object. The same scripts as chat
//! completions, so a scenario runs in either mode; a reasoning item's
//! `encrypted_content` is `enc:` and its text, so a test can see it come back.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FLUSH_PAUSE, Reply, Step, count_tokens, error_response, status_response};
use crate::fake_llm::{FakeToolCall, Script};

/// The stream's events so far, numbered as the API numbers them.
struct Events {
    steps: Vec<Step>,
    sequence: u64,
    /// Output items so far.
    outputs: u64,
    /// The output items done, for `response.completed`.
    done: Vec<Value>,
}

impl Events {
    fn new() -> Events {
        Events {
            steps: Vec::new(),
            sequence: 0,
            outputs: 0,
            done: Vec::new(),
        }
    }

    fn send(&mut self, kind: &str, mut data: Value) {
        if let Some(fields) = data.as_object_mut() {
            fields.insert("type".to_owned(), json!(kind));
            fields.insert("sequence_number".to_owned(), json!(self.sequence));
        }
        self.sequence += 1;
        self.steps.push(Step::Send(Bytes::from(format!(
            "event: {kind}\ndata: {data}\n\n"
        ))));
    }

    fn sleep(&mut self, delay: std::time::Duration) {
        if !delay.is_zero() {
            self.steps.push(Step::Sleep(delay));
        }
    }

    /// Starts an output item; returns its output index.
    fn added(&mut self, item: Value) -> u64 {
        let index = self.outputs;
        self.outputs += 1;
        self.send(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        );
        index
    }

    fn item_done(&mut self, index: u64, item: Value) {
        self.send(
            "response.output_item.done",
            json!({"output_index": index, "item": item.clone()}),
        );
        self.done.push(item);
    }
}

impl Reply {
    fn response(&self, status: &str, output: Vec<Value>, extra: Value) -> Value {
        let mut response = json!({
            "id": format!("resp_{}", self.id),
            "object": "response",
            "created_at": self.created,
            "model": self.model,
            "status": status,
            "output": output,
        });
        if let (Some(fields), Value::Object(more)) = (response.as_object_mut(), extra) {
            fields.extend(more);
        }
        response
    }

    fn responses_usage(&self, output_text: &str) -> Value {
        let output = count_tokens(output_text);
        json!({
            "input_tokens": self.prompt_tokens,
            "output_tokens": output,
            "total_tokens": self.prompt_tokens + output,
        })
    }

    fn created(&self, events: &mut Events) {
        let response = self.response("in_progress", Vec::new(), json!({}));
        events.send("response.created", json!({"response": response}));
    }

    /// A message item streamed delta by delta; `finish` closes it.
    fn message(
        &self,
        events: &mut Events,
        chunks: &[String],
        delay: std::time::Duration,
        finish: bool,
    ) {
        let id = format!("msg_{}", self.id);
        let index = events.added(json!({"type": "message", "id": id, "role": "assistant",
            "status": "in_progress", "content": []}));
        events.send(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}}),
        );
        for chunk in chunks {
            events.sleep(delay);
            events.send(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": 0, "delta": chunk}),
            );
        }
        if !finish {
            return;
        }
        let text = chunks.concat();
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        events.send(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text}),
        );
        events.send(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
        );
        events.item_done(
            index,
            json!({"type": "message", "id": id, "role": "assistant", "status": "completed",
                "content": [part]}),
        );
    }

    /// A reasoning item whose one summary part streams these deltas.
    fn reasoning(&self, events: &mut Events, deltas: &[String]) {
        let id = format!("rs_{}", self.id);
        let index = events.added(json!({"type": "reasoning", "id": id, "summary": []}));
        events.send(
            "response.reasoning_summary_part.added",
            json!({"item_id": id, "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}}),
        );
        for delta in deltas {
            events.send(
                "response.reasoning_summary_text.delta",
                json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": delta}),
            );
        }
        let text = deltas.concat();
        events.send(
            "response.reasoning_summary_text.done",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
        );
        events.send(
            "response.reasoning_summary_part.done",
            json!({"item_id": id, "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": text}}),
        );
        events.item_done(
            index,
            json!({"type": "reasoning", "id": id, "status": "completed",
                "summary": [{"type": "summary_text", "text": text}],
                "encrypted_content": format!("enc:{text}")}),
        );
    }

    /// Function calls, their arguments in three fragments each.
    fn calls(&self, events: &mut Events, calls: &[FakeToolCall]) {
        for (n, call) in calls.iter().enumerate() {
            let id = format!("fc_{}_{n}", self.id);
            let item = |arguments: &str, status: &str| {
                json!({"type": "function_call", "id": id, "call_id": call.id,
                    "name": call.name, "arguments": arguments, "status": status})
            };
            let index = events.added(item("", "in_progress"));
            for fragment in super::three_fragments(&call.arguments) {
                if !fragment.is_empty() {
                    events.send(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": index, "delta": fragment}),
                    );
                }
            }
            events.send(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": index, "arguments": call.arguments}),
            );
            events.item_done(index, item(&call.arguments, "completed"));
        }
    }

    fn completed(&self, events: &mut Events, output_text: &str) {
        let output = std::mem::take(&mut events.done);
        let response = self.response(
            "completed",
            output,
            json!({"usage": self.responses_usage(output_text)}),
        );
        events.send("response.completed", json!({"response": response}));
    }

    /// The answer to a streaming `POST /v1/responses`.
    pub(crate) fn responses_stream(&self, script: Script) -> Response {
        let mut events = Events::new();
        let zero = std::time::Duration::ZERO;
        match script {
            Script::Status {
                status,
                retry_after,
                body,
            } => return status_response(status, retry_after, body),
            Script::Raw { events: raw } => {
                let steps = raw
                    .into_iter()
                    .map(|event| Step::Send(Bytes::from(format!("data: {event}\n\n"))))
                    .collect();
                return self.streamed_response("text/event-stream", steps);
            }
            Script::Text { chunks, delay } => {
                self.created(&mut events);
                self.message(&mut events, &chunks, delay, true);
                self.completed(&mut events, &chunks.concat());
            }
            Script::Slow {
                chunks,
                first_token_delay,
                delay,
            } => {
                events.sleep(first_token_delay);
                self.created(&mut events);
                self.message(&mut events, &chunks, delay, true);
                self.completed(&mut events, &chunks.concat());
            }
            Script::ToolCalls { calls } => {
                self.created(&mut events);
                self.calls(&mut events, &calls);
                let arguments: String = calls.iter().map(|c| c.arguments.as_str()).collect();
                self.completed(&mut events, &arguments);
            }
            Script::Thinking {
                reasoning,
                chunks,
                calls,
                ..
            } => {
                self.created(&mut events);
                self.reasoning(&mut events, &reasoning);
                if !chunks.is_empty() {
                    self.message(&mut events, &chunks, zero, true);
                }
                self.calls(&mut events, &calls);
                self.completed(
                    &mut events,
                    &format!("{}{}", reasoning.concat(), chunks.concat()),
                );
            }
            Script::CutAfter { chunks } => {
                self.created(&mut events);
                self.message(&mut events, &chunks, zero, false);
            }
            Script::Abort { chunks } => {
                self.created(&mut events);
                self.message(&mut events, &chunks, zero, false);
                events.steps.push(Step::Sleep(FLUSH_PAUSE));
                events.steps.push(Step::Fail);
            }
            Script::ErrorInStream { chunks, message } => {
                self.created(&mut events);
                self.message(&mut events, &chunks, zero, false);
                let response = self.response(
                    "failed",
                    Vec::new(),
                    json!({"error": {"code": "server_error", "message": message}}),
                );
                events.send("response.failed", json!({"response": response}));
            }
            Script::Hang { chunks } => {
                self.created(&mut events);
                self.message(&mut events, &chunks, zero, false);
                events.steps.push(Step::Hang);
            }
        }
        self.streamed_response("text/event-stream", events.steps)
    }

    /// The answer to a non-streaming `POST /v1/responses`: one response
    /// object with the script's text.
    pub(crate) async fn responses_unary(&self, script: Script) -> Response {
        let text = match script {
            Script::Status {
                status,
                retry_after,
                body,
            } => return status_response(status, retry_after, body),
            Script::ErrorInStream { message, .. } => {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, &message, "server_error");
            }
            Script::Slow {
                chunks,
                first_token_delay,
                ..
            } => {
                tokio::time::sleep(first_token_delay).await;
                chunks.concat()
            }
            Script::Text { chunks, .. }
            | Script::Thinking { chunks, .. }
            | Script::CutAfter { chunks }
            | Script::Abort { chunks }
            | Script::Hang { chunks } => chunks.concat(),
            Script::ToolCalls { .. } | Script::Raw { .. } => String::new(),
        };
        let output = vec![json!({"type": "message", "id": format!("msg_{}", self.id),
            "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]})];
        axum::Json(self.response(
            "completed",
            output,
            json!({"usage": self.responses_usage(&text)}),
        ))
        .into_response()
    }
}
