//! Tests of the fake LLM over real HTTP: raw SSE bytes and JSON for every
//! script kind with reqwest, and the real async-openai client against it.
//!
//! Why one file: each file under `tests/` is its own test binary, linked
//! against the whole daemon; this suite's scenarios share their fixtures,
//! and splitting them would add binaries to build and link in every CI run
//! without making any one scenario easier to find (each is a named test).

use std::time::{Duration, Instant};

use chatkitd_testkit::fake_llm::{FAKE_MODEL, FakeLlm, FakeToolCall, Script};
use futures::StreamExt;
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    // reqwest is built with rustls (no provider) through async-openai.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn chat_body(stream: bool, user: Value) -> Value {
    json!({
        "model": "gpt-test",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": user},
        ],
    })
}

async fn post(llm: &FakeLlm, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", llm.base_url()))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .expect("request to the fake LLM")
}

/// Splits an SSE body into its `data:` payloads, checking the framing.
fn sse_data(text: &str) -> Vec<String> {
    assert!(
        text.ends_with("\n\n"),
        "SSE body must end with a blank line: {text:?}"
    );
    text.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event without `data: `: {event:?}"))
                .to_owned()
        })
        .collect()
}

fn parse(data: &[String]) -> Vec<Value> {
    data.iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk is JSON"))
        .collect()
}

fn content_of(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn sse_of(llm: &FakeLlm, body: &Value) -> (Vec<String>, Vec<Value>) {
    let response = post(llm, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.expect("SSE body");
    let data = sse_data(&text);
    let chunks = parse(&data);
    (data, chunks)
}

#[tokio::test]
async fn models_lists_fake_model() {
    let llm = FakeLlm::start().await;
    let body: Value = client()
        .get(format!("{}/models", llm.base_url()))
        .send()
        .await
        .expect("GET /models")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        body,
        json!({"object":"list","data":[{"id":"fake-model","object":"model","created":0,"owned_by":"testkit"}]})
    );
}

#[tokio::test]
async fn default_stream_echoes_word_by_word() {
    let llm = FakeLlm::start().await;
    let (data, chunks) = sse_of(&llm, &chat_body(true, json!("hi  there"))).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let content = content_of(&chunks);
    assert_eq!(content, ["Hello! ", "You ", "said: ", "hi  ", "there"]);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-test");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert!(
            chunk["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("chatcmpl-fake-"))
        );
        assert!(chunk["created"].as_u64().is_some_and(|t| t > 1_600_000_000));
        assert_eq!(chunk["choices"][0]["index"], 0);
    }
    for chunk in &chunks[..chunks.len() - 1] {
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
}

#[tokio::test]
async fn default_unary_is_a_title_from_text_parts() {
    let llm = FakeLlm::start().await;
    let parts =
        json!([{"type": "text", "text": "one two"}, {"type": "text", "text": "three four five"}]);
    let mut body = chat_body(false, parts);
    body.as_object_mut().expect("object").remove("model");
    let response = post(&llm, &body).await;
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.expect("JSON");
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], FAKE_MODEL);
    assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "Title: one two three four"
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    assert!(
        completion["usage"]["total_tokens"]
            .as_u64()
            .is_some_and(|t| t > 0)
    );
}

#[tokio::test]
async fn stream_and_unary_queues_are_separate() {
    let llm = FakeLlm::start().await;
    llm.push(Script::text(["streamed"]));
    llm.push_unary(Script::text(["unary"]));
    assert_eq!(llm.pending_scripts(), (1, 1));

    // A background title request first must not take the streamed script.
    let completion: Value = post(&llm, &chat_body(false, json!("x")))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(completion["choices"][0]["message"]["content"], "unary");
    let (_, chunks) = sse_of(&llm, &chat_body(true, json!("x"))).await;
    assert_eq!(content_of(&chunks), ["streamed"]);
    // Both queues empty: defaults again.
    let (_, chunks) = sse_of(&llm, &chat_body(true, json!("x"))).await;
    assert_eq!(content_of(&chunks).concat(), "Hello! You said: x");
    assert_eq!(llm.pending_scripts(), (0, 0));
}

#[tokio::test]
async fn requests_are_recorded() {
    let llm = FakeLlm::start().await;
    post(&llm, &chat_body(false, json!("title me"))).await;
    post(&llm, &chat_body(true, json!("stream me"))).await;
    let requests = llm.wait_for_requests(2, Duration::from_secs(5)).await;
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert!(!requests[0].stream);
    assert!(requests[1].stream);
    assert_eq!(requests[1].last_user_text().as_deref(), Some("stream me"));
    assert_eq!(requests[1].model(), Some("gpt-test"));
    let streamed = llm.stream_requests();
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0].body["messages"][1]["content"], "stream me");
    assert_eq!(llm.unary_requests().len(), 1);
    assert!(
        llm.try_wait_for_requests(3, Duration::from_millis(100))
            .await
            .is_none()
    );
    llm.assert_requests_well_formed();
    llm.clear_requests();
    assert!(llm.requests().is_empty());
}

