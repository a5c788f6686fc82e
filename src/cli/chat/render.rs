//! The events of one answer as terminal text: text deltas as they come, and
//! one line per task of a workflow (a tool call, for the agent's own).
//!
//! Tasks are rendered from their typed fields alone, so any task renders, not
//! only the agent's: the title on the task line, the status from its
//! `status_indicator`, and its markdown content made terminal-readable by
//! [`terminal_lines`]. While a task loads, its text follows the title and the
//! line stays open for the outcome; once complete, the content's first line
//! ends the task line and the rest goes on one line under it. A widget shows
//! as its text, each line marked as part of a card (buttons as `[label]`);
//! an approval card, or a tool server's question, is remembered for the
//! session to ask about. Nothing here
//! reads stdin or knows the session.

use std::collections::HashMap;
use std::io::Write;

use serde_json::Value;

use crate::cli::{Glyphs, one_line};
use crate::protocol::{
    ClientToolCallStatus, ItemKind, ItemUpdate, Task, TaskStatus, ThreadStreamEvent,
};
use crate::widgets::{APPROVE, offered_actions, plain_text};

/// Longest task text on a task line.
const MAX_LINE_SHOWN: usize = 160;
/// Longest text shown under a task line.
const MAX_OUTPUT_SHOWN: usize = 240;

/// An approval card the user has not answered: the card's item id and the
/// payload its buttons carry.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PendingCard {
    pub(super) widget_id: String,
    pub(super) payload: Value,
}

/// A tool server's question the user has not answered: its item's id and
/// its questions.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PendingQuestion {
    pub(super) item_id: String,
    pub(super) inputs: Vec<Value>,
}

/// What an answer ended on that waits for the user.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Pending {
    Card(PendingCard),
    Question(PendingQuestion),
}

/// A task being shown.
struct ShownTask {
    name: String,
}

/// Renders the events of one answer as terminal text.
pub(super) struct Render<W: Write> {
    out: W,
    glyphs: Glyphs,
    /// The cursor is not at the start of a line.
    mid_line: bool,
    /// The task line left open for its outcome, by (workflow id, task index).
    open_task: Option<(String, usize)>,
    tasks: HashMap<(String, usize), ShownTask>,
    /// The last approval card shown with its buttons.
    approval: Option<PendingCard>,
    /// The question the answer ended on.
    question: Option<PendingQuestion>,
}

impl<W: Write> Render<W> {
    pub(super) fn new(out: W, glyphs: Glyphs) -> Self {
        Render {
            out,
            glyphs,
            mid_line: false,
            open_task: None,
            tasks: HashMap::new(),
            approval: None,
            question: None,
        }
    }

    pub(super) fn event(&mut self, event: ThreadStreamEvent) -> std::io::Result<()> {
        match event {
            ThreadStreamEvent::ItemUpdated { item_id, update } => match update {
                ItemUpdate::TextDelta { delta, .. } => self.text(&delta)?,
                ItemUpdate::WorkflowTaskAdded { task_index, task } => {
                    self.task_added(item_id, task_index, &task)?
                }
                ItemUpdate::WorkflowTaskUpdated { task_index, task } => {
                    self.task_updated(item_id, task_index, &task)?
                }
                _ => {}
            },
            ThreadStreamEvent::ItemDone { item } => match &item.kind {
                ItemKind::AssistantMessage(_) => self.end_line()?,
                ItemKind::Widget { widget, .. } => self.widget(&item.id, widget)?,
                ItemKind::GeneratedImage { image: Some(image) } => {
                    self.end_line()?;
                    let url = image.get("url").and_then(Value::as_str).unwrap_or_default();
                    writeln!(self.out, "  {} image: {url}", self.glyphs.tool)?;
                }
                ItemKind::StructuredInput { status, inputs } if status == "pending" => {
                    self.end_line()?;
                    self.question = Some(PendingQuestion {
                        item_id: item.id.clone(),
                        inputs: inputs.clone(),
                    });
                }
                ItemKind::ClientToolCall(call) if call.status == ClientToolCallStatus::Pending => {
                    self.end_line()?;
                    writeln!(
                        self.out,
                        "  {} {} runs in the browser, which a terminal does not have: it stays unanswered",
                        self.glyphs.tool, call.name
                    )?;
                }
                _ => {}
            },
            ThreadStreamEvent::ItemReplaced { item } => {
                if let ItemKind::Widget { widget, .. } = &item.kind {
                    self.widget(&item.id, widget)?;
                }
            }
            ThreadStreamEvent::Error { message, .. } => {
                self.end_line()?;
                eprintln!(
                    "error: {}",
                    message
                        .as_deref()
                        .unwrap_or("the assistant could not answer")
                );
            }
            ThreadStreamEvent::Notice { level, message, .. } => {
                self.end_line()?;
                eprintln!("{level}: {message}");
            }
            _ => {}
        }
        self.out.flush()
    }

