//! Requests an attacker shapes by hand: a widget action that names no
//! widget or carries a huge payload, a JWT that marks an unknown extension
//! critical or whose claims the library cannot read, bodies that are not
//! JSON, and paths, methods and bodies the router itself refuses. Each is
//! refused with a JSON error in the daemon's one shape, whose message says
//! what is wrong in fixed words (never a library's type names), and
//! nothing is stored. A thread deleted while its tool server's question
//! waits is an expected event: no ERROR line.

use std::time::Duration;

use base64::Engine;
use chatkitd_testkit::{FakeToolCall, Script};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Answer, Backend, Daemon, create_body, eventually, fake_mcp_server_toml};

/// The development user of `auth.mode = "none"`.
const USER: &str = "dev";

/// The HMAC secret of the daemons that verify JWTs here.
const SECRET: &str = "hostile-requests-secret-of-at-least-32-bytes";

/// Words of library internals that no error message may carry.
const INTERNALS: [&str; 8] = [
    "Error(",
    "ErrorKind",
    "InvalidClaimFormat",
    "MissingRequiredClaim",
    "Json(",
    "Base64",
    "expected `",
    "struct ",
];

/// The fake tool server with a tool-bound action on its `echo` tool.
fn action_toml(extra: &str) -> String {
    format!(
        "{}\n[actions.\"fake.echo\"]\nserver = \"fake\"\ntool = \"echo\"\n{extra}",
        fake_mcp_server_toml()
    )
}

/// A widget action request of `kind` (`threads.custom_action` or
/// `threads.sync_custom_action`).
fn action(kind: &str, thread_id: &str, item_id: Option<&str>, payload: Value) -> Value {
    let mut params =
        json!({"thread_id": thread_id, "action": {"type": "fake.echo", "payload": payload}});
    if let Some(item_id) = item_id {
        params["item_id"] = json!(item_id);
    }
    json!({"type": kind, "params": params})
}

/// A request with `method` to `url` (absolute), with `body`: the answer
/// read without assuming its shape.
async fn send(method: reqwest::Method, url: &str, body: Vec<u8>) -> Answer {
    let response = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request sent");
    Answer::read(response).await
}

/// Asserts the daemon's JSON error shape with `status`; returns the message.
fn json_error(answer: &Answer, status: u16, what: &str) -> String {
    assert_eq!(answer.status, status, "{what}: {}", answer.text);
    assert!(
        answer
            .header("content-type")
            .starts_with("application/json"),
        "{what}: content-type {:?}, body {:?}",
        answer.header("content-type"),
        answer.text
    );
    let code = answer.json["error"]["code"].as_str().unwrap_or_default();
    let message = answer.json["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !code.is_empty() && !message.is_empty(),
        "{what}: not {{\"error\":{{\"code\",\"message\"}}}}: {}",
        answer.text
    );
    assert_eq!(
        answer.json,
        json!({"error": {"code": code, "message": message}}),
        "{what}"
    );
    for internal in INTERNALS {
        assert!(
            !message.contains(internal),
            "{what}: {internal:?} in {message:?}"
        );
    }
    message
}

/// A tool-bound action must name the widget that offers it: without
/// `item_id`, nothing would check that the action was offered, and any
/// configured tool would run with any payload. Refused before the tool
/// runs (nothing is stored), streaming or not.
async fn a_tool_bound_action_without_its_widget_is_refused(backend: Backend) {
    let daemon = Daemon::binary(backend, &action_toml("")).await;
    daemon.llm.push(Script::text(["Hello."]));
    let (thread_id, _) = daemon.create_thread("hi").await;
    let stored = daemon.stored_items(USER, &thread_id).await.len();
    for kind in ["threads.sync_custom_action", "threads.custom_action"] {
        let body = action(kind, &thread_id, None, json!({"text": "anything"}));
        let answer = daemon
            .post_raw_as(None, serde_json::to_vec(&body).expect("json"))
            .await;
        let message = json_error(&answer, 400, kind);
        assert!(
            message.contains("`item_id`") && message.contains("echo"),
            "{kind}: {message}"
        );
    }
    assert_eq!(
        daemon.stored_items(USER, &thread_id).await.len(),
        stored,
        "nothing ran, nothing was stored"
    );
    daemon.stop().await;
}

