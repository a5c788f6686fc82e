//! Tests of the terminal renderer: answers, thoughts and tool tasks on one
//! line each,
//! code fences read as their contents, widgets as cards, approval cards
//! remembered for the session.

use super::*;
use crate::protocol::{CustomTask, ThoughtTask};

fn rendered(events: Vec<ThreadStreamEvent>) -> String {
    let mut out = Vec::new();
    let mut render = Render::new(&mut out, Glyphs::ASCII);
    for event in events {
        render.event(event).expect("written");
    }
    render.end_line().expect("written");
    String::from_utf8(out).expect("utf-8")
}

fn delta(text: &str) -> ThreadStreamEvent {
    ThreadStreamEvent::ItemUpdated {
        item_id: "msg_1".into(),
        update: ItemUpdate::TextDelta {
            content_index: 0,
            delta: text.into(),
        },
    }
}

fn custom(name: &str, status_indicator: TaskStatus, content: &str) -> Task {
    Task::Custom(CustomTask {
        status_indicator,
        title: Some(name.into()),
        icon: Some("bolt".into()),
        content: Some(content.into()),
    })
}

/// A call starting, with its arguments in a JSON block as the agent shows them.
fn added(index: usize, name: &str, arguments: &str) -> ThreadStreamEvent {
    let content = format!("arguments:\n```json\n{arguments}\n```");
    ThreadStreamEvent::ItemUpdated {
        item_id: "wf_1".into(),
        update: ItemUpdate::WorkflowTaskAdded {
            task_index: index,
            task: custom(name, TaskStatus::Loading, &content),
        },
    }
}

fn updated(index: usize, name: &str, content: &str) -> ThreadStreamEvent {
    ThreadStreamEvent::ItemUpdated {
        item_id: "wf_1".into(),
        update: ItemUpdate::WorkflowTaskUpdated {
            task_index: index,
            task: custom(name, TaskStatus::Complete, content),
        },
    }
}

