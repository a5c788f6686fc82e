//! Tests of loading `agent.toml`: defaults, every section's validation with
//! the file, line and key of each error, environment overrides and
//! interpolation.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

mod agents;
mod llm;

fn load_in(dir: &str, text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml(text, "agent.toml", PathBuf::from(dir), &move |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load_in(".", text, vars)
}

#[test]
fn empty_file_gets_working_defaults() {
    let config = load("", &[]).expect("defaults are valid");
    assert_eq!(
        config.server.listen,
        SocketAddr::from(([127, 0, 0, 1], 8000))
    );
    assert_eq!(
        StoreConfig::default().url.to_string(),
        "sqlite://chatkitd.db"
    );
    assert_eq!(config.store.url.connect_url(), "sqlite://./chatkitd.db");
    assert_eq!(config.server.max_body_bytes, 10 * 1024 * 1024);
    assert!(config.llm.api_key.is_none());
}

#[test]
fn interpolates_and_environment_overrides() {
    let text = "[llm]\nmodel = \"${MODEL}\"\nbase_url = \"${BASE:-http://localhost:11434/v1}\"\n# api_key = \"${UNSET}\"\n";
    let config = load(text, &[("MODEL", "llama\"3"), ("OPENAI_API_KEY", "sk-x")]).expect("valid");
    assert_eq!(config.llm.model, "llama\"3");
    assert_eq!(config.llm.base_url, "http://localhost:11434/v1");
    assert_eq!(config.llm.api_key.as_deref(), Some("sk-x"));
    let config = load("", &[("DATABASE_URL", "postgres://db/x")]).expect("valid");
    assert_eq!(
        config.store.url,
        StoreUrl::Postgres("postgres://db/x".to_owned())
    );
}

#[test]
fn the_environment_wins_over_the_file() {
    let text = "[store]\nurl = \"sqlite://file.db\"\n[llm]\napi_key = \"from-file\"\nbase_url = \"http://file/v1\"\n";
    let config = load(text, &[]).expect("valid");
    assert_eq!(config.llm.api_key.as_deref(), Some("from-file"));
    let vars = [
        ("DATABASE_URL", "sqlite://env.db"),
        ("OPENAI_API_KEY", "from-env"),
        ("OPENAI_BASE_URL", "http://env/v1"),
    ];
    let config = load_in("/srv", text, &vars).expect("valid");
    assert_eq!(config.store.url.connect_url(), "sqlite:///srv/env.db");
    assert_eq!(config.llm.api_key.as_deref(), Some("from-env"));
    assert_eq!(config.llm.base_url, "http://env/v1");
    // Set but empty is not set.
    let config = load(text, &[("OPENAI_API_KEY", "")]).expect("valid");
    assert_eq!(config.llm.api_key.as_deref(), Some("from-file"));
    let err = load("", &[("DATABASE_URL", "mysql://db")]).expect_err("bad url");
    assert_eq!(
        err.to_string(),
        "agent.toml: `store.url`: DATABASE_URL \"mysql://db\": must start with sqlite:, postgres:// or postgresql://"
    );
}

#[test]
fn interpolated_values_are_literal() {
    let text = "[agent]\nname = \"${NAME}\" # ${NOT_READ}\n[mcp_servers.x]\ncommand = \"x\"\nargs = [\"${ARG}\"]\nenv = { K = '${V:-a \"b\" \\c}' }\n";
    let name = r#"Tom "the \n bot" \"#;
    let config = load(text, &[("NAME", name), ("ARG", "--flag=\"1\"")]).expect("valid");
    assert_eq!(config.agent.name, name);
    let server = &config.mcp_servers["x"];
    assert_eq!(server.args, ["--flag=\"1\""]);
    assert_eq!(server.env["K"], r#"a "b" \c"#);
}

#[test]
fn interpolated_strings_become_numbers_where_a_key_wants_one() {
    let text = "[limits]\nburst = \"${BURST:-7}\"\n[llm]\ntemperature = \"${T}\"\nstream_usage = \"${USAGE}\"\nmodel = \"${MODEL}\"\n";
    let vars = [("T", "0.5"), ("USAGE", "false"), ("MODEL", "42")];
    let config = load(text, &vars).expect("valid");
    assert_eq!(config.limits.burst, 7);
    assert_eq!(config.llm.temperature, Some(0.5));
    assert!(!config.llm.stream_usage);
    assert_eq!(config.llm.model, "42");
    // A written string stays one.
    let err = load("[limits]\nburst = \"7\"\n", &[]).expect_err("a string");
    assert!(
        err.to_string()
            .starts_with("agent.toml:2: `limits.burst`: "),
        "{err}"
    );
    let err = load("[limits]\nburst = \"${B}\"\n", &[("B", "many")]).expect_err("no number");
    assert!(
        err.to_string()
            .starts_with("agent.toml:2: `limits.burst`: "),
        "{err}"
    );
    let err = load("[server]\nlisten = \"${PORT}\"\n", &[("PORT", "8000")]).expect_err("port");
    assert_eq!(
        err.to_string(),
        "agent.toml:2: `server.listen`: \"8000\" is not HOST:PORT with a numeric host"
    );
}

#[test]
fn errors_name_file_line_and_key() {
    let err = load("[llm]\nmodel = \"${NOPE}\"\n", &[]).expect_err("unset");
    assert_eq!(
        err.to_string(),
        "agent.toml:2: environment variable NOPE is not set (use ${NOPE:-default} for a fallback)"
    );
    let err = load("[server]\nlisten = \"localhost\"\n", &[]).expect_err("bad addr");
    assert_eq!(
        err.to_string(),
        "agent.toml:2: `server.listen`: \"localhost\" is not HOST:PORT with a numeric host"
    );
    let err = load("[server]\nmax_body_bytes = \"big\"\n", &[]).expect_err("bad type");
    assert!(err.to_string().starts_with("agent.toml:2: "), "{err}");
    let err = load("[llm]\nmodle = \"x\"\n", &[]).expect_err("typo");
    assert!(err.to_string().contains("modle"), "{err}");
    assert!(err.to_string().starts_with("agent.toml:2: "), "{err}");
    let err = load("[store]\nurl = \"mysql://x\"\n", &[]).expect_err("bad url");
    assert!(err.to_string().contains("store.url"), "{err}");
    assert!(err.to_string().starts_with("agent.toml:2: "), "{err}");
    for url in ["http://", "https://exa mple.com/v1", "http://[::1/v1"] {
        let err = load(&format!("[llm]\nbase_url = \"{url}\"\n"), &[]).expect_err(url);
        assert_eq!(
            err.to_string(),
            format!("agent.toml:2: `llm.base_url`: {url:?} is not an http(s) URL")
        );
    }
}

#[test]
fn size_limits_must_allow_something() {
    for (key, value) in [
        ("max_message_chars", 0),
        ("max_list_bytes", 1023),
        ("max_feedback_items", 0),
    ] {
        let err = load(&format!("[limits]\n{key} = {value}\n"), &[]).expect_err("refused");
        assert!(err.to_string().contains(&format!("limits.{key}")), "{err}");
        assert!(err.to_string().starts_with("agent.toml:2: "), "{err}");
    }
}

#[test]
fn server_limits_have_defaults_and_must_be_positive() {
    let server = load("", &[]).expect("defaults are valid").server;
    assert_eq!(
        (
            server.stream_write_timeout,
            server.header_read_timeout,
            server.idle_timeout,
            server.body_read_timeout,
            server.max_connections,
        ),
        (
            Duration::from_secs(30),
            Duration::from_secs(30),
            Duration::from_secs(30),
            Duration::from_secs(30),
            4096,
        )
    );
    let err = load("[server]\nstream_write_timeout = \"0s\"\n", &[]).expect_err("zero");
    assert_eq!(
        err.to_string(),
        "agent.toml:2: `server.stream_write_timeout`: must not be 0"
    );
    for (toml, expected) in [
        (
            "max_connections = 0",
            "`server.max_connections`: must be at least 1",
        ),
        (
            "listen_backlog = 0",
            "`server.listen_backlog`: must be 1 to 65535",
        ),
        (
            "listen_backlog = 65536",
            "`server.listen_backlog`: must be 1 to 65535",
        ),
    ] {
        let err = load(&format!("[server]\n{toml}\n"), &[]).expect_err(toml);
        assert_eq!(err.to_string(), format!("agent.toml:2: {expected}"));
    }
}

#[test]
fn questions_wait_ten_minutes_unless_told_and_never_zero() {
    let config = load("", &[]).expect("defaults");
    assert_eq!(config.agent.question_timeout, Duration::from_secs(600));
    let config = load("[agent]\nquestion_timeout = \"90s\"\n", &[]).expect("valid");
    assert_eq!(config.agent.question_timeout, Duration::from_secs(90));
    let err = load("[agent]\nquestion_timeout = \"0s\"\n", &[]).expect_err("zero");
    assert!(
        err.to_string()
            .contains("`agent.question_timeout`: must be positive"),
        "{err}"
    );
    let err = load("[agent]\nquestion_timeout = 600\n", &[]).expect_err("a number");
    assert!(err.to_string().contains("question_timeout"), "{err}");
}

#[test]
fn errors_deep_in_the_file_name_their_line() {
    let head = "[llm]\nmodel = \"m\"\n\n# tools\n[mcp_servers.x]\ncommand = \"x\"\n";
    let err = load(&format!("{head}min_idle = 9\n"), &[]).expect_err("too many");
    assert_eq!(
        err.to_string(),
        "agent.toml:7: `mcp_servers.x.min_idle`: must not exceed max_instances (4)"
    );
    let err = load(&format!("{head}max_instances = 0\n"), &[]).expect_err("none");
    assert_eq!(
        err.to_string(),
        "agent.toml:7: `mcp_servers.x.max_instances`: must be at least 1"
    );
    let err = load(&format!("{head}max_total_instances = 0\n"), &[]).expect_err("none");
    assert_eq!(
        err.to_string(),
        "agent.toml:7: `mcp_servers.x.max_total_instances`: must be at least 1"
    );
    // Broken by a default: the server's table is the place.
    let err = load(&format!("{head}startup_timeout = \"0s\"\n"), &[]).expect_err("zero");
    assert_eq!(
        err.to_string(),
        "agent.toml:5: `mcp_servers.x.call_timeout`: timeouts must be positive"
    );
    let err = load(&format!("{head}min_idle = 0\nmodle = 1\n"), &[]).expect_err("typo");
    assert!(err.to_string().starts_with("agent.toml:8: "), "{err}");
    assert!(err.to_string().contains("modle"), "{err}");
    let err = load(&format!("{head}call_timeout = 5\n"), &[]).expect_err("bad type");
    assert!(
        err.to_string()
            .starts_with("agent.toml:7: `mcp_servers.x.call_timeout`: "),
        "{err}"
    );
    let err = load("[mcp_servers.x]\nargs = []\n", &[]).expect_err("no command");
    assert_eq!(
        err.to_string(),
        "agent.toml:1: `mcp_servers.x.command`: set `command` (a program to spawn) or `url` (a streamable HTTP server)"
    );
}

#[test]
fn model_stream_limits_have_defaults_and_ranges() {
    let config = load("", &[]).expect("defaults are valid");
    assert_eq!(config.llm.max_tool_calls, 32);
    assert_eq!(config.llm.max_tool_arguments_bytes, 1024 * 1024);
    assert_eq!(config.llm.max_answer_bytes, 1024 * 1024);
    let cases = [
        (
            "max_tool_calls = 0",
            "`llm.max_tool_calls`: must be from 1 to 128",
        ),
        (
            "max_tool_calls = 129",
            "`llm.max_tool_calls`: must be from 1 to 128",
        ),
        (
            "max_tool_arguments_bytes = 1023",
            "`llm.max_tool_arguments_bytes`: must be at least 1024",
        ),
        (
            "max_answer_bytes = 10",
            "`llm.max_answer_bytes`: must be at least 1024",
        ),
    ];
    for (line, message) in cases {
        let err = load(&format!("[llm]\n{line}\n"), &[]).expect_err(line);
        assert_eq!(err.to_string(), format!("agent.toml:2: {message}"));
    }
    let text = "[llm]\nmax_tool_calls = 128\nmax_answer_bytes = 1024\n";
    let config = load(text, &[]).expect("the bounds themselves are valid");
    assert_eq!(config.llm.max_tool_calls, 128);
}

#[test]
fn inject_sources_are_an_enum() {
    let text = "[mcp_servers.x]\ncommand = \"x\"\n\ninject = { user_id = \"user.id\" }\n";
    let config = load(text, &[]).expect("valid");
    assert_eq!(
        config.mcp_servers["x"].inject["user_id"],
        InjectSource::UserId
    );
    let text = "[mcp_servers.x]\ncommand = \"x\"\n\ninject = { user_id = \"user.name\" }\n";
    let err = load(text, &[]).expect_err("unknown source");
    let err = err.to_string();
    assert!(
        err.starts_with("agent.toml:4: `mcp_servers.x.inject.user_id`: "),
        "{err}"
    );
    assert!(
        err.contains("user.name") && err.contains("`user.id`"),
        "{err}"
    );
}

#[test]
fn jwt_needs_exactly_one_key_source() {
    let secret = "s".repeat(32);
    let one = format!("[auth]\nmode = \"jwt\"\nsecret = \"{secret}\"\n");
    let config = load(&one, &[]).expect("valid");
    assert_eq!(config.auth.key_source(), Ok(KeySource::Secret(&secret)));
    let two = format!("{one}jwks_url = \"https://idp/jwks\"\n");
    let err = load(&two, &[]).expect_err("two sources");
    assert_eq!(
        err.to_string(),
        "agent.toml:2: `auth.mode`: mode = \"jwt\" needs exactly one of secret, public_key_file or jwks_url"
    );
    let err = load("[auth]\nmode = \"jwt\"\n", &[]).expect_err("no source");
    assert!(err.to_string().contains("exactly one"), "{err}");
}

#[test]
fn development_auth_stays_on_loopback() {
    let mut auth = AuthConfig::default();
    let public = SocketAddr::from(([0, 0, 0, 0], 8000));
    assert!(auth.permits_listen(SocketAddr::from(([127, 0, 0, 1], 8000))));
    assert!(!auth.permits_listen(public));
    auth.allow_insecure_none_auth = true;
    assert!(auth.permits_listen(public));
    auth.allow_insecure_none_auth = false;
    auth.mode = AuthMode::Jwt;
    assert!(auth.permits_listen(public));
}

#[test]
fn relative_sqlite_paths_resolve_against_the_config_dir() {
    let config = load_in("/etc/chatkitd", "", &[]).expect("valid");
    assert_eq!(
        config.store.url.connect_url(),
        "sqlite:///etc/chatkitd/chatkitd.db"
    );
    let text = "[store]\nurl = \"sqlite:///var/lib/c.db\"\n";
    let config = load_in("/etc/chatkitd", text, &[]).expect("valid");
    assert_eq!(config.store.url.connect_url(), "sqlite:///var/lib/c.db");
}

#[test]
fn the_shipped_file_loads() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(Path::new(dir).join("agent.toml")).expect("shipped");
    let config = load_in(dir, &text, &[("CHATKITD_REQUESTS_PER_MINUTE", "60")])
        .expect("the shipped file is valid");
    assert_eq!(config.limits.max_concurrent_runs_per_user, 4);
    assert_eq!(config.limits.requests_per_minute_per_user, 60);
    assert_eq!(config.server.max_concurrent_runs, 0);
}

#[test]
fn the_retired_store_run_cap_still_loads() {
    let text = "[store]\nmax_concurrent_runs = 64\n[server]\nmax_concurrent_runs = 500\n";
    let config = load_in("/etc/chatkitd", text, &[]).expect("older files still load");
    assert_eq!(config.store.max_concurrent_runs, Some(64));
    assert_eq!(config.server.max_concurrent_runs, 500);
}

#[test]
fn interactive_keys_load_with_their_defaults() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(Path::new(dir).join("agent.toml")).expect("shipped");
    let config = load_in(dir, &text, &[]).expect("valid");
    let tasks = &config.mcp_servers["tasks"];
    assert_eq!(tasks.approval, Approval::Destructive);
    assert_eq!(
        tasks.tools["list_tasks"].widget.as_deref(),
        Some(Path::new("widgets/task-list.widget"))
    );
    assert_eq!(
        config.actions["tasks.complete"].target(),
        Some(ActionTarget::Tool {
            server: "tasks",
            tool: "complete_task"
        })
    );
    let text = "[client_tools.get_location]\ndescription = \"Where the user is.\"\n";
    let config = load(text, &[]).expect("valid");
    assert_eq!(
        config.client_tools["get_location"].parameters,
        serde_json::json!({"type": "object", "properties": {}})
    );
    let text = "[mcp_servers.s]\ncommand = \"x\"\napproval = \"always\"\n[mcp_servers.s.tools.t]\napproval = \"never\"\n";
    let config = load(text, &[]).expect("valid");
    assert_eq!(config.mcp_servers["s"].approval, Approval::Always);
    assert_eq!(
        config.mcp_servers["s"].tools["t"].approval,
        Some(Approval::Never)
    );
}

