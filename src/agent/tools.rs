//! The tool step of a run: the calls the model asked for run concurrently on
//! the MCP servers, the UI sees them as tasks of a workflow item, and the
//! calls and their results are stored as hidden items so the next turn's
//! history replays them exactly.
//!
//! Stored shapes (`hidden_context_item` content):
//! `{"type":"chatkitd.tool_calls","calls":[{"id","name","arguments"}]}` for
//! what the model asked, and
//! `{"type":"chatkitd.tool_result","call_id","name","output","is_error"}` for
//! each result. [`super::history`] turns them back into chat messages.

use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};

use super::{Run, Stop};
use crate::llm::{ChatMessage, ToolCall};
use crate::protocol::{
    IdKind, ItemKind, ItemUpdate, ThreadItem, ThreadStreamEvent, Timestamp, Workflow, new_id,
};

/// `type` of the hidden item holding the calls of one model answer.
pub const TOOL_CALLS: &str = "chatkitd.tool_calls";
/// `type` of the hidden item holding one call's result.
pub const TOOL_RESULT: &str = "chatkitd.tool_result";

/// The hidden item recording what the model asked for.
pub fn calls_item(thread_id: &str, calls: &[ToolCall]) -> ThreadItem {
    let calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"id": c.id, "name": c.function.name, "arguments": c.function.arguments}))
        .collect();
    hidden(thread_id, json!({"type": TOOL_CALLS, "calls": calls}))
}

/// The hidden item recording one call's result.
pub fn result_item(thread_id: &str, call: &ToolCall, output: &str, is_error: bool) -> ThreadItem {
    hidden(
        thread_id,
        json!({
            "type": TOOL_RESULT,
            "call_id": call.id,
            "name": call.function.name,
            "output": output,
            "is_error": is_error,
        }),
    )
}

fn hidden(thread_id: &str, content: Value) -> ThreadItem {
    ThreadItem {
        id: new_id(IdKind::Message),
        thread_id: thread_id.to_owned(),
        created_at: Timestamp::now(),
        kind: ItemKind::HiddenContextItem { content },
    }
}

/// A workflow task showing one call.
fn task(call: &ToolCall, state: TaskState<'_>) -> Value {
    let (indicator, content) = match state {
        TaskState::Running => ("loading", Some(running_content(&call.function.arguments))),
        TaskState::Done {
            output,
            is_error,
            seconds,
        } => {
            let mut summary: String = output.chars().take(400).collect();
            if output.chars().count() > 400 {
                summary.push('…');
            }
            let verdict = if is_error { "failed" } else { "done" };
            (
                "complete",
                Some(format!("{verdict} in {seconds:.1}s\n\n```\n{summary}\n```")),
            )
        }
    };
    let mut task = json!({
        "status_indicator": indicator,
        "type": "custom",
        "title": format!("{}", call.function.name),
        "icon": "bolt",
    });
    if let Some(content) = content {
        task["content"] = Value::String(content);
    }
    task
}

/// Longest arguments text a running task shows.
const MAX_TASK_ARGUMENTS: usize = 400;

/// What a running task shows: the call's arguments, as the model sent them,
/// cut to [`MAX_TASK_ARGUMENTS`] characters. `chatkitd chat` reads them back
/// with [`task_arguments`].
pub fn running_content(arguments: &str) -> String {
    let arguments = arguments.trim();
    let arguments = if arguments.is_empty() {
        "{}"
    } else {
        arguments
    };
    let mut shown: String = arguments.chars().take(MAX_TASK_ARGUMENTS).collect();
    if arguments.chars().count() > MAX_TASK_ARGUMENTS {
        shown.push('…');
    }
    format!("arguments:\n```json\n{shown}\n```")
}

/// The arguments shown by a running task's content (see [`running_content`]).
pub fn task_arguments(content: &str) -> Option<&str> {
    let rest = content.strip_prefix("arguments:")?.trim_start();
    let rest = rest.strip_prefix("```json")?;
    let end = rest.rfind("```")?;
    Some(rest[..end].trim())
}

/// A completed task's content split into its verdict line (`done in 0.2s`
/// or `failed in 0.1s`) and the (possibly cut) output it shows.
pub fn task_outcome(content: &str) -> (&str, &str) {
    let (verdict, rest) = content.split_once('\n').unwrap_or((content, ""));
    let rest = rest.trim();
    let output = rest
        .strip_prefix("```")
        .and_then(|r| r.strip_suffix("```"))
        .map_or(rest, str::trim);
    (verdict.trim(), output)
}

enum TaskState<'a> {
    Running,
    Done {
        output: &'a str,
        is_error: bool,
        seconds: f64,
    },
}

