//! Tests of the wire format: messages and requests as servers read them,
//! chunks and answers read tolerantly.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;

#[test]
fn a_tool_definition_is_a_typed_function_entry() {
    let definition = ToolDefinition::new(
        "add_task",
        "Adds a task.",
        json!({"type": "object", "properties": {"title": {"type": "string"}}}),
    );
    assert_eq!(
        serde_json::to_value(&definition).expect("serializes"),
        json!({
            "type": "function",
            "function": {
                "name": "add_task",
                "description": "Adds a task.",
                "parameters": {"type": "object", "properties": {"title": {"type": "string"}}},
            }
        })
    );
}

#[test]
fn a_tool_call_serializes_as_a_function_call_and_reads_back() {
    let call = ToolCall::function("call_1", "lookup", r#"{"q":1}"#);
    let value = serde_json::to_value(&call).expect("serializes");
    assert_eq!(
        value,
        json!({"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}})
    );
    assert_eq!(
        serde_json::from_value::<ToolCall>(value).expect("reads back"),
        call
    );
    let other = json!({"id": "c", "type": "retrieval", "function": {"name": "f", "arguments": ""}});
    assert!(serde_json::from_value::<ToolCall>(other).is_err());
}

#[test]
fn an_assistant_message_with_calls_omits_empty_content() {
    let message = ChatMessage::Assistant {
        content: None,
        tool_calls: vec![ToolCall::function("c1", "f", "{}")],
    };
    assert_eq!(
        serde_json::to_value(&message).expect("serializes"),
        json!({"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]})
    );
}

#[test]
fn a_model_list_skips_what_it_cannot_read() {
    let list: ModelList = serde_json::from_value(json!({
        "object": "list",
        "data": [{"id": "a", "object": "model"}, {"id": 7}, "b", {"id": "c"}]
    }))
    .expect("parses");
    assert_eq!(list.ids(), vec!["a", "c"]);
    for body in [
        json!({}),
        json!({"data": null}),
        json!({"data": {"id": "a"}}),
    ] {
        let list: ModelList = serde_json::from_value(body).expect("parses");
        assert_eq!(list, ModelList::default());
    }
}
