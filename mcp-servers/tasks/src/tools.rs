//! The MCP server: five task tools over the [`Store`], with input validation.
//!
//! Every tool takes a `user_id` that the calling daemon fills in from the authenticated user;
//! the model never sees it. Mistakes the model can fix (an empty title, a bad date, an unknown
//! task) come back as tool results with `is_error: true` and a plain message, never as protocol
//! errors. A task of another user is reported exactly like a task that does not exist.

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::json;

use crate::store::{StatusFilter, Store, StoreError, Task, TaskChanges};

/// The longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// The longest notes accepted, in characters.
pub const MAX_NOTES_CHARS: usize = 10_000;

const INSTRUCTIONS: &str = "Manages the current user's personal task list (a to-do list). \
Use add_task to record something to do, list_tasks to see tasks and find their ids, \
update_task to change a title, notes or due date, complete_task when a task is done, and \
delete_task only when the user asks to remove a task. Due dates are calendar dates YYYY-MM-DD.";

/// A mistake in a tool call, reported to the model as an `is_error` result.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    /// The daemon did not fill in the user.
    #[error("user_id is required.")]
    MissingUser,
    /// No task id was given.
    #[error("task_id is required.")]
    MissingTaskId,
    /// The title is empty or blank.
    #[error("title must not be empty.")]
    EmptyTitle,
    /// The title is too long.
    #[error("title is too long ({0} characters); the limit is 500.")]
    TitleTooLong(usize),
    /// The notes are too long.
    #[error("notes are too long ({0} characters); the limit is 10000.")]
    NotesTooLong(usize),
    /// The due date is not a real `YYYY-MM-DD` date.
    #[error("due must be a calendar date written YYYY-MM-DD, e.g. 2025-03-31 (got {0:?}).")]
    BadDue(String),
    /// The status filter is not one of the three values.
    #[error("status must be \"open\", \"done\" or \"all\" (got {0:?}).")]
    BadStatus(String),
    /// `update_task` was called with nothing to change.
    #[error("Nothing to update: give at least one of title, notes or due.")]
    NothingToUpdate,
    /// The user has no task with this id (or it belongs to someone else).
    #[error("No task with id {0:?}. Call list_tasks with status \"all\" to see the task ids.")]
    NotFound(String),
    /// The store failed; details go to the log only.
    #[error("Internal error: the task list is unavailable right now. Try again later.")]
    Internal,
}

impl From<StoreError> for ToolError {
    fn from(err: StoreError) -> Self {
        tracing::error!(%err, "task store failure");
        ToolError::Internal
    }
}

/// Arguments of `add_task`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddTaskArgs {
    /// The user the task belongs to.
    pub user_id: String,
    /// A short title, e.g. "Buy milk" (1 to 500 characters).
    pub title: String,
    /// Optional longer notes or details.
    pub notes: Option<String>,
    /// Optional due date, YYYY-MM-DD (resolve "tomorrow" etc. to a date first).
    pub due: Option<String>,
}

/// Arguments of `list_tasks`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListTasksArgs {
    /// The user the task belongs to.
    pub user_id: String,
    /// Which tasks to list: "open" (the default), "done" or "all".
    #[schemars(extend("enum" = ["open", "done", "all"], "default" = "open"))]
    pub status: Option<String>,
}

/// Arguments of `update_task`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateTaskArgs {
    /// The user the task belongs to.
    pub user_id: String,
    /// The id of the task to change, as returned by add_task or list_tasks.
    pub task_id: String,
    /// A new title (1 to 500 characters).
    pub title: Option<String>,
    /// New notes; an empty string removes the notes.
    pub notes: Option<String>,
    /// A new due date YYYY-MM-DD; an empty string removes the due date.
    pub due: Option<String>,
}

/// Arguments of `complete_task` and `delete_task`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TaskRefArgs {
    /// The user the task belongs to.
    pub user_id: String,
    /// The id of the task, as returned by add_task or list_tasks.
    pub task_id: String,
}

