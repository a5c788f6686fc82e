//! The events of one answer as terminal text: text deltas as they come, the
//! model's thinking a thought per line as it grows, and one line per task of
//! a workflow (a tool call, for the agent's own).
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
    ClientToolCallStatus, InputStatus, ItemKind, ItemUpdate, Question, Task, TaskStatus,
    ThoughtTask, ThreadStreamEvent, Workflow, WorkflowSummary,
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
    pub(super) inputs: Vec<Question>,
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
    /// The thought being written, by (workflow id, task index), with the
    /// bytes of it written so far.
    open_thought: Option<((String, usize), usize)>,
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
            open_thought: None,
            tasks: HashMap::new(),
            approval: None,
            question: None,
        }
    }

    pub(super) fn event(&mut self, event: ThreadStreamEvent) -> std::io::Result<()> {
        match event {
            ThreadStreamEvent::ItemUpdated { item_id, update } => match update {
                ItemUpdate::TextDelta { delta, .. } => self.text(&delta)?,
                ItemUpdate::WorkflowTaskAdded {
                    task_index,
                    task: Task::Thought(thought),
                }
                | ItemUpdate::WorkflowTaskUpdated {
                    task_index,
                    task: Task::Thought(thought),
                } => self.thought(item_id, task_index, &thought)?,
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
                ItemKind::StructuredInput {
                    status: InputStatus::Pending,
                    inputs,
                } => {
                    self.end_line()?;
                    self.question = Some(PendingQuestion {
                        item_id: item.id.clone(),
                        inputs: inputs.clone(),
                    });
                }
                // Who answers now (a handoff between agents).
                ItemKind::Workflow {
                    workflow:
                        Workflow {
                            summary: Some(WorkflowSummary::Title { title, .. }),
                            ..
                        },
                } => {
                    self.end_line()?;
                    writeln!(self.out, "  {} {title}", self.glyphs.tool)?;
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
        if self.open_task.is_some() || self.open_thought.is_some() {
            self.end_line()?;
        }
        self.out.write_all(delta.as_bytes())?;
        self.mid_line = !delta.ends_with('\n');
        Ok(())
    }

    /// A thought of the model's thinking, written as it grows: `  💭 text`
    /// on a line of its own, each update adding what is new.
    fn thought(
        &mut self,
        workflow: String,
        index: usize,
        thought: &ThoughtTask,
    ) -> std::io::Result<()> {
        let key = (workflow, index);
        let content = thought.content.as_str();
        let written = match &self.open_thought {
            Some((open, written)) if *open == key && content.is_char_boundary(*written) => *written,
            _ => {
                self.end_line()?;
                write!(self.out, "  {} ", self.glyphs.thought)?;
                if let Some(title) = thought.title.as_deref() {
                    write!(self.out, "{title} ")?;
                }
                0
            }
        };
        let new = content.get(written..).unwrap_or_default();
        // On one line: a line break, blank line or not, is one space.
        let flat = new
            .replace("\r\n", "\n")
            .replace("\n\n", "\n")
            .replace('\n', " ");
        self.out.write_all(flat.as_bytes())?;
        self.mid_line = true;
        self.open_thought = Some((key, content.len()));
        self.out.flush()
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
        self.open_thought = None;
        self.out.flush()
    }
}

fn task_title(task: &Task) -> String {
    let title = task.title().unwrap_or("tool");
    match task {
        // A search by what it looked for, once known.
        Task::WebSearch(search) => match &search.title_query {
            Some(query) => format!("{title}: “{query}”"),
            None => title.to_owned(),
        },
        _ => title.to_owned(),
    }
}

/// Markdown as terminal lines: code fences and blank lines are dropped, the
/// text of every other line is kept (trimmed), so a code block reads as its
/// contents. A block ends only at a fence of its own kind at least as long
/// as the one that opened it (CommonMark), so a line of backticks inside a
/// longer fence (see [`crate::text::code_block`]) is shown as text.
fn terminal_lines(markdown: &str) -> Vec<&str> {
    let mut open: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for line in markdown.lines() {
        let fence = fence_of(line);
        match (open, fence) {
            (None, Some((mark, length, _))) => open = Some((mark, length)),
            (Some((mark, length)), Some((found, found_length, info)))
                if found == mark && found_length >= length && info.is_empty() =>
            {
                open = None;
            }
            _ => {
                let text = line.trim();
                if !text.is_empty() {
                    lines.push(text);
                }
            }
        }
    }
    lines
}

/// The fence a line opens or closes: its character (`` ` `` or `~`), its
/// length (three or more) and the text after it, trimmed; `None` for any
/// other line. Up to three spaces may come before it, and an opening
/// backtick fence's text may not hold a backtick.
fn fence_of(line: &str) -> Option<(char, usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let mark = rest.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let length = rest.len() - rest.trim_start_matches(mark).len();
    if length < 3 {
        return None;
    }
    let info = rest[length..].trim();
    if mark == '`' && info.contains('`') {
        return None;
    }
    Some((mark, length, info))
}

#[cfg(test)]
mod tests;
