//! `chatkitd chat`: the daemon's agent, store and tool servers in a terminal.
//!
//! Each line typed (or piped) is one user message on one thread, sent through
//! [`ChatKit::handle`] exactly as the HTTP endpoint would send it; the events
//! of the answer are rendered as they arrive: text deltas to stdout, each tool
//! call as a line with its name, arguments, outcome and time.
//!
//! - The thread id goes to stderr at start (`thread thr_…`), so a script can
//!   resume it with `--thread`. A new thread is created at start and removed
//!   again at exit if no message was sent on it.
//! - Interactive (stdin is a terminal): a `> ` prompt; Ctrl-C stops the
//!   answer being written (the stream is dropped, the daemon keeps the
//!   partial answer); Ctrl-C or Ctrl-D at the prompt exits.
//! - Piped: one message per line, each answered in turn, then exit at end of
//!   input. An `error` event goes to stderr and the next line follows. SIGINT
//!   stops the answer (kept as above) and exits.
//!
//! Lines are read on a thread of their own: tokio's stdin cannot cancel a
//! blocking read, which would hold the exit until the user pressed Enter.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};

use tokio::sync::mpsc;

use super::{CliError, Glyphs, one_line};
use crate::agent::{task_arguments, task_outcome, user_text};
use crate::app::App;
use crate::auth::Identity;
use crate::chatkit::Response;
use crate::protocol::{
    IdKind, ItemKind, ItemUpdate, Request, ThreadInputParams, ThreadItem, ThreadMetadata,
    ThreadStatus, ThreadStreamEvent, Timestamp, UserContent, UserMessageInput, new_id,
};
use crate::store::{Store, StoreError};

/// How many earlier messages `--thread` shows.
const RESUME_MESSAGES: usize = 6;
/// Longest arguments text on a tool line.
const MAX_ARGUMENTS_SHOWN: usize = 160;
/// Longest tool output shown under a tool line.
const MAX_OUTPUT_SHOWN: usize = 240;

