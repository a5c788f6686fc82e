//! The model's thinking as ChatKit shows it: a `workflow` item of type
//! `reasoning` added at the first reasoning delta, one `thought` task per
//! summary part (Responses API) or per paragraph (chat completions, whose
//! thinking has no parts) streamed with `workflow.task.added` / `workflow.task.updated`,
//! and closed (a `{"duration": seconds}` summary, `expanded: false`), stored
//! and sent as done when the answer's text begins or the answer ends, as
//! openai-chatkit's `stream_agent_response` does.
//!
//! ChatKit has no delta for a task: an update carries the whole task. So a
//! thought is at most [`MAX_THOUGHT_BYTES`] (a longer paragraph goes on in
//! the next thought), and at most [`MAX_THOUGHTS`] are shown (thinking past
//! them is counted against the answer's bound but not shown), which keeps
//! the bytes sent per delta and the stored item bounded whatever the model
//! streams.

use std::time::Instant;

use super::{Run, Stop};
use crate::protocol::{
    ItemKind, ItemUpdate, Task, TaskStatus, ThoughtTask, ThreadItem, ThreadStreamEvent, Workflow,
    WorkflowSummary, scrub,
};

/// Longest thought, in bytes; a paragraph that goes on continues in the next.
const MAX_THOUGHT_BYTES: usize = 2_000;
/// Most thoughts shown of one answer's thinking.
const MAX_THOUGHTS: usize = 64;
/// Ends the last thought shown when the model thought past [`MAX_THOUGHTS`].
const MORE_NOT_SHOWN: &str = "…";

/// The thinking of one model answer, while it streams.
pub(super) struct Thinking {
    /// The workflow item, as added (its tasks are filled when it closes).
    item: ThreadItem,
    started: Instant,
    thoughts: Thoughts,
    /// Thoughts sent as tasks so far.
    shown: usize,
    /// The bytes of the last thought sent, as sent: a thought only grows, so
    /// the same length is the same text, which is not sent again.
    last_sent: usize,
}

impl Run<'_> {
    /// Shows more of the model's thinking: opens the reasoning workflow at
    /// the first delta, then adds or updates the thought it falls in.
    /// Nothing is shown when `[agent] show_reasoning` is off.
    pub(super) async fn push_reasoning(
        &mut self,
        mut delta: String,
        new_part: bool,
    ) -> Result<(), Stop> {
        if !self.agent.config.show_reasoning {
            return Ok(());
        }
        scrub::scrub_in_place(&mut delta);
        if self.thinking.is_none() {
            // Searches before this thinking are done.
            self.finish_searches().await?;
            let item = ThreadItem::new_workflow(self.input.thread.id.clone(), "reasoning");
            self.thinking = Some(Thinking {
                item: item.clone(),
                started: Instant::now(),
                // Thinking in parts is cut at parts, not paragraphs.
                thoughts: Thoughts {
                    by_parts: new_part,
                    ..Thoughts::default()
                },
                shown: 0,
                last_sent: 0,
            });
            self.emit(ThreadStreamEvent::ItemAdded { item }).await?;
        }
        let Some(thinking) = self.thinking.as_mut() else {
            return Ok(());
        };
        let events = thinking.push(&delta, new_part);
        for event in events {
            self.emit(event).await?;
        }
        Ok(())
    }

    /// Closes the thinking, if any: stored with its thoughts and duration,
    /// then sent as done ([`Run::publish`]). Thinking that never showed a
    /// thought (only whitespace) is removed instead.
    pub(super) async fn finish_thinking(&mut self) -> Result<(), Stop> {
        let Some(thinking) = self.thinking.take() else {
            return Ok(());
        };
        let item_id = thinking.item.id.clone();
        match thinking.into_item() {
            Some(item) => self.publish(item, &[]).await,
            None => self.emit(ThreadStreamEvent::ItemRemoved { item_id }).await,
        }
    }

    /// The closed thinking to store when a run is interrupted (nothing is
    /// sent: the stream may be gone).
    pub(super) fn take_thinking(&mut self) -> Option<ThreadItem> {
        self.thinking.take().and_then(Thinking::into_item)
    }
}

