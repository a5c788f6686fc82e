//! Tasks and workflow summaries (protocol section 2.8): what a `task` item and
//! the tasks of a `workflow` item hold, and how a workflow sums itself up.
//!
//! Sources of web-search and file tasks stay opaque JSON: they are relayed and
//! stored, never interpreted. Nothing here says how a task is displayed.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One task, standalone or inside a workflow, tagged by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Task {
    Custom(CustomTask),
    Thought(ThoughtTask),
    WebSearch(WebSearchTask),
    File(FileTask),
    Image(ImageTask),
}

impl Task {
    /// The progress shown next to the task.
    pub fn status_indicator(&self) -> TaskStatus {
        match self {
            Task::Custom(t) => t.status_indicator,
            Task::Thought(t) => t.status_indicator,
            Task::WebSearch(t) => t.status_indicator,
            Task::File(t) => t.status_indicator,
            Task::Image(t) => t.status_indicator,
        }
    }

    /// The task's title, if it has one.
    pub fn title(&self) -> Option<&str> {
        match self {
            Task::Custom(t) => t.title.as_deref(),
            Task::Thought(t) => t.title.as_deref(),
            Task::WebSearch(t) => t.title.as_deref(),
            Task::File(t) => t.title.as_deref(),
            Task::Image(t) => t.title.as_deref(),
        }
    }

    /// The task's markdown body, for the kinds that have one.
    pub fn content(&self) -> Option<&str> {
        match self {
            Task::Custom(t) => t.content.as_deref(),
            Task::Thought(t) => Some(&t.content),
            Task::WebSearch(_) | Task::File(_) | Task::Image(_) => None,
        }
    }
}

/// The progress a task shows: nothing, a spinner, or a check mark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    #[default]
    None,
    Loading,
    Complete,
}

/// A task with free-form title, icon and markdown content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomTask {
    #[serde(default)]
    pub status_indicator: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A name from the protocol's icon list, or `lucide:…` / `vendor:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A step of reasoning; its content is required.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThoughtTask {
    #[serde(default)]
    pub status_indicator: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub content: String,
}

/// A web search: the queries run and the URL sources found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebSearchTask {
    #[serde(default)]
    pub status_indicator: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_query: Option<String>,
    #[serde(default)]
    pub queries: Vec<String>,
    /// URL sources, opaque.
    #[serde(default)]
    pub sources: Vec<Value>,
}

/// Files read: their file sources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileTask {
    #[serde(default)]
    pub status_indicator: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// File sources, opaque.
    #[serde(default)]
    pub sources: Vec<Value>,
}

/// An image being made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageTask {
    #[serde(default)]
    pub status_indicator: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// What a collapsed workflow shows: a title (and icon), or how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkflowSummary {
    Title {
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        icon: Option<String>,
    },
    /// Seconds the workflow took.
    Duration { duration: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_defaults_to_none_and_is_always_written() {
        let task: Task = serde_json::from_value(json!({"type": "image"})).expect("parses");
        assert_eq!(task.status_indicator(), TaskStatus::None);
        assert_eq!(
            serde_json::to_value(&task).expect("serializes"),
            json!({"type": "image", "status_indicator": "none"})
        );
    }

    #[test]
    fn summaries_are_told_apart_by_their_fields() {
        let duration: WorkflowSummary =
            serde_json::from_value(json!({"duration": 3})).expect("parses");
        assert_eq!(duration, WorkflowSummary::Duration { duration: 3 });
        let title: WorkflowSummary =
            serde_json::from_value(json!({"title": "Research"})).expect("parses");
        assert_eq!(
            title,
            WorkflowSummary::Title {
                title: "Research".into(),
                icon: None
            }
        );
    }
}
