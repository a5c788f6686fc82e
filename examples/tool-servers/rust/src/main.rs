//! `notes-mcp`: a per-user notes service as a stdio MCP server, for chatkitd.
//!
//! Written with `rmcp` (the official Rust SDK). It shows what a tool server
//! for chatkitd needs and nothing more:
//!
//! - every tool takes `user_id`, which chatkitd fills in from the signed-in
//!   user (`inject = { user_id = "user.id" }` in agent.toml): the model never
//!   sees the parameter, and whatever it might put there is overwritten;
//! - `list_notes` returns `structuredContent` shaped for a widget
//!   (`{"notes": [{"id": …, "text": …}]}`) and a plain-text fallback, which
//!   is what the model reads;
//! - `delete_note` is annotated `destructiveHint: true`, so chatkitd asks the
//!   user before it runs;
//! - a mistake the model can fix comes back as a result with `isError: true`.
//!
//! State lives in one JSON file, `NOTES_FILE` (default `notes.json` in the
//! working directory), read on every call and replaced atomically on every
//! change. That is enough for an example run with `max_instances = 1`; a real
//! service keeps its data in a database that several instances can share.
//!
//! stdout carries the protocol: log to stderr only (chatkitd copies each
//! stderr line into its own log, tagged with the server's name).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The longest note accepted, in characters.
const MAX_TEXT_CHARS: usize = 1000;

/// One note of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Note {
    id: String,
    text: String,
}

/// Every user's notes, by user id, as the file holds them.
type Notes = BTreeMap<String, Vec<Note>>;

// Each field's doc comment becomes its description in the tool's schema.
// `user_id` is the parameter chatkitd injects; its description is for other
// MCP clients: chatkitd removes it from the schema the model sees.

/// Arguments of `list_notes`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct ListArgs {
    /// The user whose notes these are.
    user_id: String,
}

/// Arguments of `add_note`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    /// The user whose notes these are.
    user_id: String,
    /// The note, e.g. 'Buy milk'.
    text: String,
}

/// Arguments of `delete_note`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct DeleteArgs {
    /// The user whose notes these are.
    user_id: String,
    /// The note's id, from list_notes.
    note_id: String,
}

/// The server: where the notes are kept, and the tools' routing table.
#[derive(Debug, Clone)]
struct NotesServer {
    file: PathBuf,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl NotesServer {
    fn new(file: PathBuf) -> Self {
        Self {
            file,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "List the user's notes, oldest first, with their ids.",
        annotations(read_only_hint = true)
    )]
    async fn list_notes(&self, Parameters(args): Parameters<ListArgs>) -> CallToolResult {
        let notes = match load(&self.file) {
            Ok(mut all) => all.remove(&args.user_id).unwrap_or_default(),
            Err(message) => return failed(&message),
        };
        let text = if notes.is_empty() {
            "The user has no notes.".to_owned()
        } else {
            let mut text = format!("{} note(s):", notes.len());
            for note in &notes {
                text.push_str(&format!("\n- {}: {}", note.id, note.text));
            }
            text
        };
        // The text is what the model reads; structuredContent is the data a
        // widget template is rendered from (`notes` is the template's variable).
        answer(text, json!({ "notes": notes }))
    }

    #[tool(
        description = "Add a note for the user and return it with its id.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn add_note(&self, Parameters(args): Parameters<AddArgs>) -> CallToolResult {
        let text = args.text.trim();
        if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
            return tool_error(format!("text must be 1 to {MAX_TEXT_CHARS} characters."));
        }
        let mut all = match load(&self.file) {
            Ok(all) => all,
            Err(message) => return failed(&message),
        };
        let mine = all.entry(args.user_id).or_default();
        let number = mine
            .iter()
            .filter_map(|note| note.id.strip_prefix('n')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let note = Note {
            id: format!("n{number}"),
            text: text.to_owned(),
        };
        mine.push(note.clone());
        if let Err(message) = save(&self.file, &all) {
            return failed(&message);
        }
        eprintln!("notes: added note {}", note.id);
        answer(
            format!("Added note {}: {}", note.id, note.text),
            json!({ "note": note }),
        )
    }

    // destructiveHint: chatkitd's default `approval = "destructive"` shows the
    // user an Approve / Deny card before this runs.
    #[tool(
        description = "Delete one of the user's notes for good, by its id.",
        annotations(read_only_hint = false, destructive_hint = true)
    )]
    async fn delete_note(&self, Parameters(args): Parameters<DeleteArgs>) -> CallToolResult {
        let mut all = match load(&self.file) {
            Ok(all) => all,
            Err(message) => return failed(&message),
        };
        let mine = all.entry(args.user_id).or_default();
        let before = mine.len();
        mine.retain(|note| note.id != args.note_id);
        if mine.len() == before {
            // Another user's note is reported exactly like one that does not exist.
            return tool_error(format!(
                "No note with id {:?}. Call list_notes to see the ids.",
                args.note_id
            ));
        }
        if let Err(message) = save(&self.file, &all) {
            return failed(&message);
        }
        eprintln!("notes: deleted note {}", args.note_id);
        answer(
            format!("Deleted note {}.", args.note_id),
            json!({ "deleted": args.note_id }),
        )
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NotesServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("notes", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Keeps the current user's notes. Use list_notes to find a note's id.",
            )
    }
}

/// A successful result: `text` for the model, `data` as `structuredContent`.
fn answer(text: String, data: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(data);
    result
}

/// A result the model reads as a failed call it can correct.
fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

/// A failure of the notes file: the details go to the log, the model gets a
/// plain message.
fn failed(message: &str) -> CallToolResult {
    eprintln!("notes: {message}");
    tool_error("The notes are unavailable right now. Try again later.".to_owned())
}

/// Every user's notes; none when the file does not exist yet.
fn load(file: &Path) -> Result<Notes, String> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a notes file: {e}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Notes::new()),
        Err(e) => Err(format!("cannot read {}: {e}", file.display())),
    }
}

/// Writes a temporary file and renames it over the old one: a crash
/// mid-write leaves the previous file whole.
fn save(file: &Path, notes: &Notes) -> Result<(), String> {
    let temporary = file.with_extension(format!("tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec(notes).map_err(|e| format!("cannot encode the notes: {e}"))?;
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, file))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let file = std::env::var_os("NOTES_FILE").map_or_else(|| "notes.json".into(), PathBuf::from);
    eprintln!("notes: serving notes from {}", file.display());
    // stdio: JSON-RPC on stdin/stdout until the client closes stdin.
    let served = match NotesServer::new(file)
        .serve(rmcp::transport::stdio_pipes())
        .await
    {
        Ok(service) => service
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("notes: {message}");
            ExitCode::FAILURE
        }
    }
}
