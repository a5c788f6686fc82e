//! The tool step of a run: the calls the model asked for run concurrently on
//! the MCP servers, the UI sees them as tasks of a workflow item (and a
//! tool's widget after it), and the calls and their results are stored as
//! hidden items ([`crate::agent::transcript::ToolRecord`]) so the next turn's history
//! replays them exactly. Calls that need approval end the step on an
//! approval card (`approvals.rs`), a client tool call on a pending item
//! (`outputs.rs`); each call shows as a task (`tasks.rs`).

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::asked::{Asked, ask};
use super::asking::{self, Asking};
use super::tasks::{TaskState, task};
use super::{Run, Stop};
use crate::agent::transcript::tool_images;
use crate::agent::transcript::{StoredImage, ToolRecord, WidgetSource};
use crate::llm::{ChatMessage, ToolCall};
use crate::mcp::{ModelTool, ProgressReporter, ToolOutcome, ToolProgress};
use crate::protocol::{
    ItemKind, ItemUpdate, Task, ThreadItem, ThreadStreamEvent, Workflow, WorkflowSummary,
};

/// Progress reports of one step waiting to be shown; more are dropped.
const PROGRESS_BUFFER: usize = 64;

/// What the tool step of a model answer leaves the run to do.
pub(super) enum Step {
    /// Every call has its result: back to the model with these messages.
    Continue(Vec<ChatMessage>),
    /// The turn waits on the user: an approval card or a client tool call
    /// ended it.
    Wait,
}

