//! The chat-completions wire format: every type the daemon sends to or reads
//! from an OpenAI-compatible server, serde only.
//!
//! What we send is typed exactly (messages, tool definitions, the request
//! body); what we read is tolerant, every field optional, because compatible
//! servers (Ollama, vLLM, llama.cpp, Gemini's endpoint) omit `index`, omit the
//! first `id`, send `finish_reason: ""` or put an error object inside the
//! stream. No I/O here, and nothing of ChatKit.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A message of the conversation sent to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    /// A user message with images or files besides text.
    #[serde(rename = "user")]
    UserParts {
        content: Vec<ContentPart>,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
    /// The reasoning items of one model answer as the Responses API returned
    /// them (opaque, their encrypted content included), sent back before
    /// what they led to. Chat completions take none: requests leave them out
    /// ([`without_reasoning`]).
    #[serde(skip)]
    Reasoning {
        items: Vec<Value>,
    },
}

/// Serializes messages for chat completions, which have no reasoning items.
pub(super) fn without_reasoning<S: serde::Serializer>(
    messages: &&[ChatMessage],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(
        messages
            .iter()
            .filter(|m| !matches!(m, ChatMessage::Reasoning { .. })),
    )
}

impl ChatMessage {
    /// A plain assistant answer.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage::Assistant {
            content: Some(content.into()),
            tool_calls: Vec::new(),
        }
    }

    /// Rough size in tokens (four bytes a token plus framing), for budgeting.
    pub fn estimated_tokens(&self) -> usize {
        let bytes = match self {
            ChatMessage::System { content } | ChatMessage::User { content } => content.len(),
            ChatMessage::UserParts { content } => {
                return content
                    .iter()
                    .map(ContentPart::estimated_tokens)
                    .sum::<usize>()
                    + 4;
            }
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                content.as_ref().map_or(0, String::len)
                    + tool_calls
                        .iter()
                        .map(|c| c.function.name.len() + c.function.arguments.len())
                        .sum::<usize>()
            }
            ChatMessage::Tool { content, .. } => content.len(),
            // A model reads the reasoning of the turn in progress and drops
            // earlier turns', so it costs the history next to nothing.
            ChatMessage::Reasoning { .. } => 0,
        };
        bytes / 4 + 4
    }
}

/// One part of a multimodal user message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: ImageUrl,
    },
    /// A document the endpoint reads itself (OpenAI: PDFs).
    File {
        file: FileData,
    },
}

/// An image: a `data:` URL or one the endpoint fetches.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageUrl {
    pub url: String,
}

/// A file sent inline: its name and a `data:` URL of its bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileData {
    pub filename: String,
    pub file_data: String,
}

/// What the chat-completions API bills a detailed image at most (a
/// 2048x768 tile grid); a budget must assume the worst.
const IMAGE_TOKENS: usize = 1_105;

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part from a URL (a `data:` URL included).
    pub fn image(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl {
            image_url: ImageUrl { url: url.into() },
        }
    }

    /// Rough size in tokens: text by its bytes, an image at its worst case,
    /// a file by its decoded bytes.
    pub fn estimated_tokens(&self) -> usize {
        match self {
            ContentPart::Text { text } => text.len() / 4,
            ContentPart::ImageUrl { .. } => IMAGE_TOKENS,
            ContentPart::File { file } => file.file_data.len() * 3 / 4 / 4,
        }
    }
}

/// The kind of a tool call or definition. Chat completions know only
/// functions; the type keeps the `"type"` field from being any other string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    #[default]
    Function,
}

/// A complete tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ToolKind,
    pub function: FunctionCall,
}

impl ToolCall {
    /// A call of function `name` with `arguments` (JSON text as the model
    /// wrote it), paired with its result by `id`.
    pub fn function(
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<String>,
    ) -> Self {
        ToolCall {
            id: id.into(),
            kind: ToolKind::Function,
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }
}

/// The function part of a tool call; `arguments` is JSON text as the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// One entry of the request's `tools`: a function the model may call,
/// `{"type":"function","function":{"name","description","parameters"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDefinition {
    #[serde(rename = "type")]
    kind: ToolKind,
    function: FunctionDefinition,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct FunctionDefinition {
    name: String,
    description: String,
    parameters: Value,
}

impl ToolDefinition {
    /// A function the model may call by `name`; `parameters` is its JSON
    /// Schema.
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        ToolDefinition {
            kind: ToolKind::Function,
            function: FunctionDefinition {
                name: name.into(),
                description: description.into(),
                parameters,
            },
        }
    }

    /// The name the model calls it by.
    pub fn name(&self) -> &str {
        &self.function.name
    }

    /// Its description and JSON Schema, for the Responses API's flatter
    /// shape of a function tool.
    pub(super) fn described(&self) -> (&str, &Value) {
        (&self.function.description, &self.function.parameters)
    }
}

