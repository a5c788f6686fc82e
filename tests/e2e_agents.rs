//! Several agents, end to end against the real binary and the fake model:
//! a handoff mid-answer changes the instructions, model and tools the
//! model receives and shows who took over; the next message starts where
//! `[agent] handoff_return` says; a handoff loop stops at `max_handoffs`
//! with what was written kept; a specialist cannot call a tool it is not
//! offered; an agent asked as a tool answers with its own tools, and
//! stopping the answer stops it; an input guardrail that trips removes what
//! streamed before any tool runs, one that passes changes nothing, and an
//! output guardrail that trips replaces the answer. Stopping each daemon checks that every request kept tool
//! results after their calls.

mod support;

use chatkitd_testkit::{FakeToolCall, Script};
use pretty_assertions::assert_eq;
use serde_json::Value;
use support::{Backend, Daemon, fake_mcp_server_toml};

const BILLING_PROMPT: &str = "You are Billing. You handle invoices.";

/// The real binary with an entry agent that hands off to `billing`, which
/// uses only the fake server's `echo` and its own model; `extra` on top.
async fn daemon_with_agents(backend: Backend, extra: &str) -> Daemon {
    let toml = format!(
        r#"[agent]
name = "Helper"
handoffs = ["billing"]
max_handoffs = 2
{extra}

[agents.billing]
instructions_text = "{BILLING_PROMPT}"
handoff_description = "Invoices and refunds."
model = "billing-model"
reasoning_effort = "high"
servers = ["fake"]
enabled_tools = ["echo"]
client_tools = []
handoffs = ["entry"]

[client_tools.shopping_list]
description = "The user's shopping list."
parameters = {{ type = "object", properties = {{}} }}

{}"#,
        fake_mcp_server_toml()
    );
    Daemon::binary(backend, &toml).await
}

fn transfer(id: &str, to: &str) -> Script {
    Script::tool_call(id, format!("transfer_to_{to}"), "{}")
}

/// The system prompt, model and tool names of a recorded request.
fn seen(body: &Value) -> (String, String, Vec<String>) {
    let system = body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let tools = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
        .collect();
    (system, model, tools)
}