impl Thinking {
    /// The events that show `delta`: the thought it extended, updated, and
    /// the thoughts it began, added.
    fn push(&mut self, delta: &str, new_part: bool) -> Vec<ThreadStreamEvent> {
        if new_part {
            self.thoughts.begin_part();
        }
        let Some(first) = self.thoughts.push(delta) else {
            return Vec::new();
        };
        let mut events = Vec::new();
        for index in first..self.thoughts.len() {
            let Some(task) = self.thoughts.task(index) else {
                continue;
            };
            let sent = task.content().map_or(0, str::len);
            if index + 1 == self.shown && sent == self.last_sent {
                continue;
            }
            self.last_sent = sent;
            let update = if index < self.shown {
                ItemUpdate::WorkflowTaskUpdated {
                    task_index: index,
                    task,
                }
            } else {
                self.shown += 1;
                ItemUpdate::WorkflowTaskAdded {
                    task_index: index,
                    task,
                }
            };
            events.push(ThreadStreamEvent::ItemUpdated {
                item_id: self.item.id.clone(),
                update,
            });
        }
        events
    }

    /// The workflow as stored: the thoughts shown, how long the thinking
    /// took, collapsed. `None` when no thought was shown.
    fn into_item(self) -> Option<ThreadItem> {
        if self.shown == 0 {
            return None;
        }
        let tasks: Vec<Task> = (0..self.shown)
            .filter_map(|index| self.thoughts.task(index))
            .collect();
        let mut item = self.item;
        item.kind = ItemKind::Workflow {
            workflow: Workflow {
                kind: "reasoning".to_owned(),
                tasks,
                summary: Some(WorkflowSummary::Duration {
                    duration: self.started.elapsed().as_secs(),
                }),
                expanded: false,
            },
        };
        Some(item)
    }
}

/// Thinking text cut into thoughts: at paragraph breaks, and where a
/// paragraph passes [`MAX_THOUGHT_BYTES`]. No I/O, so the cutting is tested
/// on its own.
#[derive(Debug, Default)]
struct Thoughts {
    /// The thoughts so far; only the last can still grow, and only the last
    /// can be blank (a paragraph break that nothing followed yet).
    thoughts: Vec<String>,
    /// The model thought past [`MAX_THOUGHTS`]: the rest is not kept.
    full: bool,
    /// The thinking comes in parts, each a thought: paragraphs do not cut.
    by_parts: bool,
}

impl Thoughts {
    fn len(&self) -> usize {
        self.thoughts.len()
    }

    /// The thought at `index` as a task, `None` while it is blank.
    fn task(&self, index: usize) -> Option<Task> {
        let content = self.thoughts.get(index)?.trim();
        (!content.is_empty()).then(|| {
            Task::Thought(ThoughtTask {
                status_indicator: TaskStatus::None,
                title: None,
                content: content.to_owned(),
            })
        })
    }

    /// Starts a new part: the next thinking begins a thought of its own
    /// (unless the last one is still blank).
    fn begin_part(&mut self) {
        if self.full {
            return;
        }
        if self.thoughts.last().is_some_and(|t| !t.trim().is_empty()) {
            self.thoughts.push(String::new());
            if self.thoughts.len() > MAX_THOUGHTS {
                self.thoughts.pop();
                self.full = true;
                if let Some(last) = self.thoughts.last_mut() {
                    last.push_str(MORE_NOT_SHOWN);
                }
            }
        }
    }

    /// Adds `delta`; returns the index of the first thought it changed (the
    /// ones after it are new), or `None` when it changed none.
    fn push(&mut self, delta: &str) -> Option<usize> {
        if self.full || delta.is_empty() {
            return None;
        }
        let mut current = self.thoughts.pop().unwrap_or_default();
        let first = self.thoughts.len();
        current.push_str(delta);
        loop {
            let at_paragraph = if self.by_parts {
                None
            } else {
                paragraph_break(&current)
            };
            let (end, next) = match at_paragraph {
                Some(cut) => cut,
                None if current.len() > MAX_THOUGHT_BYTES => long_cut(&current),
                None => break,
            };
            let rest = current[next..].to_owned();
            current.truncate(end);
            self.thoughts.push(current);
            current = rest;
            if self.thoughts.len() == MAX_THOUGHTS {
                self.full = true;
                if let Some(last) = self.thoughts.last_mut() {
                    last.push_str(MORE_NOT_SHOWN);
                }
                return Some(first);
            }
        }
        self.thoughts.push(current);
        Some(first)
    }
}

