//! An agent asked as a tool (`tools_from_agents`, the Agents SDK's
//! `Agent.as_tool`): it answers the calling agent's question to its final
//! answer, with its own instructions, model and tools, and that answer is
//! the tool's output. Nothing it writes is streamed; each tool it calls is
//! reported as a step, shown as a task of the calling tool's workflow.
//!
//! The same bounds hold inside: its `max_turns`, the model's stream limits,
//! the run's cancellation (stopping the answer stops it), the tools its
//! profile offers. A tool that waits for the user's approval is not run:
//! an agent asked as a tool cannot ask the user, so it is told so. Agents
//! asked as tools form no circle (checked at load), so asking nests a
//! bounded number of times.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::Roster;
use crate::llm::{ChatMessage, LlmClient, LlmEvent, ToolDefinition, Turn};
use crate::mcp::{McpManager, ToolOutcome};
use crate::protocol::{CustomTask, Task, TaskStatus};

/// What an agent asked as a tool works with.
#[derive(Clone)]
pub(super) struct Asked {
    pub(super) llm: LlmClient,
    pub(super) mcp: Option<Arc<McpManager>>,
    pub(super) roster: Arc<Roster>,
    pub(super) user: String,
    pub(super) cancel: CancellationToken,
    /// Where its steps are reported, for the calling tool's workflow.
    pub(super) steps: mpsc::Sender<Task>,
}

/// Asks the agent at `target` what `arguments` (`{"input": "…"}`) say, as
/// the tool `tool`; its final answer is the outcome.
pub(super) fn ask(
    asking: Asked,
    target: usize,
    tool: String,
    arguments: String,
) -> BoxFuture<'static, ToolOutcome> {
    Box::pin(async move {
        let started = Instant::now();
        let input = serde_json::from_str::<Value>(&arguments)
            .ok()
            .and_then(|a| a.get("input").and_then(Value::as_str).map(str::to_owned));
        let Some(input) = input.filter(|i| !i.trim().is_empty()) else {
            return ToolOutcome::error(
                "",
                tool,
                "Error: say what to ask in the `input` argument.".to_owned(),
                started.elapsed(),
            );
        };
        match answer(&asking, target, input).await {
            Ok(text) => ToolOutcome {
                output: text,
                images: Vec::new(),
                structured: None,
                is_error: false,
                server: String::new(),
                tool,
                elapsed: started.elapsed(),
            },
            Err(message) => ToolOutcome::error("", tool, message, started.elapsed()),
        }
    })
}

/// The asked agent's final answer, or what stopped it.
async fn answer(asking: &Asked, target: usize, input: String) -> Result<String, String> {
    let profile = asking.roster.get(target).clone();
    let all_tools = match &asking.mcp {
        Some(mcp) => mcp.tools_for(&asking.user).await,
        None => Arc::new(Vec::new()),
    };
    let tools: Vec<_> = all_tools
        .iter()
        .filter(|t| profile.offers(t))
        .cloned()
        .collect();
    let definitions: Vec<ToolDefinition> = tools
        .iter()
        .map(|t| ToolDefinition::new(&t.name, &t.description, t.parameters.clone()))
        .chain(asking.roster.agent_tools(target))
        .collect();
    let mut messages = vec![
        ChatMessage::System {
            content: profile.prompt.clone(),
        },
        ChatMessage::User { content: input },
    ];
    let who = &profile.display_name;
    for _ in 0..profile.max_turns {
        let turn = Turn {
            model: profile.model.as_deref(),
            tool_choice: None,
            reasoning_effort: profile.reasoning_effort,
            reasoning_summary: profile.reasoning_summary,
        };
        let mut stream = tokio::select! {
            _ = asking.cancel.cancelled() => return Err("Error: the user stopped the answer.".to_owned()),
            started = asking.llm.stream(&messages, &definitions, turn) => {
                started.map_err(|e| format!("Error: {who} could not answer: {e}."))?
            }
        };
        let mut text = String::new();
        let (calls, reasoning) = loop {
            let event = tokio::select! {
                _ = asking.cancel.cancelled() => return Err("Error: the user stopped the answer.".to_owned()),
                event = stream.next() => event,
            };
            match event {
                Some(Ok(LlmEvent::Text(delta))) => text.push_str(&delta),
                Some(Ok(LlmEvent::Finished {
                    tool_calls,
                    reasoning,
                    ..
                })) => break (tool_calls, reasoning),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("Error: {who} could not answer: {e}.")),
                None => return Err(format!("Error: {who}'s answer was cut.")),
            }
        };
        if calls.is_empty() {
            return Ok(text);
        }
        if !reasoning.is_empty() {
            messages.push(ChatMessage::Reasoning { items: reasoning });
        }
        messages.push(ChatMessage::Assistant {
            content: (!text.trim().is_empty()).then_some(text),
            tool_calls: calls.clone(),
        });
        for call in &calls {
            let name = &call.function.name;
            let outcome = if let Some(next) = asking.roster.agent_tool_target(target, name) {
                ask(
                    asking.clone(),
                    next,
                    name.clone(),
                    call.function.arguments.clone(),
                )
                .await
            } else {
                match tools.iter().find(|t| t.name == *name) {
                    Some(tool) if tool.needs_approval => ToolOutcome::error(
                        &tool.server,
                        name,
                        format!(
                            "Error: {name} needs the user's approval, which {who} cannot ask for here. Say so in your answer instead."
                        ),
                        std::time::Duration::ZERO,
                    ),
                    Some(_) => match &asking.mcp {
                        Some(mcp) => tokio::select! {
                            _ = asking.cancel.cancelled() => return Err("Error: the user stopped the answer.".to_owned()),
                            outcome = mcp.call(&asking.user, name, &call.function.arguments) => outcome,
                        },
                        None => no_tool(name),
                    },
                    None => no_tool(name),
                }
            };
            let verdict = if outcome.is_error { "failed" } else { "done" };
            let _ = asking.steps.try_send(Task::Custom(CustomTask {
                status_indicator: TaskStatus::Complete,
                title: Some(format!("{who}: {name}")),
                icon: Some("agent".to_owned()),
                content: Some(format!(
                    "{verdict} in {:.1}s",
                    outcome.elapsed.as_secs_f64()
                )),
            }));
            messages.push(ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content: outcome.output,
            });
        }
    }
    Err(format!(
        "Error: {who} did not finish within {} model calls.",
        profile.max_turns
    ))
}

fn no_tool(name: &str) -> ToolOutcome {
    ToolOutcome::error(
        "",
        name,
        format!("Error: there is no tool named {name:?}."),
        std::time::Duration::ZERO,
    )
}