#[test]
fn a_tool_call_reads_on_one_line_then_the_answer() {
    let text = rendered(vec![
        added(0, "add_task", r#"{"title": "buy milk"}"#),
        updated(0, "add_task", "done in 0.2s\n\n```\n{\"id\":1}\n```"),
        delta("Added "),
        delta("it."),
    ]);
    assert_eq!(
        text,
        "  * add_task arguments: {\"title\": \"buy milk\"} ... done in 0.2s\n    -> {\"id\":1}\nAdded it.\n"
    );
}

/// What the agent shows for arguments and output that hold fences of
/// their own reads as the text they are, fences included.
#[test]
fn fences_inside_a_longer_fence_are_text() {
    use crate::text::code_block;
    let arguments = "{\"a\":1}\n```\n# not a heading";
    let output = "first\n``````\nlast";
    let text = rendered(vec![
        ThreadStreamEvent::ItemUpdated {
            item_id: "wf_1".into(),
            update: ItemUpdate::WorkflowTaskAdded {
                task_index: 0,
                task: custom(
                    "a",
                    TaskStatus::Loading,
                    &format!("arguments:\n{}", code_block("json", arguments)),
                ),
            },
        },
        updated(
            0,
            "a",
            &format!("done in 0.1s\n\n{}", code_block("", output)),
        ),
    ]);
    assert_eq!(
        text,
        "  * a arguments: {\"a\":1} ``` # not a heading ... done in 0.1s\n    -> first `````` last\n"
    );
}

#[test]
fn fences_close_only_on_their_own_kind_and_length() {
    assert_eq!(
        terminal_lines("a\n````json\n```\n~~~\nx\n  ````  \nb"),
        ["a", "```", "~~~", "x", "b"]
    );
    assert_eq!(terminal_lines("~~~\n```\n~~~~\nc"), ["```", "c"]);
    assert_eq!(terminal_lines("    ```\nindented"), ["```", "indented"]);
    assert_eq!(
        terminal_lines("``` a`b\nnot a fence"),
        ["``` a`b", "not a fence"]
    );
}

#[test]
fn concurrent_calls_get_lines_of_their_own() {
    let text = rendered(vec![
        added(0, "a", "{}"),
        added(1, "b", "{}"),
        updated(1, "b", "failed in 0.1s\n\n```\nboom\n```"),
        updated(0, "a", "done in 0.3s\n\n```\nok\n```"),
    ]);
    assert_eq!(
        text,
        "  * a arguments: {} ...\n  * b arguments: {} ... failed in 0.1s\n    -> boom\n  * a ... done in 0.3s\n    -> ok\n"
    );
}

#[test]
fn any_task_renders_from_its_fields() {
    let thought = Task::Thought(ThoughtTask {
        status_indicator: TaskStatus::None,
        title: Some("Planning".into()),
        content: "First **check** the order.\n\nThen ship.".into(),
    });
    let bare = Task::Custom(CustomTask {
        status_indicator: TaskStatus::Loading,
        title: None,
        icon: None,
        content: None,
    });
    let mut done = bare.clone();
    if let Task::Custom(task) = &mut done {
        task.status_indicator = TaskStatus::Complete;
    }
    let event = |update| ThreadStreamEvent::ItemUpdated {
        item_id: "wf_2".into(),
        update,
    };
    let text = rendered(vec![
        event(ItemUpdate::WorkflowTaskAdded {
            task_index: 0,
            task: thought,
        }),
        event(ItemUpdate::WorkflowTaskAdded {
            task_index: 1,
            task: bare,
        }),
        event(ItemUpdate::WorkflowTaskUpdated {
            task_index: 1,
            task: done,
        }),
    ]);
    assert_eq!(
        text,
        "  ~ Planning First **check** the order. Then ship.\n  * tool ... done\n"
    );
}

#[test]
fn thinking_grows_on_its_line_and_the_answer_starts_on_the_next() {
    let thought = |index: usize, content: &str, added: bool| {
        let task = Task::Thought(ThoughtTask {
            status_indicator: TaskStatus::None,
            title: None,
            content: content.into(),
        });
        ThreadStreamEvent::ItemUpdated {
            item_id: "wf_1".into(),
            update: if added {
                ItemUpdate::WorkflowTaskAdded {
                    task_index: index,
                    task,
                }
            } else {
                ItemUpdate::WorkflowTaskUpdated {
                    task_index: index,
                    task,
                }
            },
        }
    };
    let text = rendered(vec![
        thought(0, "The user", true),
        thought(0, "The user asks\nfor tea.", false),
        thought(1, "Say yes.", true),
        delta("Yes!"),
    ]);
    assert_eq!(text, "  ~ The user asks for tea.\n  ~ Say yes.\nYes!\n");
}

#[test]
fn widgets_read_as_cards_and_approval_cards_are_remembered() {
    use crate::protocol::ThreadItem;
    use crate::widgets::{ApprovalCall, approval_card};
    let card = approval_card(
        &[ApprovalCall {
            tool: "delete_task".into(),
            server: "tasks".into(),
            arguments: serde_json::json!({"task_id": "t1"}),
        }],
        &["c1".to_owned()],
    );
    let item = ThreadItem::new(
        "msg_card",
        "thr_1",
        ItemKind::Widget {
            widget: card,
            copy_text: None,
        },
    );
    let mut out = Vec::new();
    let mut render = Render::new(&mut out, Glyphs::ASCII);
    render
        .event(ThreadStreamEvent::ItemDone { item })
        .expect("written");
    let Some(Pending::Card(pending)) = render.take_pending() else {
        panic!("an approval card");
    };
    assert_eq!(pending.widget_id, "msg_card");
    assert_eq!(pending.payload, serde_json::json!({"call_ids": ["c1"]}));
    assert_eq!(render.take_pending(), None);
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        text,
        "  | Run delete_task?\n  | **delete_task** on tasks\n  | {\n  | \"task_id\": \"t1\"\n  | }\n  | [Approve]  [Deny]\n"
    );
}

#[test]
fn long_task_text_is_cut_to_the_line() {
    let long = "x".repeat(500);
    let text = rendered(vec![
        added(0, "a", &long),
        updated(0, "a", &format!("done in 1.0s\n\n```\n{long}\n```")),
    ]);
    let expected_args = format!("arguments: {}...", &"x".repeat(MAX_LINE_SHOWN - 11));
    let expected_out = format!("{}...", "x".repeat(MAX_OUTPUT_SHOWN));
    assert_eq!(
        text,
        format!("  * a {expected_args} ... done in 1.0s\n    -> {expected_out}\n")
    );
}

#[test]
fn a_handoff_says_who_answers_now() {
    let handoff = ThreadStreamEvent::ItemDone {
        item: crate::protocol::ThreadItem::new(
            "wf_2",
            "thr_1",
            ItemKind::Workflow {
                workflow: Workflow {
                    kind: "custom".into(),
                    tasks: Vec::new(),
                    summary: Some(WorkflowSummary::Title {
                        title: "Billing took over".into(),
                        icon: None,
                    }),
                    expanded: false,
                },
            },
        ),
    };
    let text = rendered(vec![handoff, delta("Refund sent.")]);
    assert_eq!(text, "  * Billing took over\nRefund sent.\n");
}
