//! The script language of the fake model: what it answers to one request
//! ([`Script`]), the tool calls it makes ([`FakeToolCall`]) and the default
//! replies when no script is queued. How a script becomes HTTP bytes lives in
//! `reply`; queueing scripts lives in `server`.

use std::time::Duration;

/// One tool call the fake model makes, see [`Script::ToolCalls`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeToolCall {
    /// The call id, e.g. `call_1`, that the `tool` reply must quote.
    pub id: String,
    /// The function name.
    pub name: String,
    /// The JSON-encoded arguments, sent as a string like the real API does.
    pub arguments: String,
}

impl FakeToolCall {
    /// A tool call with this id, function name and JSON arguments string.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

/// What the fake answers to one chat-completions request.
///
/// Streaming requests take scripts pushed with [`FakeLlm::push`], non-streaming
/// ones those pushed with [`FakeLlm::push_unary`]. Every stream starts with a
/// chunk whose delta is `{"role":"assistant","content":""}`.
#[derive(Clone, Debug)]
pub enum Script {
    /// Stream one content chunk per entry, each after `delay`, then a
    /// `finish_reason: "stop"` chunk and `[DONE]`. Non-streaming: one
    /// completion with the concatenated text.
    Text {
        /// The content deltas, in order.
        chunks: Vec<String>,
        /// Pause before each content chunk.
        delay: Duration,
    },
    /// Like [`Script::Text`], but the role chunk (the first byte of the body)
    /// only comes after `first_token_delay`; the response headers come at once.
    /// Non-streaming: the whole response waits `first_token_delay`.
    Slow {
        /// The content deltas, in order.
        chunks: Vec<String>,
        /// Pause before the first chunk.
        first_token_delay: Duration,
        /// Pause before each content chunk.
        delay: Duration,
    },
    /// Stream tool calls: for call `i` a delta with its id, type and name, then
    /// its arguments in three fragments; then `finish_reason: "tool_calls"` and
    /// `[DONE]`. Non-streaming: a completion with `message.tool_calls`.
    ToolCalls {
        /// The calls, indexed in order.
        calls: Vec<FakeToolCall>,
    },
    /// Answer at once with this HTTP status, an optional `Retry-After` header
    /// (seconds) and `body`, by default an OpenAI-style error object.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The `Retry-After` header value in seconds, if any.
        retry_after: Option<u64>,
        /// The response body; `None` means an OpenAI-style `server_error`.
        body: Option<String>,
    },
    /// Stream the role chunk and these content chunks, then end the body
    /// cleanly but early: no finish_reason chunk and no `[DONE]`.
    /// Non-streaming: a 200 whose JSON body is cut in the middle.
    CutAfter {
        /// The content deltas sent before the cut.
        chunks: Vec<String>,
    },
    /// Like [`Script::CutAfter`], but the body stream then fails, so the server
    /// aborts the chunked encoding and the client sees a transport error
    /// rather than a clean end of body.
    Abort {
        /// The content deltas sent before the abort.
        chunks: Vec<String>,
    },
    /// Stream these content chunks, then an event
    /// `data: {"error":{"message":..,"type":"server_error"}}`, then end.
    /// Non-streaming: a 500 with that error object.
    ErrorInStream {
        /// The content deltas sent before the error.
        chunks: Vec<String>,
        /// The error message.
        message: String,
    },
    /// Stream the role chunk and these content chunks, then send nothing more
    /// while the client stays connected (for 10 minutes at most).
    /// Non-streaming: 200 headers, then a body that never comes.
    Hang {
        /// The content deltas sent before hanging.
        chunks: Vec<String>,
    },
    /// Stream the model's thinking, one delta per entry of `reasoning` in the
    /// field `field` (`reasoning_content` as DeepSeek and vLLM name it,
    /// `reasoning` as OpenRouter and Ollama do), then these content chunks,
    /// then these tool calls (as [`Script::ToolCalls`] streams them), and a
    /// finish. Non-streaming: one completion with the text and the reasoning
    /// in `message.<field>`. In the Responses API: a reasoning item whose
    /// summary streams the reasoning, then the message, then the calls.
    Thinking {
        /// The delta field the reasoning comes in (chat completions).
        field: &'static str,
        /// The reasoning deltas, in order.
        reasoning: Vec<String>,
        /// The content deltas that follow, in order.
        chunks: Vec<String>,
        /// The tool calls that follow, indexed in order.
        calls: Vec<FakeToolCall>,
    },
    /// Stream exactly these `data:` payloads (raw JSON text, or `[DONE]`), with
    /// no role chunk added: for the quirks of other OpenAI-compatible servers
    /// (no `index`, no first `id`, `finish_reason: ""`). Non-streaming: a 200
    /// whose body is the payloads joined.
    Raw {
        /// The `data:` payloads, in order.
        events: Vec<String>,
    },
}

impl Script {
    /// A [`Script::Text`] with these chunks and no delay.
    pub fn text<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Script::Text {
            chunks: chunks.into_iter().map(Into::into).collect(),
            delay: Duration::ZERO,
        }
    }

    /// A [`Script::ToolCalls`] with a single call.
    pub fn tool_call(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        Script::ToolCalls {
            calls: vec![FakeToolCall::new(id, name, arguments)],
        }
    }

    /// A [`Script::Status`] with this status, no `Retry-After` and the default body.
    pub fn status(status: u16) -> Self {
        Script::Status {
            status,
            retry_after: None,
            body: None,
        }
    }
}
/// The reply to a streaming request when no script is queued: an echo of the
/// last user text, one word per chunk, each after `delay`.
pub(crate) fn default_stream(user_text: &str, delay: Duration) -> Script {
    Script::Text {
        chunks: words_with_spaces(&format!("Hello! You said: {user_text}")),
        delay,
    }
}

/// The reply to a non-streaming request when no script is queued: a title
/// made of the first four words of the last user text.
pub(crate) fn default_unary(user_text: &str) -> Script {
    let title: Vec<&str> = user_text.split_whitespace().take(4).collect();
    Script::text([format!("Title: {}", title.join(" "))])
}

/// Splits text into words, each keeping its trailing spaces, so the pieces
/// concatenate back to the text.
fn words_with_spaces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for piece in text.split_inclusive(' ') {
        match out.last_mut() {
            // Fold runs of spaces into the previous word.
            Some(last) if piece == " " => last.push(' '),
            _ => out.push(piece.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_spaces() {
        let words = words_with_spaces("Hello! You said:  hi there");
        assert_eq!(words, ["Hello! ", "You ", "said:  ", "hi ", "there"]);
        assert_eq!(words.concat(), "Hello! You said:  hi there");
    }
}