#[test]
fn interactive_keys_are_checked_with_their_line() {
    let server = "[mcp_servers.tasks]\ncommand = \"tasks-mcp\"\n";
    let cases = [
        (
            format!("{server}[mcp_servers.tasks.tools.list_tasks]\nwidget = \"missing.widget\"\n"),
            "agent.toml:4: `mcp_servers.tasks.tools.list_tasks.widget`: ./missing.widget is not a file",
        ),
        (
            format!("{server}[actions.\"a\"]\nserver = \"tasks\"\ntool = \"x\"\nmessage = \"m\"\n"),
            "agent.toml:3: `actions.a`: give either `server` and `tool` (the action calls that tool) or `message` (the agent answers it)",
        ),
        (
            format!("{server}[actions.\"a\"]\nserver = \"other\"\ntool = \"x\"\n"),
            "agent.toml:4: `actions.a.server`: no tool server named \"other\" is configured",
        ),
        (
            format!("{server}[actions.\"tool.approve\"]\nmessage = \"yes\"\n"),
            "agent.toml:3: `actions.tool.approve`: this action type belongs to the approval card and cannot be bound",
        ),
        (
            format!("{server}[actions.\"a\"]\nmessage = \"  \"\n"),
            "agent.toml:4: `actions.a.message`: must not be empty",
        ),
        (
            "[client_tools.\"get location\"]\ndescription = \"d\"\n".to_owned(),
            "agent.toml:1: `client_tools.get location`: client tool names use 1 to 64 letters, digits, `_` and `-`",
        ),
        (
            "[client_tools.loc]\ndescription = \"\"\n".to_owned(),
            "agent.toml:2: `client_tools.loc.description`: must not be empty",
        ),
        (
            "[client_tools.loc]\ndescription = \"d\"\nparameters = { type = \"string\" }\n"
                .to_owned(),
            "agent.toml:3: `client_tools.loc.parameters`: must be a JSON schema with `type = \"object\"`",
        ),
    ];
    for (text, expected) in cases {
        let err = load(&text, &[]).expect_err(&text);
        assert_eq!(err.to_string(), expected, "{text}");
    }
    let err = load(
        "[mcp_servers.s]\ncommand = \"x\"\napproval = \"sometimes\"\n",
        &[],
    )
    .expect_err("unknown rule");
    assert!(err.to_string().starts_with("agent.toml:3: "), "{err}");
    assert!(err.to_string().contains("destructive"), "{err}");
}