    fn text(&mut self, delta: &str) -> std::io::Result<()> {
        if delta.is_empty() {
            return Ok(());
        }
        if self.open_task.is_some() {
            self.end_line()?;
        }
        self.out.write_all(delta.as_bytes())?;
        self.mid_line = !delta.ends_with('\n');
        Ok(())
    }

    /// A task starts: `  ⚙ title text …`, left open for its outcome while it
    /// loads; a task added complete is shown with its outcome at once.
    fn task_added(&mut self, workflow: String, index: usize, task: &Task) -> std::io::Result<()> {
        self.end_line()?;
        let name = task_title(task);
        let key = (workflow, index);
        self.tasks
            .insert(key.clone(), ShownTask { name: name.clone() });
        let status = task.status_indicator();
        if status == TaskStatus::Complete {
            return self.task_finished(key, task);
        }
        let lines = terminal_lines(task.content().unwrap_or(""));
        write!(self.out, "  {} {name}", self.glyphs.tool)?;
        if !lines.is_empty() {
            let text = one_line(&lines.join(" "), MAX_LINE_SHOWN, self.glyphs.ellipsis);
            write!(self.out, " {text}")?;
        }
        if status == TaskStatus::Loading {
            write!(self.out, " {}", self.glyphs.ellipsis)?;
            self.mid_line = true;
            self.open_task = Some(key);
        } else {
            writeln!(self.out)?;
        }
        Ok(())
    }

    /// A task changed: once it no longer loads, its outcome is shown.
    fn task_updated(&mut self, workflow: String, index: usize, task: &Task) -> std::io::Result<()> {
        if task.status_indicator() == TaskStatus::Loading {
            return Ok(());
        }
        self.task_finished((workflow, index), task)
    }

    /// A task's outcome: the first line of its content ends its task line (or
    /// a line of its own when others came between), the rest follows.
    fn task_finished(&mut self, key: (String, usize), task: &Task) -> std::io::Result<()> {
        let lines = terminal_lines(task.content().unwrap_or(""));
        let (verdict, output) = match lines.split_first() {
            Some((first, rest)) => (
                one_line(first, MAX_LINE_SHOWN, self.glyphs.ellipsis),
                rest.join(" "),
            ),
            None if task.status_indicator() == TaskStatus::Complete => {
                ("done".to_owned(), String::new())
            }
            None => (String::new(), String::new()),
        };
        if self.open_task.as_ref() != Some(&key) {
            self.end_line()?;
            let name = self
                .tasks
                .get(&key)
                .map_or_else(|| task_title(task), |t| t.name.clone());
            write!(
                self.out,
                "  {} {name} {}",
                self.glyphs.tool, self.glyphs.ellipsis
            )?;
        }
        if verdict.is_empty() {
            writeln!(self.out)?;
        } else {
            writeln!(self.out, " {verdict}")?;
        }
        self.open_task = None;
        self.mid_line = false;
        if !output.is_empty() {
            writeln!(
                self.out,
                "    {} {}",
                self.glyphs.result,
                one_line(&output, MAX_OUTPUT_SHOWN, self.glyphs.ellipsis)
            )?;
        }
        Ok(())
    }

