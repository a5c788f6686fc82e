//! The boundaries ARCHITECTURE.md draws, checked against the source: what
//! each module deliberately does not know, which module alone may spawn
//! processes, speak the model's wire format or run SQL, that metrics never
//! take user or thread ids as labels, and the shape rules (a `//!` doc on
//! every file, no file over 500 lines without saying why, every module in
//! the crate's map).
//!
//! Each file is parsed with `syn`: every path it names counts, in `use`
//! items (grouped and nested, across any number of lines), in code (types,
//! expressions, patterns, attributes) and inside macro calls, with `self`,
//! `super` and child modules resolved to `crate::…`. Comments and doc
//! comments do not count. So an import that crosses a line drawn in the map
//! fails the build's tests instead of waiting for a reviewer to notice.

use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::visit::{self, Visit};

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

/// The source tree checked: this crate's `src/`, or the one named by
/// `ARCHITECTURE_SRC` (to count what these rules find in another checkout,
/// such as an older commit's, without building it).
fn src() -> PathBuf {
    match std::env::var_os("ARCHITECTURE_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
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

/// `path` as shown in a failure: `src/…`.
fn shown(path: &Path) -> String {
    format!("src/{}", path.strip_prefix(src()).unwrap_or(path).display())
}

/// The module a file is: `src/agent/run/draft.rs` is `crate::agent::run::draft`,
/// `src/agent/mod.rs` is `crate::agent`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).expect("a file under src/");
    let mut module = vec!["crate".to_owned()];
    for part in relative.with_extension("").iter() {
        let part = part.to_string_lossy();
        if !matches!(part.as_ref(), "mod" | "lib" | "main") {
            module.push(part.into_owned());
        }
    }
    module
}

/// What a file names: every path (resolved where it is relative to the
/// crate) and every string literal, each with its line.
#[derive(Default)]
struct Named {
    paths: Vec<(Vec<String>, usize)>,
    literals: Vec<(String, usize)>,
}

/// Collects what a file names, as [`Named`].
struct Collector {
    /// The module being read (the file's, then any inline `mod` in it).
    module: Vec<String>,
    /// The file's `mod` items: a path may start with one of them.
    children: Vec<String>,
    /// Leave `#[cfg(test)]` modules out.
    skip_tests: bool,
    named: Named,
}

impl Collector {
    /// Records `segments` as written at `line`, resolved against the
    /// module it is written in.
    fn record(&mut self, segments: Vec<String>, line: usize) {
        let Some(first) = segments.first() else {
            return;
        };
        let resolved = if first == "self" {
            [self.module.clone(), segments[1..].to_vec()].concat()
        } else if first == "super" {
            let ups = segments.iter().take_while(|s| *s == "super").count();
            let kept = self.module.len().saturating_sub(ups).max(1);
            [self.module[..kept].to_vec(), segments[ups..].to_vec()].concat()
        } else if self.children.contains(first) {
            [self.module.clone(), segments].concat()
        } else {
            segments
        };
        self.named.paths.push((resolved, line));
    }

    /// Every path of a `use` tree, flattened: `a::{b, c::{d}}` is `a::b`
    /// and `a::c::d`.
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                let line = name.ident.span().start().line;
                self.record(
                    [prefix.clone(), vec![name.ident.to_string()]].concat(),
                    line,
                );
            }
            syn::UseTree::Rename(rename) => {
                let line = rename.ident.span().start().line;
                self.record(
                    [prefix.clone(), vec![rename.ident.to_string()]].concat(),
                    line,
                );
            }
            syn::UseTree::Glob(glob) => {
                let line = glob.star_token.spans[0].start().line;
                self.record(prefix.clone(), line);
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// The paths (`a::b::c`) and string literals among a macro call's
    /// tokens, which `syn` leaves unparsed.
    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Literal(literal) => self
                    .named
                    .literals
                    .push((literal.to_string(), literal.span().start().line)),
                TokenTree::Ident(ident) => {
                    let line = ident.span().start().line;
                    let mut segments = vec![ident.to_string()];
                    while let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(next)),
                    ) = (tokens.get(i + 1), tokens.get(i + 2), tokens.get(i + 3))
                    {
                        if a.as_char() != ':' || a.spacing() != Spacing::Joint || b.as_char() != ':'
                        {
                            break;
                        }
                        segments.push(next.to_string());
                        i += 3;
                    }
                    self.record(segments, line);
                }
                TokenTree::Punct(_) => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if let Some(first) = path.segments.first() {
            let line = first.ident.span().start().line;
            let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
            self.record(segments, line);
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        visit::visit_macro(self, mac);
        self.tokens(mac.tokens.clone());
    }

    fn visit_lit_str(&mut self, literal: &'ast syn::LitStr) {
        self.named
            .literals
            .push((literal.token().to_string(), literal.span().start().line));
    }

    fn visit_attribute(&mut self, attribute: &'ast syn::Attribute) {
        // Doc comments are documentation, not code.
        if !attribute.path().is_ident("doc") {
            visit::visit_attribute(self, attribute);
            if let syn::Meta::List(list) = &attribute.meta {
                self.tokens(list.tokens.clone());
            }
        }
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if self.skip_tests && is_test_only(&item.attrs) {
            return;
        }
        self.module.push(item.ident.to_string());
        visit::visit_item_mod(self, item);
        self.module.pop();
    }
}

