//! Tests of the history a model reads: turns, tool calls with their
//! results, records, actions, budgets and reasoning items.

use super::*;
use crate::llm::ToolCall;
use crate::protocol::{
    AssistantContent, AssistantMessage, InferenceOptions, UserContent, UserMessage,
};

fn item(id: &str, kind: ItemKind) -> ThreadItem {
    ThreadItem::new(id, "thr_1", kind)
}

fn user(id: &str, text: &str) -> ThreadItem {
    item(
        id,
        ItemKind::UserMessage(UserMessage {
            content: vec![UserContent::InputText { text: text.into() }],
            attachments: Vec::new(),
            quoted_text: None,
            inference_options: InferenceOptions::default(),
        }),
    )
}

fn assistant(id: &str, text: &str) -> ThreadItem {
    item(
        id,
        ItemKind::AssistantMessage(AssistantMessage {
            content: vec![AssistantContent::text(text)],
        }),
    )
}

#[test]
fn actions_read_as_the_users_words_and_widget_state_as_nothing() {
    let state = UiRecord::WidgetState {
        widget_id: "msg_w".into(),
        source: None,
        approval: None,
    }
    .into_item("thr_1");
    let action = UiRecord::Action {
        action: "tasks.explain".into(),
        text: "Tell me about task 1.".into(),
    }
    .into_item("thr_1");
    let items = vec![user("m1", "hi"), assistant("m2", "hello"), state, action];
    let messages = build_messages("sys", &items, 10_000).expect("fits");
    assert_eq!(
        messages[1..],
        [
            ChatMessage::User {
                content: "hi".into()
            },
            ChatMessage::assistant("hello"),
            ChatMessage::User {
                content: "Tell me about task 1.".into()
            },
        ]
    );
    // The action starts the newest turn: over budget, the older turn goes first.
    let tight = build_messages("sys", &items, 14).expect("the action fits");
    assert_eq!(tight.len(), 2, "{tight:?}");
}

#[test]
fn transcript_is_structured_and_hidden_context_included() {
    let items = vec![
        user("m1", "hi"),
        assistant("m2", "hello"),
        item(
            "s1",
            ItemKind::SdkHiddenContext {
                content: "The user cancelled the stream.".into(),
            },
        ),
        user("m3", "again"),
    ];
    let messages = build_messages("sys", &items, 10_000).expect("fits");
    assert_eq!(
        messages,
        vec![
            ChatMessage::System {
                content: "sys".into()
            },
            ChatMessage::User {
                content: "hi".into()
            },
            ChatMessage::assistant("hello"),
            ChatMessage::User {
                content: "The user cancelled the stream.".into()
            },
            ChatMessage::User {
                content: "again".into()
            },
        ]
    );
}

#[test]
fn budget_drops_oldest_whole_turns_but_keeps_the_last() {
    let long = "x".repeat(4000);
    let items = vec![
        user("m1", &long),
        assistant("m2", &long),
        user("m3", "short"),
        assistant("m4", "ok"),
        user("m5", &long),
    ];
    let messages = build_messages("sys", &items, 1200).expect("fits");
    let texts: Vec<String> = messages
        .iter()
        .map(|m| serde_json::to_value(m).expect("json")["content"].to_string())
        .collect();
    assert_eq!(messages.len(), 4, "{texts:?}");
    assert_eq!(
        messages[1],
        ChatMessage::User {
            content: "short".into()
        }
    );
    // A last turn over budget because of what followed its message is still sent.
    let mut items = items;
    items.pop();
    items.push(user("m5", "short again"));
    items.push(assistant("m6", &long));
    let messages = build_messages("sys", &items, 1000).expect("the message fits");
    assert_eq!(messages.len(), 3, "{messages:?}");
    // A newest message that cannot fit is refused, not sent.
    items.push(user("m7", &long));
    let refused = build_messages("sys", &items, 1000).expect_err("too long");
    assert_eq!(refused.budget, 1000);
    assert_eq!(refused.tokens, 4 + (1000 + 4));
    assert!(
        refused.to_string().contains("at most 1000 fit"),
        "{refused}"
    );
}

fn hidden(id: &str, content: serde_json::Value) -> ThreadItem {
    item(id, ItemKind::HiddenContextItem { content })
}

fn call(id: &str, name: &str) -> ToolCall {
    ToolCall::function(id, name, "{}")
}

#[test]
fn tool_calls_replay_with_their_results_and_orphans_are_dropped() {
    use serde_json::json;
    let items = vec![
        user("m1", "add milk"),
        assistant("m2", "On it."),
        hidden(
            "h1",
            json!({"type": "chatkitd.tool_calls", "calls": [
                {"id": "c1", "name": "add_task", "arguments": "{}"},
                {"id": "c2", "name": "list_tasks", "arguments": "{}"}
            ]}),
        ),
        hidden(
            "h2",
            json!({"type": "chatkitd.tool_result", "call_id": "c1", "name": "add_task", "output": "ok", "is_error": false}),
        ),
        // c2 never got a result (crash); c9 has no call.
        hidden(
            "h3",
            json!({"type": "chatkitd.tool_result", "call_id": "c9", "name": "x", "output": "?", "is_error": true}),
        ),
        assistant("m3", "Added."),
    ];
    let messages = build_messages("sys", &items, 10_000).expect("fits");
    assert_eq!(
        messages[1..],
        [
            ChatMessage::User {
                content: "add milk".into()
            },
            ChatMessage::Assistant {
                content: Some("On it.".into()),
                tool_calls: vec![call("c1", "add_task")],
            },
            ChatMessage::Tool {
                tool_call_id: "c1".into(),
                content: "ok".into()
            },
            ChatMessage::assistant("Added."),
        ]
    );
}

#[test]
fn quoted_text_and_mentions_reach_the_model() {
    let message = UserMessage {
        content: vec![
            UserContent::InputText {
                text: "ask ".into(),
            },
            UserContent::InputTag {
                id: "u1".into(),
                text: "Ann".into(),
                data: serde_json::from_str(r#"{"email":"ann@example.com"}"#).expect("map"),
                group: None,
                interactive: false,
            },
        ],
        attachments: Vec::new(),
        quoted_text: Some("the plan".into()),
        inference_options: InferenceOptions::default(),
    };
    assert_eq!(
        crate::agent::user_text(&message),
        "The user is referring to this in particular:\nthe plan\n\nask @Ann\n\nMentioned entities:\n@Ann: {\"email\":\"ann@example.com\"}"
    );
}
