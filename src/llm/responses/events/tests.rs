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
fn text_and_thinking_come_apart_and_each_summary_part_is_marked_new() {
    let mut decoder = Decoder::new(StreamLimits::default());
    let reasoning = |decoder: &mut Decoder, event| {
        let pushed = push(decoder, event).expect("read");
        (pushed.reasoning.unwrap_or_default(), pushed.new_part)
    };
    assert_eq!(
        reasoning(&mut decoder, thought(0, 0, "Plan")),
        ("Plan".to_owned(), true)
    );
    assert_eq!(
        reasoning(&mut decoder, thought(0, 0, " it.")),
        (" it.".to_owned(), false)
    );
    assert_eq!(
        reasoning(&mut decoder, thought(0, 1, "Then")),
        ("Then".to_owned(), true)
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
        ..StreamLimits::default()
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

fn image_limits() -> StreamLimits {
    StreamLimits {
        max_images: 1,
        max_image_bytes: 16,
        partial_images: 1,
        ..StreamLimits::default()
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn hosted_tools_and_citations_become_hosted_events() {
    let mut decoder = Decoder::new(image_limits());
    let hosted = |decoder: &mut Decoder, event| push(decoder, event).expect("read").hosted;
    let search = json!({"type": "web_search_call", "id": "ws_1", "status": "in_progress"});
    assert_eq!(
        hosted(
            &mut decoder,
            json!({"type": "response.output_item.added", "output_index": 0, "item": search})
        ),
        Some(HostedEvent::WebSearch {
            id: "ws_1".to_owned(),
            queries: Vec::new(),
            sources: Vec::new(),
            done: false
        })
    );
    let citation = json!({"type": "response.output_text.annotation.added", "item_id": "msg_1",
        "output_index": 1, "content_index": 0, "annotation_index": 0,
        "annotation": {"type": "url_citation", "start_index": 0, "end_index": 4,
            "url": "https://e.com/", "title": "E"}});
    assert!(matches!(
        hosted(&mut decoder, citation),
        Some(HostedEvent::Citation(_))
    ));
    // An image: begun, one partial shown (a second is more than asked
    // for), then done with its bytes.
    let image = |status: &str, result: Option<&str>| {
        let mut item = json!({"type": "image_generation_call", "id": "ig_1", "status": status});
        if let Some(result) = result {
            item["result"] = json!(result);
        }
        item
    };
    assert_eq!(
        hosted(
            &mut decoder,
            json!({"type": "response.output_item.added", "output_index": 2,
            "item": image("in_progress", None)})
        ),
        Some(HostedEvent::Image {
            id: "ig_1".to_owned(),
            stage: ImageStage::Started
        })
    );
    let partial = |index: u64| {
        json!({"type": "response.image_generation_call.partial_image", "item_id": "ig_1",
            "output_index": 2, "partial_image_index": index, "partial_image_b64": b64(b"part")})
    };
    assert_eq!(
        hosted(&mut decoder, partial(0)),
        Some(HostedEvent::Image {
            id: "ig_1".to_owned(),
            stage: ImageStage::Partial {
                base64: b64(b"part"),
                progress: 0.0
            }
        })
    );
    assert_eq!(hosted(&mut decoder, partial(1)), None);
    let done = hosted(
        &mut decoder,
        json!({"type": "response.output_item.done", "output_index": 2,
        "item": image("completed", Some(&b64(b"final image")))}),
    );
    assert!(
        matches!(&done, Some(HostedEvent::Image { stage: ImageStage::Done { bytes, .. }, .. }) if bytes == b"final image"),
        "{done:?}"
    );
}

#[test]
fn images_meet_their_bounds() {
    let added = |id: &str| {
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": {"type": "image_generation_call", "id": id, "status": "in_progress"}})
    };
    // A second image where one is allowed.
    let mut decoder = Decoder::new(image_limits());
    push(&mut decoder, added("ig_1")).expect("the first image");
    let error = push(&mut decoder, added("ig_2")).expect_err("one image too many");
    assert!(
        matches!(error, LlmError::OverLimit(StreamLimit::Images { max: 1 })),
        "{error:?}"
    );
    // An image larger than the bound, or not base64.
    for result in [b64(&[0u8; 17]), "not base64!".to_owned()] {
        let mut decoder = Decoder::new(image_limits());
        let done = json!({"type": "response.output_item.done", "output_index": 0,
            "item": {"type": "image_generation_call", "id": "ig_1", "result": result}});
        let error = push(&mut decoder, done).expect_err("refused");
        assert!(
            matches!(error, LlmError::OverLimit(StreamLimit::Image { max: 16 })),
            "{error:?}"
        );
    }
    // Image generation off: an image is not shown at all.
    let mut decoder = Decoder::new(StreamLimits::default());
    assert_eq!(
        push(&mut decoder, added("ig_1")).expect("ignored").hosted,
        None
    );
}

#[test]
fn endless_citations_end_the_answer_like_endless_text() {
    let mut decoder = Decoder::new(StreamLimits {
        max_answer_bytes: 64 * 1024,
        ..StreamLimits::default()
    });
    let citation = json!({"type": "response.output_text.annotation.added",
        "annotation": {"type": "url_citation", "end_index": 1, "url": "https://e.com/", "title": "E"}});
    let mut shown = 0;
    let error = loop {
        match push(&mut decoder, citation.clone()) {
            Ok(pushed) => shown += usize::from(pushed.hosted.is_some()),
            Err(error) => break error,
        }
        assert!(shown <= MAX_CITATIONS, "unbounded");
    };
    assert!(
        matches!(error, LlmError::OverLimit(StreamLimit::Answer { .. })),
        "{error:?}"
    );
}
