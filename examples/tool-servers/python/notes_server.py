"""A per-user notes service as a stdio MCP server, for chatkitd.

Written with the official MCP Python SDK (`mcp`, see requirements.txt). It
shows what a tool server for chatkitd needs and nothing more:

- every tool takes `user_id`, which chatkitd fills in from the signed-in user
  (`inject = { user_id = "user.id" }` in agent.toml): the model never sees
  the parameter, and whatever it might put there is overwritten;
- `list_notes` returns `structuredContent` shaped for a widget
  (`{"notes": [{"id": …, "text": …}]}`) and a plain-text fallback, which is
  what the model reads;
- `delete_note` is annotated `destructiveHint: true`, so chatkitd asks the
  user before it runs;
- a mistake the model can fix comes back as a result with `isError: true`.

State lives in one JSON file, `NOTES_FILE` (default `notes.json` in the
working directory), read on every call and replaced atomically on every
change. That is enough for an example run with `max_instances = 1`; a real
service keeps its data in a database that several instances can share.

stdout carries the protocol: log to stderr only (chatkitd copies each stderr
line into its own log, tagged with the server's name).
"""

import json
import os
import sys
import tempfile
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

NOTES_FILE = os.environ.get("NOTES_FILE", "notes.json")
MAX_TEXT_CHARS = 1000

server = MCPServer(
    "notes",
    instructions="Keeps the current user's notes. Use list_notes to find a note's id.",
)

# The parameter chatkitd injects. Its description is for other MCP clients:
# chatkitd removes the parameter from the schema the model sees.
UserId = Annotated[str, Field(description="The user whose notes these are.")]


def log(message: str) -> None:
    print(f"notes: {message}", file=sys.stderr, flush=True)


def load() -> dict[str, list[dict[str, str]]]:
    """Every user's notes: {user_id: [{"id": "n1", "text": "…"}, …]}."""
    try:
        with open(NOTES_FILE, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        return {}


def save(notes: dict[str, list[dict[str, str]]]) -> None:
    """Writes a temporary file and renames it over the old one: a crash
    mid-write leaves the previous file whole."""
    directory = os.path.dirname(os.path.abspath(NOTES_FILE))
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=directory, delete=False
    ) as file:
        json.dump(notes, file)
    os.replace(file.name, NOTES_FILE)


def require_user(user_id: str) -> str:
    # Only a misconfigured client sends no user: chatkitd always fills it in.
    if not user_id.strip():
        raise ToolError("user_id is required.")
    return user_id


@server.tool(
    description="List the user's notes, oldest first, with their ids.",
    annotations=ToolAnnotations(read_only_hint=True),
)
def list_notes(user_id: UserId) -> CallToolResult:
    notes = load().get(require_user(user_id), [])
    if notes:
        lines = [f"{len(notes)} note(s):"] + [f"- {n['id']}: {n['text']}" for n in notes]
        text = "\n".join(lines)
    else:
        text = "The user has no notes."
    # The text is what the model reads; structuredContent is the data a
    # widget template is rendered from (`notes` is the template's variable).
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"notes": notes},
    )


@server.tool(
    description="Add a note for the user and return it with its id.",
    annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False),
)
def add_note(
    user_id: UserId,
    text: Annotated[str, Field(description="The note, e.g. 'Buy milk'.")],
) -> CallToolResult:
    user = require_user(user_id)
    text = text.strip()
    if not text or len(text) > MAX_TEXT_CHARS:
        # ToolError becomes a result with isError: true; the model reads the
        # message and can correct its call.
        raise ToolError(f"text must be 1 to {MAX_TEXT_CHARS} characters.")
    notes = load()
    mine = notes.setdefault(user, [])
    number = max((int(n["id"][1:]) for n in mine), default=0) + 1
    note = {"id": f"n{number}", "text": text}
    mine.append(note)
    save(notes)
    log(f"added note {note['id']}")
    return CallToolResult(
        content=[TextContent(type="text", text=f"Added note {note['id']}: {text}")],
        structured_content={"note": note},
    )


@server.tool(
    description="Delete one of the user's notes for good, by its id.",
    # destructiveHint: chatkitd's default `approval = "destructive"` shows the
    # user an Approve / Deny card before this runs.
    annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True),
)
def delete_note(
    user_id: UserId,
    note_id: Annotated[str, Field(description="The note's id, from list_notes.")],
) -> CallToolResult:
    user = require_user(user_id)
    notes = load()
    mine = notes.get(user, [])
    kept = [n for n in mine if n["id"] != note_id]
    if len(kept) == len(mine):
        # Another user's note is reported exactly like one that does not exist.
        raise ToolError(f"No note with id {note_id!r}. Call list_notes to see the ids.")
    notes[user] = kept
    save(notes)
    log(f"deleted note {note_id}")
    return CallToolResult(
        content=[TextContent(type="text", text=f"Deleted note {note_id}.")],
        structured_content={"deleted": note_id},
    )


if __name__ == "__main__":
    log(f"serving notes from {NOTES_FILE}")
    server.run()  # stdio: JSON-RPC on stdin/stdout until stdin closes
