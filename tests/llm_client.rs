//! The LLM client against the fake OpenAI-compatible server over real HTTP:
//! streaming, tool-call assembly, the quirks of other compatible servers,
//! retries, timeouts and cut streams.

use std::time::{Duration, Instant};

use chatkitd::config::{Config, LlmConfig};
use chatkitd::llm::{ChatMessage, LlmClient, LlmError, LlmEvent, ToolCall, ToolDefinition, Turn};
use chatkitd_testkit::fake_llm::FAKE_MODEL;
use chatkitd_testkit::{FakeLlm, FakeToolCall, Script};
use pretty_assertions::assert_eq;
use serde_json::Value;

fn config(base_url: &str) -> LlmConfig {
    let mut config = Config::from_toml("", "t.toml", ".".into(), &|_| None)
        .expect("defaults")
        .llm;
    config.base_url = base_url.to_owned();
    config.api_key = Some("k".into());
    config.idle_timeout = Duration::from_secs(5);
    config.max_retry_after = Duration::from_secs(2);
    config
}

fn hello() -> Vec<ChatMessage> {
    vec![ChatMessage::User {
        content: "hello".into(),
    }]
}

/// Drains a stream into its events, or the error that ended it.
async fn collect(client: &LlmClient) -> Result<Vec<LlmEvent>, LlmError> {
    let mut stream = client.stream(&hello(), &[], Turn::default()).await?;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    Ok(events)
}

fn text(s: &str) -> LlmEvent {
    LlmEvent::Text(s.to_owned())
}

fn stop(tool_calls: Vec<ToolCall>) -> LlmEvent {
    LlmEvent::Finished {
        reason: if tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        }
        .to_owned(),
        tool_calls,
        reasoning: Vec::new(),
    }
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall::function(id, name, arguments)
}

#[tokio::test]
async fn streams_text_then_finishes() {
    let llm = FakeLlm::start().await;
    llm.push(Script::text(["Hel", "lo", "!"]));
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let events = collect(&client).await.expect("complete answer");
    assert_eq!(
        events,
        vec![text("Hel"), text("lo"), text("!"), stop(vec![])]
    );
    let request = &llm.requests()[0];
    assert_eq!(request.body["stream"], true);
    assert_eq!(request.body["model"], "gpt-4.1-mini");
    assert_eq!(request.authorization.as_deref(), Some("Bearer k"));
    assert!(request.body.get("tools").is_none(), "no empty tools array");
}

#[tokio::test]
async fn a_turn_picks_its_model_and_can_require_an_offered_tool() {
    let llm = FakeLlm::start().await;
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let tools = [ToolDefinition::new(
        "add_task",
        "Adds a task.",
        serde_json::json!({"type": "object", "properties": {}}),
    )];
    for (turn, model, choice) in [
        (
            Turn {
                model: Some("gpt-4.1"),
                tool_choice: Some("add_task"),
                ..Turn::default()
            },
            "gpt-4.1",
            serde_json::json!({"type": "function", "function": {"name": "add_task"}}),
        ),
        // A tool that is not offered is never required.
        (
            Turn {
                model: None,
                tool_choice: Some("nope"),
                ..Turn::default()
            },
            "gpt-4.1-mini",
            Value::Null,
        ),
    ] {
        llm.clear_requests();
        llm.push(Script::text(["ok"]));
        let mut stream = client
            .stream(&hello(), &tools, turn)
            .await
            .expect("started");
        while let Some(event) = stream.next().await {
            event.expect("event");
        }
        let body = &llm.requests()[0].body;
        assert_eq!(body["model"], model);
        assert_eq!(
            body.get("tool_choice").cloned().unwrap_or(Value::Null),
            choice
        );
    }
}

#[tokio::test]
async fn assembles_tool_call_fragments_by_index() {
    let llm = FakeLlm::start().await;
    llm.push(Script::ToolCalls {
        calls: vec![
            FakeToolCall::new(
                "call_a",
                "add_task",
                r#"{"title":"buy milk","due":"today"}"#,
            ),
            FakeToolCall::new("call_b", "list_tasks", "{}"),
        ],
    });
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let events = collect(&client).await.expect("complete answer");
    assert_eq!(
        events,
        vec![stop(vec![
            call(
                "call_a",
                "add_task",
                r#"{"title":"buy milk","due":"today"}"#
            ),
            call("call_b", "list_tasks", "{}"),
        ])]
    );
}