#[tokio::test]
async fn text_chunks_are_flushed_one_by_one() {
    let llm = FakeLlm::start().await;
    let delay = Duration::from_millis(150);
    llm.push(Script::Text {
        chunks: vec!["a".into(), "b".into(), "c".into()],
        delay,
    });
    let started = Instant::now();
    let response = post(&llm, &chat_body(true, json!("x"))).await;
    let mut body = response.bytes_stream();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(bytes) = body.next().await {
        let bytes = bytes.expect("body chunk");
        let piece = String::from_utf8(bytes.to_vec()).expect("UTF-8");
        for content in ["\"a\"", "\"b\"", "\"c\""] {
            if piece.contains(&format!("\"content\":{content}")) {
                arrivals.push(started.elapsed());
            }
        }
        text.push_str(&piece);
    }
    assert_eq!(
        arrivals.len(),
        3,
        "each chunk arrives in its own read: {text}"
    );
    assert!(arrivals[0] >= delay);
    assert!(arrivals[2] - arrivals[0] >= delay * 2 - Duration::from_millis(20));
    let chunks = parse(&sse_data(&text));
    assert_eq!(content_of(&chunks), ["a", "b", "c"]);
}

#[tokio::test]
async fn default_delay_paces_the_default_reply() {
    let llm = FakeLlm::start().await;
    llm.set_default_delay(Duration::from_millis(40));
    let started = Instant::now();
    let (_, chunks) = sse_of(&llm, &chat_body(true, json!("x y"))).await;
    assert_eq!(content_of(&chunks).len(), 5);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn slow_delays_the_first_token_not_the_headers() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Slow {
        chunks: vec!["late".into()],
        first_token_delay: Duration::from_millis(300),
        delay: Duration::ZERO,
    });
    let started = Instant::now();
    let response = post(&llm, &chat_body(true, json!("x"))).await;
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "headers come at once"
    );
    let text = response.text().await.expect("body");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(content_of(&parse(&sse_data(&text))), ["late"]);
}

#[tokio::test]
async fn tool_calls_stream_in_fragments() {
    let llm = FakeLlm::start().await;
    let args0 = r#"{"city":"Paris","unit":"celsius"}"#;
    llm.push(Script::ToolCalls {
        calls: vec![
            FakeToolCall::new("call_1", "get_weather", args0),
            FakeToolCall::new("call_2", "get_time", "{}"),
        ],
    });
    let (data, chunks) = sse_of(&llm, &chat_body(true, json!("x"))).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(
        chunks[1]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]})
    );
    let fragments_of = |index: u64| -> Vec<String> {
        chunks
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
            .filter(|tc| tc["index"] == index && tc.get("id").is_none())
            .map(|tc| {
                tc["function"]["arguments"]
                    .as_str()
                    .expect("fragment")
                    .to_owned()
            })
            .collect()
    };
    let fragments = fragments_of(0);
    assert_eq!(fragments.len(), 3);
    assert_eq!(fragments.concat(), args0);
    assert_eq!(fragments_of(1).concat(), "{}");
    assert!(
        chunks
            .iter()
            .any(|c| c.pointer("/choices/0/delta/tool_calls/0/id") == Some(&json!("call_2")))
    );
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn tool_calls_unary() {
    let llm = FakeLlm::start().await;
    llm.push_unary(Script::tool_call("call_9", "lookup", r#"{"q":1}"#));
    let completion: Value = post(&llm, &chat_body(false, json!("x")))
        .await
        .json()
        .await
        .expect("JSON");
    let choice = &completion["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_9", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}])
    );
}

#[tokio::test]
async fn status_scripts() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Status {
        status: 429,
        retry_after: Some(7),
        body: None,
    });
    llm.push(Script::Status {
        status: 503,
        retry_after: None,
        body: Some("overloaded".into()),
    });
    let response = post(&llm, &chat_body(true, json!("x"))).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(
        error,
        json!({"error":{"message":"fake error","type":"server_error","param":null,"code":null}})
    );
    let response = post(&llm, &chat_body(true, json!("x"))).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(response.text().await.expect("body"), "overloaded");
    // Unary queue is separate.
    llm.push_unary(Script::status(500));
    assert_eq!(
        post(&llm, &chat_body(false, json!("x"))).await.status(),
        500
    );
}

