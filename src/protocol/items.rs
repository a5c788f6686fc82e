//! Thread items: what a thread holds, user and assistant messages first.
//!
//! Items are stored whole (as this JSON), so every field the reference defines
//! survives a reload. Tasks and workflows are typed (see [`super::tasks`]), and
//! so are the questions of structured input (see [`super::structured`]). A
//! widget's tree and a generated image keep their inner objects as JSON,
//! relayed and stored as they are (the `widgets` module reads a card's text
//! and actions out of its tree).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::structured::{InputStatus, Question};
use super::tasks::{Task, WorkflowSummary};
use super::timestamp::Timestamp;

/// One item of a thread: the fields every item has, plus its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadItem {
    pub id: String,
    pub thread_id: String,
    pub created_at: Timestamp,
    #[serde(flatten)]
    pub kind: ItemKind,
}

impl ThreadItem {
    /// An item of `thread_id` created now.
    pub fn new(id: impl Into<String>, thread_id: impl Into<String>, kind: ItemKind) -> Self {
        Self {
            id: id.into(),
            thread_id: thread_id.into(),
            created_at: Timestamp::now(),
            kind,
        }
    }

    /// A workflow item of `kind` (`custom` or `reasoning`) on `thread_id`,
    /// created now, with no tasks yet and collapsed.
    pub fn new_workflow(thread_id: impl Into<String>, kind: &str) -> Self {
        Self::new(
            super::new_id(super::IdKind::Workflow),
            thread_id,
            ItemKind::Workflow {
                workflow: Workflow {
                    kind: kind.to_owned(),
                    tasks: Vec::new(),
                    summary: None,
                    expanded: false,
                },
            },
        )
    }

    /// Hidden items are model context: stored, never sent to the client.
    pub fn is_hidden(&self) -> bool {
        self.kind.is_hidden()
    }

    /// The `type` tag of this item, as stored in the `item_type` column.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// The `type`-tagged part of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ItemKind {
    UserMessage(UserMessage),
    AssistantMessage(AssistantMessage),
    ClientToolCall(ClientToolCall),
    Widget {
        widget: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        copy_text: Option<String>,
    },
    GeneratedImage {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<Value>,
    },
    StructuredInput {
        #[serde(default)]
        status: InputStatus,
        inputs: Vec<Question>,
    },
    Task {
        task: Task,
    },
    Workflow {
        workflow: Workflow,
    },
    EndOfTurn,
    HiddenContextItem {
        content: Value,
    },
    SdkHiddenContext {
        content: String,
    },
}

impl ItemKind {
    /// See [`ThreadItem::is_hidden`].
    pub fn is_hidden(&self) -> bool {
        matches!(
            self,
            ItemKind::HiddenContextItem { .. } | ItemKind::SdkHiddenContext { .. }
        )
    }

    /// See [`ThreadItem::type_name`].
    pub fn type_name(&self) -> &'static str {
        match self {
            ItemKind::UserMessage(_) => "user_message",
            ItemKind::AssistantMessage(_) => "assistant_message",
            ItemKind::ClientToolCall(_) => "client_tool_call",
            ItemKind::Widget { .. } => "widget",
            ItemKind::GeneratedImage { .. } => "generated_image",
            ItemKind::StructuredInput { .. } => "structured_input",
            ItemKind::Task { .. } => "task",
            ItemKind::Workflow { .. } => "workflow",
            ItemKind::EndOfTurn => "end_of_turn",
            ItemKind::HiddenContextItem { .. } => "hidden_context_item",
            ItemKind::SdkHiddenContext { .. } => "sdk_hidden_context",
        }
    }
}

/// A message the user sent, as the server built it from a `UserMessageInput`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMessage {
    pub content: Vec<UserContent>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_text: Option<String>,
    pub inference_options: InferenceOptions,
}

/// One part of what the user typed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserContent {
    InputText {
        text: String,
    },
    /// An @-mention of an entity. `data` is required by the reference but
    /// optional in the web component's own type, so it defaults to `{}`.
    InputTag {
        id: String,
        text: String,
        #[serde(default)]
        data: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        #[serde(default)]
        interactive: bool,
    },
}

/// Per-message choices the user made in the composer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A tool the user asked the model to use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    pub id: String,
}

/// A file or image attached to a user message. Its server-side `metadata` is
/// integration-private: read from the store, never written to the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "type")]
    pub kind: AttachmentKind,
    pub id: String,
    pub name: String,
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_descriptor: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub metadata: Option<Map<String, Value>>,
}

/// Whether an attachment is shown as an image or as a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentKind {
    File,
    Image,
}

/// A message from the assistant: one or more text parts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    pub content: Vec<AssistantContent>,
}

impl AssistantMessage {
    /// All text parts joined, as the model would read them back.
    pub fn text(&self) -> String {
        self.content.iter().map(|part| part.text.as_str()).collect()
    }
}

/// An `output_text` part of an assistant message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "output_text")]
pub struct AssistantContent {
    #[serde(default)]
    pub annotations: Vec<Annotation>,
    pub text: String,
}

impl AssistantContent {
    /// A plain text part with no annotations.
    pub fn text(text: impl Into<String>) -> Self {
        AssistantContent {
            annotations: Vec::new(),
            text: text.into(),
        }
    }
}

/// A citation attached to a position in the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "annotation")]
pub struct Annotation {
    pub source: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<i64>,
}

/// A call of a tool that runs in the browser (protocol section 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientToolCall {
    #[serde(default)]
    pub status: ClientToolCallStatus,
    pub call_id: String,
    pub name: String,
    pub arguments: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// Whether the browser has answered a client tool call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientToolCallStatus {
    #[default]
    Pending,
    Completed,
}

/// A group of tasks shown as one collapsible block (reasoning or tool activity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub tasks: Vec<Task>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<WorkflowSummary>,
    #[serde(default)]
    pub expanded: bool,
}
