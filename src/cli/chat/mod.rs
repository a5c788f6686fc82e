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
//! - An answer that ends on an approval card asks `approve? [y/N]`; the next
//!   line (typed or piped) answers it, `y` or `yes` approving, anything else
//!   denying, and the answer goes on as the ChatKit UI's buttons would.
//! - An answer that ends on a tool server's question asks each of its
//!   questions in turn ([`prompts`]); the answers go as the UI's form
//!   would, a refused one is said and the form asked again, and the answer
//!   goes on.
//!
//! Here: the session (thread, history, turn loop). Reading lines and
//! interrupts is in [`input`], turning events into terminal text in
//! [`render`].

mod input;
mod prompts;
mod render;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use input::{Interrupts, read_lines};
use prompts::{Typed, question_lines, read_answer};
use render::{Pending, PendingCard, PendingQuestion, Render};

use super::{CliError, Glyphs};
use crate::agent::user_text;
use crate::app::App;
use crate::auth::Identity;
use crate::chatkit::{ChatKitError, Response};
use crate::protocol::{
    ActionParams, CustomAction, IdKind, ItemKind, Request, StructuredInputParams,
    StructuredInputSubmission, SubmissionStatus, ThreadInputParams, ThreadItem, ThreadMetadata,
    ThreadStatus, Timestamp, UserContent, UserMessageInput, new_id,
};
use crate::store::{Store, StoreError};
use crate::widgets::{APPROVE, DENY, plain_text};

/// How many earlier messages `--thread` shows.
const RESUME_MESSAGES: usize = 6;

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
                ItemKind::Widget { widget, .. } => Some(
                    plain_text(widget)
                        .lines()
                        .map(|line| format!("  {} {line}", self.glyphs.card))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
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
            let (mut end, mut waiting) = self.turn(text).await?;
            while let (TurnEnd::Answered, Some(pending)) = (&end, waiting.take()) {
                let next = match pending {
                    Pending::Card(card) => {
                        let Some(answer) = self.prompt(&mut lines, "approve? [y/N] ").await? else {
                            // No answer: the card stays pending for the ChatKit UI.
                            return Ok(ChatEnd::Finished);
                        };
                        let approve = matches!(answer.trim().to_lowercase().as_str(), "y" | "yes");
                        self.settle(card, approve).await?
                    }
                    Pending::Question(question) => match self.ask(&mut lines, &question).await? {
                        Some(next) => next,
                        // No answer: the question waits for the ChatKit UI.
                        None => return Ok(ChatEnd::Finished),
                    },
                };
                (end, waiting) = next;
            }
            match end {
                TurnEnd::Answered => {}
                TurnEnd::Interrupted if self.interactive => {}
                TurnEnd::Interrupted => return Ok(ChatEnd::Interrupted),
            }
        }
    }

    /// Shows `prompt` (in a terminal) and reads the next line; `None` at
    /// the end of input or on Ctrl-C.
    async fn prompt(
        &mut self,
        lines: &mut tokio::sync::mpsc::Receiver<std::io::Result<String>>,
        prompt: &str,
    ) -> Result<Option<String>, CliError> {
        if self.interactive {
            let mut out = std::io::stdout().lock();
            out.write_all(prompt.as_bytes())?;
            out.flush()?;
        }
        let line = tokio::select! {
            line = lines.recv() => line,
            () = self.interrupts.next() => None,
        };
        match line {
            Some(Ok(line)) => Ok(Some(line)),
            Some(Err(e)) => Err(e.into()),
            None => {
                if self.interactive {
                    end_prompt()?;
                }
                Ok(None)
            }
        }
    }

    /// Asks a tool server's questions one by one and sends the answers
    /// (`/skip` skips the form); a refused answer is said and the form asked
    /// again. `None` when the input ended first.
    async fn ask(
        &mut self,
        lines: &mut tokio::sync::mpsc::Receiver<std::io::Result<String>>,
        question: &PendingQuestion,
    ) -> Result<Option<(TurnEnd, Option<Pending>)>, CliError> {
        loop {
            let mut answers = BTreeMap::new();
            let mut status = SubmissionStatus::Answered;
            for input in &question.inputs {
                for line in question_lines(input) {
                    println!("{line}");
                }
                let Some(line) = self.prompt(lines, "answer (empty skips): ").await? else {
                    return Ok(None);
                };
                match read_answer(input, &line) {
                    Typed::SkipForm => {
                        status = SubmissionStatus::Skipped;
                        break;
                    }
                    Typed::Answer(answer) => {
                        answers.insert(input.id().to_owned(), answer);
                    }
                }
            }
            let request = Request::ThreadsAddStructuredInput(StructuredInputParams {
                thread_id: self.thread_id.clone(),
                item_id: question.item_id.clone(),
                input: StructuredInputSubmission { status, answers },
            });
            match self.send(request).await? {
                Err(ChatKitError::BadRequest(why)) if status == SubmissionStatus::Answered => {
                    eprintln!("not accepted: {why}");
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(Some((TurnEnd::Answered, None)));
                }
                Ok(next) => return Ok(Some(next)),
            }
        }
    }

    /// Answers an approval card as its Approve or Deny button would.
    async fn settle(
        &mut self,
        card: PendingCard,
        approve: bool,
    ) -> Result<(TurnEnd, Option<Pending>), CliError> {
        let kind = if approve { APPROVE } else { DENY };
        let request = Request::ThreadsCustomAction(ActionParams {
            thread_id: self.thread_id.clone(),
            item_id: Some(card.widget_id),
            action: CustomAction {
                kind: kind.to_owned(),
                payload: card.payload,
            },
        });
        self.stream(request).await
    }

    /// Sends one message and renders its answer; returns how it ended and
    /// the approval card it ended on, if any.
    async fn turn(&mut self, text: &str) -> Result<(TurnEnd, Option<Pending>), CliError> {
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
        self.stream(request).await
    }

    /// Sends a streaming request and renders its events; a refusal is
    /// said on stderr.
    async fn stream(&mut self, request: Request) -> Result<(TurnEnd, Option<Pending>), CliError> {
        match self.send(request).await? {
            Ok(ended) => Ok(ended),
            Err(e) => {
                eprintln!("error: {e}");
                Ok((TurnEnd::Answered, None))
            }
        }
    }

    /// Sends a streaming request and renders its events, or returns its
    /// refusal.
    async fn send(
        &mut self,
        request: Request,
    ) -> Result<Result<(TurnEnd, Option<Pending>), ChatKitError>, CliError> {
        let mut stream = match self.app.chatkit().handle(&self.ctx, request).await {
            Ok(Response::Stream(stream)) => {
                self.sent += 1;
                stream
            }
            Ok(Response::Json(_)) => return Ok(Ok((TurnEnd::Answered, None))),
            Err(e) => return Ok(Err(e)),
        };
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
                    return Ok(Ok((TurnEnd::Interrupted, None)));
                }
                event = stream.events.recv() => event,
            };
            match event {
                Some(event) => render.event(event)?,
                None => break,
            }
        }
        render.end_line()?;
        Ok(Ok((TurnEnd::Answered, render.take_pending())))
    }
}

/// Leaves the prompt's line when quitting.
fn end_prompt() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(b"\n")?;
    out.flush()
}