    /// A widget as text, each line marked; an approval card's buttons are
    /// remembered for [`Render::take_pending`].
    fn widget(&mut self, id: &str, widget: &Value) -> std::io::Result<()> {
        self.end_line()?;
        let text = plain_text(widget);
        for line in terminal_lines(&text) {
            writeln!(self.out, "  {} {line}", self.glyphs.card)?;
        }
        let approval = offered_actions(widget)
            .into_iter()
            .find(|(kind, _)| kind == APPROVE);
        match approval {
            Some((_, payload)) => {
                self.approval = Some(PendingCard {
                    widget_id: id.to_owned(),
                    payload,
                })
            }
            None if self.approval.as_ref().is_some_and(|a| a.widget_id == id) => {
                self.approval = None
            }
            None => {}
        }
        Ok(())
    }

    /// What this answer ended on that waits for the user: a tool server's
    /// question (the answer stops there), else an approval card.
    pub(super) fn take_pending(&mut self) -> Option<Pending> {
        match self.question.take() {
            Some(question) => Some(Pending::Question(question)),
            None => self.approval.take().map(Pending::Card),
        }
    }

    /// Ends the current line, if one is open.
    pub(super) fn end_line(&mut self) -> std::io::Result<()> {
        if self.mid_line {
            self.out.write_all(b"\n")?;
            self.mid_line = false;
        }
        self.open_task = None;
        self.out.flush()
    }
}

fn task_title(task: &Task) -> String {
    task.title().unwrap_or("tool").to_owned()
}