#[tokio::test]
async fn cut_after_ends_cleanly_without_done() {
    let llm = FakeLlm::start().await;
    llm.push(Script::CutAfter {
        chunks: vec!["par".into(), "tial".into()],
    });
    let (data, chunks) = sse_of(&llm, &chat_body(true, json!("x"))).await;
    assert!(!data.iter().any(|d| d == "[DONE]"));
    assert_eq!(content_of(&chunks), ["par", "tial"]);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
}

#[tokio::test]
async fn abort_fails_the_body() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Abort {
        chunks: vec!["par".into(), "tial".into()],
    });
    let response = post(&llm, &chat_body(true, json!("x"))).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut failed = false;
    while let Some(piece) = body.next().await {
        match piece {
            Ok(bytes) => text.push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(
        failed,
        "the body must end with a transport error, got {text:?}"
    );
    assert!(text.contains("\"tial\""));
    assert!(!text.contains("[DONE]"));

    // Unary: a cut JSON body, then the error.
    llm.push_unary(Script::Abort {
        chunks: vec!["x".into()],
    });
    let response = post(&llm, &chat_body(false, json!("x"))).await;
    assert!(response.bytes().await.is_err());
}

#[tokio::test]
async fn cut_after_unary_is_truncated_json() {
    let llm = FakeLlm::start().await;
    llm.push_unary(Script::CutAfter {
        chunks: vec!["some text".into()],
    });
    let response = post(&llm, &chat_body(false, json!("x"))).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("clean end of body");
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());
}

#[tokio::test]
async fn error_in_stream() {
    let llm = FakeLlm::start().await;
    llm.push(Script::ErrorInStream {
        chunks: vec!["so far".into()],
        message: "boom".into(),
    });
    let (data, chunks) = sse_of(&llm, &chat_body(true, json!("x"))).await;
    assert!(!data.iter().any(|d| d == "[DONE]"));
    assert_eq!(content_of(&chunks), ["so far"]);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["error"]["message"], "boom");
    assert_eq!(last["error"]["type"], "server_error");

    llm.push_unary(Script::ErrorInStream {
        chunks: vec![],
        message: "unary boom".into(),
    });
    let response = post(&llm, &chat_body(false, json!("x"))).await;
    assert_eq!(response.status(), 500);
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"]["message"], "unary boom");
}

#[tokio::test]
async fn hang_sends_chunks_then_nothing() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Hang {
        chunks: vec!["wait".into()],
    });
    let response = post(&llm, &chat_body(true, json!("x"))).await;
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("\"wait\"") {
        let piece = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("chunks before the hang")
            .expect("body open")
            .expect("body chunk");
        text.push_str(std::str::from_utf8(&piece).expect("UTF-8"));
    }
    let more = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(more.is_err(), "nothing may follow: {more:?}");
    assert_eq!(llm.open_streams(), 1);
    drop(body);
    // The server notices the client hung up and drops the stream.
    let deadline = Instant::now() + Duration::from_secs(5);
    while llm.open_streams() != 0 {
        assert!(
            Instant::now() < deadline,
            "the hung stream outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The server stays usable.
    let (_, chunks) = sse_of(&llm, &chat_body(true, json!("again"))).await;
    assert_eq!(content_of(&chunks).concat(), "Hello! You said: again");
    llm.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let llm = FakeLlm::start().await;
    let url = format!("{}/models", llm.base_url());
    llm.shutdown().await;
    assert!(client().get(url).send().await.is_err());
}

#[tokio::test]
async fn non_json_body_is_a_400() {
    let llm = FakeLlm::start().await;
    // A body that is not JSON has no history to check.
    llm.expect_malformed_requests();
    let response = client()
        .post(format!("{}/chat/completions", llm.base_url()))
        .body("not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    assert_eq!(llm.requests()[0].body, json!("not json"));
}

#[tokio::test]
#[should_panic(expected = "no later `tool` message answers it")]
async fn malformed_requests_are_reported() {
    let llm = FakeLlm::start().await;
    let body = json!({"model": "m", "stream": true, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]},
        {"role": "user", "content": "and?"},
    ]});
    post(&llm, &body).await;
    llm.assert_requests_well_formed();
}

#[tokio::test]
#[should_panic(expected = "fake LLM: request 0 (streaming) is malformed")]
async fn a_dropped_fake_checks_its_requests() {
    let llm = FakeLlm::start().await;
    let body = json!({"model": "m", "stream": true, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "tool", "tool_call_id": "call_9", "content": "done"},
    ]});
    post(&llm, &body).await;
    drop(llm);
}