/// The MCP server for tasks.
#[derive(Debug, Clone)]
pub struct TasksServer {
    store: Store,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl TasksServer {
    /// Creates the server over an opened store.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            tool_router: Self::tool_router(),
        }
    }

    /// Creates a task.
    #[tool(
        description = "Add a new open task to the user's task list and return it (with its id). \
        Use this for anything the user wants to do or remember. `due` is an optional calendar \
        date written YYYY-MM-DD.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn add_task(&self, Parameters(args): Parameters<AddTaskArgs>) -> CallToolResult {
        respond(self.add(args).await)
    }

    /// Lists tasks.
    #[tool(
        description = "List the user's tasks, oldest first, at most 200. By default only open \
        tasks; pass status \"done\" for completed ones or \"all\" for both. Use it to find a \
        task's id before updating, completing or deleting it.",
        annotations(read_only_hint = true)
    )]
    async fn list_tasks(&self, Parameters(args): Parameters<ListTasksArgs>) -> CallToolResult {
        respond(self.list(args).await)
    }

    /// Changes a task.
    #[tool(
        description = "Change the title, notes and/or due date of one of the user's tasks; give \
        at least one of them. An empty string for notes or due removes it. Returns the updated \
        task.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn update_task(&self, Parameters(args): Parameters<UpdateTaskArgs>) -> CallToolResult {
        respond(self.update(args).await)
    }

    /// Completes a task.
    #[tool(
        description = "Mark one of the user's tasks as done and return it. Completing a task \
        that is already done changes nothing.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn complete_task(&self, Parameters(args): Parameters<TaskRefArgs>) -> CallToolResult {
        respond(self.complete(args).await)
    }

    /// Deletes a task.
    #[tool(
        description = "Permanently delete one of the user's tasks. Only when the user asks to \
        remove it; use complete_task for a finished task. Returns {\"deleted\": task_id}.",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn delete_task(&self, Parameters(args): Parameters<TaskRefArgs>) -> CallToolResult {
        respond(self.delete(args).await)
    }
}

impl TasksServer {
    async fn add(&self, args: AddTaskArgs) -> Result<serde_json::Value, ToolError> {
        let user = user(&args.user_id)?;
        let title = title(&args.title)?;
        let notes = notes(args.notes.as_deref())?;
        let due = due(args.due.as_deref())?;
        let task = self
            .store
            .add(user, title, notes.as_deref(), due.as_deref())
            .await?;
        tracing::debug!(task = %task.id, "task added");
        task_json(&task)
    }

    async fn list(&self, args: ListTasksArgs) -> Result<serde_json::Value, ToolError> {
        let user = user(&args.user_id)?;
        let filter = match args.status.as_deref().map(str::trim) {
            None | Some("") | Some("open") => StatusFilter::Open,
            Some("done") => StatusFilter::Done,
            Some("all") => StatusFilter::All,
            Some(other) => return Err(ToolError::BadStatus(other.to_owned())),
        };
        let tasks = self.store.list(user, filter).await?;
        Ok(json!({ "tasks": tasks }))
    }

    async fn update(&self, args: UpdateTaskArgs) -> Result<serde_json::Value, ToolError> {
        let user = user(&args.user_id)?;
        let task_id = task_id(&args.task_id)?;
        let changes = TaskChanges {
            title: args
                .title
                .as_deref()
                .map(title)
                .transpose()?
                .map(str::to_owned),
            notes: args.notes.as_deref().map(|n| notes(Some(n))).transpose()?,
            due: args.due.as_deref().map(|d| due(Some(d))).transpose()?,
        };
        if changes == TaskChanges::default() {
            return Err(ToolError::NothingToUpdate);
        }
        match self.store.update(user, task_id, &changes).await? {
            Some(task) => task_json(&task),
            None => Err(ToolError::NotFound(task_id.to_owned())),
        }
    }

