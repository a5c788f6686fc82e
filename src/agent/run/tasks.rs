//! A tool call as the user sees it while a step runs: one task of the
//! step's workflow item, with its arguments while it runs, what its server
//! last reported, the question it waits on, then its verdict, time and
//! (cut) output.

use crate::llm::ToolCall;
use crate::mcp::ToolProgress;
use crate::protocol::{CustomTask, Task, TaskStatus};
use crate::text::{code_block, cut_chars};

/// Longest arguments or output text a task shows.
const MAX_TASK_TEXT: usize = 400;

/// A workflow task showing one call: its arguments while it runs, its verdict,
/// time and (cut) output once done.
pub(super) fn task(call: &ToolCall, state: TaskState<'_>) -> Task {
    let (status_indicator, content) = match state {
        TaskState::Running => (
            TaskStatus::Loading,
            running_content(&call.function.arguments),
        ),
        TaskState::Progress(progress) => (
            TaskStatus::Loading,
            format!(
                "{}\n\n{}",
                running_content(&call.function.arguments),
                progress_text(progress)
            ),
        ),
        TaskState::Asking(message) => (
            TaskStatus::Loading,
            format!(
                "{}\n\nwaiting for your answer: {}",
                running_content(&call.function.arguments),
                cut_chars(message, MAX_TASK_TEXT, "…")
            ),
        ),
        TaskState::Done {
            output,
            is_error,
            seconds,
        } => {
            let verdict = if is_error { "failed" } else { "done" };
            let summary = cut_chars(output, MAX_TASK_TEXT, "…");
            (
                TaskStatus::Complete,
                format!("{verdict} in {seconds:.1}s\n\n{}", code_block("", &summary)),
            )
        }
    };
    Task::Custom(CustomTask {
        status_indicator,
        title: Some(call.function.name.clone()),
        icon: Some("bolt".to_owned()),
        content: Some(content),
    })
}

/// A server's progress report as a task line: `3/10 (30%)`, or the count
/// alone without a total, then its message.
fn progress_text(progress: &ToolProgress) -> String {
    let mut text = match progress.total {
        Some(total) if total > 0.0 => format!(
            "progress: {}/{} ({:.0}%)",
            progress.progress,
            total,
            (progress.progress / total * 100.0).clamp(0.0, 100.0)
        ),
        _ => format!("progress: {}", progress.progress),
    };
    if let Some(message) = progress.message.as_deref().filter(|m| !m.trim().is_empty()) {
        text.push_str(" - ");
        text.push_str(&cut_chars(message, MAX_TASK_TEXT, "…"));
    }
    text
}

/// What a running task shows: the call's arguments, as the model sent them,
/// cut to [`MAX_TASK_TEXT`] characters.
fn running_content(arguments: &str) -> String {
    let arguments = arguments.trim();
    let arguments = if arguments.is_empty() {
        "{}"
    } else {
        arguments
    };
    format!(
        "arguments:\n{}",
        code_block("json", &cut_chars(arguments, MAX_TASK_TEXT, "…"))
    )
}

pub(super) enum TaskState<'a> {
    Running,
    /// Running, with what its server last reported.
    Progress(&'a ToolProgress),
    /// Waiting for the user's answer to its server's question.
    Asking(&'a str),
    Done {
        output: &'a str,
        is_error: bool,
        seconds: f64,
    },
}

#[cfg(test)]
mod tests;
