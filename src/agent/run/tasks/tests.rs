//! Tests of what a tool call shows as a task: its arguments, then its
//! outcome, in code blocks nothing inside can close, cut with a mark.

use super::*;
use serde_json::json;

fn call(arguments: &str) -> ToolCall {
    ToolCall::function("c1", "add_task", arguments)
}

#[test]
fn tasks_show_the_arguments_then_the_outcome() {
    let running = task(&call(r#"{"title":"buy milk"}"#), TaskState::Running);
    assert_eq!(
        serde_json::to_value(&running).expect("json"),
        json!({
            "type": "custom",
            "status_indicator": "loading",
            "title": "add_task",
            "icon": "bolt",
            "content": "arguments:\n```json\n{\"title\":\"buy milk\"}\n```",
        })
    );
    assert_eq!(
        task(&call("  "), TaskState::Running).content(),
        Some("arguments:\n```json\n{}\n```")
    );
    let done = task(
        &call("{}"),
        TaskState::Done {
            output: "{\"id\":1}",
            is_error: false,
            seconds: 0.21,
        },
    );
    assert_eq!(done.status_indicator(), TaskStatus::Complete);
    assert_eq!(done.content(), Some("done in 0.2s\n\n```\n{\"id\":1}\n```"));
}

/// Arguments and output holding a fence of their own stay inside the
/// task's code block: its fence is longer than any run of backticks
/// inside.
#[test]
fn backticks_in_arguments_or_output_cannot_close_the_block() {
    let arguments = "{\"title\":\"x\"}\n```\n# injected\n![img](https://example.com/x.png)";
    let running = task(&call(arguments), TaskState::Running);
    assert_eq!(
        running.content(),
        Some(format!("arguments:\n````json\n{arguments}\n````").as_str())
    );
    let output = "ok\n`````\n**bold**";
    let done = task(
        &call("{}"),
        TaskState::Done {
            output,
            is_error: false,
            seconds: 1.0,
        },
    );
    assert_eq!(
        done.content(),
        Some(format!("done in 1.0s\n\n``````\n{output}\n``````").as_str())
    );
}

#[test]
fn long_texts_are_cut_with_a_mark() {
    let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(1000));
    let content = running_content(&long);
    let shown = content
        .strip_prefix("arguments:\n```json\n")
        .and_then(|c| c.strip_suffix("\n```"))
        .expect("the arguments block");
    assert_eq!(shown.chars().count(), MAX_TASK_TEXT + 1);
    assert!(shown.ends_with('…'));
}
