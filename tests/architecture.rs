//! The boundaries ARCHITECTURE.md draws, checked against the source: what
//! each module deliberately does not know, which module alone may spawn
//! processes, speak the model's wire format or run SQL, and the shape rules
//! (a `//!` doc on every file, no file over 500 lines without saying why,
//! every module in the crate's map).
//!
//! The checks read the code as text (comments left out), so an import that
//! crosses a line drawn in the map fails the build's tests instead of
//! waiting for a reviewer to notice.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The files of one module: `src/NAME.rs` or everything under `src/NAME/`.
fn module_files(name: &str) -> Vec<PathBuf> {
    let dir = src().join(name);
    if dir.is_dir() {
        rust_files(&dir)
    } else {
        vec![src().join(format!("{name}.rs"))]
    }
}

/// A file's code without its comment lines, with line numbers.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .expect("readable source file")
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(i, line)| (i + 1, line.to_owned()))
        .collect()
}

/// Every line of `files` that contains one of `patterns`, as `path:line: text`.
fn offending(files: &[PathBuf], patterns: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        for (number, line) in code_lines(file) {
            if patterns.iter().any(|p| line.contains(p)) {
                let shown = file.strip_prefix(src()).unwrap_or(file).display();
                found.push(format!("src/{shown}:{number}: {}", line.trim()));
            }
        }
    }
    found
}

/// What each module must not name: (module, what it must not know, patterns).
const DOES_NOT_KNOW: &[(&str, &str, &[&str])] = &[
    (
        "protocol",
        "any I/O, HTTP, SQL, model or other module of the daemon",
        &[
            "crate::",
            "tokio",
            "sqlx",
            "axum",
            "reqwest",
            "rmcp",
            "async_openai",
            "std::fs",
            "std::net",
        ],
    ),
    (
        "http",
        "the store, the agent, the model or the tool servers",
        &[
            "crate::store",
            "crate::agent",
            "crate::llm",
            "crate::mcp",
            "sqlx",
            "rmcp",
        ],
    ),
    (
        "auth",
        "HTTP framing, the model, the store or the dispatcher",
        &[
            "crate::http",
            "crate::llm",
            "crate::store",
            "crate::chatkit",
            "axum",
        ],
    ),
    (
        "chatkit",
        "HTTP (statuses, headers, framing), SQL, the model or the tool servers",
        &[
            "axum",
            "StatusCode",
            "sqlx",
            "crate::http",
            "crate::llm",
            "crate::mcp",
        ],
    ),
    (
        "agent",
        "HTTP, SQL, the dispatcher, or the crates behind the model and the tools",
        &[
            "axum",
            "sqlx",
            "crate::http",
            "crate::chatkit",
            "async_openai",
            "rmcp",
        ],
    ),
    (
        "llm",
        "ChatKit, the tool servers, the store or the agent",
        &[
            "crate::protocol",
            "crate::mcp",
            "crate::store",
            "crate::agent",
            "crate::chatkit",
            "rmcp",
            "sqlx",
        ],
    ),
    (
        "mcp",
        "ChatKit, the store, the model's wire format, the agent or HTTP",
        &[
            "crate::protocol",
            "crate::store",
            "crate::llm",
            "crate::agent",
            "crate::chatkit",
            "crate::http",
            "sqlx",
            "async_openai",
        ],
    ),
    (
        "store",
        "the agent, HTTP, the model, the tool servers or the dispatcher",
        &[
            "crate::agent",
            "crate::http",
            "crate::llm",
            "crate::mcp",
            "crate::chatkit",
            "axum",
        ],
    ),
    (
        "metrics",
        "any other module: components register gauges with it",
        &["crate::"],
    ),
    (
        "widgets",
        "where data comes from: the tool servers, the store, the agent, the model or HTTP",
        &[
            "crate::mcp",
            "crate::store",
            "crate::agent",
            "crate::llm",
            "crate::http",
            "crate::chatkit",
            "tokio",
            "sqlx",
            "rmcp",
        ],
    ),
    (
        "attachments",
        "HTTP, SQL, the model's wire format, the tool servers, the agent or the dispatcher",
        &[
            "axum",
            "sqlx",
            "crate::http",
            "crate::llm",
            "crate::mcp",
            "crate::agent",
            "crate::chatkit",
            "rmcp",
        ],
    ),
    ("limits", "any other module", &["crate::"]),
    ("text", "any other module", &["crate::"]),
    ("tls", "any other module", &["crate::"]),
];

#[test]
fn modules_do_not_know_what_the_map_says_they_do_not() {
    let mut violations = Vec::new();
    for (module, what, patterns) in DOES_NOT_KNOW {
        for line in offending(&module_files(module), patterns) {
            violations.push(format!("`{module}` must not know {what}: {line}"));
        }
    }
    assert!(violations.is_empty(), "\n{}\n", violations.join("\n"));
}

/// (what only one module may do, that module, patterns).
const ONLY_IN: &[(&str, &str, &[&str])] = &[
    (
        "spawn processes",
        "mcp",
        &["Command::new", "tokio::process", "std::process::Command"],
    ),
    (
        "speak the model's wire format",
        "llm",
        &["async_openai", "\"function\"", "chat/completions"],
    ),
    (
        "run SQL or know the migrations",
        "store",
        &["use sqlx", "sqlx::", "Migrator", "_sqlx_migrations"],
    ),
];

#[test]
fn only_one_module_does_each_dangerous_thing() {
    let mut violations = Vec::new();
    for (what, owner, patterns) in ONLY_IN {
        let owned = module_files(owner);
        let others: Vec<PathBuf> = rust_files(&src())
            .into_iter()
            .filter(|f| !owned.contains(f))
            .collect();
        for line in offending(&others, patterns) {
            violations.push(format!("only `{owner}` may {what}: {line}"));
        }
    }
    assert!(violations.is_empty(), "\n{}\n", violations.join("\n"));
}

#[test]
fn every_file_says_what_lives_there_and_stays_small() {
    let mut violations = Vec::new();
    for file in rust_files(&src()) {
        let text = std::fs::read_to_string(&file).expect("readable source file");
        let shown = file
            .strip_prefix(src())
            .unwrap_or(&file)
            .display()
            .to_string();
        if !text.starts_with("//!") {
            violations.push(format!("src/{shown}: no `//!` doc at the top"));
        }
        let lines = text.lines().count();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        let says_why = ["why", "one concept", "kept together"]
            .iter()
            .any(|w| header.contains(w));
        if lines > 500 && !says_why {
            violations.push(format!(
                "src/{shown}: {lines} lines, and its `//!` doc does not say why it stays whole"
            ));
        }
    }
    assert!(violations.is_empty(), "\n{}\n", violations.join("\n"));
}

#[test]
fn the_crate_map_lists_every_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(modules.len() > 10, "{modules:?}");
    let map: String = lib
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<&&str> = modules
        .iter()
        .filter(|m| !map.contains(&format!("[`{m}`]")))
        .collect();
    assert!(
        missing.is_empty(),
        "lib.rs's module map leaves out {missing:?}"
    );
    let architecture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    let unmapped: Vec<&&str> = modules
        .iter()
        .filter(|m| {
            !architecture.contains(&format!("`{m}/`"))
                && !architecture.contains(&format!("`{m}.rs`"))
        })
        .collect();
    assert!(
        unmapped.is_empty(),
        "ARCHITECTURE.md's code map leaves out {unmapped:?}"
    );
}
