//! ChatKit wire types: requests, thread items, stream events and pages.
//!
//! These are plain serde types with no I/O, shaped after the reference server
//! (`openai-chatkit` 1.6.5) and serialized the way it serializes: `type` tags,
//! nulls omitted, non-null defaults always written, ISO 8601 timestamps. They
//! know nothing of HTTP, stores or models, so they can be tested against JSON the
//! reference produced (`tests/fixtures/reference`).

mod events;
mod ids;
mod items;
#[cfg(test)]
mod request_properties;
mod requests;
pub mod scrub;
mod structured;
mod tasks;
mod thread;
mod timestamp;
mod unique_keys;

pub use events::{ItemUpdate, StreamErrorCode, StreamOptions, ThreadStreamEvent};
pub use ids::{IdKind, MAX_ID_LEN, MAX_USER_ID_LEN, is_id, is_user_id, new_id};
pub use items::{
    Annotation, AssistantContent, AssistantMessage, Attachment, AttachmentKind, ClientToolCall,
    ClientToolCallStatus, InferenceOptions, ItemKind, ThreadItem, ToolChoice, UserContent,
    UserMessage, Workflow,
};
pub use requests::{
    ActionParams, AttachmentCreateParams, AttachmentDeleteParams, ClientToolOutputParams,
    CustomAction, FeedbackKind, FeedbackParams, ItemsListParams, ListParams, Order, REQUEST_TYPES,
    Request, RequestError, RetryParams, ThreadIdParams, ThreadInputParams, ThreadUpdateParams,
    TranscribeParams, UserMessageInput,
};
pub use structured::{
    ChoiceOption, InputStatus, Question, QuestionAnswer, StructuredInputParams,
    StructuredInputSubmission, SubmissionStatus,
};
pub use tasks::{
    CustomTask, FileTask, ImageTask, Task, TaskStatus, ThoughtTask, WebSearchTask, WorkflowSummary,
};
pub use thread::{Page, Thread, ThreadMetadata, ThreadStatus};
pub use timestamp::Timestamp;