#[tokio::test]
async fn expected_malformed_requests_are_not_checked() {
    let llm = FakeLlm::start().await;
    // This test is about the opt-out itself.
    llm.expect_malformed_requests();
    let body = json!({"model": "m", "stream": false, "messages": []});
    post(&llm, &body).await;
    llm.assert_requests_well_formed();
    drop(llm);
}

/// The real client the daemon uses parses everything the fake sends.
mod real_client {
    use super::*;
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::error::OpenAIError;
    use async_openai::types::chat::{
        ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequest,
        CreateChatCompletionRequestArgs, FinishReason,
    };

    fn openai(llm: &FakeLlm) -> Client<OpenAIConfig> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::with_config(
            OpenAIConfig::new()
                .with_api_base(llm.base_url())
                .with_api_key("sk-real"),
        )
    }

    fn request(text: &str, stream: bool) -> CreateChatCompletionRequest {
        CreateChatCompletionRequestArgs::default()
            .model("gpt-real")
            // With the `byot` feature, create_stream does not set this itself.
            .stream(stream)
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content(text)
                .build()
                .expect("message")
                .into()])
            .build()
            .expect("request")
    }

    #[tokio::test]
    async fn streams_text() {
        let llm = FakeLlm::start().await;
        let mut stream = openai(&llm)
            .chat()
            .create_stream(request("hello world", true))
            .await
            .expect("stream");
        let mut text = String::new();
        let mut finish = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk parses");
            for choice in chunk.choices {
                text.push_str(choice.delta.content.as_deref().unwrap_or(""));
                finish = finish.or(choice.finish_reason);
            }
        }
        assert_eq!(text, "Hello! You said: hello world");
        assert_eq!(finish, Some(FinishReason::Stop));
        let recorded = llm.stream_requests();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].authorization.as_deref(), Some("Bearer sk-real"));
    }

    #[tokio::test]
    async fn streams_tool_calls() {
        let llm = FakeLlm::start().await;
        llm.push(Script::tool_call("call_1", "search", r#"{"query":"rust"}"#));
        let mut stream = openai(&llm)
            .chat()
            .create_stream(request("x", true))
            .await
            .expect("stream");
        let (mut id, mut name, mut args, mut finish) =
            (String::new(), String::new(), String::new(), None);
        while let Some(chunk) = stream.next().await {
            for choice in chunk.expect("chunk parses").choices {
                for call in choice.delta.tool_calls.unwrap_or_default() {
                    assert_eq!(call.index, 0);
                    id.push_str(call.id.as_deref().unwrap_or(""));
                    if let Some(function) = call.function {
                        name.push_str(function.name.as_deref().unwrap_or(""));
                        args.push_str(function.arguments.as_deref().unwrap_or(""));
                    }
                }
                finish = finish.or(choice.finish_reason);
            }
        }
        assert_eq!(
            (id.as_str(), name.as_str(), args.as_str()),
            ("call_1", "search", r#"{"query":"rust"}"#)
        );
        assert_eq!(finish, Some(FinishReason::ToolCalls));
    }

    #[tokio::test]
    async fn unary_completion() {
        let llm = FakeLlm::start().await;
        let response = openai(&llm)
            .chat()
            .create(request("name this chat please now", false))
            .await
            .expect("completion");
        assert_eq!(
            response.choices[0].message.content.as_deref(),
            Some("Title: name this chat please")
        );
        assert!(response.usage.is_some());
    }

    #[tokio::test]
    async fn errors_surface() {
        let llm = FakeLlm::start().await;
        llm.push(Script::Status {
            status: 400,
            retry_after: None,
            body: None,
        });
        match openai(&llm).chat().create_stream(request("x", true)).await {
            Err(OpenAIError::ApiError(e)) => assert_eq!(e.api_error.message, "fake error"),
            other => panic!("expected an API error, got {:?}", other.map(|_| ())),
        }

        llm.push(Script::ErrorInStream {
            chunks: vec!["a".into()],
            message: "mid-stream".into(),
        });
        let mut stream = openai(&llm)
            .chat()
            .create_stream(request("x", true))
            .await
            .expect("stream");
        let mut results = Vec::new();
        while let Some(item) = stream.next().await {
            results.push(item);
        }
        assert!(
            results.last().is_some_and(Result::is_err),
            "the error event is an error"
        );

        llm.push(Script::Abort {
            chunks: vec!["a".into()],
        });
        let mut stream = openai(&llm)
            .chat()
            .create_stream(request("x", true))
            .await
            .expect("stream");
        let mut saw_error = false;
        while let Some(item) = stream.next().await {
            saw_error |= item.is_err();
        }
        assert!(saw_error, "an aborted body is a stream error");
    }
}
