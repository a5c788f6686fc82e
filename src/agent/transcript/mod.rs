//! The transcript: a thread's stored items as the model reads them. The
//! typed hidden records a run stores beside what the user sees (tool calls
//! and results, widget state, approval cards: `records.rs`), the model's
//! input built from a history (`history.rs`), and attachments and tool
//! images in that input (`media.rs`).
//!
//! Pure functions over items: no `Run`, no async, no I/O (loading the media
//! a history names is the run's), so each is tested on its own.

mod agents;
mod history;
mod media;
mod records;

pub use agents::{GuardrailRecord, GuardrailVerdict, HandoffRecord, active_agent};
pub use history::{build_messages, build_messages_with_media};
pub use media::{Media, named_attachments, tool_images, user_text};
pub use records::{
    ApprovalState, GeneratedImageRecord, PendingApproval, PendingCall, ReasoningRecord, StoredCall,
    StoredImage, ToolRecord, UiRecord, WidgetSource, state_id,
};
