//! Tools end to end: the fake LLM asks for tools, the daemon runs them on a
//! real MCP server child process (`fake-mcp`, which misbehaves on request),
//! shows them as a workflow, stores them as hidden items and replays them;
//! the same through the Responses API, with a reasoning model's thinking.

mod support;

use std::time::{Duration, Instant};

use chatkitd::config::{Config, LlmApi, McpScope, ReasoningEffort, ReasoningSummary};
use chatkitd_testkit::{FakeToolCall, Script};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{Backend, Daemon, children_of, eventually, fake_mcp_server, process_alive};

/// A daemon with the fake MCP server as `fake`.
async fn daemon_with_tools(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Daemon {
    let server = fake_mcp_server();
    Daemon::start_with(backend, move |config| {
        config.mcp_servers.insert("fake".into(), server);
        tweak(config);
    })
    .await
}

fn calls(list: &[(&str, &str, Value)]) -> Script {
    Script::ToolCalls {
        calls: list
            .iter()
            .map(|(id, name, args)| FakeToolCall::new(*id, *name, args.to_string()))
            .collect(),
    }
}

/// The tool messages of a recorded LLM request, as (call id, content).
fn tool_results(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap_or_default().to_owned(),
                m["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The text a tool returned in the last model request.
fn last_tool_output(daemon: &Daemon) -> String {
    let requests = daemon.llm.stream_requests();
    let last = requests.last().expect("a model request");
    tool_results(last.messages())
        .pop()
        .map(|(_, content)| content)
        .expect("a tool result")
}

async fn a_tool_call_runs_with_the_users_identity_and_replays(backend: Backend) {
    let daemon = daemon_with_tools(backend, |_| {}).await;
    // The model tries to act for someone else; the daemon's value wins.
    daemon.llm.push(calls(&[(
        "call_1",
        "echo",
        json!({"text": "hi", "user_id": "mallory"}),
    )]));
    daemon.llm.push(Script::text(["Echoed."]));
    let (thread_id, streamed) = daemon.create_thread("echo hi").await;

    let first = &daemon.llm.stream_requests()[0];
    assert!(
        first.tool_names().contains(&"echo".to_owned()),
        "{:?}",
        first.tool_names()
    );
    let echo = first.body["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|t| t["function"]["name"] == "echo")
        .expect("echo offered")
        .clone();
    assert_eq!(
        echo["function"]["parameters"],
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        "user_id is hidden from the model"
    );

    let output: Value = serde_json::from_str(&last_tool_output(&daemon)).expect("echo JSON");
    assert_eq!(
        output,
        json!({"arguments": {"text": "hi", "user_id": "dev"}, "user_env": null})
    );

    // The stream shows the call as a workflow task, then the answer.
    let types = streamed.types();
    let workflow_added = types
        .iter()
        .position(|t| t == "thread.item.added")
        .expect("added");
    assert_eq!(streamed.events[workflow_added]["item"]["type"], "workflow");
    let updates: Vec<String> = streamed
        .events
        .iter()
        .filter_map(|e| e["update"]["type"].as_str().map(str::to_owned))
        .filter(|t| t.starts_with("workflow."))
        .collect();
    assert_eq!(updates, ["workflow.task.added", "workflow.task.updated"]);
    let done = streamed.done_items();
    assert_eq!(
        done.iter()
            .map(|i| i["type"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["user_message", "workflow", "assistant_message"]
    );
    let task = &done[1]["workflow"]["tasks"][0];
    assert_eq!(task["title"], "echo");
    assert_eq!(task["status_indicator"], "complete");
    assert_eq!(streamed.answer().as_deref(), Some("Echoed."));

    // Reloaded, the thread shows the tool activity; hidden items stay hidden.
    assert_eq!(daemon.items(&thread_id).await, done);
    let stored = daemon.stored_items("dev", &thread_id).await;
    assert_eq!(
        stored.iter().filter(|i| i.is_hidden()).count(),
        2,
        "the call and its result"
    );

    // The next turn's history replays the call and its result exactly.
    daemon.add_message(&thread_id, "thanks").await;
    let replay = daemon
        .llm
        .stream_requests()
        .last()
        .expect("third request")
        .messages()
        .to_vec();
    let roles: Vec<&str> = replay
        .iter()
        .map(|m| m["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        roles,
        ["system", "user", "assistant", "tool", "assistant", "user"]
    );
    assert_eq!(replay[2]["tool_calls"][0]["id"], "call_1");
    assert_eq!(replay[2]["tool_calls"][0]["function"]["name"], "echo");
    assert_eq!(replay[3]["tool_call_id"], "call_1");
    daemon.stop().await;
}

async fn a_crashed_server_is_a_tool_error_and_is_replaced(backend: Backend) {
    let daemon = daemon_with_tools(backend, |c| {
        c.mcp_servers.get_mut("fake").expect("fake").max_instances = 1;
    })
    .await;
    daemon.llm.push(calls(&[("c1", "pid", json!({}))]));
    daemon.llm.push(Script::text(["ok"]));
    let (thread_id, _) = daemon.create_thread("which pid").await;
    let first_pid: u32 = last_tool_output(&daemon).parse().expect("pid");

    daemon.llm.push(calls(&[("c2", "crash", json!({}))]));
    daemon.llm.push(Script::text(["The tool failed."]));
    let streamed = daemon.add_message(&thread_id, "crash it").await;
    assert!(
        streamed.error().is_none(),
        "the turn completes: {}",
        streamed.raw
    );
    assert_eq!(streamed.answer().as_deref(), Some("The tool failed."));
    let output = last_tool_output(&daemon);
    assert!(output.contains("stopped during the call"), "{output}");

    daemon.llm.push(calls(&[("c3", "pid", json!({}))]));
    daemon.llm.push(Script::text(["ok"]));
    daemon.add_message(&thread_id, "again").await;
    let second_pid: u32 = last_tool_output(&daemon).parse().expect("pid");
    assert_ne!(first_pid, second_pid, "a fresh instance answered");
    assert!(!process_alive(first_pid), "the crashed instance is gone");
    daemon.stop().await;
}

async fn a_hanging_call_times_out_on_schedule(backend: Backend) {
    let daemon = daemon_with_tools(backend, |c| {
        c.mcp_servers.get_mut("fake").expect("fake").call_timeout = Duration::from_secs(1);
    })
    .await;
    daemon.llm.push(calls(&[("c1", "pid", json!({}))]));
    daemon.llm.push(Script::text(["ok"]));
    let (thread_id, _) = daemon.create_thread("pid").await;
    let hung_pid: u32 = last_tool_output(&daemon).parse().expect("pid");

    daemon.llm.push(calls(&[("c2", "hang", json!({}))]));
    daemon.llm.push(Script::text(["It timed out."]));
    let started = Instant::now();
    let streamed = daemon.add_message(&thread_id, "hang").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(streamed.answer().as_deref(), Some("It timed out."));
    let output = last_tool_output(&daemon);
    assert!(output.contains("did not answer within 1s"), "{output}");
    // The hung instance is not reused: it is killed.
    assert!(
        eventually(Duration::from_secs(3), || async {
            !process_alive(hung_pid)
        })
        .await,
        "the hung server was killed"
    );
    daemon.stop().await;
}

async fn several_calls_of_one_answer_run_concurrently(backend: Backend) {
    let daemon = daemon_with_tools(backend, |_| {}).await;
    daemon.llm.push(calls(&[
        ("a", "sleep", json!({"ms": 600})),
        ("b", "sleep", json!({"ms": 600})),
    ]));
    daemon.llm.push(Script::text(["Both slept."]));
    let started = Instant::now();
    let (_, streamed) = daemon.create_thread("sleep twice").await;
    let took = started.elapsed();
    assert_eq!(streamed.answer().as_deref(), Some("Both slept."));
    assert!(
        took < Duration::from_millis(1150),
        "two 600 ms calls took {took:?}"
    );
    let requests = daemon.llm.stream_requests();
    assert_eq!(
        tool_results(requests[1].messages()),
        [
            ("a".to_owned(), "slept".to_owned()),
            ("b".to_owned(), "slept".to_owned())
        ]
    );
    daemon.stop().await;
}

async fn eight_conversations_share_two_instances(backend: Backend) {
    let daemon = daemon_with_tools(backend, |_| {}).await;
    for i in 0..8 {
        daemon
            .llm
            .push(calls(&[(&format!("c{i}"), "sleep", json!({"ms": 150}))]));
    }
    let runs = (0..8).map(|i| {
        let daemon = &daemon;
        async move { daemon.create_thread(&format!("conversation {i}")).await.1 }
    });
    let results = futures::future::join_all(runs).await;
    for streamed in &results {
        assert!(streamed.error().is_none(), "{}", streamed.raw);
        assert!(streamed.answer().is_some(), "{}", streamed.raw);
    }
    let outputs: Vec<String> = daemon
        .llm
        .stream_requests()
        .iter()
        .flat_map(|r| tool_results(r.messages()))
        .map(|(_, content)| content)
        .collect();
    assert_eq!(outputs, vec!["slept".to_owned(); 8]);
    daemon.stop().await;
}

async fn servers_get_only_their_declared_environment(backend: Backend) {
    let daemon = daemon_with_tools(backend, |_| {}).await;
    daemon.llm.push(calls(&[("c1", "env_names", json!({}))]));
    daemon.llm.push(Script::text(["ok"]));
    daemon.create_thread("env").await;
    let names: Vec<String> = serde_json::from_str(&last_tool_output(&daemon)).expect("names");
    let allowed = ["FAKE_SETTING", "HOME", "PATH"];
    assert!(
        names.iter().all(|n| allowed.contains(&n.as_str())),
        "{names:?}"
    );
    assert!(names.contains(&"FAKE_SETTING".to_owned()));
    daemon.stop().await;
}

async fn per_user_instances_know_their_user(backend: Backend) {
    let daemon = daemon_with_tools(backend, |c| {
        c.mcp_servers.get_mut("fake").expect("fake").scope = McpScope::PerUser;
    })
    .await;
    daemon
        .llm
        .push(calls(&[("c1", "echo", json!({"text": "x"}))]));
    daemon.llm.push(Script::text(["ok"]));
    daemon.create_thread("who am i").await;
    let output: Value = serde_json::from_str(&last_tool_output(&daemon)).expect("echo JSON");
    assert_eq!(output["user_env"], "dev");
    assert_eq!(output["arguments"]["user_id"], "dev");
    daemon.stop().await;
}

async fn mistakes_become_tool_errors_the_model_reads(backend: Backend) {
    let daemon = daemon_with_tools(backend, |c| c.agent.max_tool_output_bytes = 100).await;
    daemon.llm.push(Script::ToolCalls {
        calls: vec![
            FakeToolCall::new("bad", "echo", "{not json"),
            FakeToolCall::new("ghost", "no_such_tool", "{}"),
            FakeToolCall::new("big", "big", r#"{"bytes": 1000}"#),
        ],
    });
    daemon.llm.push(Script::text(["Sorry."]));
    let (_, streamed) = daemon.create_thread("try things").await;
    assert_eq!(streamed.answer().as_deref(), Some("Sorry."));
    let results = tool_results(daemon.llm.stream_requests()[1].messages());
    assert_eq!(results.len(), 3);
    assert!(results[0].1.contains("not valid JSON"), "{}", results[0].1);
    assert!(
        results[1].1.contains("no tool named \"no_such_tool\""),
        "{}",
        results[1].1
    );
    assert!(
        results[2]
            .1
            .ends_with("[output truncated: 100 of 1000 bytes shown]"),
        "{}",
        results[2].1
    );
    daemon.stop().await;
}

async fn a_model_that_never_stops_calling_tools_is_stopped(backend: Backend) {
    let daemon = daemon_with_tools(backend, |c| c.agent.max_turns = 2).await;
    daemon.llm.push(calls(&[("c1", "pid", json!({}))]));
    daemon.llm.push(calls(&[("c2", "pid", json!({}))]));
    let (thread_id, streamed) = daemon.create_thread("loop").await;
    assert_eq!(daemon.llm.stream_requests().len(), 2);
    let answer = streamed.answer().expect("a closing message");
    assert!(answer.contains("stopped after 2 steps"), "{answer}");
    assert!(
        daemon
            .items(&thread_id)
            .await
            .iter()
            .any(|i| i["type"] == "assistant_message")
    );
    daemon.stop().await;
}

async fn a_changed_tool_list_reaches_the_next_turn(backend: Backend) {
    let daemon = daemon_with_tools(backend, |_| {}).await;
    daemon.llm.push(calls(&[("c1", "add_tool", json!({}))]));
    daemon.llm.push(Script::text(["added"]));
    let (thread_id, _) = daemon.create_thread("add a tool").await;
    assert!(
        !daemon.llm.stream_requests()[0]
            .tool_names()
            .contains(&"late_tool".to_owned())
    );
    let mut offered = false;
    for _ in 0..20 {
        daemon.add_message(&thread_id, "what tools now?").await;
        let last = daemon
            .llm
            .stream_requests()
            .last()
            .expect("request")
            .tool_names();
        if last.contains(&"late_tool".to_owned()) {
            offered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        offered,
        "late_tool was never offered after tools/list_changed"
    );
    daemon.stop().await;
}

async fn hanging_up_during_a_call_cancels_it_and_keeps_history_whole(backend: Backend) {
    let daemon = daemon_with_tools(backend, |_| {}).await;
    daemon
        .llm
        .push(calls(&[("slow", "sleep", json!({"ms": 3000}))]));
    let streamed = daemon
        .stream_until(support::create_body("slow tool"), |e| {
            e["update"]["type"] == "workflow.task.added"
        })
        .await;
    assert!(streamed.hung_up);
    let thread_id = streamed.thread_id().to_owned();
    let stored_ok = eventually(Duration::from_secs(5), || async {
        daemon
            .stored_items("dev", &thread_id)
            .await
            .iter()
            .any(|i| {
                matches!(
                    &i.kind,
                    chatkitd::protocol::ItemKind::SdkHiddenContext { .. }
                )
            })
    })
    .await;
    assert!(stored_ok, "the cancellation was persisted");
    let stored = daemon.stored_values("dev", &thread_id).await;
    let result = stored
        .iter()
        .find(|i| i["content"]["type"] == "chatkitd.tool_result")
        .expect("a result for the cancelled call");
    assert_eq!(result["content"]["call_id"], "slow");
    assert_eq!(result["content"]["is_error"], true);
    // The next turn's history pairs the call with that result.
    daemon.llm.push(Script::text(["ok"]));
    daemon.add_message(&thread_id, "never mind").await;
    let last = daemon
        .llm
        .stream_requests()
        .last()
        .expect("request")
        .messages()
        .to_vec();
    assert_eq!(tool_results(&last).len(), 1);
    daemon.stop().await;
}

async fn no_server_process_outlives_the_daemon(backend: Backend) {
    let daemon = daemon_with_tools(backend, |_| {}).await;
    daemon.llm.push(calls(&[("c1", "spawn_child", json!({}))]));
    daemon.llm.push(Script::text(["ok"]));
    daemon.create_thread("start a child").await;
    let grandchild: u32 = last_tool_output(&daemon).parse().expect("pid");
    let me = std::process::id();
    let servers: Vec<u32> = children_of(me)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "fake-mcp")
        })
        .collect();
    assert!(!servers.is_empty(), "the server runs as a child");
    assert!(process_alive(grandchild));
    daemon.stop().await;
    let gone = eventually(Duration::from_secs(5), || async {
        servers.iter().all(|pid| !process_alive(*pid)) && !process_alive(grandchild)
    })
    .await;
    assert!(
        gone,
        "servers {servers:?} and their child {grandchild} were stopped"
    );
}

/// The composer's choices: the picked model answers the turn (and its
/// retry), the chosen tool is required of the turn's first model call
/// only; choices the server does not offer are refused before anything is
/// stored.
async fn the_composer_picks_the_model_and_the_tool(backend: Backend) {
    let daemon = daemon_with_tools(backend, |config| {
        config.llm.models = vec!["fake-model".into(), "fake-model-large".into()];
    })
    .await;
    let input = |text: &str, options: Value| {
        let mut input = support::user_input(text);
        input["inference_options"] = options;
        input
    };
    let picked = json!({"model": "fake-model-large", "tool_choice": {"id": "echo"}});
    daemon
        .llm
        .push(calls(&[("c1", "echo", json!({"text": "hi"}))]));
    daemon.llm.push(Script::text(["Echoed."]));
    let created = daemon
        .stream(json!({"type": "threads.create", "params": {"input": input("echo hi", picked.clone())}}))
        .await;
    assert_eq!(
        created.answer().as_deref(),
        Some("Echoed."),
        "{}",
        created.raw
    );
    let thread_id = created.thread_id().to_owned();
    let forced = json!({"type": "function", "function": {"name": "echo"}});
    let seen = |from: usize| -> Vec<(Value, Value)> {
        daemon.llm.stream_requests()[from..]
            .iter()
            .map(|r| {
                (
                    r.body["model"].clone(),
                    r.body.get("tool_choice").cloned().unwrap_or(Value::Null),
                )
            })
            .collect()
    };
    assert_eq!(
        seen(0),
        [
            (json!("fake-model-large"), forced.clone()),
            (json!("fake-model-large"), Value::Null),
        ]
    );

    // The next message, without choices, gets the default.
    let before = daemon.llm.stream_requests().len();
    daemon.add_message(&thread_id, "and now?").await;
    assert_eq!(seen(before), [(json!("fake-model"), Value::Null)]);

    // A retry of the first message answers with its stored choices.
    let first = daemon.items(&thread_id).await[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    daemon
        .llm
        .push(calls(&[("c2", "echo", json!({"text": "again"}))]));
    daemon.llm.push(Script::text(["Again."]));
    let before = daemon.llm.stream_requests().len();
    let retried = daemon
        .stream(json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": first}}))
        .await;
    assert_eq!(
        retried.answer().as_deref(),
        Some("Again."),
        "{}",
        retried.raw
    );
    assert_eq!(
        seen(before),
        [
            (json!("fake-model-large"), forced),
            (json!("fake-model-large"), Value::Null),
        ]
    );

    // What the server does not offer is refused, and nothing is stored.
    let stored = daemon.items(&thread_id).await.len();
    for (options, expected) in [
        (
            json!({"model": "gpt-5"}),
            "choose one of: fake-model, fake-model-large",
        ),
        (
            json!({"tool_choice": {"id": "rm_rf"}}),
            "names no tool offered here",
        ),
    ] {
        let (status, body) = daemon
            .post(json!({"type": "threads.add_user_message",
                "params": {"thread_id": thread_id, "input": input("x", options)}}))
            .await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(daemon.items(&thread_id).await.len(), stored);
    daemon.stop().await;
}

// ---------------------------------------------------------------------------
// The Responses API
// ---------------------------------------------------------------------------

/// A daemon with the fake MCP server that asks the model through the
/// Responses API, reasoning configured.
async fn daemon_on_responses(backend: Backend) -> Daemon {
    daemon_with_tools(backend, |config| {
        config.llm.api = LlmApi::Responses;
        config.llm.reasoning_effort = Some(ReasoningEffort::Low);
        config.llm.reasoning_summary = Some(ReasoningSummary::Auto);
    })
    .await
}

/// The `type` of each input item (`role` for a message), with its text or
/// call id: what the model is sent, in order.
fn input_shape(input: &[Value]) -> Vec<String> {
    input
        .iter()
        .map(|item| match item["type"].as_str() {
            Some("reasoning") => format!(
                "reasoning {}",
                item["encrypted_content"].as_str().unwrap_or_default()
            ),
            Some("function_call") => {
                format!("call {}", item["call_id"].as_str().unwrap_or_default())
            }
            Some("function_call_output") => {
                format!("output {}", item["call_id"].as_str().unwrap_or_default())
            }
            _ => format!(
                "{} {}",
                item["role"].as_str().unwrap_or_default(),
                chatkitd_testkit::fake_llm::message_text(item).unwrap_or_default()
            ),
        })
        .collect()
}

/// Through the Responses API an answer thinks, calls a tool, thinks again
/// and answers: each step's thinking shows as a reasoning workflow, the
/// requests are stateless with reasoning asked for, the first step's
/// encrypted reasoning goes back with its call in the second request, and
/// both steps' reasoning go back on the next turn. Titles use it too.
async fn responses_api_thinks_calls_tools_and_sends_its_reasoning_back(backend: Backend) {
    let daemon = daemon_on_responses(backend).await;
    daemon.llm.push(Script::Thinking {
        field: "reasoning",
        reasoning: vec!["Echo".to_owned(), " first.".to_owned()],
        chunks: Vec::new(),
        calls: vec![FakeToolCall::new("call_1", "echo", r#"{"text":"hi"}"#)],
    });
    daemon.llm.push(Script::Thinking {
        field: "reasoning",
        reasoning: vec!["Now answer.".to_owned()],
        chunks: vec!["Echoed.".to_owned()],
        calls: Vec::new(),
    });
    let (thread_id, streamed) = daemon.create_thread("echo hi").await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    assert_eq!(streamed.answer().as_deref(), Some("Echoed."));
    let shown: Vec<String> = streamed
        .done_items()
        .iter()
        .map(|item| match item["type"].as_str() {
            Some("workflow") => {
                let task = &item["workflow"]["tasks"][0];
                // A thought by its content, a tool's task by its title.
                let shown = match task["type"].as_str() {
                    Some("thought") => &task["content"],
                    _ => &task["title"],
                };
                format!(
                    "{} {}",
                    item["workflow"]["type"].as_str().unwrap_or_default(),
                    shown.as_str().unwrap_or_default()
                )
            }
            other => other.unwrap_or_default().to_owned(),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "user_message",
            "reasoning Echo first.",
            "custom echo",
            "reasoning Now answer.",
            "assistant_message"
        ]
    );

    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0].body;
    assert_eq!(first["store"], false);
    assert_eq!(
        first["reasoning"],
        json!({"effort": "low", "summary": "auto"})
    );
    assert_eq!(first["include"], json!(["reasoning.encrypted_content"]));
    assert!(first["instructions"].is_string(), "{first}");
    assert!(
        first["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .any(|t| t["type"] == "function" && t["name"] == "echo"),
        "{first}"
    );
    assert_eq!(input_shape(requests[0].input()), ["user echo hi"]);
    assert_eq!(
        input_shape(requests[1].input()),
        [
            "user echo hi",
            "reasoning enc:Echo first.",
            "call call_1",
            "output call_1"
        ]
    );
    // The title came through the Responses API as well.
    let titles = daemon.llm.unary_requests();
    assert_eq!(titles.len(), 1);
    assert!(titles[0].body["input"].is_array(), "{}", titles[0].body);

    daemon.llm.push(Script::text(["Again."]));
    daemon.add_message(&thread_id, "once more").await;
    let requests = daemon.llm.stream_requests();
    assert_eq!(
        input_shape(requests[2].input()),
        [
            "user echo hi",
            "reasoning enc:Echo first.",
            "call call_1",
            "output call_1",
            "reasoning enc:Now answer.",
            "assistant Echoed.",
            "user once more"
        ]
    );
    // What the client lists: no hidden records.
    let listed: Vec<String> = daemon
        .items(&thread_id)
        .await
        .iter()
        .map(|i| i["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        listed,
        [
            "user_message",
            "workflow",
            "workflow",
            "workflow",
            "assistant_message",
            "user_message",
            "assistant_message"
        ]
    );
    daemon.stop().await;
}

/// A Responses stream that fails, or is cut, keeps the text streamed so far
/// and ends with an `error` event; the next message is answered as usual.
async fn responses_api_failures_keep_the_partial_answer(backend: Backend) {
    let daemon = daemon_on_responses(backend).await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    for (script, expected) in [
        (
            Script::ErrorInStream {
                chunks: vec!["Hel".to_owned(), "lo".to_owned()],
                message: "the GPU caught fire".to_owned(),
            },
            "the GPU caught fire",
        ),
        (
            Script::CutAfter {
                chunks: vec!["Hel".to_owned(), "lo".to_owned()],
            },
            "ended before the answer was complete",
        ),
    ] {
        daemon.llm.push(script);
        let streamed = daemon.add_message(&thread_id, "go").await;
        let error = streamed.error().expect("an error event");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{message}");
        assert_eq!(
            streamed.answer().as_deref(),
            Some("Hello"),
            "{}",
            streamed.raw
        );
    }
    let next = daemon.add_message(&thread_id, "still there?").await;
    assert_eq!(
        next.answer().as_deref(),
        Some("Hello! You said: still there?")
    );
    daemon.stop().await;
}

both_backends!(
    responses_api_thinks_calls_tools_and_sends_its_reasoning_back,
    responses_api_failures_keep_the_partial_answer,
    the_composer_picks_the_model_and_the_tool,
    a_tool_call_runs_with_the_users_identity_and_replays,
    a_crashed_server_is_a_tool_error_and_is_replaced,
    a_hanging_call_times_out_on_schedule,
    several_calls_of_one_answer_run_concurrently,
    eight_conversations_share_two_instances,
    servers_get_only_their_declared_environment,
    per_user_instances_know_their_user,
    mistakes_become_tool_errors_the_model_reads,
    a_model_that_never_stops_calling_tools_is_stopped,
    a_changed_tool_list_reaches_the_next_turn,
    hanging_up_during_a_call_cancels_it_and_keeps_history_whole,
    no_server_process_outlives_the_daemon,
);