/// Markdown as terminal lines: code fences and blank lines are dropped, the
/// text of every other line is kept (trimmed), so a code block reads as its
/// contents.
fn terminal_lines(markdown: &str) -> Vec<&str> {
    markdown
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("```") && !line.starts_with("~~~"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CustomTask, ThoughtTask};

    fn rendered(events: Vec<ThreadStreamEvent>) -> String {
        let mut out = Vec::new();
        let mut render = Render::new(&mut out, Glyphs::ASCII);
        for event in events {
            render.event(event).expect("written");
        }
        render.end_line().expect("written");
        String::from_utf8(out).expect("utf-8")
    }

    fn delta(text: &str) -> ThreadStreamEvent {
        ThreadStreamEvent::ItemUpdated {
            item_id: "msg_1".into(),
            update: ItemUpdate::TextDelta {
                content_index: 0,
                delta: text.into(),
            },
        }
    }

    fn custom(name: &str, status_indicator: TaskStatus, content: &str) -> Task {
        Task::Custom(CustomTask {
            status_indicator,
            title: Some(name.into()),
            icon: Some("bolt".into()),
            content: Some(content.into()),
        })
    }

    /// A call starting, with its arguments in a JSON block as the agent shows them.
    fn added(index: usize, name: &str, arguments: &str) -> ThreadStreamEvent {
        let content = format!("arguments:\n```json\n{arguments}\n```");
        ThreadStreamEvent::ItemUpdated {
            item_id: "wf_1".into(),
            update: ItemUpdate::WorkflowTaskAdded {
                task_index: index,
                task: custom(name, TaskStatus::Loading, &content),
            },
        }
    }

    fn updated(index: usize, name: &str, content: &str) -> ThreadStreamEvent {
        ThreadStreamEvent::ItemUpdated {
            item_id: "wf_1".into(),
            update: ItemUpdate::WorkflowTaskUpdated {
                task_index: index,
                task: custom(name, TaskStatus::Complete, content),
            },
        }
    }

    #[test]
    fn a_tool_call_reads_on_one_line_then_the_answer() {
        let text = rendered(vec![
            added(0, "add_task", r#"{"title": "buy milk"}"#),
            updated(0, "add_task", "done in 0.2s\n\n```\n{\"id\":1}\n```"),
            delta("Added "),
            delta("it."),
        ]);
        assert_eq!(
            text,
            "  * add_task arguments: {\"title\": \"buy milk\"} ... done in 0.2s\n    -> {\"id\":1}\nAdded it.\n"
        );
    }

    #[test]
    fn concurrent_calls_get_lines_of_their_own() {
        let text = rendered(vec![
            added(0, "a", "{}"),
            added(1, "b", "{}"),
            updated(1, "b", "failed in 0.1s\n\n```\nboom\n```"),
            updated(0, "a", "done in 0.3s\n\n```\nok\n```"),
        ]);
        assert_eq!(
            text,
            "  * a arguments: {} ...\n  * b arguments: {} ... failed in 0.1s\n    -> boom\n  * a ... done in 0.3s\n    -> ok\n"
        );
    }

    #[test]
    fn any_task_renders_from_its_fields() {
        let thought = Task::Thought(ThoughtTask {
            status_indicator: TaskStatus::None,
            title: Some("Planning".into()),
            content: "First **check** the order.\n\nThen ship.".into(),
        });
        let bare = Task::Custom(CustomTask {
            status_indicator: TaskStatus::Loading,
            title: None,
            icon: None,
            content: None,
        });
        let mut done = bare.clone();
        if let Task::Custom(task) = &mut done {
            task.status_indicator = TaskStatus::Complete;
        }
        let event = |update| ThreadStreamEvent::ItemUpdated {
            item_id: "wf_2".into(),
            update,
        };
        let text = rendered(vec![
            event(ItemUpdate::WorkflowTaskAdded {
                task_index: 0,
                task: thought,
            }),
            event(ItemUpdate::WorkflowTaskAdded {
                task_index: 1,
                task: bare,
            }),
            event(ItemUpdate::WorkflowTaskUpdated {
                task_index: 1,
                task: done,
            }),
        ]);
        assert_eq!(
            text,
            "  * Planning First **check** the order. Then ship.\n  * tool ... done\n"
        );
    }

    #[test]
    fn widgets_read_as_cards_and_approval_cards_are_remembered() {
        use crate::protocol::{ThreadItem, Timestamp};
        use crate::widgets::{ApprovalCall, approval_card};
        let card = approval_card(
            &[ApprovalCall {
                tool: "delete_task".into(),
                server: "tasks".into(),
                arguments: serde_json::json!({"task_id": "t1"}),
            }],
            &["c1".to_owned()],
        );
        let item = ThreadItem {
            id: "msg_card".into(),
            thread_id: "thr_1".into(),
            created_at: Timestamp::now(),
            kind: ItemKind::Widget {
                widget: card,
                copy_text: None,
            },
        };
        let mut out = Vec::new();
        let mut render = Render::new(&mut out, Glyphs::ASCII);
        render
            .event(ThreadStreamEvent::ItemDone { item })
            .expect("written");
        let Some(Pending::Card(pending)) = render.take_pending() else {
            panic!("an approval card");
        };
        assert_eq!(pending.widget_id, "msg_card");
        assert_eq!(pending.payload, serde_json::json!({"call_ids": ["c1"]}));
        assert_eq!(render.take_pending(), None);
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "  | Run delete_task?\n  | **delete_task** on tasks\n  | {\n  | \"task_id\": \"t1\"\n  | }\n  | [Approve]  [Deny]\n"
        );
    }

    #[test]
    fn long_task_text_is_cut_to_the_line() {
        let long = "x".repeat(500);
        let text = rendered(vec![
            added(0, "a", &long),
            updated(0, "a", &format!("done in 1.0s\n\n```\n{long}\n```")),
        ]);
        let expected_args = format!("arguments: {}...", &"x".repeat(MAX_LINE_SHOWN - 11));
        let expected_out = format!("{}...", "x".repeat(MAX_OUTPUT_SHOWN));
        assert_eq!(
            text,
            format!("  * a {expected_args} ... done in 1.0s\n    -> {expected_out}\n")
        );
    }
}
