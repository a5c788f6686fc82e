//! Tests of the assembler: text and reasoning deltas, tool-call fragments
//! in any order and shape, errors in the stream, and arbitrary chunks that
//! must stay within the limits.

use pretty_assertions::assert_eq;

use super::*;

pub(in crate::llm) fn chunk(json: &str) -> Chunk {
    serde_json::from_str(json).expect("a chunk")
}

/// Pushes every chunk, collecting the text; panics on an error.
pub(in crate::llm) fn feed(assembler: &mut Assembler, chunks: &[&str]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| assembler.push(chunk(c)).expect("no in-stream error").text)
        .collect()
}

fn finished(reason: &str, tool_calls: Vec<ToolCall>) -> Option<LlmEvent> {
    Some(LlmEvent::Finished {
        reason: reason.to_owned(),
        tool_calls,
        reasoning: Vec::new(),
    })
}

#[test]
fn text_deltas_come_out_as_sent_and_empty_ones_are_none() {
    let mut assembler = Assembler::default();
    let text = feed(
        &mut assembler,
        &[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ],
    );
    assert_eq!(text, vec!["Hel", "lo"]);
    assert_eq!(assembler.finish(), finished("stop", vec![]));
}

#[test]
fn fragments_are_keyed_by_index_even_interleaved() {
    let mut assembler = Assembler::default();
    let text = feed(
        &mut assembler,
        &[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"add_task","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"list_tasks","arguments":"{"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"title\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"arguments":"}"}},{"index":0,"function":{"arguments":"\"milk\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ],
    );
    assert!(text.is_empty());
    assert_eq!(
        assembler.finish(),
        finished(
            "tool_calls",
            vec![
                ToolCall::function("call_a", "add_task", r#"{"title":"milk"}"#),
                ToolCall::function("call_b", "list_tasks", "{}"),
            ]
        )
    );
}

#[test]
fn without_index_an_id_starts_a_new_call_and_no_id_continues_the_last() {
    let mut assembler = Assembler::default();
    feed(
        &mut assembler,
        &[
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"x1","function":{"name":"first","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":":1}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"x2","function":{"name":"second","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ],
    );
    assert_eq!(
        assembler.finish(),
        finished(
            "tool_calls",
            vec![
                ToolCall::function("x1", "first", r#"{"a":1}"#),
                ToolCall::function("x2", "second", "{}"),
            ]
        )
    );
}

#[test]
fn calls_without_ids_are_named_by_position_and_nameless_ones_dropped() {
    let mut assembler = Assembler::default();
    feed(
        &mut assembler,
        &[
            // The first fragment without index or id starts the first call.
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"add_task","arguments":"{\"ti"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"tle\":\"x\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":2,"id":"","function":{"name":"later","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#,
        ],
    );
    // Index 1 never got a name: no call is made of it, and the others keep
    // their positions in the generated ids.
    assert_eq!(
        assembler.finish(),
        finished(
            "tool_calls",
            vec![
                ToolCall::function("call_0", "add_task", r#"{"title":"x"}"#),
                ToolCall::function("call_2", "later", "{}"),
            ]
        )
    );
}

#[test]
fn an_empty_finish_reason_is_no_finish_reason() {
    let mut assembler = Assembler::default();
    feed(
        &mut assembler,
        &[
            r#"{"choices":[{"delta":{"content":"partial"},"finish_reason":""}]}"#,
            r#"{"choices":null}"#,
        ],
    );
    assert!(!assembler.has_finish_reason());
    assert_eq!(assembler.finish(), None);

    feed(
        &mut assembler,
        &[
            r#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":""}]}"#,
        ],
    );
    assert!(assembler.has_finish_reason());
    assert_eq!(assembler.finish(), finished("length", vec![]));
}

#[test]
fn an_error_object_mid_stream_is_an_error_with_its_message() {
    let mut assembler = Assembler::default();
    feed(
        &mut assembler,
        &[r#"{"choices":[{"delta":{"content":"Hi"}}]}"#],
    );
    let error = assembler
        .push(chunk(
            r#"{"error":{"message":"model overloaded","code":503},"choices":[{"delta":{"content":"lost"}}]}"#,
        ))
        .expect_err("an error");
    assert!(
        matches!(&error, LlmError::InStream(m) if m == "model overloaded"),
        "{error:?}"
    );
    let error = assembler
        .push(chunk(r#"{"error":"rate limited"}"#))
        .expect_err("an error");
    assert!(
        matches!(&error, LlmError::InStream(m) if m == r#""rate limited""#),
        "{error:?}"
    );
}

#[test]
fn reasoning_comes_apart_from_text_under_either_name() {
    let mut assembler = Assembler::default();
    let pushed = |assembler: &mut Assembler, json: &str| {
        assembler.push(chunk(json)).expect("no in-stream error")
    };
    assert_eq!(
        pushed(
            &mut assembler,
            r#"{"choices":[{"delta":{"role":"assistant","content":null,"reasoning_content":"Let me"}}]}"#
        ),
        Pushed {
            text: None,
            reasoning: Some("Let me".to_owned()),
            ..Pushed::default()
        }
    );
    // OpenRouter's name; both names at once are one text sent twice.
    assert_eq!(
        pushed(
            &mut assembler,
            r#"{"choices":[{"delta":{"reasoning":" think","reasoning_content":" think"}}]}"#
        )
        .reasoning
        .as_deref(),
        Some(" think")
    );
    assert_eq!(
        pushed(
            &mut assembler,
            r#"{"choices":[{"delta":{"reasoning":" more"}}]}"#
        )
        .reasoning
        .as_deref(),
        Some(" more")
    );
    // A server that puts details of another shape there loses no text.
    assert_eq!(
        pushed(
            &mut assembler,
            r#"{"choices":[{"delta":{"content":"Hi","reasoning":{"details":[1]},"reasoning_content":null}}]}"#
        ),
        Pushed {
            text: Some("Hi".to_owned()),
            ..Pushed::default()
        }
    );
}

#[test]
fn reasoning_counts_against_the_answer_bound() {
    let mut assembler = Assembler::new(StreamLimits {
        max_answer_bytes: 10,
        ..StreamLimits::default()
    });
    assembler
        .push(chunk(
            r#"{"choices":[{"delta":{"reasoning_content":"12345678"}}]}"#,
        ))
        .expect("within the bound");
    let error = assembler
        .push(chunk(r#"{"choices":[{"delta":{"content":"abc"}}]}"#))
        .expect_err("over the bound");
    assert!(
        matches!(error, LlmError::OverLimit(StreamLimit::Answer { max: 10 })),
        "{error:?}"
    );
}

mod properties {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const LIMITS: StreamLimits = StreamLimits {
        max_tool_calls: 4,
        max_tool_arguments_bytes: 64,
        max_answer_bytes: 128,
        max_images: 0,
        max_image_bytes: 0,
        partial_images: 0,
    };

    fn short_text() -> impl Strategy<Value = String> {
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter)
    }

    /// A tool-call fragment with any subset of its fields; indexes are
    /// mostly small but may be anything a `u64` holds.
    fn fragment() -> impl Strategy<Value = Value> {
        let index = prop_oneof![3 => 0_u64..8, 1 => 0_u64..300, 1 => any::<u64>()];
        (
            prop::option::of(index),
            prop::option::of(short_text()),
            prop::option::of(short_text()),
            prop::option::of(short_text()),
        )
            .prop_map(|(index, id, name, arguments)| {
                let mut fragment = json!({"type": "function", "function": {}});
                if let Some(index) = index {
                    fragment["index"] = json!(index);
                }
                if let Some(id) = id {
                    fragment["id"] = json!(id);
                }
                if let Some(name) = name {
                    fragment["function"]["name"] = json!(name);
                }
                if let Some(arguments) = arguments {
                    fragment["function"]["arguments"] = json!(arguments);
                }
                fragment
            })
    }

    /// A chunk as servers send them, an error object, or odd JSON.
    fn chunk_json() -> impl Strategy<Value = Value> {
        let finish = prop::option::of(prop::sample::select(vec![
            "",
            "stop",
            "tool_calls",
            "length",
        ]));
        let choice = (
            prop::option::of(short_text()),
            prop::option::of(prop::collection::vec(fragment(), 0..4)),
            finish,
        )
            .prop_map(|(content, tool_calls, finish_reason)| {
                json!({"index": 0, "delta": {"content": content, "tool_calls": tool_calls}, "finish_reason": finish_reason})
            });
        prop_oneof![
            8 => prop::collection::vec(choice, 0..3).prop_map(|choices| json!({"choices": choices})),
            1 => short_text().prop_map(|message| json!({"error": {"message": message}})),
            1 => prop_oneof![
                Just(json!({"choices": null})),
                Just(json!({"choices": [{"delta": null}]})),
                Just(json!([])),
                Just(json!("not an object")),
            ],
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_chunks_stay_within_the_limits(chunks in prop::collection::vec(chunk_json(), 0..24)) {
            let mut assembler = Assembler::new(LIMITS);
            let mut text_bytes = 0;
            let mut failed = false;
            for value in chunks {
                // What does not even parse as a chunk is skipped by the stream.
                let Ok(chunk) = serde_json::from_value::<Chunk>(value) else {
                    continue;
                };
                match assembler.push(chunk) {
                    Ok(pushed) => {
                        text_bytes += pushed.text.map_or(0, |t| t.len())
                            + pushed.reasoning.map_or(0, |r| r.len());
                    }
                    Err(LlmError::OverLimit(_) | LlmError::InStream(_)) => {
                        failed = true;
                        break;
                    }
                    Err(other) => prop_assert!(false, "unexpected error {other:?}"),
                }
                prop_assert!(text_bytes <= LIMITS.max_answer_bytes);
                prop_assert!(assembler.call_slots() <= TOOL_CALL_INDEXES);
            }
            if failed {
                return Ok(());
            }
            if let Some(LlmEvent::Finished { tool_calls, .. }) = assembler.finish() {
                prop_assert!(tool_calls.len() <= LIMITS.max_tool_calls);
                for call in tool_calls {
                    prop_assert!(!call.function.name.is_empty());
                    prop_assert!(call.function.name.len() <= MAX_TOOL_NAME_BYTES);
                    prop_assert!(call.function.arguments.len() <= LIMITS.max_tool_arguments_bytes);
                    prop_assert!(!call.id.is_empty());
                }
            }
        }
    }
}