async fn a_handoff_changes_prompt_model_and_tools_and_the_next_message_stays(backend: Backend) {
    let daemon = daemon_with_agents(backend, "").await;
    daemon.llm.push(transfer("call_h1", "billing"));
    daemon
        .llm
        .push(Script::text(["Billing here: ", "refund sent."]));
    let (thread_id, streamed) = daemon.create_thread("refund my invoice").await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Billing here: refund sent.")
    );

    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 2);
    let (system, model, tools) = seen(&requests[0].body);
    assert!(system.contains("Helper"), "{system}");
    assert_eq!(model, "fake-model");
    assert!(
        tools.contains(&"transfer_to_billing".to_owned()),
        "{tools:?}"
    );
    assert!(tools.contains(&"pid".to_owned()), "{tools:?}");
    assert!(tools.contains(&"shopping_list".to_owned()), "{tools:?}");
    assert!(requests[0].body.get("reasoning_effort").is_none());
    // Billing: its prompt, model, reasoning and tools (no client tool).
    assert_eq!(requests[1].body["reasoning_effort"], "high");
    let (system, model, tools) = seen(&requests[1].body);
    assert_eq!(
        (system.as_str(), model.as_str()),
        (BILLING_PROMPT, "billing-model")
    );
    assert_eq!(tools, ["echo", "transfer_to_entry"]);
    // The handoff's call and result are in what the specialist reads.
    let messages = requests[1].messages();
    let result = messages
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == "call_h1")
        .expect("the handoff's result");
    assert!(
        result["content"]
            .as_str()
            .is_some_and(|c| c.contains("Transferred to Billing")),
        "{result}"
    );

    // The UI shows who took over, and lists it with the thread.
    let took_over = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .filter(|i| i["type"] == "workflow")
            .filter_map(|i| {
                i["workflow"]["tasks"][0]["title"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(took_over(&streamed.done_items()), ["Billing took over"]);
    assert_eq!(
        took_over(&daemon.items(&thread_id).await),
        ["Billing took over"]
    );

    // The next message starts with Billing (`handoff_return = "stay"`).
    daemon.llm.push(Script::text(["Still Billing."]));
    let next = daemon.add_message(&thread_id, "and the other one?").await;
    assert!(next.error().is_none(), "{}", next.raw);
    let (system, model, _) = seen(&daemon.llm.stream_requests()[2].body);
    assert_eq!(
        (system.as_str(), model.as_str()),
        (BILLING_PROMPT, "billing-model")
    );
    daemon.stop().await;
}

async fn with_handoff_return_entry_the_next_message_starts_at_the_entry_agent(backend: Backend) {
    let daemon = daemon_with_agents(backend, "handoff_return = \"entry\"").await;
    daemon.llm.push(transfer("call_h1", "billing"));
    daemon.llm.push(Script::text(["Billing here."]));
    let (thread_id, _) = daemon.create_thread("refund my invoice").await;
    daemon.llm.push(Script::text(["Helper again."]));
    let next = daemon.add_message(&thread_id, "thanks").await;
    assert!(next.error().is_none(), "{}", next.raw);
    let (system, model, tools) = seen(&daemon.llm.stream_requests()[2].body);
    assert!(system.contains("Helper"), "{system}");
    assert_eq!(model, "fake-model");
    assert!(
        tools.contains(&"transfer_to_billing".to_owned()),
        "{tools:?}"
    );
    daemon.stop().await;
}

async fn a_handoff_loop_stops_at_max_handoffs_keeping_what_was_written(backend: Backend) {
    let daemon = daemon_with_agents(backend, "").await;
    daemon.llm.push(transfer("call_h1", "billing"));
    daemon.llm.push(transfer("call_h2", "entry"));
    daemon.llm.push(Script::Thinking {
        field: "reasoning",
        reasoning: Vec::new(),
        chunks: vec!["Let me pass you on.".to_owned()],
        calls: vec![FakeToolCall::new("call_h3", "transfer_to_billing", "{}")],
    });
    let (thread_id, streamed) = daemon.create_thread("ping pong").await;
    let error = streamed.error().expect("an error event");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("more than 2 times")),
        "{error}"
    );
    assert_eq!(daemon.llm.stream_requests().len(), 3);
    let took_over: Vec<String> = daemon
        .items(&thread_id)
        .await
        .iter()
        .filter_map(|i| match i["type"].as_str() {
            Some("workflow") => i["workflow"]["tasks"][0]["title"]
                .as_str()
                .map(str::to_owned),
            Some("assistant_message") => i["content"][0]["text"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(
        took_over,
        [
            "Billing took over",
            "Helper took over",
            "Let me pass you on."
        ]
    );
    // The thread goes on, with the agent that answered last.
    daemon.llm.push(Script::text(["Here."]));
    let next = daemon.add_message(&thread_id, "hello?").await;
    assert!(next.error().is_none(), "{}", next.raw);
    daemon.stop().await;
}

async fn a_specialist_cannot_call_a_tool_it_is_not_offered(backend: Backend) {
    let daemon = daemon_with_agents(backend, "").await;
    daemon.llm.push(transfer("call_h1", "billing"));
    daemon.llm.push(Script::tool_call("call_p", "pid", "{}"));
    daemon.llm.push(Script::text(["I cannot do that."]));
    let (_, streamed) = daemon.create_thread("what is your pid?").await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    let requests = daemon.llm.stream_requests();
    let result = requests[2]
        .messages()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == "call_p")
        .cloned()
        .expect("the refused call's result");
    assert!(
        result["content"]
            .as_str()
            .is_some_and(|c| c.contains("no tool named \"pid\"")),
        "{result}"
    );
    daemon.stop().await;
}

/// The real binary with an entry agent that asks `researcher` as a tool.
async fn daemon_with_researcher(backend: Backend) -> Daemon {
    let toml = format!(
        r#"[agent]
tools_from_agents = ["researcher"]

[agents.researcher]
instructions_text = "You research."
handoff_description = "Finds things out."
enabled_tools = ["echo"]

{}"#,
        fake_mcp_server_toml()
    );
    Daemon::binary(backend, &toml).await
}

async fn an_agent_asked_as_a_tool_answers_with_its_own_tools(backend: Backend) {
    let daemon = daemon_with_researcher(backend).await;
    daemon.llm.push(Script::tool_call(
        "call_a",
        "ask_researcher",
        r#"{"input":"where is the milk?"}"#,
    ));
    daemon
        .llm
        .push(Script::tool_call("call_e", "echo", r#"{"text":"milk"}"#));
    daemon.llm.push(Script::text(["Aisle ", "4."]));
    daemon.llm.push(Script::text(["The milk is in aisle 4."]));
    let (_, streamed) = daemon.create_thread("find the milk").await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    assert_eq!(
        streamed.answer().as_deref(),
        Some("The milk is in aisle 4.")
    );

    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 4);
    let (_, _, tools) = seen(&requests[0].body);
    assert!(tools.contains(&"ask_researcher".to_owned()), "{tools:?}");
    // The researcher reads only its prompt and the question.
    let (system, _, tools) = seen(&requests[1].body);
    assert_eq!(
        (system.as_str(), tools),
        ("You research.", vec!["echo".to_owned()])
    );
    assert_eq!(requests[1].messages()[1]["content"], "where is the milk?");
    // Its answer is the tool's output.
    let output = requests[3]
        .messages()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == "call_a")
        .cloned()
        .expect("the tool's result");
    assert_eq!(output["content"], "Aisle 4.");
    // Its step shows as a task of the calling tool's workflow.
    let titles: Vec<String> = streamed
        .done_items()
        .iter()
        .filter(|i| i["type"] == "workflow")
        .flat_map(|i| {
            i["workflow"]["tasks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|t| t["title"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(titles, ["ask_researcher", "Researcher: echo"]);
    daemon.stop().await;
}

async fn stopping_the_answer_stops_an_agent_asked_as_a_tool(backend: Backend) {
    let daemon = daemon_with_researcher(backend).await;
    daemon.llm.push(Script::tool_call(
        "call_a",
        "ask_researcher",
        r#"{"input":"think forever"}"#,
    ));
    daemon.llm.push(Script::Hang { chunks: Vec::new() });
    let url = daemon.url.clone();
    let reader = tokio::spawn(async move {
        support::stream_at(&url, support::create_body("research"), |_| false).await
    });
    let asked = support::eventually(std::time::Duration::from_secs(10), || async {
        daemon.llm.stream_requests().len() == 2
    })
    .await;
    assert!(asked, "the researcher is asked");
    // The user stops the answer: the client hangs up.
    reader.abort();
    assert!(
        support::eventually(std::time::Duration::from_secs(10), || async {
            daemon.llm.open_streams() == 0
        })
        .await,
        "the researcher's model call is stopped"
    );
    daemon.stop().await;
}

/// The real binary with guardrails (`extra`: their tables) and no titles,
/// so every non-streamed call is a guardrail's.
async fn daemon_with_guardrails(backend: Backend, extra: &str) -> Daemon {
    let toml = format!(
        "[agent]\ntitle_generation = false\n\n{extra}\n\n{}",
        fake_mcp_server_toml()
    );
    Daemon::binary(backend, &toml).await
}

const TOPIC_GUARDRAIL: &str = r#"[guardrails.topic]
instructions_text = "Stop anything that is not about groceries."
on = "input"
message = "I only help with groceries.""#;

/// A guardrail's verdict, after `delay`.
fn verdict(tripwire: bool, delay_ms: u64) -> Script {
    Script::Slow {
        chunks: vec![format!(
            r#"{{"tripwire": {tripwire}, "reason": "checked"}}"#
        )],
        first_token_delay: std::time::Duration::from_millis(delay_ms),
        delay: std::time::Duration::ZERO,
    }
}

async fn an_input_guardrail_that_trips_removes_what_streamed_and_runs_no_tool(backend: Backend) {
    let daemon = daemon_with_guardrails(backend, TOPIC_GUARDRAIL).await;
    // The answer streams while the guardrail thinks; then it trips.
    daemon.llm.push(Script::Text {
        chunks: ["Why ", "did ", "the ", "chicken ", "cross?"]
            .map(str::to_owned)
            .to_vec(),
        delay: std::time::Duration::from_millis(100),
    });
    daemon.llm.push_unary(verdict(true, 250));
    let (thread_id, streamed) = daemon.create_thread("tell me a joke").await;
    let error = streamed.error().expect("an error event");
    assert_eq!(error["message"], "I only help with groceries.");
    assert!(!streamed.streamed_text().is_empty(), "text streamed first");
    let message_id = streamed
        .events
        .iter()
        .find(|e| e["type"] == "thread.item.added" && e["item"]["type"] == "assistant_message")
        .and_then(|e| e["item"]["id"].as_str())
        .expect("the answer began")
        .to_owned();
    assert!(
        streamed
            .events
            .iter()
            .any(|e| e["type"] == "thread.item.removed" && e["item_id"] == message_id.as_str()),
        "{}",
        streamed.raw
    );
    let kinds = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .filter_map(|i| i["type"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(kinds(daemon.items(&thread_id).await), ["user_message"]);

    // A tool call waits for the verdict, and does not run when it trips.
    daemon
        .llm
        .push(Script::tool_call("call_1", "echo", r#"{"text":"hi"}"#));
    daemon.llm.push_unary(verdict(true, 300));
    let streamed = daemon.add_message(&thread_id, "echo something").await;
    assert_eq!(
        streamed.error().map(|e| e["message"].clone()),
        Some(Value::from("I only help with groceries."))
    );
    assert_eq!(
        kinds(daemon.items(&thread_id).await),
        ["user_message", "user_message"]
    );
    assert_eq!(
        daemon.llm.stream_requests().len(),
        2,
        "no step after the tool"
    );
    assert!(
        !streamed.raw.contains("workflow"),
        "no tool ran: {}",
        streamed.raw
    );
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(
        metrics.contains("chatkitd_guardrail_trips_total{guardrail=\"topic\"} 2"),
        "{metrics}"
    );
    daemon.stop().await;
}

async fn an_input_guardrail_that_passes_changes_nothing(backend: Backend) {
    let daemon = daemon_with_guardrails(backend, TOPIC_GUARDRAIL).await;
    daemon.llm.push(Script::text(["Milk ", "and eggs."]));
    daemon.llm.push_unary(verdict(false, 0));
    let (thread_id, streamed) = daemon.create_thread("what do I need for pancakes?").await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    assert_eq!(streamed.answer().as_deref(), Some("Milk and eggs."));
    // The guardrail was asked for a verdict as JSON, about the message.
    let asked = &daemon.llm.unary_requests()[0].body;
    assert_eq!(asked["response_format"]["type"], "json_schema", "{asked}");
    assert_eq!(
        asked["messages"][1]["content"], "what do I need for pancakes?",
        "{asked}"
    );
    assert_eq!(daemon.items(&thread_id).await.len(), 2);
    daemon.stop().await;
}

async fn an_output_guardrail_that_trips_replaces_the_answer(backend: Backend) {
    let daemon = daemon_with_guardrails(
        backend,
        "[guardrails.tone]\ninstructions_text = \"Stop rude answers.\"\non = \"output\"\nmessage = \"Let me put that more kindly: I can't help with that.\"",
    )
    .await;
    daemon.llm.push(Script::text(["You ", "fool."]));
    daemon.llm.push_unary(verdict(true, 0));
    let (thread_id, streamed) = daemon.create_thread("help me").await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    let replaced = "Let me put that more kindly: I can't help with that.";
    assert_eq!(streamed.answer().as_deref(), Some(replaced));
    // The guardrail read the answer.
    assert_eq!(
        daemon.llm.unary_requests()[0].body["messages"][1]["content"],
        "You fool."
    );
    let listed = daemon.items(&thread_id).await;
    assert_eq!(listed[1]["content"][0]["text"], replaced);
    // Later turns read the replaced answer.
    daemon.llm.push(Script::text(["Sorry."]));
    daemon.llm.push_unary(verdict(false, 0));
    daemon.add_message(&thread_id, "ok").await;
    let history = daemon.llm.stream_requests()[1].messages().to_vec();
    assert!(
        history
            .iter()
            .any(|m| m["role"] == "assistant" && m["content"] == replaced),
        "{history:?}"
    );
    daemon.stop().await;
}

/// A guardrail that cannot give a verdict (its model answers nonsense)
/// blocks by default, and lets the message through with
/// `on_error = "allow"`; either way the failure is counted.
async fn a_guardrail_that_cannot_check_blocks_unless_told_to_allow(backend: Backend) {
    for (on_error, blocked) in [("block", true), ("allow", false)] {
        let daemon = daemon_with_guardrails(
            backend,
            &format!("{TOPIC_GUARDRAIL}\non_error = \"{on_error}\""),
        )
        .await;
        daemon.llm.push(Script::text(["Milk."]));
        daemon.llm.push_unary(Script::text(["I think it is fine?"]));
        let (_, streamed) = daemon.create_thread("what do I need?").await;
        assert_eq!(
            streamed.error().is_some(),
            blocked,
            "{on_error}: {}",
            streamed.raw
        );
        let (_, metrics) = daemon.get("/metrics").await;
        assert!(
            metrics.contains("chatkitd_guardrail_failures_total{guardrail=\"topic\"} 1"),
            "{metrics}"
        );
        daemon.stop().await;
    }
}

both_backends!(
    a_guardrail_that_cannot_check_blocks_unless_told_to_allow,
    an_input_guardrail_that_trips_removes_what_streamed_and_runs_no_tool,
    an_input_guardrail_that_passes_changes_nothing,
    an_output_guardrail_that_trips_replaces_the_answer,
    an_agent_asked_as_a_tool_answers_with_its_own_tools,
    stopping_the_answer_stops_an_agent_asked_as_a_tool,
    a_handoff_changes_prompt_model_and_tools_and_the_next_message_stays,
    with_handoff_return_entry_the_next_message_starts_at_the_entry_agent,
    a_handoff_loop_stops_at_max_handoffs_keeping_what_was_written,
    a_specialist_cannot_call_a_tool_it_is_not_offered,
);
