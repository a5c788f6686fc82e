//! Server-sent stream events and the incremental item updates they carry.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::items::{Annotation, AssistantContent, ThreadItem};
use super::tasks::Task;
use super::thread::Thread;

/// One event of a streamed response (`data: <json>` on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ThreadStreamEvent {
    #[serde(rename = "thread.created")]
    ThreadCreated { thread: Thread },
    #[serde(rename = "thread.updated")]
    ThreadUpdated { thread: Thread },
    #[serde(rename = "thread.item.added")]
    ItemAdded { item: ThreadItem },
    #[serde(rename = "thread.item.updated")]
    ItemUpdated { item_id: String, update: ItemUpdate },
    #[serde(rename = "thread.item.done")]
    ItemDone { item: ThreadItem },
    #[serde(rename = "thread.item.removed")]
    ItemRemoved { item_id: String },
    #[serde(rename = "thread.item.replaced")]
    ItemReplaced { item: ThreadItem },
    #[serde(rename = "stream_options")]
    StreamOptions { stream_options: StreamOptions },
    #[serde(rename = "progress_update")]
    ProgressUpdate {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        icon: Option<String>,
    },
    #[serde(rename = "client_effect")]
    ClientEffect {
        name: String,
        #[serde(default)]
        data: Map<String, Value>,
    },
    #[serde(rename = "notice")]
    Notice {
        level: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        code: StreamErrorCode,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default)]
        allow_retry: bool,
    },
}

impl ThreadStreamEvent {
    /// The reference's shape for an unexpected failure: a generic, retryable error.
    pub fn stream_error() -> Self {
        ThreadStreamEvent::Error {
            code: StreamErrorCode::StreamError,
            message: None,
            allow_retry: true,
        }
    }

    /// A failure with a message the user should read.
    pub fn custom_error(message: impl Into<String>, allow_retry: bool) -> Self {
        ThreadStreamEvent::Error {
            code: StreamErrorCode::Custom,
            message: Some(message.into()),
            allow_retry,
        }
    }
}

/// The code of an `error` event. The set is open; `stream.error` makes the
/// client show its own localized message, `custom` shows ours.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamErrorCode {
    #[serde(rename = "stream.error")]
    StreamError,
    #[default]
    #[serde(rename = "custom")]
    Custom,
}

/// Options of a responder stream; `allow_cancel` shows the stop button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOptions {
    pub allow_cancel: bool,
}

/// An incremental change to an item that is still streaming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ItemUpdate {
    #[serde(rename = "assistant_message.content_part.added")]
    ContentPartAdded {
        content_index: usize,
        content: AssistantContent,
    },
    #[serde(rename = "assistant_message.content_part.text_delta")]
    TextDelta { content_index: usize, delta: String },
    #[serde(rename = "assistant_message.content_part.annotation_added")]
    AnnotationAdded {
        content_index: usize,
        annotation_index: usize,
        annotation: Annotation,
    },
    #[serde(rename = "assistant_message.content_part.done")]
    ContentPartDone {
        content_index: usize,
        content: AssistantContent,
    },
    #[serde(rename = "widget.streaming_text.value_delta")]
    WidgetValueDelta {
        component_id: String,
        delta: String,
        done: bool,
    },
    #[serde(rename = "widget.component.updated")]
    WidgetComponentUpdated {
        component_id: String,
        component: Value,
    },
    #[serde(rename = "widget.root.updated")]
    WidgetRootUpdated { widget: Value },
    #[serde(rename = "workflow.task.added")]
    WorkflowTaskAdded { task_index: usize, task: Task },
    #[serde(rename = "workflow.task.updated")]
    WorkflowTaskUpdated { task_index: usize, task: Task },
    #[serde(rename = "generated_image.updated")]
    GeneratedImageUpdated {
        image: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<f64>,
    },
}