impl Run<'_> {
    /// The calls of one model answer: server tools that need no approval run
    /// now; then the turn ends on an approval card for those that do, or on
    /// the first client tool call.
    pub(super) async fn tool_step(
        &mut self,
        calls: &[ToolCall],
        tools: &[ModelTool],
    ) -> Result<Step, Stop> {
        let interactions = self.agent.interactions.clone();
        let client_call = calls
            .iter()
            .position(|c| self.offers_client_tool(&interactions, &c.function.name));
        let gated_names: Vec<&str> = tools
            .iter()
            .filter(|t| t.needs_approval)
            .map(|t| t.name.as_str())
            .collect();
        let (mut gated, mut runnable) = (Vec::new(), Vec::new());
        for (index, call) in calls.iter().enumerate() {
            if Some(index) == client_call {
                continue;
            }
            if gated_names.contains(&call.function.name.as_str()) {
                gated.push(call.clone());
            } else {
                runnable.push(call.clone());
            }
        }
        // A client call waits alone: beside calls awaiting approval it is
        // answered (with a refusal) among the server calls.
        let client_call = match client_call.map(|i| calls[i].clone()) {
            Some(call) if !gated.is_empty() => {
                runnable.push(call);
                None
            }
            other => other,
        };
        let server_calls: Vec<ToolCall> = calls
            .iter()
            .filter(|c| client_call.as_ref().is_none_or(|client| client.id != c.id))
            .cloned()
            .collect();
        if !server_calls.is_empty() {
            let record = ToolRecord::calls(&server_calls).into_item(&self.input.thread.id);
            self.store(&[&record]).await?;
        }
        let results = if runnable.is_empty() {
            Vec::new()
        } else {
            self.run_tools(&runnable).await?
        };
        if !gated.is_empty() {
            self.ask_approval(&gated, tools).await?;
            return Ok(Step::Wait);
        }
        if let Some(call) = client_call {
            self.pend_client_call(&call).await?;
            return Ok(Step::Wait);
        }
        Ok(Step::Continue(results))
    }

    /// Streams a new state of the workflow's task `index`.
    pub(super) async fn task_updated(
        &mut self,
        workflow_id: &str,
        index: usize,
        task: &Task,
    ) -> Result<(), Stop> {
        self.emit(ThreadStreamEvent::ItemUpdated {
            item_id: workflow_id.to_owned(),
            update: ItemUpdate::WorkflowTaskUpdated {
                task_index: index,
                task: task.clone(),
            },
        })
        .await
    }

    /// Runs the calls concurrently, stores each result, shows the widgets
    /// their tools render, and returns the tool messages for the model. The
    /// record of the calls must already be stored.
    pub(super) async fn run_tools(&mut self, calls: &[ToolCall]) -> Result<Vec<ChatMessage>, Stop> {
        let mcp = self.agent.mcp.clone();
        let interactions = self.agent.interactions.clone();
        let user = self.input.identity.user_id.clone();
        let thread_id = self.input.thread.id.clone();
        self.open_calls = calls.to_vec();

        let started = Instant::now();
        let mut workflow = ThreadItem::new_workflow(thread_id.clone(), "custom");
        self.emit(ThreadStreamEvent::ItemAdded {
            item: workflow.clone(),
        })
        .await?;
        let mut tasks: Vec<Task> = calls.iter().map(|c| task(c, TaskState::Running)).collect();
        for (task_index, task) in tasks.iter().enumerate() {
            self.emit(ThreadStreamEvent::ItemUpdated {
                item_id: workflow.id.clone(),
                update: ItemUpdate::WorkflowTaskAdded {
                    task_index,
                    task: task.clone(),
                },
            })
            .await?;
        }

        // Progress the servers report, by call; a flood beyond the buffer is
        // dropped (the next report says as much).
        let (progress_tx, mut progress_rx) =
            mpsc::channel::<(usize, ToolProgress)>(PROGRESS_BUFFER);
        // Questions the servers ask the user, one shown at a time.
        let (ask_tx, mut ask_rx) = asking::channel();
        // The steps of agents asked as tools, each shown as a task.
        let (steps_tx, mut steps_rx) = mpsc::channel::<Task>(PROGRESS_BUFFER);
        let asked = Asked {
            llm: self.agent.llm.clone(),
            mcp: mcp.clone(),
            roster: self.agent.roster.clone(),
            user: user.clone(),
            cancel: self.cancel.clone(),
            steps: steps_tx,
        };
        let mut asking = Asking::new(self.input.questions.clone());
        let mut pending: FuturesUnordered<_> = calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let mcp = mcp.clone();
                let user = user.clone();
                let client_tool = self.offers_client_tool(&interactions, &call.function.name);
                // A tool the answering agent is not offered does not run.
                let offered = self.may_call(&call.function.name);
                let agent_tool = self
                    .agent
                    .roster
                    .agent_tool_target(self.active, &call.function.name);
                let asked = asked.clone();
                let progress_tx = progress_tx.clone();
                let report: ProgressReporter = Arc::new(move |progress| {
                    let _ = progress_tx.try_send((index, progress));
                });
                let elicitor = asking::asker(index, ask_tx.clone());
                async move {
                    let name = &call.function.name;
                    let outcome = match mcp {
                        _ if agent_tool.is_some() => {
                            let target = agent_tool.unwrap_or_default();
                            let arguments = call.function.arguments.clone();
                            ask(asked, target, name.clone(), arguments).await
                        }
                        Some(mcp) if !client_tool && offered => {
                            let arguments = &call.function.arguments;
                            mcp.call(&user, name, arguments)
                                .reporting(report)
                                .asking(elicitor)
                                .await
                        }
                        _ => refused(name, client_tool),
                    };
                    (index, outcome)
                }
            })
            .collect();
        let mut outputs: Vec<Option<(String, bool)>> = vec![None; calls.len()];
        let mut widgets = Vec::new();
        // Per call: the images it returned and the message showing them.
        let mut shown = Vec::new();
        while !pending.is_empty() {
            let finished = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(Stop::Cancelled),
                Some(asked) = ask_rx.recv() => {
                    asking.queue(asked);
                    self.ask_next_of(&mut asking, &workflow.id, calls, &mut tasks).await?;
                    continue;
                }
                settled = asking.settled() => {
                    if let Some(index) = self.settle(&mut asking, settled).await? {
                        tasks[index] = task(&calls[index], TaskState::Running);
                        self.task_updated(&workflow.id, index, &tasks[index]).await?;
                    }
                    self.ask_next_of(&mut asking, &workflow.id, calls, &mut tasks).await?;
                    continue;
                }
                Some(step) = steps_rx.recv() => {
                    tasks.push(step.clone());
                    self.emit(ThreadStreamEvent::ItemUpdated {
                        item_id: workflow.id.clone(),
                        update: ItemUpdate::WorkflowTaskAdded { task_index: tasks.len() - 1, task: step },
                    })
                    .await?;
                    continue;
                }
                Some((index, progress)) = progress_rx.recv() => {
                    if outputs[index].is_none() && asking.asking() != Some(index) {
                        tasks[index] = task(&calls[index], TaskState::Progress(&progress));
                        self.task_updated(&workflow.id, index, &tasks[index]).await?;
                    }
                    continue;
                }
                finished = pending.next() => finished,
            };
            let Some((index, outcome)) = finished else {
                break;
            };
            // A call that ended while asking leaves no question behind.
            self.call_ended_asking(&mut asking, index).await?;
            self.ask_next_of(&mut asking, &workflow.id, calls, &mut tasks)
                .await?;
            let call = &calls[index];
            tracing::info!(
                server = %outcome.server,
                tool = %outcome.tool,
                is_error = outcome.is_error,
                elapsed_ms = outcome.elapsed.as_millis() as u64,
                "tool call finished"
            );
            let (images, parts) = self.keep_tool_images(&outcome.tool, &outcome.images).await;
            let stored = images
                .iter()
                .map(|image| StoredImage {
                    id: image.id.clone(),
                    mime_type: image.mime_type.clone(),
                })
                .collect();
            let result = ToolRecord::result(call, &outcome.output, outcome.is_error)
                .with_images(stored)
                .into_item(&thread_id);
            if let Some(message) = tool_images(&call.function.name, parts) {
                shown.push((index, images, message));
            }
            self.store(&[&result]).await?;
            self.open_calls.retain(|open| open.id != call.id);
            if !outcome.is_error
                && let Some(widget) = self.agent.interactions.render_result(
                    &outcome.server,
                    &outcome.tool,
                    outcome.structured.as_ref(),
                )
            {
                let source = WidgetSource {
                    server: outcome.server.clone(),
                    tool: outcome.tool.clone(),
                    arguments: call.function.arguments.clone(),
                };
                widgets.push((index, widget, source));
            }
            tasks[index] = task(
                call,
                TaskState::Done {
                    output: &outcome.output,
                    is_error: outcome.is_error,
                    seconds: outcome.elapsed.as_secs_f64(),
                },
            );
            self.task_updated(&workflow.id, index, &tasks[index])
                .await?;
            outputs[index] = Some((outcome.output, outcome.is_error));
        }

        workflow.kind = ItemKind::Workflow {
            workflow: Workflow {
                kind: "custom".to_owned(),
                tasks,
                summary: Some(WorkflowSummary::Duration {
                    duration: started.elapsed().as_secs(),
                }),
                expanded: false,
            },
        };
        self.publish(workflow, &[]).await?;
        // In the order the model asked for the calls, after their activity.
        widgets.sort_by_key(|(index, _, _)| *index);
        for (_, widget, source) in widgets {
            self.show_widget(widget, Some(source)).await?;
        }
        shown.sort_by_key(|(index, _, _)| *index);
        let mut image_messages = Vec::new();
        for (_, images, message) in shown {
            self.show_images(images).await?;
            image_messages.push(message);
        }

        // The results, then the images (chat completions take images only
        // from the user, and nothing may come between a step's results).
        Ok(calls
            .iter()
            .zip(outputs)
            .map(|(call, output)| ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content: output.map(|(text, _)| text).unwrap_or_default(),
            })
            .chain(image_messages)
            .collect())
    }
}

/// The result of a call that cannot run on a tool server: a client tool
/// beside calls awaiting approval, or any tool when none is configured.
fn refused(name: &str, client_tool: bool) -> ToolOutcome {
    let output = if client_tool {
        format!(
            "Error: {name} runs in the user's browser and was not called: the browser runs one tool call per step, and none while other calls wait for the user's approval. Call it again on its own."
        )
    } else {
        format!("Error: there is no tool named {name:?}.")
    };
    ToolOutcome::error("", name, output, std::time::Duration::ZERO)
}
