//! Threads and pages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::items::ThreadItem;
use super::timestamp::Timestamp;

/// A thread as stored: everything but its items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub id: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub status: ThreadStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_image_domains: Option<Vec<String>>,
    /// Server-private; the wire always carries `{}` (see [`Thread::from_metadata`]).
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl ThreadMetadata {
    /// Whether the thread takes new messages and runs: only an active one.
    pub fn takes_messages(&self) -> bool {
        self.status == ThreadStatus::Active
    }

    /// A new, untitled, active thread.
    pub fn new(id: String, created_at: Timestamp) -> Self {
        ThreadMetadata {
            title: None,
            id,
            created_at,
            status: ThreadStatus::Active,
            allowed_image_domains: None,
            metadata: Map::new(),
        }
    }
}

/// Whether the composer is usable. Locked and closed threads refuse new runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThreadStatus {
    #[default]
    Active,
    Locked {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Closed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// A thread as sent to the client: its metadata and a page of its items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    #[serde(flatten)]
    pub meta: ThreadMetadata,
    #[serde(default)]
    pub items: Page<ThreadItem>,
}

impl Thread {
    /// The wire form of a stored thread: private metadata dropped, items as given.
    pub fn from_metadata(meta: &ThreadMetadata, items: Page<ThreadItem>) -> Self {
        let mut meta = meta.clone();
        meta.metadata = Map::new();
        Thread { meta, items }
    }
}

/// One page of a keyset-paginated listing. `after` is the id of the last
/// record and is present only when `has_more` is true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Page {
            data: Vec::new(),
            has_more: false,
            after: None,
        }
    }
}

impl<T> Page<T> {
    /// Maps the records, keeping the cursor.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
            after: self.after,
        }
    }
}
