//! Handoffs between the agents of `[agents]` within a run: which agent
//! answers (resumed from the thread), its system prompt, the tools it is offered (its own and
//! its `transfer_to_NAME` tools), and a handoff: its call and result stored
//! like any tool's, a hidden record of who took over, a `Billing took over`
//! task shown and stored, then the system prompt, model and tools of the
//! other agent for the rest of the answer. At most `[agent] max_handoffs`
//! in one answer; one more ends it with an `error` event, what was written
//! kept.

use super::{Run, Stop};
use crate::agent::Interactions;
use crate::agent::transcript::{HandoffRecord, ToolRecord, active_agent};
use crate::config::HandoffReturn;
use crate::llm::{ChatMessage, ToolCall, ToolDefinition, Turn};
use crate::mcp::ModelTool;
use crate::protocol::{
    CustomTask, ItemKind, Task, TaskStatus, ThreadItem, ThreadStreamEvent, Workflow,
    WorkflowSummary,
};

impl Run<'_> {
    /// The agent that answers this run: the thread's last handoff decides
    /// (`[agent] handoff_return`), else the entry agent.
    pub(super) fn resume_agent(&mut self, items: &[ThreadItem]) {
        let roster = &self.agent.roster;
        self.active = active_agent(items, roster.return_to == HandoffReturn::Entry)
            .and_then(|name| roster.index_of(&name))
            .unwrap_or(0);
    }

    /// The system prompt with `{{user.id}}`, `{{user.name}}` and
    /// `{{user.email}}` filled in (empty when the token has no such claim).
    pub(super) fn system_prompt(&self) -> String {
        let prompt = &self.agent.roster.get(self.active).prompt;
        if !prompt.contains("{{user.") {
            return prompt.clone();
        }
        prompt
            .replace("{{user.id}}", &self.input.identity.user_id)
            .replace(
                "{{user.name}}",
                self.input.identity.name.as_deref().unwrap_or(""),
            )
            .replace(
                "{{user.email}}",
                self.input.identity.email.as_deref().unwrap_or(""),
            )
    }

    /// The model call of this agent: its own model, else the turn's, and
    /// its own reasoning options; `tool_choice` required of it.
    pub(super) fn turn<'t>(&'t self, tool_choice: Option<&'t str>) -> Turn<'t> {
        let profile = self.agent.roster.get(self.active);
        Turn {
            model: profile.model.as_deref().or(self.model.as_deref()),
            tool_choice,
            reasoning_effort: profile.reasoning_effort,
            reasoning_summary: profile.reasoning_summary,
        }
    }

    /// The tools the answering agent is offered: the servers' tools it may
    /// use, the client tools, the agents it asks as tools, and its handoffs. A restricted agent's calls
    /// of anything else are refused when they run.
    pub(super) fn offered_tools(
        &mut self,
        all: &[ModelTool],
    ) -> (Vec<ModelTool>, Vec<ToolDefinition>) {
        let profile = self.agent.roster.get(self.active);
        let interactions = self.agent.interactions.clone();
        let tools: Vec<ModelTool> = all.iter().filter(|t| profile.offers(t)).cloned().collect();
        self.restricted = profile
            .is_restricted()
            .then(|| tools.iter().map(|t| t.name.clone()).collect());
        // A client tool takes the name from a server's tool of the same name.
        let definitions = tools
            .iter()
            .filter(|t| !interactions.is_client_tool(&t.name))
            .map(|t| ToolDefinition::new(&t.name, &t.description, t.parameters.clone()))
            .chain(
                interactions
                    .client_tools()
                    .iter()
                    .filter(|t| profile.offers_client_tool(t.name()))
                    .cloned(),
            )
            .chain(self.agent.roster.agent_tools(self.active))
            .chain(self.agent.roster.handoff_tools(self.active))
            .collect();
        (tools, definitions)
    }

    /// Whether `name` is a client tool the answering agent is offered.
    pub(super) fn offers_client_tool(&self, interactions: &Interactions, name: &str) -> bool {
        interactions.is_client_tool(name)
            && self.agent.roster.get(self.active).offers_client_tool(name)
    }

    /// Whether a call of `name` may run for the answering agent.
    pub(super) fn may_call(&self, name: &str) -> bool {
        self.restricted
            .as_ref()
            .is_none_or(|offered| offered.iter().any(|n| n == name))
    }

    /// The calls of an answer split into handoffs and the rest.
    pub(super) fn split_handoffs(&self, calls: Vec<ToolCall>) -> (Vec<ToolCall>, Vec<ToolCall>) {
        calls.into_iter().partition(|call| {
            self.agent
                .roster
                .handoff_target(self.active, &call.function.name)
                .is_some()
        })
    }

    /// Hands the answer over to the agent the first of `handoffs` names
    /// (the others are answered as not done), once `done` handoffs are
    /// within the bound: stores the calls, their results and who took
    /// over, shows it, and returns the results for the model and the new
    /// agent, which answers once [`Run::switch_to`] is called.
    pub(super) async fn hand_off(
        &mut self,
        handoffs: &[ToolCall],
        done: &mut u32,
    ) -> Result<(Vec<ChatMessage>, usize), Stop> {
        let roster = self.agent.roster.clone();
        let (Some(first), max) = (handoffs.first(), roster.max_handoffs) else {
            return Err(Stop::Failed);
        };
        if *done >= max {
            tracing::warn!(thread_id = %self.input.thread.id, max, "an answer passed its handoffs");
            self.emit(ThreadStreamEvent::custom_error(
                format!(
                    "The assistant handed the conversation over more than {max} times in one answer, so it stopped. What it wrote is kept."
                ),
                true,
            ))
            .await?;
            return Err(Stop::Failed);
        }
        *done += 1;
        let target = roster
            .handoff_target(self.active, &first.function.name)
            .unwrap_or(0);
        let (from, to) = (roster.get(self.active), roster.get(target));
        let thread_id = self.input.thread.id.clone();
        let mut records = vec![ToolRecord::calls(handoffs).into_item(&thread_id)];
        let mut results = Vec::new();
        for (n, call) in handoffs.iter().enumerate() {
            let output = if n == 0 {
                format!("Transferred to {}, who answers from here.", to.display_name)
            } else {
                "Not transferred: the conversation goes to one agent at a time.".to_owned()
            };
            records.push(ToolRecord::result(call, &output, n != 0).into_item(&thread_id));
            results.push(ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content: output,
            });
        }
        records.push(
            HandoffRecord {
                from: from.name.clone(),
                to: to.name.clone(),
            }
            .into_item(&thread_id),
        );
        let shown = handoff_item(&thread_id, &to.display_name);
        let all: Vec<&ThreadItem> = records.iter().collect();
        self.store(&all).await?;
        tracing::info!(%thread_id, from = %from.name, to = %to.name, "handoff");
        self.publish(shown, &[]).await?;
        Ok((results, target))
    }

    /// Makes `target` the answering agent: its system prompt replaces the
    /// first message.
    pub(super) fn switch_to(&mut self, target: usize, messages: &mut [ChatMessage]) {
        self.active = target;
        let prompt = self.system_prompt();
        if let Some(ChatMessage::System { content }) = messages.first_mut() {
            *content = prompt;
        }
    }
}

/// The workflow item showing that `who` took over.
fn handoff_item(thread_id: &str, who: &str) -> ThreadItem {
    let mut item = ThreadItem::new_workflow(thread_id, "custom");
    item.kind = ItemKind::Workflow {
        workflow: Workflow {
            kind: "custom".to_owned(),
            tasks: vec![Task::Custom(CustomTask {
                status_indicator: TaskStatus::Complete,
                title: Some(format!("{who} took over")),
                icon: Some("agent".to_owned()),
                content: None,
            })],
            summary: Some(WorkflowSummary::Title {
                title: format!("{who} took over"),
                icon: Some("agent".to_owned()),
            }),
            expanded: false,
        },
    };
    item
}