/// A file, parsed.
fn parse(file: &Path) -> syn::File {
    let text = std::fs::read_to_string(file).expect("readable source file");
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", shown(file)))
}

/// Whether `attrs` hold `#[cfg(test)]`.
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && matches!(&a.meta, syn::Meta::List(list) if list.tokens.to_string() == "test")
    })
}

/// Whether `file` is a module of tests (`tests.rs`, `…_tests.rs`), which
/// its parent declares `#[cfg(test)]`.
fn is_test_file(file: &Path) -> bool {
    file.file_stem()
        .is_some_and(|s| s == "tests" || s.to_string_lossy().ends_with("_tests"))
}

/// What `file` names: every path and string literal in its code.
fn named(file: &Path) -> Named {
    collect(file, false)
}

/// What `file` names outside its tests.
fn named_outside_tests(file: &Path) -> Named {
    if is_test_file(file) {
        return Named::default();
    }
    collect(file, true)
}

fn collect(file: &Path, skip_tests: bool) -> Named {
    let syntax = parse(file);
    let children = syntax
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(item) => Some(item.ident.to_string()),
            _ => None,
        })
        .collect();
    let mut collector = Collector {
        module: module_of(file),
        children,
        skip_tests,
        named: Named::default(),
    };
    collector.visit_file(&syntax);
    collector.named
}

/// Whether `path` starts with the segments of `pattern` (`crate::store`
/// matches `crate::store::Store`, not `crate::stored`).
fn starts_with(path: &[String], pattern: &str) -> bool {
    let pattern: Vec<&str> = pattern.split("::").collect();
    path.len() >= pattern.len() && path.iter().zip(&pattern).all(|(a, b)| a == b)
}