/// The command line of `chatkitd chat`.
#[derive(Debug, Clone, Default)]
pub struct ChatOptions {
    /// Resume this thread instead of starting one.
    pub thread: Option<String>,
    /// Act as this user (default: `[auth] dev_user`).
    pub user: Option<String>,
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatEnd {
    /// End of input, or the user quit at the prompt.
    Finished,
    /// Piped input was interrupted by SIGINT.
    Interrupted,
}

/// Runs a chat session on `app` until the input ends or the user quits.
pub async fn run(app: &App, options: ChatOptions) -> Result<ChatEnd, CliError> {
    let interactive = std::io::stdin().is_terminal();
    let user = options
        .user
        .clone()
        .unwrap_or_else(|| app.config().auth.dev_user.clone());
    let store = app.store().clone();
    let (thread, created) = match &options.thread {
        Some(id) => {
            let thread = match store.load_thread(&user, id).await {
                Ok(thread) => thread,
                Err(StoreError::NotFound(_)) => {
                    return Err(CliError::Usage(format!(
                        "thread {id} does not exist for user {user:?}"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            if !matches!(thread.status, ThreadStatus::Active) {
                return Err(CliError::Usage(format!(
                    "thread {id} does not accept messages (it is locked or closed)"
                )));
            }
            (thread, false)
        }
        None => {
            let thread = ThreadMetadata::new(new_id(IdKind::Thread), Timestamp::now());
            store.create_thread(&user, &thread).await?;
            (thread, true)
        }
    };
    eprintln!("thread {}", thread.id);
    if interactive {
        eprintln!("(Ctrl-C stops an answer; Ctrl-C or Ctrl-D at the prompt quits)");
    }
    let mut session = Session {
        app,
        ctx: Identity::user(user.clone()),
        thread_id: thread.id.clone(),
        interactive,
        interrupts: Interrupts::new()?,
        glyphs: Glyphs::from_env(),
        sent: 0,
    };
    if !created {
        let history = store.load_history(&user, &thread.id, 400).await?;
        session.show_history(&history)?;
    }
    let ended = session.converse().await;
    if created && session.sent == 0 {
        // Nothing was said: leave no empty thread behind.
        if let Err(e) = store.delete_thread(&user, &thread.id).await {
            tracing::warn!(error = %e, thread_id = %thread.id, "could not remove an unused thread");
        }
    }
    ended
}

/// A chat session on one thread.
struct Session<'a> {
    app: &'a App,
    ctx: Identity,
    thread_id: String,
    interactive: bool,
    interrupts: Interrupts,
    glyphs: Glyphs,
    /// Messages sent so far.
    sent: usize,
}

/// How one answer ended.
enum TurnEnd {
    Answered,
    Interrupted,
}

impl Session<'_> {
    /// The last few messages of a resumed thread: on stdout in a terminal
    /// (where they read as the conversation so far), on stderr when piped
    /// (where stdout holds only the answers).
    fn show_history(&self, items: &[ThreadItem]) -> Result<(), CliError> {
        let messages: Vec<String> = items
            .iter()
            .filter_map(|item| match &item.kind {
                ItemKind::UserMessage(message) => Some(format!("> {}", user_text(message))),
                ItemKind::AssistantMessage(message) => Some(message.text()),
                _ => None,
            })
            .collect();
        let skipped = messages.len().saturating_sub(RESUME_MESSAGES);
        let mut text = String::new();
        if skipped > 0 {
            text.push_str(&format!("({skipped} earlier messages)\n"));
        }
        for message in &messages[skipped..] {
            text.push_str(message.trim_end());
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(());
        }
        text.push('\n');
        if self.interactive {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        } else {
            eprint!("{text}");
        }
        Ok(())
    }

    async fn converse(&mut self) -> Result<ChatEnd, CliError> {
        let mut lines = read_lines();
        loop {
            if self.interactive {
                let mut out = std::io::stdout().lock();
                out.write_all(b"> ")?;
                out.flush()?;
            }
            let line = tokio::select! {
                line = lines.recv() => line,
                () = self.interrupts.next() => {
                    if self.interactive {
                        end_prompt()?;
                        return Ok(ChatEnd::Finished);
                    }
                    return Ok(ChatEnd::Interrupted);
                }
            };
            let line = match line {
                None => {
                    if self.interactive {
                        end_prompt()?;
                    }
                    return Ok(ChatEnd::Finished);
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(line)) => line,
            };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            match self.turn(text).await? {
                TurnEnd::Answered => {}
                TurnEnd::Interrupted if self.interactive => {}
                TurnEnd::Interrupted => return Ok(ChatEnd::Interrupted),
            }
        }
    }

    /// Sends one message and renders its answer.
    async fn turn(&mut self, text: &str) -> Result<TurnEnd, CliError> {
        let request = Request::ThreadsAddUserMessage(ThreadInputParams {
            thread_id: Some(self.thread_id.clone()),
            input: UserMessageInput {
                content: vec![UserContent::InputText {
                    text: text.to_owned(),
                }],
                attachments: Vec::new(),
                quoted_text: None,
                inference_options: Default::default(),
            },
        });
        let mut stream = match self.app.chatkit().handle(&self.ctx, request).await {
            Ok(Response::Stream(stream)) => stream,
            Ok(Response::Json(_)) => return Ok(TurnEnd::Answered),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(TurnEnd::Answered);
            }
        };
        self.sent += 1;
        let mut render = Render::new(std::io::stdout(), self.glyphs);
        loop {
            let event = tokio::select! {
                biased;
                () = self.interrupts.next() => {
                    // Dropping the stream is the stop button: the run stops
                    // and keeps what it wrote.
                    drop(stream);
                    render.end_line()?;
                    eprintln!("(stopped; the answer so far is kept)");
                    return Ok(TurnEnd::Interrupted);
                }
                event = stream.events.recv() => event,
            };
            match event {
                Some(event) => render.event(event)?,
                None => break,
            }
        }
        render.end_line()?;
        Ok(TurnEnd::Answered)
    }
}

/// Leaves the prompt's line when quitting.
fn end_prompt() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"\n")?;
    out.flush()
}

/// Lines of stdin, read on a thread of their own.
fn read_lines() -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(1);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        loop {
            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// SIGINT (Ctrl-C), counted from the start of the session: a press while
/// nothing listens is seen by the next wait.
struct Interrupts {
    #[cfg(unix)]
    signal: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn new() -> Result<Interrupts, CliError> {
        #[cfg(unix)]
        {
            let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
            Ok(Interrupts { signal })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            if self.signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A tool call being shown.
struct ShownTask {
    name: String,
}

/// Renders the events of one answer as terminal text.
struct Render<W: Write> {
    out: W,
    glyphs: Glyphs,
    /// The cursor is not at the start of a line.
    mid_line: bool,
    /// The tool line left open for its outcome, by (workflow id, task index).
    open_task: Option<(String, usize)>,
    tasks: HashMap<(String, usize), ShownTask>,
}

impl<W: Write> Render<W> {
    fn new(out: W, glyphs: Glyphs) -> Self {
        Render {
            out,
            glyphs,
            mid_line: false,
            open_task: None,
            tasks: HashMap::new(),
        }
    }

    fn event(&mut self, event: ThreadStreamEvent) -> std::io::Result<()> {
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
            ThreadStreamEvent::ItemDone { item } => {
                if matches!(item.kind, ItemKind::AssistantMessage(_)) {
                    self.end_line()?;
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

    /// A tool call starts: `  ⚙ name {args} …`, left open for its outcome.
    fn task_added(
        &mut self,
        workflow: String,
        index: usize,
        task: &serde_json::Value,
    ) -> std::io::Result<()> {
        self.end_line()?;
        let name = task_title(task);
        let arguments = task
            .get("content")
            .and_then(|c| c.as_str())
            .and_then(task_arguments)
            .map(|a| one_line(a, MAX_ARGUMENTS_SHOWN, self.glyphs.ellipsis))
            .unwrap_or_default();
        write!(
            self.out,
            "  {} {name} {arguments} {}",
            self.glyphs.tool, self.glyphs.ellipsis
        )?;
        self.mid_line = true;
        let key = (workflow, index);
        self.open_task = Some(key.clone());
        self.tasks.insert(key, ShownTask { name });
        Ok(())
    }

    /// A tool call finished: its verdict and time end its line (or a line of
    /// its own when others came between), its output follows.
    fn task_updated(
        &mut self,
        workflow: String,
        index: usize,
        task: &serde_json::Value,
    ) -> std::io::Result<()> {
        let key = (workflow, index);
        let content = task.get("content").and_then(|c| c.as_str()).unwrap_or("");
        let (verdict, output) = task_outcome(content);
        if self.open_task.as_ref() == Some(&key) {
            writeln!(self.out, " {verdict}")?;
        } else {
            self.end_line()?;
            let name = self
                .tasks
                .get(&key)
                .map_or_else(|| task_title(task), |t| t.name.clone());
            writeln!(
                self.out,
                "  {} {name} {} {verdict}",
                self.glyphs.tool, self.glyphs.ellipsis
            )?;
        }
        self.open_task = None;
        self.mid_line = false;
        if !output.is_empty() {
            writeln!(
                self.out,
                "    {} {}",
                self.glyphs.result,
                one_line(output, MAX_OUTPUT_SHOWN, self.glyphs.ellipsis)
            )?;
        }
        Ok(())
    }

    /// Ends the current line, if one is open.
    fn end_line(&mut self) -> std::io::Result<()> {
        if self.mid_line {
            self.out.write_all(b"\n")?;
            self.mid_line = false;
        }
        self.open_task = None;
        self.out.flush()
    }
}

fn task_title(task: &serde_json::Value) -> String {
    task.get("title")
        .and_then(|t| t.as_str())
        .unwrap_or("tool")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::running_content;
    use serde_json::json;

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

    fn added(index: usize, name: &str, arguments: &str) -> ThreadStreamEvent {
        ThreadStreamEvent::ItemUpdated {
            item_id: "wf_1".into(),
            update: ItemUpdate::WorkflowTaskAdded {
                task_index: index,
                task: json!({"title": name, "content": running_content(arguments)}),
            },
        }
    }

    fn updated(index: usize, name: &str, content: &str) -> ThreadStreamEvent {
        ThreadStreamEvent::ItemUpdated {
            item_id: "wf_1".into(),
            update: ItemUpdate::WorkflowTaskUpdated {
                task_index: index,
                task: json!({"title": name, "content": content}),
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
            "  * add_task {\"title\": \"buy milk\"} ... done in 0.2s\n    -> {\"id\":1}\nAdded it.\n"
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
            "  * a {} ...\n  * b {} ... failed in 0.1s\n    -> boom\n  * a ... done in 0.3s\n    -> ok\n"
        );
    }
}