#[tokio::test]
async fn tolerates_servers_without_index_id_or_finish_reason_literal() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Raw {
        events: vec![
            r#"{"choices":[{"delta":{"role":"assistant"},"finish_reason":""}]}"#.into(),
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"add_task","arguments":"{\"ti"}}]},"finish_reason":""}]}"#.into(),
            r#""not an object""#.into(),
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"tle\":\"x\"}"}}]},"finish_reason":null}]}"#.into(),
            r#"{"choices":null}"#.into(),
            r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}]}"#.into(),
            "[DONE]".into(),
        ],
    });
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let events = collect(&client).await.expect("complete answer");
    assert_eq!(
        events,
        vec![stop(vec![call("call_0", "add_task", r#"{"title":"x"}"#)])]
    );
}

#[tokio::test]
async fn a_stream_without_finish_reason_is_cut_even_with_done() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Raw {
        events: vec![
            r#"{"choices":[{"index":0,"delta":{"content":"partial"}}]}"#.into(),
            "[DONE]".into(),
        ],
    });
    llm.push(Script::CutAfter {
        chunks: vec!["a".into(), "b".into()],
    });
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    for _ in 0..2 {
        let mut stream = client
            .stream(&hello(), &[], Turn::default())
            .await
            .expect("started");
        let mut seen = String::new();
        let end = loop {
            match stream.next().await {
                Some(Ok(LlmEvent::Text(t))) => seen.push_str(&t),
                other => break other,
            }
        };
        assert!(
            matches!(end, Some(Err(LlmError::Cut))),
            "{end:?} after {seen:?}"
        );
        assert!(!seen.is_empty());
        assert!(stream.next().await.is_none(), "nothing after the error");
    }
}

#[tokio::test]
async fn an_error_object_inside_the_stream_is_an_error() {
    let llm = FakeLlm::start().await;
    llm.push(Script::ErrorInStream {
        chunks: vec!["so far".into()],
        message: "model overloaded".into(),
    });
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let mut stream = client
        .stream(&hello(), &[], Turn::default())
        .await
        .expect("started");
    assert_eq!(
        stream.next().await.map(Result::ok),
        Some(Some(text("so far")))
    );
    match stream.next().await {
        Some(Err(LlmError::InStream(message))) => assert_eq!(message, "model overloaded"),
        other => panic!("expected the in-stream error, got {other:?}"),
    }
}

#[tokio::test]
async fn retries_429_and_500_before_the_stream_starts() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Status {
        status: 429,
        retry_after: Some(0),
        body: None,
    });
    llm.push(Script::status(503));
    llm.push(Script::text(["ok"]));
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let events = collect(&client).await.expect("third attempt succeeds");
    assert_eq!(events, vec![text("ok"), stop(vec![])]);
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test]
async fn retries_are_bounded_and_long_retry_after_is_not_waited_for() {
    let llm = FakeLlm::start().await;
    for _ in 0..5 {
        llm.push(Script::status(500));
    }
    let mut cfg = config(&llm.base_url());
    cfg.max_retries = 1;
    let client = LlmClient::new(&cfg).expect("client");
    let error = collect(&client).await.expect_err("keeps failing");
    assert!(
        matches!(error, LlmError::Api { status: 500, .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(llm.requests().len(), 2, "one try and one retry");

    let llm = FakeLlm::start().await;
    llm.push(Script::Status {
        status: 429,
        retry_after: Some(3600),
        body: None,
    });
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let started = Instant::now();
    let error = collect(&client).await.expect_err("not retried");
    assert!(
        matches!(error, LlmError::Api { status: 429, .. }),
        "{error:?}"
    );
    assert_eq!(llm.requests().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_silent_stream_times_out_on_schedule() {
    let llm = FakeLlm::start().await;
    llm.push(Script::Hang {
        chunks: vec!["thinking".into()],
    });
    let mut cfg = config(&llm.base_url());
    cfg.idle_timeout = Duration::from_millis(400);
    let client = LlmClient::new(&cfg).expect("client");
    let started = Instant::now();
    let mut stream = client
        .stream(&hello(), &[], Turn::default())
        .await
        .expect("started");
    assert_eq!(
        stream.next().await.map(Result::ok),
        Some(Some(text("thinking")))
    );
    let end = stream.next().await;
    let waited = started.elapsed();
    assert!(matches!(end, Some(Err(LlmError::Timeout(_)))), "{end:?}");
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn completes_unary_requests() {
    let llm = FakeLlm::start().await;
    llm.push_unary(Script::text(["Weekly ", "groceries"]));
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let answer = client.complete(&hello(), 20).await.expect("answer");
    assert_eq!(answer, "Weekly groceries");
    let request = &llm.unary_requests()[0];
    assert_eq!(request.body["stream"], false);
    assert_eq!(request.body["max_tokens"], 20);
}

#[tokio::test]
async fn openai_without_a_key_is_refused_without_a_request() {
    let mut cfg = config("https://api.openai.com/v1");
    cfg.api_key = None;
    let client = LlmClient::new(&cfg).expect("client");
    let error = collect(&client).await.expect_err("not configured");
    assert!(
        matches!(error, LlmError::NotConfigured(ref m) if m.contains("OPENAI_API_KEY")),
        "{error}"
    );
    assert!(!error.is_transient());
}

#[tokio::test]
async fn lists_models_and_tells_a_missing_route_from_an_unreachable_server() {
    let llm = FakeLlm::start().await;
    let client = LlmClient::new(&config(&llm.base_url())).expect("client");
    let models = client.list_models().await.expect("a model list");
    assert_eq!(models.ids(), vec![FAKE_MODEL]);

    let elsewhere =
        LlmClient::new(&config(&format!("{}/elsewhere", llm.base_url()))).expect("client");
    let error = elsewhere.list_models().await.expect_err("no such route");
    assert!(matches!(error, LlmError::NoModelsRoute), "{error}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let unreachable =
        LlmClient::new(&config(&format!("http://127.0.0.1:{closed}/v1"))).expect("client");
    let error = unreachable.list_models().await.expect_err("unreachable");
    assert!(
        matches!(&error, LlmError::Transport(reason) if reason.starts_with("cannot connect: ")),
        "{error}"
    );
}