/// Every path of `files` that starts with one of `paths` and every string
/// literal that contains one of `texts`, as `path:line: what`. A path into
/// `own` (the module's own `crate::NAME`) never counts.
fn offending(files: &[PathBuf], own: Option<&str>, paths: &[&str], texts: &[&str]) -> Vec<String> {
    let own = own.map(|m| format!("crate::{}", m.replace('/', "::")));
    let mut found = Vec::new();
    for file in files {
        let named = named(file);
        for (path, line) in &named.paths {
            if own.as_deref().is_some_and(|own| starts_with(path, own)) {
                continue;
            }
            if paths.iter().any(|p| starts_with(path, p)) {
                found.push(format!("{}:{line}: {}", shown(file), path.join("::")));
            }
        }
        for (literal, line) in &named.literals {
            if texts.iter().any(|t| literal.contains(t)) {
                found.push(format!("{}:{line}: {literal}", shown(file)));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// What each module must not name: (module, what it must not know, path
/// prefixes). `crate` alone means every other module of the daemon.
const DOES_NOT_KNOW: &[(&str, &str, &[&str])] = &[
    (
        "protocol",
        "any I/O, HTTP, SQL, model or other module of the daemon",
        &[
            "crate",
            "tokio",
            "sqlx",
            "axum",
            "hyper",
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
            "async_openai",
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
            "sqlx",
        ],
    ),
    (
        "chatkit",
        "HTTP (statuses, headers, framing), SQL, the model or the tool servers",
        &[
            "axum",
            "hyper",
            "StatusCode",
            "sqlx",
            "crate::http",
            "crate::llm",
            "crate::mcp",
            "async_openai",
            "rmcp",
        ],
    ),
    (
        "agent",
        "HTTP, SQL, the dispatcher, or the crates behind the model and the tools",
        &[
            "axum",
            "hyper",
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
            "axum",
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
            "rmcp",
            "async_openai",
        ],
    ),
    (
        "config",
        "what the daemon does with the values: the components it configures",
        &[
            "crate::store",
            "crate::agent",
            "crate::chatkit",
            "crate::http",
            "crate::mcp",
            "crate::llm",
            "crate::attachments",
            "crate::widgets",
            "crate::app",
            "crate::reload",
            "crate::cli",
            "sqlx",
            "axum",
            "rmcp",
            "async_openai",
        ],
    ),
    (
        "attachments",
        "HTTP, SQL, the model's wire format, the tool servers, the agent or the dispatcher",
        &[
            "axum",
            "hyper",
            "sqlx",
            "crate::http",
            "crate::llm",
            "crate::mcp",
            "crate::agent",
            "crate::chatkit",
            "rmcp",
            "async_openai",
        ],
    ),
    (
        "agent/transcript",
        "a run, the store, the tool servers or any I/O (it is pure: see also `the_transcript_is_pure`)",
        &[
            "crate::agent::run",
            "crate::store",
            "crate::mcp",
            "crate::attachments::Attachments",
            "tokio",
            "std::fs",
        ],
    ),
    (
        "elicitation",
        "HTTP, the store, a run or the dispatcher",
        &[
            "crate::http",
            "crate::store",
            "crate::agent",
            "crate::chatkit",
            "axum",
            "hyper",
            "sqlx",
        ],
    ),
    (
        "stream",
        "any other module but the protocol's events",
        &[
            "crate::agent",
            "crate::chatkit",
            "crate::http",
            "crate::store",
            "crate::llm",
            "crate::mcp",
            "crate::elicitation",
            "axum",
            "hyper",
        ],
    ),
    ("limits", "any other module", &["crate"]),
    (
        "metrics",
        "any other module: components register gauges with it",
        &["crate"],
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
            "axum",
        ],
    ),
    ("text", "any other module", &["crate"]),
    ("tls", "any other module", &["crate"]),
    (
        "cli",
        "HTTP: it drives the daemon through `ChatKit::handle`",
        &["crate::http", "axum", "hyper", "tower_http"],
    ),
    (
        "reload",
        "HTTP, SQL or the model's wire format",
        &[
            "crate::http",
            "axum",
            "hyper",
            "sqlx",
            "crate::llm::wire",
            "async_openai",
        ],
    ),
];

#[test]
fn modules_do_not_know_what_the_map_says_they_do_not() {
    let mut violations = Vec::new();
    for (module, what, paths) in DOES_NOT_KNOW {
        for found in offending(&module_files(module), Some(module), paths, &[]) {
            violations.push(format!("`{module}` must not know {what}: {found}"));
        }
    }
    assert!(violations.is_empty(), "\n{}\n", violations.join("\n"));
}

/// (what only one module may do, that module, path prefixes, texts in
/// string literals).
const ONLY_IN: &[(&str, &str, &[&str], &[&str])] = &[
    (
        "spawn processes",
        "mcp",
        &["Command::new", "tokio::process", "std::process::Command"],
        &[],
    ),
    (
        "speak the model's wire format",
        "llm",
        &["async_openai"],
        &["\"function\"", "chat/completions"],
    ),
    (
        "run SQL or know the migrations",
        "store",
        &["sqlx", "Migrator"],
        &["_sqlx_migrations"],
    ),
];

#[test]
fn only_one_module_does_each_dangerous_thing() {
    let mut violations = Vec::new();
    for (what, owner, paths, texts) in ONLY_IN {
        let owned = module_files(owner);
        let others: Vec<PathBuf> = rust_files(&src())
            .into_iter()
            .filter(|f| !owned.contains(f))
            .collect();
        for found in offending(&others, None, paths, texts) {
            violations.push(format!("only `{owner}` may {what}: {found}"));
        }
    }
    assert!(violations.is_empty(), "\n{}\n", violations.join("\n"));
}

/// Words a metric label's name must not hold: a label of user ids, thread
/// ids or text would make one series per user, thread or message.
const NOT_LABELS: &[&str] = &["user", "thread", "id", "text", "message", "item", "session"];

/// Whether the label name `name` holds one of [`NOT_LABELS`] as a word
/// (`user_id`, `threadId`, `thread`).
fn names_an_unbounded_value(name: &str) -> bool {
    let name = name.trim_start_matches("r#");
    let mut words = Vec::new();
    let mut word = String::new();
    for c in name.chars() {
        if (c == '_' || c == '-' || c.is_uppercase()) && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
    }
    words.push(word);
    words
        .iter()
        .any(|w| NOT_LABELS.contains(&w.as_str()) || NOT_LABELS.contains(&w.trim_end_matches('s')))
}

/// The label names of a `GaugeSet`: every string literal that opens a
/// pair (`("server", value)`) in the arguments of `GaugeSet::new`.
#[derive(Default)]
struct GaugeLabels {
    /// (label name, line).
    found: Vec<(String, usize)>,
}

impl GaugeLabels {
    fn tokens(&mut self, tokens: TokenStream) {
        for token in tokens {
            if let TokenTree::Group(group) = token {
                let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                if group.delimiter() == Delimiter::Parenthesis
                    && let [TokenTree::Literal(name), TokenTree::Punct(comma), ..] = &inner[..]
                    && comma.as_char() == ','
                    && name.to_string().starts_with('"')
                {
                    let name = name.to_string().trim_matches('"').to_owned();
                    self.found.push((name, group.span().start().line));
                }
                self.tokens(group.stream());
            }
        }
    }
}

impl<'ast> Visit<'ast> for GaugeLabels {
    fn visit_expr_tuple(&mut self, tuple: &'ast syn::ExprTuple) {
        if let Some(syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(name),
            ..
        })) = tuple.elems.first()
        {
            self.found.push((name.value(), name.span().start().line));
        }
        visit::visit_expr_tuple(self, tuple);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
    }
}

/// Finds the `GaugeSet::new` calls of a file and their label names.
#[derive(Default)]
struct GaugeSets {
    labels: GaugeLabels,
}

impl<'ast> Visit<'ast> for GaugeSets {
    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(function) = &*call.func {
            let segments: Vec<String> = function
                .path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect();
            if segments.ends_with(&["GaugeSet".to_owned(), "new".to_owned()]) {
                for argument in &call.args {
                    self.labels.visit_expr(argument);
                }
            }
        }
        visit::visit_expr_call(self, call);
    }
}

