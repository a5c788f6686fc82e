//! The example's own check, as any MCP client would see it: it answers
//! `initialize` and lists its three tools over stdio. (Being an integration
//! test, it also makes `cargo test --workspace` build the `notes-mcp`
//! binary that chatkitd's tests run.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

#[test]
fn it_answers_initialize_and_lists_its_tools() {
    let notes =
        std::env::temp_dir().join(format!("notes-mcp-handshake-{}.json", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_notes-mcp"))
        .env("NOTES_FILE", &notes)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("notes-mcp starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").expect("written");
    };
    let mut answer = || -> Value {
        let line = lines.next().expect("an answer").expect("read");
        serde_json::from_str(&line).expect("JSON-RPC")
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "handshake-test", "version": "1"}
        }}),
    );
    let initialized = answer();
    assert_eq!(initialized["id"], 1, "{initialized}");
    assert!(
        initialized["result"]["capabilities"]["tools"].is_object(),
        "{initialized}"
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let listed = answer();
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["add_note", "delete_note", "list_notes"], "{listed}");
    drop(stdin);
    let status = child.wait().expect("exits");
    assert!(
        status.success(),
        "exits cleanly when stdin closes: {status}"
    );
    let _ = std::fs::remove_file(notes);
}
