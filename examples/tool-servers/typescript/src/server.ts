// A per-user notes service as a stdio MCP server, for chatkitd.
//
// Written with the official MCP TypeScript SDK (@modelcontextprotocol/sdk). It
// shows what a tool server for chatkitd needs and nothing more:
//
// - every tool takes `user_id`, which chatkitd fills in from the signed-in user
//   (`inject = { user_id = "user.id" }` in agent.toml): the model never sees
//   the parameter, and whatever it might put there is overwritten;
// - `list_notes` returns `structuredContent` shaped for a widget
//   (`{"notes": [{"id": …, "text": …}]}`) and a plain-text fallback, which is
//   what the model reads;
// - `delete_note` is annotated `destructiveHint: true`, so chatkitd asks the
//   user before it runs;
// - a mistake the model can fix comes back as a result with `isError: true`.
//
// State lives in one JSON file, NOTES_FILE (default `notes.json` in the working
// directory), read on every call and replaced atomically on every change. That
// is enough for an example run with `max_instances = 1`; a real service keeps
// its data in a database that several instances can share.
//
// stdout carries the protocol: log to stderr only (chatkitd copies each stderr
// line into its own log, tagged with the server's name).

import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

const NOTES_FILE = resolve(process.env.NOTES_FILE ?? "notes.json");
const MAX_TEXT_CHARS = 1000;

interface Note {
  id: string;
  text: string;
}

/** Every user's notes, by user id. */
type Notes = Record<string, Note[]>;

function log(message: string): void {
  console.error(`notes: ${message}`);
}

function load(): Notes {
  try {
    return JSON.parse(readFileSync(NOTES_FILE, "utf8")) as Notes;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw err;
  }
}

/** Writes a temporary file and renames it over the old one: a crash
 * mid-write leaves the previous file whole. */
function save(notes: Notes): void {
  const temporary = resolve(dirname(NOTES_FILE), `.notes-${process.pid}.tmp`);
  writeFileSync(temporary, JSON.stringify(notes));
  renameSync(temporary, NOTES_FILE);
}

/** A result the model reads as a failed call it can correct. */
function toolError(message: string): CallToolResult {
  return { isError: true, content: [{ type: "text", text: message }] };
}

// The parameter chatkitd injects. Its description is for other MCP clients:
// chatkitd removes the parameter from the schema the model sees.
const userId = z.string().min(1).describe("The user whose notes these are.");

const server = new McpServer(
  { name: "notes", version: "0.1.0" },
  { instructions: "Keeps the current user's notes. Use list_notes to find a note's id." },
);

server.registerTool(
  "list_notes",
  {
    description: "List the user's notes, oldest first, with their ids.",
    inputSchema: { user_id: userId },
    annotations: { readOnlyHint: true },
  },
  async ({ user_id }): Promise<CallToolResult> => {
    const notes = load()[user_id] ?? [];
    const text = notes.length
      ? [`${notes.length} note(s):`, ...notes.map((n) => `- ${n.id}: ${n.text}`)].join("\n")
      : "The user has no notes.";
    // The text is what the model reads; structuredContent is the data a
    // widget template is rendered from (`notes` is the template's variable).
    return { content: [{ type: "text", text }], structuredContent: { notes } };
  },
);

server.registerTool(
  "add_note",
  {
    description: "Add a note for the user and return it with its id.",
    inputSchema: {
      user_id: userId,
      text: z.string().describe("The note, e.g. 'Buy milk'."),
    },
    annotations: { readOnlyHint: false, destructiveHint: false },
  },
  async ({ user_id, text }): Promise<CallToolResult> => {
    const trimmed = text.trim();
    if (!trimmed || trimmed.length > MAX_TEXT_CHARS) {
      return toolError(`text must be 1 to ${MAX_TEXT_CHARS} characters.`);
    }
    const notes = load();
    const mine = (notes[user_id] ??= []);
    const number = Math.max(0, ...mine.map((n) => Number(n.id.slice(1)))) + 1;
    const note: Note = { id: `n${number}`, text: trimmed };
    mine.push(note);
    save(notes);
    log(`added note ${note.id}`);
    return {
      content: [{ type: "text", text: `Added note ${note.id}: ${trimmed}` }],
      structuredContent: { note },
    };
  },
);

server.registerTool(
  "delete_note",
  {
    description: "Delete one of the user's notes for good, by its id.",
    inputSchema: {
      user_id: userId,
      note_id: z.string().describe("The note's id, from list_notes."),
    },
    // destructiveHint: chatkitd's default `approval = "destructive"` shows the
    // user an Approve / Deny card before this runs.
    annotations: { readOnlyHint: false, destructiveHint: true },
  },
  async ({ user_id, note_id }): Promise<CallToolResult> => {
    const notes = load();
    const mine = notes[user_id] ?? [];
    const kept = mine.filter((n) => n.id !== note_id);
    if (kept.length === mine.length) {
      // Another user's note is reported exactly like one that does not exist.
      return toolError(`No note with id ${JSON.stringify(note_id)}. Call list_notes to see the ids.`);
    }
    notes[user_id] = kept;
    save(notes);
    log(`deleted note ${note_id}`);
    return {
      content: [{ type: "text", text: `Deleted note ${note_id}.` }],
      structuredContent: { deleted: note_id },
    };
  },
);

log(`serving notes from ${NOTES_FILE}`);
// stdio: JSON-RPC on stdin/stdout; the process ends when stdin closes.
await server.connect(new StdioServerTransport());