/// A payload longer than `max_message_chars` characters of JSON is refused
/// with the limit named, whether or not it names a widget, before anything
/// is loaded or stored.
async fn an_oversized_action_payload_is_refused_before_storage(backend: Backend) {
    let daemon = Daemon::binary(
        backend,
        &action_toml("[limits]\nmax_message_chars = 1000\n"),
    )
    .await;
    daemon.llm.push(Script::text(["Hello."]));
    let (thread_id, streamed) = daemon.create_thread("hi").await;
    let answer_id = streamed
        .done_items()
        .iter()
        .find(|item| item["type"] == "assistant_message")
        .and_then(|item| item["id"].as_str())
        .expect("an answer")
        .to_owned();
    let stored = daemon.stored_items(USER, &thread_id).await.len();
    let junk = json!({"text": "x", "junk": "j".repeat(200_000)});
    for kind in ["threads.sync_custom_action", "threads.custom_action"] {
        for item in [None, Some(answer_id.as_str())] {
            let body = action(kind, &thread_id, item, junk.clone());
            let answer = daemon
                .post_raw_as(None, serde_json::to_vec(&body).expect("json"))
                .await;
            let message = json_error(&answer, 400, kind);
            assert!(
                message.contains("at most 1000 characters"),
                "{kind} {item:?}: {message}"
            );
        }
    }
    assert_eq!(
        daemon.stored_items(USER, &thread_id).await.len(),
        stored,
        "nothing of the payload was stored"
    );
    daemon.stop().await;
}

both_backends!(
    a_tool_bound_action_without_its_widget_is_refused,
    an_oversized_action_payload_is_refused_before_storage,
);

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token of exactly this header and these claims (any bytes), signed
/// with HS256 and [`SECRET`].
fn signed_token(header: &Value, claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        base64url(header.to_string().as_bytes()),
        base64url(claims)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
            .expect("signed");
    format!("{message}.{signature}")
}

fn in_an_hour() -> u64 {
    jsonwebtoken::get_current_timestamp() + 3600
}