#[test]
fn metrics_never_take_user_or_thread_ids_or_text_as_labels() {
    let mut violations = Vec::new();
    // The label sets of the process-wide registry: each field of a struct
    // deriving `EncodeLabelSet` is a label.
    let metrics = src().join("metrics.rs");
    let mut label_sets = 0;
    for item in parse(&metrics).items {
        let syn::Item::Struct(label_set) = item else {
            continue;
        };
        let derives_labels = label_set.attrs.iter().any(|attribute| {
            attribute.path().is_ident("derive")
                && matches!(&attribute.meta, syn::Meta::List(list)
                    if list.tokens.to_string().contains("EncodeLabelSet"))
        });
        if !derives_labels {
            continue;
        }
        label_sets += 1;
        for field in &label_set.fields {
            let Some(name) = &field.ident else { continue };
            if names_an_unbounded_value(&name.to_string()) {
                violations.push(format!(
                    "{}:{}: label `{name}` of `{}`",
                    shown(&metrics),
                    name.span().start().line,
                    label_set.ident
                ));
            }
        }
    }
    assert!(label_sets > 3, "no label sets found in src/metrics.rs");
    // The gauges read at scrape time name their labels where they are
    // registered.
    let mut gauge_labels = 0;
    for file in rust_files(&src()) {
        let mut gauges = GaugeSets::default();
        gauges.visit_file(&parse(&file));
        for (name, line) in gauges.labels.found {
            gauge_labels += 1;
            if names_an_unbounded_value(&name) {
                violations.push(format!("{}:{line}: gauge label `{name}`", shown(&file)));
            }
        }
    }
    assert!(gauge_labels > 2, "no gauge labels found");
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

/// Finds `impl Run` blocks and async code.
#[derive(Default)]
struct Shapes {
    /// Lines of `impl Run` (or `impl … for Run`) blocks.
    run_impls: Vec<usize>,
    /// Lines of `async fn`, `async` blocks and `.await`.
    asyncs: Vec<usize>,
}

impl<'ast> Visit<'ast> for Shapes {
    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if let syn::Type::Path(path) = item.self_ty.as_ref()
            && path.path.segments.last().is_some_and(|s| s.ident == "Run")
        {
            self.run_impls.push(item.impl_token.span.start().line);
        }
        visit::visit_item_impl(self, item);
    }

    fn visit_signature(&mut self, signature: &'ast syn::Signature) {
        if let Some(token) = &signature.asyncness {
            self.asyncs.push(token.span.start().line);
        }
        visit::visit_signature(self, signature);
    }

    fn visit_expr_await(&mut self, expr: &'ast syn::ExprAwait) {
        self.asyncs.push(expr.await_token.span.start().line);
        visit::visit_expr_await(self, expr);
    }

    fn visit_expr_async(&mut self, expr: &'ast syn::ExprAsync) {
        self.asyncs.push(expr.async_token.span.start().line);
        visit::visit_expr_async(self, expr);
    }
}