/// Where a thought ends at a paragraph break (a blank line after some
/// text): the end of its text and the start of the next thought's.
fn paragraph_break(text: &str) -> Option<(usize, usize)> {
    let start = text.len() - text.trim_start().len();
    let found = text[start..]
        .find("\n\n")
        .or_else(|| text[start..].find("\r\n\r\n"))?;
    let end = start + found;
    let rest = &text[end..];
    let next = end + (rest.len() - rest.trim_start().len());
    Some((end, next))
}

/// Where a thought longer than [`MAX_THOUGHT_BYTES`] is cut: at its last
/// space in the second half of the bound, else at the bound (on a character
/// boundary).
fn long_cut(text: &str) -> (usize, usize) {
    let mut bound = MAX_THOUGHT_BYTES;
    while !text.is_char_boundary(bound) {
        bound -= 1;
    }
    match text[..bound].rfind(char::is_whitespace) {
        Some(space) if space >= MAX_THOUGHT_BYTES / 2 => (space, space + 1),
        _ => (bound, bound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(thoughts: &Thoughts) -> Vec<String> {
        (0..thoughts.len())
            .filter_map(|i| match thoughts.task(i) {
                Some(Task::Thought(t)) => Some(t.content),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn paragraphs_become_thoughts_even_when_the_break_spans_two_deltas() {
        let mut thoughts = Thoughts::default();
        assert_eq!(thoughts.push("\n\nThe user wants"), Some(0));
        assert_eq!(thoughts.push(" a list.\n"), Some(0));
        assert_eq!(thoughts.push("\nI should"), Some(0));
        assert_eq!(thoughts.push(" ask first.\n\n"), Some(1));
        assert_eq!(
            texts(&thoughts),
            ["The user wants a list.", "I should ask first."]
        );
        // The blank thought after the last break is not shown yet.
        assert_eq!(thoughts.len(), 3);
        assert!(thoughts.task(2).is_none());
        assert_eq!(thoughts.push("Then"), Some(2));
        assert_eq!(texts(&thoughts)[2], "Then");
    }

    #[test]
    fn a_long_paragraph_goes_on_in_the_next_thought() {
        let mut thoughts = Thoughts::default();
        let word = "thinking ";
        for _ in 0..1_000 {
            thoughts.push(word);
        }
        let shown = texts(&thoughts);
        assert!(shown.len() >= 4, "{}", shown.len());
        assert!(shown.iter().all(|t| t.len() <= MAX_THOUGHT_BYTES));
        assert_eq!(shown.concat().replace(' ', ""), "thinking".repeat(1_000));
        // Multi-byte text is cut on a character boundary.
        let mut thoughts = Thoughts::default();
        thoughts.push(&"é".repeat(3 * MAX_THOUGHT_BYTES));
        assert!(
            texts(&thoughts)
                .iter()
                .all(|t| t.len() <= MAX_THOUGHT_BYTES)
        );
    }

    #[test]
    fn thinking_in_parts_is_one_thought_per_part_whatever_its_paragraphs() {
        let mut thoughts = Thoughts {
            by_parts: true,
            ..Thoughts::default()
        };
        thoughts.begin_part();
        assert_eq!(thoughts.push("**Planning**\n\n"), Some(0));
        assert_eq!(thoughts.push("I should look it up."), Some(0));
        thoughts.begin_part();
        assert_eq!(thoughts.push("**Answering**"), Some(1));
        assert_eq!(
            texts(&thoughts),
            ["**Planning**\n\nI should look it up.", "**Answering**"]
        );
        for _ in 0..2 * MAX_THOUGHTS {
            thoughts.begin_part();
            thoughts.push("again");
        }
        assert_eq!(texts(&thoughts).len(), MAX_THOUGHTS);
        assert!(texts(&thoughts)[MAX_THOUGHTS - 1].ends_with(MORE_NOT_SHOWN));
    }

    #[test]
    fn endless_thinking_stops_being_kept_at_the_bound() {
        let mut thoughts = Thoughts::default();
        for i in 0..10 * MAX_THOUGHTS {
            thoughts.push(&format!("thought {i}\n\n"));
        }
        let shown = texts(&thoughts);
        assert_eq!(shown.len(), MAX_THOUGHTS);
        assert!(shown[MAX_THOUGHTS - 1].ends_with(MORE_NOT_SHOWN));
        assert_eq!(thoughts.push("more"), None);
    }
}