/// RFC 7515 §4.1.11: a token whose `crit` names an extension the daemon
/// does not understand is refused, though its signature verifies. Refused
/// tokens are told why in fixed words: an `exp` too large for a
/// NumericDate is not "missing", a claim the library cannot read does not
/// show its type names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refused_in_plain_words_and_crit_is_honoured() {
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &format!("[auth]\nmode = \"jwt\"\nsecret = \"{SECRET}\"\n"),
    )
    .await;
    let list = serde_json::to_vec(&json!({"type": "threads.list", "params": {}})).expect("json");
    let plain = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({"sub": "alice", "exp": in_an_hour()}).to_string();
    let good = signed_token(&plain, claims.as_bytes());
    let answer = daemon
        .post_raw_as(Some(&format!("Bearer {good}")), list.clone())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);

    let critical = json!({"alg": "HS256", "typ": "JWT", "crit": ["x-unknown"], "x-unknown": true});
    let nbf_text = json!({"sub": "alice", "exp": in_an_hour(), "nbf": "soon"}).to_string();
    let cases: Vec<(&str, String, &str)> = vec![
        ("crit", signed_token(&critical, claims.as_bytes()), "`crit`"),
        (
            "exp 1e30",
            signed_token(&plain, br#"{"sub":"alice","exp":1e30}"#),
            "the `exp` claim is not a NumericDate",
        ),
        (
            "exp missing",
            signed_token(&plain, br#"{"sub":"alice"}"#),
            "the `exp` claim is missing",
        ),
        (
            "nbf not a number",
            signed_token(&plain, nbf_text.as_bytes()),
            "the `nbf` claim is not a NumericDate",
        ),
        (
            "claims not JSON",
            signed_token(&plain, br#"{"sub":"alice" "exp":1}"#),
            "its claims are not a JSON object",
        ),
        (
            "header not JSON",
            format!("{}.e30.c2ln", base64url(br#"{"alg":"#)),
            "its header is not a JSON object",
        ),
        (
            "header not base64url",
            "!!!.e30.c2ln".to_owned(),
            "its header is not base64url",
        ),
    ];
    for (what, token, expected) in cases {
        let answer = daemon
            .post_raw_as(Some(&format!("Bearer {token}")), list.clone())
            .await;
        let message = json_error(&answer, 401, what);
        assert!(message.contains(expected), "{what}: {message}");
        assert!(!answer.text.contains(&token), "{what}: the token is echoed");
    }
    daemon.stop().await;
}

/// A body that is not JSON is told where it stops being JSON, not in the
/// parser's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_is_told_where_in_fixed_words() {
    let daemon = Daemon::binary(Backend::Sqlite, "").await;
    let cases: [(&[u8], &str); 3] = [
        (
            br#"{"type": "threads.list" "params": {}}"#,
            "the request body is not valid JSON (line 1, column 25)",
        ),
        (
            br#"{"type": "threads.list", "params": {"#,
            "the request body is not valid JSON: it ends too early (line 1, column 36)",
        ),
        (
            b"\xff\xfe",
            "the request body is not valid JSON (line 1, column 1)",
        ),
    ];
    for (body, expected) in cases {
        let answer = daemon.post_raw_as(None, body.to_vec()).await;
        let message = json_error(&answer, 400, &String::from_utf8_lossy(body));
        assert_eq!(message, expected);
    }
    daemon.stop().await;
}

/// What the router refuses by itself is a JSON error too, in the daemon's
/// one shape: an unknown route, a method a route does not take (with its
/// `Allow`), an attachment id that is not UTF-8 once decoded, on both
/// attachment routes, and a body over `max_body_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_the_router_answers_is_json() {
    let daemon = Daemon::binary(Backend::Sqlite, "[server]\nmax_body_bytes = 4096\n").await;
    let attachments = format!("{}/attachments", daemon.url);
    let cases = [
        (
            "unknown route",
            reqwest::Method::GET,
            format!("{}/no/such/route", daemon.base),
            Vec::new(),
            404,
        ),
        (
            "unknown route, POST",
            reqwest::Method::POST,
            format!("{}/v1/chat", daemon.base),
            b"{}".to_vec(),
            404,
        ),
        (
            "GET on the ChatKit endpoint",
            reqwest::Method::GET,
            daemon.url.clone(),
            Vec::new(),
            405,
        ),
        (
            "invalid UTF-8 preview id",
            reqwest::Method::GET,
            format!("{attachments}/%FF%FE/preview"),
            Vec::new(),
            400,
        ),
        (
            "invalid UTF-8 upload id",
            reqwest::Method::PUT,
            format!("{attachments}/atc_%C3%28/upload"),
            b"bytes".to_vec(),
            400,
        ),
        (
            "a body over max_body_bytes",
            reqwest::Method::POST,
            daemon.url.clone(),
            serde_json::to_vec(&create_body(&"x".repeat(8192))).expect("json"),
            413,
        ),
    ];
    for (what, method, url, body, status) in cases {
        let answer = send(method, &url, body).await;
        json_error(&answer, status, what);
        if status == 405 {
            assert!(
                answer.header("allow").contains("POST"),
                "{what}: Allow {:?}",
                answer.header("allow")
            );
        }
    }
    // The daemon still answers.
    let (status, _) = daemon.get("/healthz").await;
    assert_eq!(status, 200);
    daemon.stop().await;
}

/// A thread deleted while its tool server's question waits ends the
/// question's call and the run; it is what a user does, not a failure, so
/// the daemon logs no ERROR for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_deleted_while_its_question_waits_logs_no_error() {
    let daemon = Daemon::binary(
        Backend::Sqlite,
        &format!(
            "{}\n[limits]\nmax_concurrent_runs_per_user = 1\n",
            fake_mcp_server_toml()
        ),
    )
    .await;
    let ask = json!({
        "message": "Which color?",
        "schema": {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "blue"]}}, "required": ["color"]}
    });
    daemon.llm.push(Script::ToolCalls {
        calls: vec![FakeToolCall::new("call_1", "ask", ask.to_string())],
    });
    let (thread_id, asked) = daemon.create_thread("ask me").await;
    assert!(
        asked
            .done_items()
            .iter()
            .any(|item| item["type"] == "structured_input"),
        "{}",
        asked.raw
    );
    let (status, deleted) = daemon
        .post(json!({"type": "threads.delete", "params": {"thread_id": thread_id}}))
        .await;
    assert_eq!(status, 200, "{deleted}");
    // The run has ended once the user's only run slot is free again.
    daemon.llm.push(Script::text(["Hello."]));
    let freed = eventually(Duration::from_secs(10), || async {
        daemon.post(create_body("another thread")).await.0 != 429
    })
    .await;
    assert!(freed, "the run ended");
    let log = daemon.log();
    assert!(
        !log.lines().any(|line| line.contains("ERROR")),
        "an ERROR for a deleted thread:\n{log}"
    );
    daemon.stop().await;
}
