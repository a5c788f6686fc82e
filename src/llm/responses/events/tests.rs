//! Tests of the Responses event decoder: text, thinking by summary part,
//! function calls built from their events, reasoning items kept, the
//! failures, and the bounds a hostile stream meets.

use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::llm::wire::ToolCall;

fn push(decoder: &mut Decoder, event: Value) -> Result<Pushed, LlmError> {
    decoder.push(&event.to_string())
}

fn text(delta: &str) -> Value {
    json!({"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "item_id": "msg_1", "delta": delta})
}

fn thought(output_index: u64, summary_index: u64, delta: &str) -> Value {
    json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1",
        "output_index": output_index, "summary_index": summary_index, "delta": delta})
}

fn completed() -> Value {
    json!({"type": "response.completed", "response": {"status": "completed",
        "usage": {"input_tokens": 10, "output_tokens": 5}}})
}

#[test]
fn text_and_thinking_come_apart_and_a_new_summary_part_is_a_new_paragraph() {
    let mut decoder = Decoder::new(StreamLimits::default());
    let reasoning = |decoder: &mut Decoder, event| push(decoder, event).expect("read").reasoning;
    assert_eq!(
        reasoning(&mut decoder, thought(0, 0, "Plan")).as_deref(),
        Some("Plan")
    );
    assert_eq!(
        reasoning(&mut decoder, thought(0, 0, " it.")).as_deref(),
        Some(" it.")
    );
    assert_eq!(
        reasoning(&mut decoder, thought(0, 1, "Then")).as_deref(),
        Some("\n\nThen")
    );
    assert_eq!(
        push(&mut decoder, text("Hi"))
            .expect("read")
            .text
            .as_deref(),
        Some("Hi")
    );
    // Unknown types, and unreadable events, are skipped.
    assert_eq!(
        push(&mut decoder, json!({"type": "response.in_progress"})).expect("read"),
        Pushed::default()
    );
    assert_eq!(decoder.push("not json").expect("read"), Pushed::default());
    assert!(decoder.finish().is_none(), "not completed yet");
    push(&mut decoder, completed()).expect("read");
    assert!(decoder.has_finish_reason());
    assert_eq!(
        decoder.finish(),
        Some(LlmEvent::Finished {
            reason: "stop".to_owned(),
            tool_calls: Vec::new(),
            reasoning: Vec::new(),
        })
    );
}

#[test]
fn function_calls_and_reasoning_items_are_assembled() {
    let mut decoder = Decoder::new(StreamLimits::default());
    let events = [
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1", "status": "completed",
                "summary": [{"type": "summary_text", "text": "Plan."}], "encrypted_content": "gAAA"}}),
        json!({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "add", "arguments": ""}}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{\"t\":"}),
        json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "\"milk\"}"}),
        json!({"type": "response.output_item.added", "output_index": 2,
            "item": {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "list"}}),
        json!({"type": "response.function_call_arguments.done", "output_index": 2, "arguments": "{}"}),
        json!({"type": "response.output_item.done", "output_index": 1,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "add", "arguments": "{\"t\":\"milk\"}"}}),
        completed(),
    ];
    for event in events {
        push(&mut decoder, event).expect("read");
    }
    assert_eq!(
        decoder.finish(),
        Some(LlmEvent::Finished {
            reason: "tool_calls".to_owned(),
            tool_calls: vec![
                ToolCall::function("call_a", "add", r#"{"t":"milk"}"#),
                ToolCall::function("call_b", "list", "{}"),
            ],
            reasoning: vec![json!({"type": "reasoning", "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Plan."}], "encrypted_content": "gAAA"})],
        })
    );
}

#[test]
fn failures_end_the_answer_with_their_message() {
    let cases = [
        (
            json!({"type": "response.failed", "response": {"error": {"code": "server_error", "message": "GPU on fire"}}}),
            "GPU on fire",
        ),
        (
            json!({"type": "response.incomplete", "response": {"incomplete_details": {"reason": "max_output_tokens"}}}),
            "the answer is incomplete (max_output_tokens)",
        ),
        (
            json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}),
            "slow down",
        ),
    ];
    for (event, expected) in cases {
        let mut decoder = Decoder::new(StreamLimits::default());
        match push(&mut decoder, event) {
            Err(LlmError::InStream(message)) => assert_eq!(message, expected),
            other => panic!("{expected}: {other:?}"),
        }
    }
}

#[test]
fn a_hostile_stream_meets_the_bounds() {
    let limits = StreamLimits {
        max_tool_calls: 2,
        max_tool_arguments_bytes: 8,
        max_answer_bytes: 10,
    };
    let over = |events: Vec<Value>| -> StreamLimit {
        let mut decoder = Decoder::new(limits);
        for event in events {
            if let Err(LlmError::OverLimit(limit)) = push(&mut decoder, event) {
                return limit;
            }
        }
        panic!("no bound was met");
    };
    let call = |index: u64| {
        json!({"type": "response.output_item.added", "output_index": index,
            "item": {"type": "function_call", "call_id": format!("c{index}"), "name": "f"}})
    };
    assert_eq!(
        over(vec![text("12345"), thought(0, 0, "678901")]),
        StreamLimit::Answer { max: 10 }
    );
    assert_eq!(
        over(vec![call(u64::MAX)]),
        StreamLimit::ToolCallIndex { index: usize::MAX }
    );
    assert_eq!(
        over(vec![call(128)]),
        StreamLimit::ToolCallIndex { index: 128 }
    );
    assert_eq!(
        over(vec![call(0), call(1), call(2)]),
        StreamLimit::ToolCalls { max: 2 }
    );
    assert_eq!(
        over(vec![
            call(0),
            json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": "123456789"})
        ]),
        StreamLimit::ToolArguments { max: 8 }
    );
    assert_eq!(
        over(vec![
            json!({"type": "response.output_item.done", "output_index": 0,
                "item": {"type": "reasoning", "id": "rs", "encrypted_content": "x".repeat(11)}})
        ]),
        StreamLimit::Answer { max: 10 }
    );
}