fn shapes(file: &Path) -> Shapes {
    let mut shapes = Shapes::default();
    shapes.visit_file(&parse(file));
    shapes
}

#[test]
fn only_the_run_folder_implements_run() {
    let run_folder = src().join("agent").join("run");
    let mut found = 0;
    let mut violations = Vec::new();
    for file in rust_files(&src()) {
        for line in shapes(&file).run_impls {
            found += 1;
            if !file.starts_with(&run_folder) {
                violations.push(format!(
                    "{}:{line}: `impl Run` outside src/agent/run/",
                    shown(&file)
                ));
            }
        }
    }
    assert!(found > 0, "no `impl Run` found at all");
    assert!(violations.is_empty(), "\n{}\n", violations.join("\n"));
}

#[test]
fn the_transcript_is_pure() {
    let mut violations = Vec::new();
    for file in module_files("agent/transcript") {
        for line in shapes(&file).asyncs {
            violations.push(format!(
                "{}:{line}: async code in the transcript",
                shown(&file)
            ));
        }
        for (path, line) in named(&file).paths {
            if path.last().is_some_and(|s| s == "Run") {
                violations.push(format!("{}:{line}: names a `Run`", shown(&file)));
            }
        }
    }
    assert!(violations.is_empty(), "\n{}\n", violations.join("\n"));
}

/// The units a folder is made of, for import circles: each file beside
/// `mod.rs` (or `lib.rs`) and each subfolder, with its files. `foo.rs` and
/// `foo/` are one unit. The folder's `mod.rs` is its face, not a unit: it
/// declares and re-exports its children, and they use what it defines.
fn units(folder: &Path) -> Vec<(String, Vec<PathBuf>)> {
    let mut units: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("readable source directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .expect("a named entry")
            .to_string_lossy()
            .into_owned();
        let files = if path.is_dir() {
            rust_files(&path)
        } else if path.extension().is_some_and(|e| e == "rs")
            && !matches!(name.as_str(), "mod" | "lib" | "main")
        {
            vec![path.clone()]
        } else {
            continue;
        };
        match units.iter_mut().find(|(n, _)| *n == name) {
            Some((_, known)) => known.extend(files),
            None => units.push((name, files)),
        }
    }
    units
}

/// Every import circle among the units of every folder of the crate (the
/// top-level modules are the units of `src/`), as `folder/: a ⇄ b`. Tests
/// do not count: a test module may use the whole folder.
fn import_circles() -> Vec<String> {
    let mut folders = vec![src()];
    let mut i = 0;
    while i < folders.len() {
        let mut inner: Vec<PathBuf> = std::fs::read_dir(&folders[i])
            .expect("readable source directory")
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.is_dir())
            .collect();
        inner.sort();
        folders.extend(inner);
        i += 1;
    }
    let mut circles = Vec::new();
    for folder in folders {
        let units = units(&folder);
        let face = module_of(&folder.join("mod.rs"));
        // edges[a] holds b when a file of unit a names a path into unit b.
        let edges: Vec<Vec<usize>> = units
            .iter()
            .enumerate()
            .map(|(a, (_, files))| {
                let mut to = Vec::new();
                for file in files {
                    for (path, _) in named_outside_tests(file).paths {
                        if path.len() <= face.len() || path[..face.len()] != face[..] {
                            continue;
                        }
                        if let Some(b) = units.iter().position(|(n, _)| *n == path[face.len()])
                            && b != a
                            && !to.contains(&b)
                        {
                            to.push(b);
                        }
                    }
                }
                to
            })
            .collect();
        // A unit is in a circle with every unit it reaches that reaches it.
        let reach = |from: usize| {
            let mut seen = vec![false; units.len()];
            let mut stack = edges[from].clone();
            while let Some(n) = stack.pop() {
                if !seen[n] {
                    seen[n] = true;
                    stack.extend(edges[n].iter().copied());
                }
            }
            seen
        };
        let reached: Vec<Vec<bool>> = (0..units.len()).map(reach).collect();
        let mut grouped = vec![false; units.len()];
        for a in 0..units.len() {
            if grouped[a] || !reached[a][a] {
                continue;
            }
            let group: Vec<&str> = (0..units.len())
                .filter(|&b| reached[a][b] && reached[b][a])
                .inspect(|&b| grouped[b] = true)
                .map(|b| units[b].0.as_str())
                .collect();
            circles.push(format!("{}/: {}", shown(&folder), group.join(" ⇄ ")));
        }
    }
    circles
}

#[test]
fn no_import_circles() {
    let circles = import_circles();
    println!("import circles: {}", circles.len());
    assert!(circles.is_empty(), "\n{}\n", circles.join("\n"));
}