    async fn complete(&self, args: TaskRefArgs) -> Result<serde_json::Value, ToolError> {
        let user = user(&args.user_id)?;
        let task_id = task_id(&args.task_id)?;
        match self.store.complete(user, task_id).await? {
            Some(task) => task_json(&task),
            None => Err(ToolError::NotFound(task_id.to_owned())),
        }
    }

    async fn delete(&self, args: TaskRefArgs) -> Result<serde_json::Value, ToolError> {
        let user = user(&args.user_id)?;
        let task_id = task_id(&args.task_id)?;
        if self.store.delete(user, task_id).await? {
            Ok(json!({ "deleted": task_id }))
        } else {
            Err(ToolError::NotFound(task_id.to_owned()))
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TasksServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("tasks", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}

/// Turns an outcome into a tool result: compact JSON (text and structured) or an error text.
fn respond(outcome: Result<serde_json::Value, ToolError>) -> CallToolResult {
    match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(err) => CallToolResult::error(vec![ContentBlock::text(err.to_string())]),
    }
}

fn task_json(task: &Task) -> Result<serde_json::Value, ToolError> {
    serde_json::to_value(task).map_err(|err| {
        tracing::error!(%err, "serializing a task");
        ToolError::Internal
    })
}

fn user(user_id: &str) -> Result<&str, ToolError> {
    if user_id.trim().is_empty() {
        Err(ToolError::MissingUser)
    } else {
        Ok(user_id)
    }
}

fn task_id(task_id: &str) -> Result<&str, ToolError> {
    let task_id = task_id.trim();
    if task_id.is_empty() {
        Err(ToolError::MissingTaskId)
    } else {
        Ok(task_id)
    }
}

/// Validates a title: trimmed, not empty, at most [`MAX_TITLE_CHARS`].
fn title(title: &str) -> Result<&str, ToolError> {
    let title = title.trim();
    let chars = title.chars().count();
    if chars == 0 {
        Err(ToolError::EmptyTitle)
    } else if chars > MAX_TITLE_CHARS {
        Err(ToolError::TitleTooLong(chars))
    } else {
        Ok(title)
    }
}

/// Validates notes: blank means none; at most [`MAX_NOTES_CHARS`].
fn notes(notes: Option<&str>) -> Result<Option<String>, ToolError> {
    let Some(notes) = notes.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let chars = notes.chars().count();
    if chars > MAX_NOTES_CHARS {
        return Err(ToolError::NotesTooLong(chars));
    }
    Ok(Some(notes.to_owned()))
}

/// Validates a due date: blank means none; else a real date written exactly `YYYY-MM-DD`.
fn due(due: Option<&str>) -> Result<Option<String>, ToolError> {
    let Some(due) = due.map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let well_formed = due.len() == 10
        && due.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !well_formed || chrono::NaiveDate::parse_from_str(due, "%Y-%m-%d").is_err() {
        return Err(ToolError::BadDue(due.to_owned()));
    }
    Ok(Some(due.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_dates_are_strict() {
        assert_eq!(due(Some("2025-03-31")), Ok(Some("2025-03-31".into())));
        assert_eq!(due(Some("  ")), Ok(None));
        assert_eq!(due(None), Ok(None));
        for bad in [
            "2025-02-30",
            "2025-3-31",
            "31/03/2025",
            "tomorrow",
            "2025-03-31T10:00",
        ] {
            assert_eq!(due(Some(bad)), Err(ToolError::BadDue(bad.into())), "{bad}");
        }
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(title("  Buy milk "), Ok("Buy milk"));
        assert_eq!(title(" "), Err(ToolError::EmptyTitle));
        assert_eq!(title(&"é".repeat(500)).map(str::len), Ok(1000));
        assert_eq!(title(&"x".repeat(501)), Err(ToolError::TitleTooLong(501)));
    }

    #[test]
    fn blank_notes_are_none() {
        assert_eq!(notes(Some(" ")), Ok(None));
        assert_eq!(notes(Some(" a ")), Ok(Some("a".into())));
        assert_eq!(
            notes(Some(&"x".repeat(10_001))),
            Err(ToolError::NotesTooLong(10_001))
        );
    }
}
