//! A hostile or broken model endpoint: chunks with absurd tool-call indexes,
//! more tool calls than allowed, arguments, text or thinking beyond their
//! bounds. Each
//! ends the answer with an `error` event, keeps the text streamed before it,
//! and leaves the daemon answering the next request as usual.

use chatkitd_testkit::Script;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::support::{Backend, Daemon, Streamed};

/// The development user of `auth.mode = "none"`.
const USER: &str = "dev";

/// The text every hostile answer streams before its bad chunk.
const PARTIAL: &str = "Hello";

/// A chunk carrying these tool-call fragments.
fn tool_chunk(fragments: Value) -> String {
    json!({"choices": [{"index": 0, "delta": {"tool_calls": fragments}}]}).to_string()
}

/// A script: the partial text, then `hostile` chunks, then a finish and `[DONE]`
/// that the daemon must not get to.
fn answer_with(hostile: Vec<String>) -> Script {
    let mut events = vec![
        json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": PARTIAL}}]})
            .to_string(),
    ];
    events.extend(hostile);
    events.push(
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
    );
    events.push("[DONE]".to_owned());
    Script::Raw { events }
}

/// The one `error` event, last on the stream; returns its message.
fn the_error(streamed: &Streamed) -> String {
    let errors: Vec<&Value> = streamed
        .events
        .iter()
        .filter(|e| e["type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "one error event: {}", streamed.raw);
    assert_eq!(streamed.events.last(), Some(errors[0]), "the error ends it");
    let message = errors[0]["message"].as_str().unwrap_or_default().to_owned();
    // Not transient: the same request would be answered the same way.
    assert_eq!(
        errors[0],
        &json!({"type": "error", "code": "custom", "message": message, "allow_retry": false})
    );
    message
}

/// Sends one message answered by `script` on a fresh thread and checks the
/// outcome: an `error` event saying `expected`, the partial answer streamed
/// and stored, and the next message on the same thread answered normally.
async fn refused(daemon: &Daemon, script: Script, expected: &str) {
    let (thread_id, _) = daemon.create_thread("warm up").await;
    daemon.llm.push(script);
    let streamed = daemon.add_message(&thread_id, "be hostile").await;
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
    let message = the_error(&streamed);
    assert!(
        message.contains("went beyond a limit") && message.contains(expected),
        "{expected}: {message}"
    );
    assert_eq!(streamed.streamed_text(), PARTIAL);
    assert_eq!(
        streamed.answer().as_deref(),
        Some(PARTIAL),
        "{}",
        streamed.raw
    );

    let next = daemon.add_message(&thread_id, "still there?").await;
    assert!(next.error().is_none(), "{}", next.raw);
    assert_eq!(
        next.answer().as_deref(),
        Some("Hello! You said: still there?")
    );

    let stored: Vec<(String, String)> = daemon
        .stored_items(USER, &thread_id)
        .await
        .into_iter()
        .map(|item| {
            let value = serde_json::to_value(&item).expect("an item serializes");
            let kind = value["type"].as_str().unwrap_or_default().to_owned();
            let text = value["content"][0]["text"].as_str().unwrap_or_default();
            (kind, text.to_owned())
        })
        .collect();
    let expect = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, t)| ((*k).to_owned(), (*t).to_owned()))
            .collect()
    };
    assert_eq!(
        stored,
        expect(&[
            ("user_message", "warm up"),
            ("assistant_message", "Hello! You said: warm up"),
            ("user_message", "be hostile"),
            ("assistant_message", PARTIAL),
            ("user_message", "still there?"),
            ("assistant_message", "Hello! You said: still there?"),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_tool_call_indexes_end_the_answer_not_the_process() {
    let daemon = Daemon::binary(Backend::Sqlite, "").await;
    for index in ["1000000000", "18446744073709551615", "128"] {
        let chunk = format!(
            r#"{{"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":{index},"id":"call_x","type":"function","function":{{"name":"add_task","arguments":"{{}}"}}}}]}}}}]}}"#
        );
        let expected = format!("tool-call index {index}");
        refused(&daemon, answer_with(vec![chunk]), &expected).await;
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_tool_calls_than_allowed_end_the_answer() {
    let daemon = Daemon::binary(Backend::Sqlite, "[llm]\nmax_tool_calls = 3\n").await;
    // Four calls in one chunk, at small indexes.
    let fragments: Vec<Value> = (0..4)
        .map(|i| json!({"index": i, "id": format!("call_{i}"), "type": "function", "function": {"name": "add_task", "arguments": "{}"}}))
        .collect();
    let script = answer_with(vec![tool_chunk(Value::Array(fragments))]);
    refused(&daemon, script, "more than 3 tool calls").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_tool_arguments_end_the_answer() {
    let daemon = Daemon::binary(Backend::Sqlite, "[llm]\nmax_tool_arguments_bytes = 4096\n").await;
    let start = json!([{"index": 0, "id": "call_0", "type": "function", "function": {"name": "add_task", "arguments": "{\"title\":\""}}]);
    let more = json!([{"index": 0, "function": {"arguments": "x".repeat(3000)}}]);
    let script = answer_with(vec![
        tool_chunk(start),
        tool_chunk(more.clone()),
        tool_chunk(more),
    ]);
    refused(&daemon, script, "arguments longer than 4096 bytes").await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answer_text_ends_the_answer_keeping_what_fit() {
    let daemon = Daemon::binary(Backend::Sqlite, "[llm]\nmax_answer_bytes = 4096\n").await;
    let flood = json!({"choices": [{"index": 0, "delta": {"content": "y".repeat(5000)}}]});
    refused(
        &daemon,
        answer_with(vec![flood.to_string()]),
        "more than 4096 bytes of text",
    )
    .await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_huge_chunk_ends_the_answer_before_it_is_read_whole() {
    let daemon = Daemon::binary(
        Backend::Sqlite,
        "[llm]\nmax_answer_bytes = 4096\nmax_tool_arguments_bytes = 4096\n",
    )
    .await;
    // The bound of one chunk is derived: 2 × (4096 + 4096) + 64 KiB. The
    // chunk is 16 MiB of JSON that never gets parsed.
    let bound = 2 * (4096 + 4096) + 64 * 1024;
    let huge = json!({"choices": [{"index": 0, "delta": {"content": "z".repeat(16 << 20)}}]});
    refused(
        &daemon,
        answer_with(vec![huge.to_string()]),
        &format!("one streamed chunk of more than {bound} bytes"),
    )
    .await;
    daemon.stop().await;
}

/// A model that thinks without end, in many small paragraphs: the answer
/// ends at the answer's bound (reasoning counts in it), what the stream
/// carried of the thinking stays bounded (at most 64 thoughts of at most
/// 2,000 bytes, each sent whole when it changes), and the thinking shown is
/// stored closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_thinking_ends_the_answer_within_its_bounds() {
    let daemon = Daemon::binary(Backend::Sqlite, "[llm]\nmax_answer_bytes = 262144\n").await;
    let (thread_id, _) = daemon.create_thread("warm up").await;
    // 400 KiB of thinking: 40,000 deltas of 10 bytes, a paragraph each.
    let events: Vec<String> = (0..40_000)
        .map(|i| {
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": format!("t{i:05} .\n\n")}}]})
                .to_string()
        })
        .chain(["[DONE]".to_owned()])
        .collect();
    daemon.llm.push(Script::Raw { events });
    let streamed = daemon.add_message(&thread_id, "think hard").await;
    let message = the_error(&streamed);
    assert!(
        message.contains("more than 262144 bytes of text (reasoning included)"),
        "{message}"
    );
    let thoughts = streamed
        .events
        .iter()
        .filter(|e| e["type"] == "thread.item.updated")
        .count();
    assert!(thoughts <= 64 * 2, "{thoughts} thought events");
    assert!(
        streamed.raw.len() < 64 * 2 * 2_200 + 64 * 1024,
        "{} bytes streamed",
        streamed.raw.len()
    );
    let stored = daemon.stored_items(USER, &thread_id).await;
    let thinking = serde_json::to_value(&stored[3]).expect("an item serializes");
    assert_eq!(thinking["type"], "workflow");
    assert_eq!(
        thinking["workflow"]["tasks"].as_array().map(Vec::len),
        Some(64)
    );

    let next = daemon.add_message(&thread_id, "still there?").await;
    assert_eq!(
        next.answer().as_deref(),
        Some("Hello! You said: still there?")
    );
    daemon.stop().await;
}

/// The same bounds through the Responses API: the partial text as a
/// `response.output_text.delta`, then `hostile` events, then a
/// `response.completed` the daemon must not get to.
fn responses_answer_with(hostile: Vec<Value>) -> Script {
    let mut events = vec![
        json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": PARTIAL}),
    ];
    events.extend(hostile);
    events.push(json!({"type": "response.completed", "response": {"status": "completed"}}));
    Script::Raw {
        events: events.iter().map(Value::to_string).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_responses_stream_meets_the_same_bounds() {
    let daemon = Daemon::binary(
        Backend::Sqlite,
        "[llm]\napi = \"responses\"\nmax_answer_bytes = 4096\nmax_tool_calls = 3\n",
    )
    .await;
    let call = |index: u64| {
        json!({"type": "response.output_item.added", "output_index": index,
            "item": {"type": "function_call", "call_id": format!("c{index}"), "name": "add_task", "arguments": ""}})
    };
    let thought = json!({"type": "response.reasoning_summary_text.delta", "output_index": 0,
        "summary_index": 0, "delta": "hmm ".repeat(100)});
    let cases = [
        (
            vec![
                json!({"type": "response.output_text.delta", "output_index": 0, "delta": "y".repeat(5000)}),
            ],
            "more than 4096 bytes of text".to_owned(),
        ),
        (
            vec![call(u64::MAX)],
            format!("tool-call index {}", usize::MAX),
        ),
        (
            vec![call(1), call(2), call(3), call(4)],
            "more than 3 tool calls".to_owned(),
        ),
    ];
    for (hostile, expected) in cases {
        refused(&daemon, responses_answer_with(hostile), &expected).await;
    }
    // Endless thinking: ended at the same bound, what was shown of it kept.
    let (thread_id, _) = daemon.create_thread("warm up").await;
    daemon.llm.push(responses_answer_with(
        std::iter::repeat_n(thought, 20).collect(),
    ));
    let streamed = daemon.add_message(&thread_id, "think").await;
    let message = the_error(&streamed);
    assert!(
        message.contains("more than 4096 bytes of text (reasoning included)"),
        "{message}"
    );
    assert_eq!(streamed.answer().as_deref(), Some(PARTIAL));
    let kinds: Vec<String> = streamed
        .done_items()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["user_message", "workflow", "assistant_message"]);
    daemon.stop().await;
}

/// Hosted tools through the Responses API meet their bounds too: an image
/// larger than `max_image_bytes` or not base64, more images than
/// `max_images`, and endless citations each end the answer with its text
/// kept, and an image never finished is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_hosted_tools_end_the_answer_within_their_bounds() {
    let daemon = Daemon::binary(
        Backend::Sqlite,
        "[llm]\napi = \"responses\"\nmax_answer_bytes = 4096\n\n[llm.hosted_tools.image_generation]\nmax_image_bytes = 1024\nmax_images = 1\n",
    )
    .await;
    let image = |id: &str, result: Option<String>| {
        let (kind, mut item) = match &result {
            Some(_) => (
                "response.output_item.done",
                json!({"type": "image_generation_call", "id": id}),
            ),
            None => (
                "response.output_item.added",
                json!({"type": "image_generation_call", "id": id}),
            ),
        };
        if let Some(result) = result {
            item["result"] = json!(result);
        }
        json!({"type": kind, "output_index": 1, "item": item})
    };
    let citation = json!({"type": "response.output_text.annotation.added", "output_index": 0,
        "content_index": 0, "annotation": {"type": "url_citation", "start_index": 0,
            "end_index": 2, "url": "https://example.com/", "title": "Example"}});
    let too_big = "A".repeat(4 * 1024);
    let cases = [
        (
            vec![image("ig_1", None), image("ig_1", Some(too_big))],
            "an image larger than 1024 bytes",
        ),
        (
            vec![image("ig_1", Some("%%% not base64 %%%".to_owned()))],
            "an image larger than 1024 bytes, or one that is not base64",
        ),
        (
            vec![image("ig_1", None), image("ig_2", None)],
            "more than 1 images in one answer",
        ),
        (
            std::iter::repeat_n(citation, 100).collect(),
            "more than 4096 bytes of text",
        ),
    ];
    for (hostile, expected) in cases {
        refused(&daemon, responses_answer_with(hostile), expected).await;
    }
    daemon.stop().await;
}