/// The request body we send (`byot`: our own type, not the crate's).
#[derive(Debug, Serialize)]
pub(super) struct ChatRequest<'a> {
    pub(super) model: &'a str,
    #[serde(serialize_with = "without_reasoning")]
    pub(super) messages: &'a [ChatMessage],
    pub(super) stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "<[ToolDefinition]>::is_empty")]
    pub(super) tools: &'a [ToolDefinition],
    /// A tool the model must call (`{"type":"function","function":{"name"}}`);
    /// absent is the endpoint's default, `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tool_choice: Option<ForcedTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) stream_options: Option<StreamOptions>,
    /// `[llm] reasoning_effort`, which OpenAI's chat completions take too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reasoning_effort: Option<crate::config::ReasoningEffort>,
    /// A JSON schema the answer must follow (guardrails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) response_format: Option<&'a serde_json::Value>,
}

/// `tool_choice` naming one function.
#[derive(Debug, Serialize)]
pub(super) struct ForcedTool<'a> {
    #[serde(rename = "type")]
    pub(super) kind: ToolKind,
    pub(super) function: ForcedFunction<'a>,
}

/// The function of a [`ForcedTool`].
#[derive(Debug, Serialize)]
pub(super) struct ForcedFunction<'a> {
    pub(super) name: &'a str,
}

/// Asks for a final chunk with token usage (`include_usage`).
#[derive(Debug, Serialize)]
pub(super) struct StreamOptions {
    pub(super) include_usage: bool,
}

/// Token counts as the model service reports them.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl Usage {
    pub(super) fn record(&self) {
        crate::metrics::get().tokens(
            self.prompt_tokens.unwrap_or(0),
            self.completion_tokens.unwrap_or(0),
        );
    }
}

/// A streamed chunk, every field optional so that any compatible server's
/// variant parses.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Chunk {
    #[serde(default)]
    pub(super) choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    pub(super) error: Option<Value>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ChunkChoice {
    #[serde(default)]
    pub(super) delta: Option<Delta>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Delta {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tool_calls: Option<Vec<ToolCallDelta>>,
    /// The model's thinking, as DeepSeek, vLLM and SGLang stream it. Read
    /// leniently: a value that is not text is ignored, never a lost chunk.
    #[serde(default, deserialize_with = "text_or_none")]
    pub(super) reasoning_content: Option<String>,
    /// The same under the name OpenRouter, Ollama and newer vLLM use.
    #[serde(default, deserialize_with = "text_or_none")]
    pub(super) reasoning: Option<String>,
}

impl Delta {
    /// The thinking this delta carries, under either name; a server that
    /// sends both sends the same text twice, so one is taken.
    pub(super) fn take_reasoning(&mut self) -> Option<String> {
        match self.reasoning_content.take().filter(|r| !r.is_empty()) {
            Some(reasoning) => Some(reasoning),
            None => self.reasoning.take().filter(|r| !r.is_empty()),
        }
    }
}

/// A string field that some servers fill with other shapes (an object of
/// details, `null`): its text when it is text, else nothing.
fn text_or_none<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::String(text) => Some(text),
        _ => None,
    })
}

/// One fragment of a streamed tool call.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ToolCallDelta {
    #[serde(default)]
    pub(super) index: Option<usize>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) function: Option<FunctionDelta>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct FunctionDelta {
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) arguments: Option<String>,
}

/// The message of an error object (`{"message": …}`), or the whole object
/// when it has none, as servers put it in a stream or an error answer.
pub(super) fn error_message(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string())
}

/// The message of an error answer's body: its `error` object's message when
/// it is JSON of that shape, else the body as text.
pub(super) fn error_answer_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) if value.get("error").is_some() => error_message(&value["error"]),
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// A non-streamed completion, as tolerant as [`Chunk`].
#[derive(Debug, Default, Deserialize)]
pub(super) struct Completion {
    #[serde(default)]
    pub(super) choices: Vec<CompletionChoice>,
    #[serde(default)]
    pub(super) usage: Option<Usage>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CompletionChoice {
    #[serde(default)]
    pub(super) message: Option<CompletionMessage>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CompletionMessage {
    #[serde(default)]
    pub(super) content: Option<String>,
}

/// The answer to `GET /models`. Tolerant like the chunks: a missing or
/// malformed `data` reads as no models, and entries without a string `id`
/// are skipped.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ModelList {
    #[serde(default, deserialize_with = "readable_models")]
    pub data: Vec<ListedModel>,
}

/// One model the server offers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ListedModel {
    pub id: String,
}

impl ModelList {
    /// The listed model ids, in the server's order.
    pub fn ids(&self) -> Vec<&str> {
        self.data.iter().map(|m| m.id.as_str()).collect()
    }
}

fn readable_models<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ListedModel>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Array(entries) => entries
            .into_iter()
            .filter_map(|entry| serde_json::from_value(entry).ok())
            .collect(),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests;