impl Run<'_> {
    /// Runs the calls concurrently and returns the tool messages for the model.
    pub(super) async fn run_tools(&mut self, calls: &[ToolCall]) -> Result<Vec<ChatMessage>, Stop> {
        let Some(mcp) = self.agent.mcp.clone() else {
            return Ok(Vec::new());
        };
        let user = self.input.identity.user_id.clone();
        let thread_id = self.input.thread.id.clone();
        if let Err(e) = self
            .agent
            .store
            .add_item(&user, &calls_item(&thread_id, calls))
            .await
        {
            return self.fail_store(e).await.map(|()| Vec::new());
        }
        self.open_calls = calls.to_vec();

        let started = Instant::now();
        let mut workflow = ThreadItem {
            id: new_id(IdKind::Workflow),
            thread_id: thread_id.clone(),
            created_at: Timestamp::now(),
            kind: ItemKind::Workflow {
                workflow: Workflow {
                    kind: "custom".to_owned(),
                    tasks: Vec::new(),
                    summary: None,
                    expanded: false,
                },
            },
        };
        self.emit(ThreadStreamEvent::ItemAdded {
            item: workflow.clone(),
        })
        .await?;
        let mut tasks: Vec<Value> = calls.iter().map(|c| task(c, TaskState::Running)).collect();
        for (task_index, task) in tasks.iter().enumerate() {
            self.emit(ThreadStreamEvent::ItemUpdated {
                item_id: workflow.id.clone(),
                update: ItemUpdate::WorkflowTaskAdded {
                    task_index,
                    task: task.clone(),
                },
            })
            .await?;
        }

        let mut pending: FuturesUnordered<_> = calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let mcp = mcp.clone();
                let user = user.clone();
                async move {
                    let outcome = mcp
                        .call(&user, &call.function.name, &call.function.arguments)
                        .await;
                    (index, outcome)
                }
            })
            .collect();
        let mut outputs: Vec<Option<(String, bool)>> = vec![None; calls.len()];
        while !pending.is_empty() {
            let finished = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
                finished = pending.next() => finished,
            };
            let Some((index, outcome)) = finished else {
                break;
            };
            let call = &calls[index];
            tracing::info!(
                server = %outcome.server,
                tool = %outcome.tool,
                is_error = outcome.is_error,
                elapsed_ms = outcome.elapsed.as_millis() as u64,
                "tool call finished"
            );
            let result = result_item(&thread_id, call, &outcome.output, outcome.is_error);
            if let Err(e) = self.agent.store.add_item(&user, &result).await {
                return self.fail_store(e).await.map(|()| Vec::new());
            }
            self.open_calls.retain(|open| open.id != call.id);
            tasks[index] = task(
                call,
                TaskState::Done {
                    output: &outcome.output,
                    is_error: outcome.is_error,
                    seconds: outcome.elapsed.as_secs_f64(),
                },
            );
            self.emit(ThreadStreamEvent::ItemUpdated {
                item_id: workflow.id.clone(),
                update: ItemUpdate::WorkflowTaskUpdated {
                    task_index: index,
                    task: tasks[index].clone(),
                },
            })
            .await?;
            outputs[index] = Some((outcome.output, outcome.is_error));
        }

        workflow.kind = ItemKind::Workflow {
            workflow: Workflow {
                kind: "custom".to_owned(),
                tasks,
                summary: Some(json!({"duration": started.elapsed().as_secs()})),
                expanded: false,
            },
        };
        if let Err(e) = self.agent.store.add_item(&user, &workflow).await {
            return self.fail_store(e).await.map(|()| Vec::new());
        }
        self.emit(ThreadStreamEvent::ItemDone { item: workflow })
            .await?;

        Ok(calls
            .iter()
            .zip(outputs)
            .map(|(call, output)| ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content: output.map(|(text, _)| text).unwrap_or_default(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_contents_read_back() {
        let content = running_content(r#"{"title":"buy milk"}"#);
        assert_eq!(task_arguments(&content), Some(r#"{"title":"buy milk"}"#));
        assert_eq!(task_arguments(&running_content("")), Some("{}"));
        let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(1000));
        let shown = task_arguments(&running_content(&long)).map(|a| a.chars().count());
        assert_eq!(shown, Some(MAX_TASK_ARGUMENTS + 1));
        assert_eq!(
            task_outcome("done in 0.2s\n\n```\n{\"id\":1}\n```"),
            ("done in 0.2s", "{\"id\":1}")
        );
        assert_eq!(task_outcome("failed in 1.0s"), ("failed in 1.0s", ""));
    }
}
