//! Authentication, per-user isolation and per-user limits over real HTTP:
//! bearer JWTs minted here (HMAC secrets, PEM public keys, a JWKS served by a
//! local test server whose keys rotate), the 401/429/503 answers, what two
//! users can and cannot see of each other, CORS and display claims.
//!
//! The key pairs under `tests/fixtures/keys/` are test-only and were made with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` (twice, for
//! rotation) and `openssl genpkey -algorithm EC -pkeyopt
//! ec_paramgen_curve:P-256`, public halves with `openssl pkey -pubout`.
//!
//! Why one file: each file under `tests/` is its own test binary, linked
//! against the whole daemon; this suite's scenarios share their fixtures,
//! and splitting them would add binaries to build and link in every CI run
//! without making any one scenario easier to find (each is a named test).

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatkitd::app::App;
use chatkitd::config::{AuthMode, Config};
use chatkitd::protocol::{IdKind, new_id};
use chatkitd_testkit::{FakeLlm, Script};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use sqlx::Row;
use support::{Answer, Backend, Daemon, create_body, user_input};

/// The HMAC secret of the daemons configured with `secret`.
const SECRET: &str = "chatkitd-e2e-auth-shared-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.example.com";
const AUDIENCE: &str = "chatkitd-tests";

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys")
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn rsa_key(n: u8) -> EncodingKey {
    EncodingKey::from_rsa_pem(&key_file(&format!("rsa{n}_private.pem"))).expect("RSA private key")
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&key_file("ec_private.pem")).expect("EC private key")
}

fn hmac_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET.as_bytes())
}

/// Claims valid for ten minutes for `sub`.
fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iat": now(), "exp": now() + 600})
}

/// `claims` with the configured issuer and audience.
fn claims_iss_aud(sub: &str) -> Value {
    let mut claims = claims(sub);
    claims["iss"] = json!(ISSUER);
    claims["aud"] = json!(AUDIENCE);
    claims
}

/// A JWT of `claims` signed with `key` by `alg`, with `kid` in the header.
fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("token encodes")
}

/// An HS256 token for `sub`, signed with [`SECRET`].
fn hs256(sub: &str) -> String {
    sign(Algorithm::HS256, None, &hmac_key(), &claims(sub))
}

/// Base64url without padding (RFC 7515).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An unsigned token: `{"alg":"none"}`, the claims, and an empty signature.
fn alg_none(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims.to_string().as_bytes())
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

fn jwt_secret(config: &mut Config) {
    config.auth.mode = AuthMode::Jwt;
    config.auth.secret = Some(SECRET.to_owned());
}

fn jwt_public_key(config: &mut Config, file: &str) {
    config.auth.mode = AuthMode::Jwt;
    config.auth.public_key_file = Some(keys_dir().join(file));
}

fn jwt_jwks(config: &mut Config, url: &str, min_refresh: Duration) {
    config.auth.mode = AuthMode::Jwt;
    config.auth.jwks_url = Some(url.to_owned());
    config.auth.jwks_min_refresh_interval = min_refresh;
}

// ---------------------------------------------------------------------------
// Requests and checks
// ---------------------------------------------------------------------------

fn list_body() -> Value {
    json!({"type": "threads.list", "params": {"limit": 100, "order": "desc"}})
}

fn request(kind: &str, params: Value) -> Value {
    json!({"type": kind, "params": params})
}

async fn post_with(daemon: &Daemon, authorization: Option<&str>, body: &Value) -> Answer {
    daemon
        .post_raw_as(authorization, serde_json::to_vec(body).expect("json"))
        .await
}

/// The problems with a 401 answer, if any: JSON content type, exactly
/// `{"error":{"code":"unauthorized","message":…}}`, a Bearer challenge, and
/// no echo of the token.
fn unauthorized_problems(answer: &Answer, token: Option<&str>) -> Option<String> {
    let mut problems = Vec::new();
    if answer.status != 401 {
        problems.push(format!("status {} (want 401)", answer.status));
    }
    if answer.header("content-type") != "application/json" {
        problems.push(format!("content-type {:?}", answer.header("content-type")));
    }
    let message = answer.json["error"]["message"].as_str().unwrap_or_default();
    if message.is_empty()
        || answer.json != json!({"error": {"code": "unauthorized", "message": message}})
    {
        problems.push("body is not {\"error\":{\"code\":\"unauthorized\",\"message\":…}}".into());
    }
    if !answer.header("www-authenticate").starts_with("Bearer") {
        problems.push(format!(
            "WWW-Authenticate {:?} does not start with Bearer",
            answer.header("www-authenticate")
        ));
    }
    if let Some(token) = token.filter(|t| t.len() > 16)
        && answer.text.contains(token)
    {
        problems.push("the answer echoes the token".into());
    }
    (!problems.is_empty()).then(|| format!("{}; body: {}", problems.join(", "), answer.text))
}

fn assert_unauthorized(answer: &Answer, what: &str) {
    if let Some(problem) = unauthorized_problems(answer, None) {
        panic!("{what}: {problem}");
    }
}

/// Asserts the JSON error shape with this status and code; returns the message.
fn assert_error(answer: &Answer, status: u16, code: &str) -> String {
    assert_eq!(
        (answer.status, answer.header("content-type").as_str()),
        (status, "application/json"),
        "answer: {}",
        answer.text
    );
    let message = answer.json["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {}", answer.text))
        .to_owned();
    assert_eq!(
        answer.json,
        json!({"error": {"code": code, "message": message}})
    );
    message
}

/// Thread ids `token`'s user sees in `threads.list`, newest first.
async fn listed_threads(daemon: &Daemon, token: &str) -> Vec<String> {
    let (status, page) = daemon.post_as(token, list_body()).await;
    assert_eq!(status, 200, "threads.list: {page}");
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|t| t["id"].as_str().expect("thread id").to_owned())
        .collect()
}

/// The `type`s of the items stored for `user` in a thread, oldest first.
async fn stored_types(daemon: &Daemon, user: &str, thread_id: &str) -> Vec<String> {
    daemon
        .stored_values(user, thread_id)
        .await
        .iter()
        .map(|i| i["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

type Rows = Vec<Vec<Option<String>>>;

/// A request naming some id, as a function of that id.
type BuildRequest<'a> = Box<dyn Fn(&str) -> Value + 'a>;

/// Every row of `threads`, `items` and `feedback`, every column as text.
async fn dump(daemon: &Daemon) -> BTreeMap<&'static str, Rows> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&daemon.store_url)
        .await
        .expect("database connects");
    let queries = [
        (
            "threads",
            "SELECT CAST(seq AS TEXT), id, user_id, CAST(created_at AS TEXT), title, \
             CAST(body AS TEXT) FROM threads ORDER BY seq",
        ),
        (
            "items",
            "SELECT CAST(seq AS TEXT), id, thread_id, user_id, item_type, CAST(hidden AS TEXT), \
             CAST(created_at AS TEXT), CAST(body AS TEXT) FROM items ORDER BY seq",
        ),
        (
            "feedback",
            "SELECT thread_id, item_id, user_id, kind, CAST(created_at AS TEXT) FROM feedback \
             ORDER BY thread_id, item_id, user_id",
        ),
    ];
    let mut tables = BTreeMap::new();
    for (table, sql) in queries {
        let rows = sqlx::query(sql)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("dump {table}: {e}"));
        let rows: Rows = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        row.try_get::<Option<String>, _>(i)
                            .unwrap_or_else(|e| panic!("{table} column {i}: {e}"))
                    })
                    .collect()
            })
            .collect();
        tables.insert(table, rows);
    }
    pool.close().await;
    tables
}

/// The number of rows in `threads` and `items`.
async fn row_counts(daemon: &Daemon) -> (usize, usize) {
    let tables = dump(daemon).await;
    (tables["threads"].len(), tables["items"].len())
}

/// Sends every refused `(label, Authorization)` as a `threads.create` and
/// returns what was not a proper 401.
async fn refused_problems(daemon: &Daemon, cases: &[(&str, Option<String>)]) -> Vec<String> {
    let mut problems = Vec::new();
    for (label, authorization) in cases {
        let answer = post_with(daemon, authorization.as_deref(), &create_body("let me in")).await;
        let token = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "));
        if let Some(problem) = unauthorized_problems(&answer, token) {
            problems.push(format!("{label}: {problem}"));
        }
    }
    problems
}

/// Nothing reached the model and nothing was stored.
async fn nothing_done_problems(daemon: &Daemon, good_token: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let requests = daemon.llm.requests().len();
    if requests != 0 {
        problems.push(format!("the fake LLM received {requests} request(s)"));
    }
    let listed = listed_threads(daemon, good_token).await;
    if !listed.is_empty() {
        problems.push(format!("threads.list shows {listed:?}"));
    }
    let counts = row_counts(daemon).await;
    if counts != (0, 0) {
        problems.push(format!("the store holds (threads, items) = {counts:?}"));
    }
    problems
}

// ---------------------------------------------------------------------------
// A JWKS endpoint
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct JwksState {
    keys: Arc<Mutex<JwkSet>>,
    fetches: Arc<AtomicUsize>,
    up: Arc<AtomicBool>,
    /// Fetches get no answer for a minute.
    hanging: Arc<AtomicBool>,
}

/// A JWKS document served on 127.0.0.1 from a value the test changes,
/// counting fetches; while `up` is false it answers 503.
struct JwksServer {
    url: String,
    state: JwksState,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> JwksServer {
        let state = JwksState {
            keys: Arc::new(Mutex::new(JwkSet { keys })),
            fetches: Arc::new(AtomicUsize::new(0)),
            up: Arc::new(AtomicBool::new(true)),
            hanging: Arc::new(AtomicBool::new(false)),
        };
        let app = axum::Router::new()
            .route("/.well-known/jwks.json", axum::routing::get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("JWKS server binds");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        JwksServer {
            url: format!("http://{addr}/.well-known/jwks.json"),
            state,
            _shutdown: tx,
        }
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    fn add(&self, jwk: Jwk) {
        self.state.keys.lock().expect("keys").keys.push(jwk);
    }

    fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    fn set_hanging(&self, hanging: bool) {
        self.state.hanging.store(hanging, Ordering::SeqCst);
    }
}

async fn serve_jwks(State(state): State<JwksState>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.hanging.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    if !state.up.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    let body = serde_json::to_string(&*state.keys.lock().expect("keys")).expect("JWKS JSON");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The public JWK of RSA key `n`, with this `kid`.
fn rsa_jwk(n: u8, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&rsa_key(n), Algorithm::RS256).expect("JWK");
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

// ---------------------------------------------------------------------------
// Scenarios on both backends
// ---------------------------------------------------------------------------

/// HS256/384/512 tokens signed with the shared secret work end to end, and
/// the user is the `sub`: each thread is stored under its own sub only.
async fn hmac_tokens_work_end_to_end(backend: Backend) {
    let daemon = Daemon::start_with(backend, jwt_secret).await;
    let mut threads = Vec::new();
    for (alg, sub) in [
        (Algorithm::HS256, "user-hs256"),
        (Algorithm::HS384, "user-hs384"),
        (Algorithm::HS512, "user-hs512"),
    ] {
        let token = sign(alg, None, &hmac_key(), &claims(sub));
        let (thread_id, streamed) = daemon.create_thread_as(&token, "hello there").await;
        assert_eq!(streamed.content_type, "text/event-stream", "{alg:?}");
        assert!(streamed.error().is_none(), "{alg:?}: {}", streamed.raw);
        assert!(streamed.answer().is_some(), "{alg:?}: {}", streamed.raw);
        assert_eq!(
            stored_types(&daemon, sub, &thread_id).await,
            ["user_message", "assistant_message"],
            "{alg:?}"
        );
        let (status, thread) = daemon
            .post_as(
                &token,
                request("threads.get_by_id", json!({"thread_id": thread_id})),
            )
            .await;
        assert_eq!(status, 200, "{alg:?}: {thread}");
        assert_eq!(
            listed_threads(&daemon, &token).await,
            std::slice::from_ref(&thread_id)
        );
        threads.push((sub, thread_id));
    }
    // Nobody else owns these threads.
    for (sub, thread_id) in &threads {
        for (other, _) in threads.iter().filter(|(o, _)| o != sub) {
            assert!(
                daemon.stored_items(other, thread_id).await.is_empty(),
                "{other} sees {sub}'s thread"
            );
        }
    }
    assert_eq!(daemon.llm.stream_requests().len(), 3);
    daemon.stop().await;
}

/// User B walks every request type that names a thread or an item against
/// user A's ids: each answer is exactly the answer for an id that does not
/// exist (same status, same body apart from the id), no model call happens,
/// and the database is the same row for row afterwards.
async fn foreign_ids_answer_like_missing_ones_and_change_nothing(backend: Backend) {
    let daemon = Daemon::start_with(backend, jwt_secret).await;
    let alice = hs256("alice");
    let bob = hs256("bob");
    let (ta, _) = daemon.create_thread_as(&alice, "alice's secret plan").await;
    let (ta2, _) = daemon
        .create_thread_as(&alice, "alice's second thread")
        .await;
    let (tb, _) = daemon.create_thread_as(&bob, "bob's own thread").await;
    let a_items = daemon.stored_values("alice", &ta).await;
    let id_of_type = |kind: &str| -> String {
        a_items
            .iter()
            .find(|i| i["type"] == kind)
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("no {kind} in {a_items:?}"))
            .to_owned()
    };
    let (ma, aa) = (id_of_type("user_message"), id_of_type("assistant_message"));
    let (status, body) = daemon
        .post_as(
            &alice,
            request(
                "items.feedback",
                json!({"thread_id": ta, "item_ids": [aa], "kind": "positive"}),
            ),
        )
        .await;
    assert_eq!((status, body), (200, json!({})));

    let before = dump(&daemon).await;
    assert_eq!(before["threads"].len(), 3);
    assert_eq!(before["feedback"].len(), 1);
    let llm_before = daemon.llm.requests().len();

    let missing_thread = new_id(IdKind::Thread);
    let missing_item = new_id(IdKind::Message);
    let action = json!({"type": "order.track", "payload": {"order": 1042}});
    let structured = json!({"status": "answered", "answers": {}});
    // Requests naming a thread, as functions of (thread, item).
    let on_thread: Vec<(&str, BuildRequest)> = vec![
        (
            "threads.get_by_id",
            Box::new(|t| request("threads.get_by_id", json!({"thread_id": t}))),
        ),
        (
            "items.list",
            Box::new(|t| {
                request(
                    "items.list",
                    json!({"thread_id": t, "limit": 100, "order": "asc"}),
                )
            }),
        ),
        (
            "items.list after",
            Box::new(|t| request("items.list", json!({"thread_id": t, "after": ma}))),
        ),
        (
            "threads.add_user_message",
            Box::new(|t| {
                request(
                    "threads.add_user_message",
                    json!({"thread_id": t, "input": user_input("mine now")}),
                )
            }),
        ),
        (
            "threads.update",
            Box::new(|t| request("threads.update", json!({"thread_id": t, "title": "taken"}))),
        ),
        (
            "threads.delete",
            Box::new(|t| request("threads.delete", json!({"thread_id": t}))),
        ),
        (
            "threads.retry_after_item",
            Box::new(|t| {
                request(
                    "threads.retry_after_item",
                    json!({"thread_id": t, "item_id": ma}),
                )
            }),
        ),
        (
            "items.feedback",
            Box::new(|t| {
                request(
                    "items.feedback",
                    json!({"thread_id": t, "item_ids": [aa], "kind": "negative"}),
                )
            }),
        ),
        (
            "threads.add_client_tool_output",
            Box::new(|t| {
                request(
                    "threads.add_client_tool_output",
                    json!({"thread_id": t, "result": {"text": "x"}}),
                )
            }),
        ),
        (
            "threads.custom_action",
            Box::new(|t| {
                request(
                    "threads.custom_action",
                    json!({"thread_id": t, "item_id": aa, "action": action}),
                )
            }),
        ),
        (
            "threads.custom_action without item",
            Box::new(|t| {
                request(
                    "threads.custom_action",
                    json!({"thread_id": t, "action": action}),
                )
            }),
        ),
        (
            "threads.sync_custom_action",
            Box::new(|t| {
                request(
                    "threads.sync_custom_action",
                    json!({"thread_id": t, "item_id": aa, "action": action}),
                )
            }),
        ),
        (
            "threads.add_structured_input",
            Box::new(|t| {
                request(
                    "threads.add_structured_input",
                    json!({"thread_id": t, "item_id": aa, "input": structured}),
                )
            }),
        ),
    ];
    // Requests naming one of A's items from B's own thread, as functions of the item.
    let on_item: Vec<(&str, &str, BuildRequest)> = vec![
        (
            "threads.retry_after_item",
            ma.as_str(),
            Box::new(|i| {
                request(
                    "threads.retry_after_item",
                    json!({"thread_id": tb, "item_id": i}),
                )
            }),
        ),
        (
            "items.feedback",
            aa.as_str(),
            Box::new(|i| {
                request(
                    "items.feedback",
                    json!({"thread_id": tb, "item_ids": [i], "kind": "negative"}),
                )
            }),
        ),
        (
            "threads.custom_action",
            aa.as_str(),
            Box::new(|i| {
                request(
                    "threads.custom_action",
                    json!({"thread_id": tb, "item_id": i, "action": action}),
                )
            }),
        ),
        (
            "threads.sync_custom_action",
            aa.as_str(),
            Box::new(|i| {
                request(
                    "threads.sync_custom_action",
                    json!({"thread_id": tb, "item_id": i, "action": action}),
                )
            }),
        ),
        (
            "threads.add_structured_input",
            aa.as_str(),
            Box::new(|i| {
                request(
                    "threads.add_structured_input",
                    json!({"thread_id": tb, "item_id": i, "input": structured}),
                )
            }),
        ),
        (
            "items.list after",
            ma.as_str(),
            Box::new(|i| request("items.list", json!({"thread_id": tb, "after": i}))),
        ),
    ];

    let mut problems = Vec::new();
    let mut compare = async |label: String,
                             foreign: Value,
                             control: Value,
                             (id, missing): (&str, &str),
                             want_not_found: bool| {
        let seen = post_with(&daemon, Some(&bearer(&bob)), &foreign).await;
        let expected = post_with(&daemon, Some(&bearer(&bob)), &control).await;
        if seen.status != expected.status
            || seen.header("content-type") != expected.header("content-type")
            || seen.text.replace(id, missing) != expected.text
        {
            problems.push(format!(
                "{label}: foreign id answered {} {:?}, a missing id {} {:?}",
                seen.status, seen.text, expected.status, expected.text
            ));
        }
        if expected.status / 100 != 4 || !expected.header("content-type").contains("json") {
            problems.push(format!(
                "{label}: a missing id answered {} {:?} (want a 4xx JSON error)",
                expected.status, expected.text
            ));
        }
        if want_not_found
            && !(expected.status == 404 && expected.json["error"]["code"] == "not_found")
        {
            problems.push(format!(
                "{label}: an unknown id answered {} {} (want 404 not_found)",
                expected.status, expected.text
            ));
        }
    };
    for (label, build) in &on_thread {
        compare(
            format!("{label} on A's thread"),
            build(&ta),
            build(&missing_thread),
            (&ta, &missing_thread),
            true,
        )
        .await;
    }
    for (label, item, build) in &on_item {
        compare(
            format!("{label} with A's item on B's thread"),
            build(item),
            build(&missing_item),
            (item, &missing_item),
            !label.starts_with("items.list"),
        )
        .await;
    }
    compare(
        "threads.list after A's thread".to_owned(),
        request("threads.list", json!({"after": ta})),
        request("threads.list", json!({"after": missing_thread})),
        (&ta, &missing_thread),
        false,
    )
    .await;
    assert!(
        problems.is_empty(),
        "isolation problems:\n{}",
        problems.join("\n")
    );

    assert_eq!(
        daemon.llm.requests().len(),
        llm_before,
        "B's requests reached the model"
    );
    let after = dump(&daemon).await;
    assert_eq!(before, after, "B's requests changed stored rows");

    assert_eq!(
        listed_threads(&daemon, &bob).await,
        std::slice::from_ref(&tb)
    );
    assert_eq!(listed_threads(&daemon, &alice).await, [ta2, ta.clone()]);
    let (status, thread) = daemon
        .post_as(
            &alice,
            request("threads.get_by_id", json!({"thread_id": ta})),
        )
        .await;
    assert_eq!(status, 200, "{thread}");
    assert_eq!(thread["items"]["data"].as_array().map(Vec::len), Some(2));
    daemon.stop().await;
}

/// `max_concurrent_runs_per_user = 1`: while one answer streams, the same
/// user's second run is refused with 429 `too_many_runs` and creates nothing;
/// another user is unaffected; the slot frees when the answer ends.
async fn concurrent_runs_are_capped_per_user(backend: Backend) {
    let daemon = Daemon::start_with(backend, |config| {
        jwt_secret(config);
        config.limits.max_concurrent_runs_per_user = 1;
    })
    .await;
    let alice = hs256("alice");
    let bob = hs256("bob");
    daemon.llm.push(Script::Text {
        chunks: vec!["slow ".into(), "answer ".into(), "here".into()],
        delay: Duration::from_millis(600),
    });
    let (first, ()) = tokio::join!(daemon.create_thread_as(&alice, "take your time"), async {
        daemon
            .llm
            .wait_for_requests(1, Duration::from_secs(10))
            .await;
        let (threads_before, _) = row_counts(&daemon).await;
        let refused = post_with(&daemon, Some(&bearer(&alice)), &create_body("me too")).await;
        let message = assert_error(&refused, 429, "too_many_runs");
        assert!(!message.is_empty());
        let retry_after: u64 = refused
            .header("retry-after")
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After {:?}", refused.header("retry-after")));
        assert!(retry_after >= 1);
        // The first thread is the only one, and nothing was added for the refusal.
        let listed = listed_threads(&daemon, &alice).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let refused_follow_up = post_with(
            &daemon,
            Some(&bearer(&alice)),
            &request(
                "threads.add_user_message",
                json!({"thread_id": listed[0], "input": user_input("and this")}),
            ),
        )
        .await;
        assert_error(&refused_follow_up, 429, "too_many_runs");
        assert_eq!(row_counts(&daemon).await.0, threads_before);
        assert_eq!(
            stored_types(&daemon, "alice", &listed[0]).await[0],
            "user_message"
        );
        assert_eq!(
            daemon
                .stored_values("alice", &listed[0])
                .await
                .iter()
                .filter(|i| i["type"] == "user_message")
                .count(),
            1,
            "the refused follow-up was stored"
        );
        // Another user is not limited by Alice's run.
        let (_, streamed) = daemon.create_thread_as(&bob, "am I blocked?").await;
        assert!(streamed.answer().is_some(), "{}", streamed.raw);
    });
    let (thread_id, streamed) = first;
    assert_eq!(streamed.answer().as_deref(), Some("slow answer here"));
    assert_eq!(
        stored_types(&daemon, "alice", &thread_id).await,
        ["user_message", "assistant_message"]
    );
    // The slot is free again once the answer ended.
    let (_, again) = daemon.create_thread_as(&alice, "now?").await;
    assert!(again.answer().is_some(), "{}", again.raw);
    assert_eq!(listed_threads(&daemon, &alice).await.len(), 2);
    daemon.stop().await;
}

/// A thread still busy after the lock timeout (the lock is taken before the
/// owner is checked) is reported busy to its owner only: another user naming
/// it gets the same 404 as for a missing thread, and nothing is stored.
async fn a_busy_thread_is_busy_only_to_its_owner(backend: Backend) {
    let daemon = Daemon::start_with(backend, |config| {
        jwt_secret(config);
        config.store.lock_timeout = Duration::from_millis(500);
    })
    .await;
    let (alice, bob) = (hs256("alice"), hs256("bob"));
    let (ta, _) = daemon.create_thread_as(&alice, "hello").await;
    daemon.llm.push(Script::Text {
        chunks: vec!["slow ".to_owned(); 20],
        delay: Duration::from_millis(200),
    });
    let answering = {
        let (url, token) = (daemon.url.clone(), alice.clone());
        let body = request(
            "threads.add_user_message",
            json!({"thread_id": ta, "input": user_input("take your time")}),
        );
        tokio::spawn(async move {
            let sent = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&body);
            sent.send().await.expect("sent").text().await.expect("read")
        })
    };
    let started = support::eventually(Duration::from_secs(10), || async {
        daemon.llm.stream_requests().len() == 2
    })
    .await;
    assert!(started, "alice's second answer never reached the model");

    let message = |text: &str| {
        request(
            "threads.add_user_message",
            json!({"thread_id": ta, "input": user_input(text)}),
        )
    };
    let (status, body) = daemon.post_as(&bob, message("mine now")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let (status, body) = daemon.post_as(&alice, message("me again")).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("busy")),
        "{body}"
    );

    let answered = answering.await.expect("alice's answer");
    assert!(answered.contains("assistant_message"), "{answered}");
    let stored = daemon.stored_values("alice", &ta).await;
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert_eq!(daemon.llm.stream_requests().len(), 2);
    daemon.stop().await;
}

both_backends!(
    hmac_tokens_work_end_to_end,
    foreign_ids_answer_like_missing_ones_and_change_nothing,
    a_busy_thread_is_busy_only_to_its_owner,
    concurrent_runs_are_capped_per_user,
);

// ---------------------------------------------------------------------------
// Backend-independent scenarios (authentication happens before the store)
// ---------------------------------------------------------------------------

/// Every kind of bad credential gets a 401 with a JSON error and a Bearer
/// challenge before anything is stored or asked of the model; tokens just
/// inside the leeway are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_before_any_work() {
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        jwt_secret(config);
        config.auth.issuer = Some(ISSUER.to_owned());
        config.auth.audience = Some(vec![AUDIENCE.to_owned()]);
        config.auth.leeway = Duration::from_secs(30);
    })
    .await;
    let good = sign(
        Algorithm::HS256,
        None,
        &hmac_key(),
        &claims_iss_aud("alice"),
    );
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims_iss_aud("alice");
        edit(&mut claims);
        bearer(&sign(Algorithm::HS256, None, &hmac_key(), &claims))
    };
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let forged = b64url(claims_iss_aud("mallory").to_string().as_bytes());
        bearer(&format!("{}.{}.{}", parts[0], forged, parts[2]))
    };
    let wrong_secret = EncodingKey::from_secret(b"another-secret-that-is-long-enough-0123456789");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("Basic scheme", Some("Basic xyz".to_owned())),
        ("Bearer without a token", Some("Bearer ".to_owned())),
        ("Bearer garbage", Some(bearer("garbage"))),
        (
            "Bearer three garbage parts",
            Some(bearer("not.a.jwt-at-all")),
        ),
        (
            "alg none",
            Some(bearer(&alg_none(&claims_iss_aud("alice")))),
        ),
        (
            "expired beyond the leeway",
            Some(with(&|c| c["exp"] = json!(now() - 120))),
        ),
        (
            "nbf beyond the leeway",
            Some(with(&|c| c["nbf"] = json!(now() + 120))),
        ),
        (
            "wrong secret",
            Some(bearer(&sign(
                Algorithm::HS256,
                None,
                &wrong_secret,
                &claims_iss_aud("alice"),
            ))),
        ),
        ("payload swapped under a valid signature", Some(tampered)),
        (
            "wrong issuer",
            Some(with(&|c| c["iss"] = json!("https://evil.example.com"))),
        ),
        (
            "wrong audience",
            Some(with(&|c| c["aud"] = json!("someone-else"))),
        ),
        (
            "missing exp",
            Some(with(&|c| {
                c.as_object_mut().expect("claims").remove("exp");
            })),
        ),
        (
            "missing sub",
            Some(with(&|c| {
                c.as_object_mut().expect("claims").remove("sub");
            })),
        ),
        ("empty sub", Some(with(&|c| c["sub"] = json!("")))),
        ("numeric sub", Some(with(&|c| c["sub"] = json!(42)))),
        (
            "RS256 token for an HMAC daemon",
            Some(bearer(&sign(
                Algorithm::RS256,
                None,
                &rsa_key(1),
                &claims_iss_aud("alice"),
            ))),
        ),
    ];
    let mut problems = refused_problems(&daemon, &cases).await;
    // Credentials are checked before the body is even read.
    let answer = daemon
        .post_raw_as(Some("Bearer garbage"), b"{not json".to_vec())
        .await;
    if let Some(problem) = unauthorized_problems(&answer, None) {
        problems.push(format!("bad token with a bad body: {problem}"));
    }
    problems.extend(nothing_done_problems(&daemon, &good).await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The challenge says whether a token was there at all (RFC 6750).
    let missing = post_with(&daemon, None, &list_body()).await;
    assert_eq!(
        missing.header("www-authenticate"),
        r#"Bearer realm="chatkitd""#
    );
    let invalid = post_with(&daemon, Some("Bearer garbage"), &list_body()).await;
    assert!(
        invalid
            .header("www-authenticate")
            .contains(r#"error="invalid_token""#),
        "{:?}",
        invalid.header("www-authenticate")
    );

    // Inside the leeway is fine; and the good token works.
    for (label, token) in [
        (
            "expired 10s ago (leeway 30s)",
            with(&|c| c["exp"] = json!(now() - 10)),
        ),
        (
            "nbf 10s ahead (leeway 30s)",
            with(&|c| c["nbf"] = json!(now() + 10)),
        ),
        ("good", bearer(&good)),
    ] {
        let token = token.strip_prefix("Bearer ").expect("bearer").to_owned();
        let (thread_id, streamed) = daemon.create_thread_as(&token, label).await;
        assert!(streamed.answer().is_some(), "{label}: {}", streamed.raw);
        assert_eq!(
            stored_types(&daemon, "alice", &thread_id).await,
            ["user_message", "assistant_message"],
            "{label}"
        );
    }
    daemon.stop().await;
}

/// With `issuer` and `audience` configured, a token that simply leaves out
/// `iss` or `aud` must be refused like one that names the wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_issuer_and_audience_are_required() {
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        jwt_secret(config);
        config.auth.issuer = Some(ISSUER.to_owned());
        config.auth.audience = Some(vec![AUDIENCE.to_owned()]);
    })
    .await;
    let good = sign(
        Algorithm::HS256,
        None,
        &hmac_key(),
        &claims_iss_aud("alice"),
    );
    let without = |claim: &str| {
        let mut claims = claims_iss_aud("alice");
        claims.as_object_mut().expect("claims").remove(claim);
        Some(bearer(&sign(Algorithm::HS256, None, &hmac_key(), &claims)))
    };
    let cases = vec![
        ("missing iss", without("iss")),
        ("missing aud", without("aud")),
    ];
    let mut problems = refused_problems(&daemon, &cases).await;
    problems.extend(nothing_done_problems(&daemon, &good).await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    daemon.stop().await;
}

/// `user_claim = "uid"`: the user is the `uid`, not the `sub`; a token
/// without `uid` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_user_claim_names_the_user() {
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        jwt_secret(config);
        config.auth.user_claim = "uid".to_owned();
    })
    .await;
    let mut with_uid = claims("sub-is-not-the-user");
    with_uid["uid"] = json!("u-42");
    let token = sign(Algorithm::HS256, None, &hmac_key(), &with_uid);
    let (thread_id, streamed) = daemon.create_thread_as(&token, "who am I?").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    assert_eq!(
        stored_types(&daemon, "u-42", &thread_id).await,
        ["user_message", "assistant_message"]
    );
    assert!(
        daemon
            .stored_items("sub-is-not-the-user", &thread_id)
            .await
            .is_empty()
    );
    let llm_requests = daemon.llm.requests().len();
    let answer = post_with(&daemon, Some(&bearer(&hs256("alice"))), &create_body("hi")).await;
    assert_unauthorized(&answer, "a token without uid");
    assert_eq!(daemon.llm.requests().len(), llm_requests);
    assert_eq!(row_counts(&daemon).await.0, 1);
    daemon.stop().await;
}

/// RS256, RS512 and PS256 with an RSA `public_key_file`; ES256 with an EC one;
/// the `algorithms` allow-list narrows what is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_files_verify_rsa_pss_and_ec_tokens() {
    let daemon =
        Daemon::start_with(Backend::Sqlite, |c| jwt_public_key(c, "rsa1_public.pem")).await;
    for alg in [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256] {
        let sub = format!("user-{alg:?}");
        let token = sign(alg, None, &rsa_key(1), &claims(&sub));
        let (thread_id, streamed) = daemon.create_thread_as(&token, "rsa").await;
        assert!(streamed.answer().is_some(), "{alg:?}: {}", streamed.raw);
        assert_eq!(
            stored_types(&daemon, &sub, &thread_id).await,
            ["user_message", "assistant_message"]
        );
    }
    // Another RSA key, or an EC key, does not verify.
    let answer = post_with(
        &daemon,
        Some(&bearer(&sign(
            Algorithm::RS256,
            None,
            &rsa_key(2),
            &claims("eve"),
        ))),
        &create_body("x"),
    )
    .await;
    assert_unauthorized(&answer, "RS256 signed by another RSA key");
    let answer = post_with(
        &daemon,
        Some(&bearer(&sign(
            Algorithm::ES256,
            None,
            &ec_key(),
            &claims("eve"),
        ))),
        &create_body("x"),
    )
    .await;
    assert_unauthorized(&answer, "ES256 for an RSA key");
    assert_eq!(daemon.llm.stream_requests().len(), 3);
    daemon.stop().await;

    let daemon = Daemon::start_with(Backend::Sqlite, |c| jwt_public_key(c, "ec_public.pem")).await;
    let token = sign(Algorithm::ES256, None, &ec_key(), &claims("ec-user"));
    let (thread_id, streamed) = daemon.create_thread_as(&token, "ec").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    assert_eq!(
        stored_types(&daemon, "ec-user", &thread_id).await,
        ["user_message", "assistant_message"]
    );
    let answer = post_with(
        &daemon,
        Some(&bearer(&sign(
            Algorithm::RS256,
            None,
            &rsa_key(1),
            &claims("eve"),
        ))),
        &create_body("x"),
    )
    .await;
    assert_unauthorized(&answer, "RS256 for an EC key");
    daemon.stop().await;

    let daemon = Daemon::start_with(Backend::Sqlite, |c| {
        jwt_public_key(c, "rsa1_public.pem");
        c.auth.algorithms = Some(vec!["RS256".to_owned()]);
    })
    .await;
    let answer = post_with(
        &daemon,
        Some(&bearer(&sign(
            Algorithm::PS256,
            None,
            &rsa_key(1),
            &claims("p"),
        ))),
        &create_body("x"),
    )
    .await;
    assert_unauthorized(&answer, "PS256 outside algorithms = [\"RS256\"]");
    let token = sign(Algorithm::RS256, None, &rsa_key(1), &claims("r"));
    let (_, streamed) = daemon.create_thread_as(&token, "allowed").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    daemon.stop().await;
}

/// Algorithm confusion: with an RSA public key configured, an HS256 token
/// whose HMAC secret is the public key's PEM text is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_tokens_signed_with_the_public_key_are_refused() {
    let daemon =
        Daemon::start_with(Backend::Sqlite, |c| jwt_public_key(c, "rsa1_public.pem")).await;
    let good = sign(Algorithm::RS256, None, &rsa_key(1), &claims("alice"));
    let public_pem = key_file("rsa1_public.pem");
    let text = String::from_utf8(public_pem.clone()).expect("PEM is text");
    let mut cases = Vec::new();
    for (label, secret) in [
        ("HS256 with the PEM file bytes", public_pem.clone()),
        (
            "HS256 with the trimmed PEM",
            text.trim().as_bytes().to_vec(),
        ),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS512] {
            let token = sign(
                alg,
                None,
                &EncodingKey::from_secret(&secret),
                &claims("alice"),
            );
            cases.push((format!("{label} ({alg:?})"), Some(bearer(&token))));
        }
    }
    let cases: Vec<(&str, Option<String>)> =
        cases.iter().map(|(l, a)| (l.as_str(), a.clone())).collect();
    let mut problems = refused_problems(&daemon, &cases).await;
    problems.extend(nothing_done_problems(&daemon, &good).await);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let (_, streamed) = daemon.create_thread_as(&good, "the real key").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    daemon.stop().await;
}

/// A JWKS: keys are fetched once and cached; an unknown `kid` is refused
/// until the issuer publishes it, then picked up without a restart; a flood
/// of unknown `kid`s costs at most one fetch per refresh interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_keys_rotate_without_restart_and_refresh_is_bounded() {
    const INTERVAL: Duration = Duration::from_millis(200);
    let jwks = JwksServer::start(vec![rsa_jwk(1, "k1")]).await;
    let daemon = Daemon::start_with(Backend::Sqlite, |c| jwt_jwks(c, &jwks.url, INTERVAL)).await;
    assert_eq!(jwks.fetches(), 0, "keys are fetched on first use");

    let k1 = sign(Algorithm::RS256, Some("k1"), &rsa_key(1), &claims("alice"));
    let (thread_id, streamed) = daemon.create_thread_as(&k1, "signed by k1").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    assert_eq!(
        stored_types(&daemon, "alice", &thread_id).await,
        ["user_message", "assistant_message"]
    );
    for _ in 0..3 {
        assert_eq!(
            listed_threads(&daemon, &k1).await,
            std::slice::from_ref(&thread_id)
        );
    }
    assert_eq!(jwks.fetches(), 1, "known keys are cached");

    // k2 is not published yet.
    let llm_requests = daemon.llm.requests().len();
    let k2 = sign(Algorithm::RS256, Some("k2"), &rsa_key(2), &claims("bob"));
    tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
    let answer = post_with(&daemon, Some(&bearer(&k2)), &create_body("k2")).await;
    assert_unauthorized(&answer, "kid k2 before it is published");
    assert_eq!(jwks.fetches(), 2, "an unknown kid refreshes the keys");
    // Algorithm confusion through the JWKS: kid k1, HS256 keyed with its PEM.
    let confused = sign(
        Algorithm::HS256,
        Some("k1"),
        &EncodingKey::from_secret(&key_file("rsa1_public.pem")),
        &claims("alice"),
    );
    let answer = post_with(&daemon, Some(&bearer(&confused)), &create_body("hs")).await;
    assert_unauthorized(&answer, "HS256 with kid k1");
    // A token without kid, or signed by k2 under k1's kid.
    let no_kid = sign(Algorithm::RS256, None, &rsa_key(2), &claims("bob"));
    let answer = post_with(&daemon, Some(&bearer(&no_kid)), &create_body("x")).await;
    assert_unauthorized(&answer, "k2's signature without kid");
    let wrong_key = sign(Algorithm::RS256, Some("k1"), &rsa_key(2), &claims("bob"));
    let answer = post_with(&daemon, Some(&bearer(&wrong_key)), &create_body("x")).await;
    assert_unauthorized(&answer, "k2's signature under kid k1");
    assert_eq!(daemon.llm.requests().len(), llm_requests);

    // The issuer rotates: k2 is published; no restart.
    jwks.add(rsa_jwk(2, "k2"));
    tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
    let fetches = jwks.fetches();
    let (bob_thread, streamed) = daemon.create_thread_as(&k2, "signed by k2").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    assert_eq!(jwks.fetches(), fetches + 1);
    assert_eq!(
        stored_types(&daemon, "bob", &bob_thread).await,
        ["user_message", "assistant_message"]
    );
    assert_eq!(
        listed_threads(&daemon, &k1).await,
        std::slice::from_ref(&thread_id)
    );
    assert_eq!(listed_threads(&daemon, &k2).await, [bob_thread]);

    // A flood of forged kids.
    tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
    let before = jwks.fetches();
    let started = Instant::now();
    let forged: Vec<String> = (0..20)
        .map(|i| {
            sign(
                Algorithm::RS256,
                Some(&format!("forged-{i}")),
                &rsa_key(2),
                &claims("mallory"),
            )
        })
        .collect();
    let daemon_ref = &daemon;
    let answers = futures::future::join_all(
        forged
            .iter()
            .map(|t| async move { post_with(daemon_ref, Some(&bearer(t)), &list_body()).await }),
    )
    .await;
    let elapsed = started.elapsed();
    for answer in &answers {
        assert_unauthorized(answer, "a forged kid");
    }
    let fetched = jwks.fetches() - before;
    let bound = 1 + (elapsed.as_millis() / INTERVAL.as_millis()) as usize;
    assert!(
        (1..=bound.max(2)).contains(&fetched),
        "20 forged kids in {elapsed:?} caused {fetched} JWKS fetches (interval {INTERVAL:?})"
    );
    daemon.stop().await;
}

/// The JWKS cache expires and the issuer then hangs: tokens with a known kid
/// are verified from the cached keys at once while one refresh waits on the
/// issuer in the background; logins never queue behind the fetch timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_jwks_does_not_serialize_logins() {
    const TTL: Duration = Duration::from_millis(300);
    let jwks = JwksServer::start(vec![rsa_jwk(1, "k1")]).await;
    let daemon = Daemon::start_with(Backend::Sqlite, |c| {
        jwt_jwks(c, &jwks.url, Duration::from_millis(100));
        c.auth.jwks_cache_ttl = TTL;
    })
    .await;
    let token = sign(Algorithm::RS256, Some("k1"), &rsa_key(1), &claims("alice"));
    assert!(listed_threads(&daemon, &token).await.is_empty());
    assert_eq!(jwks.fetches(), 1);

    jwks.set_hanging(true);
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    let started = Instant::now();
    let daemon_ref = &daemon;
    let token_ref = &token;
    let answers = futures::future::join_all((0..20).map(|_| async move {
        post_with(daemon_ref, Some(&bearer(token_ref)), &list_body()).await
    }))
    .await;
    let elapsed = started.elapsed();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![200; 20]);
    assert!(
        elapsed < Duration::from_secs(3),
        "20 logins took {elapsed:?} behind a hanging issuer"
    );
    // One refresh was started, and it is still waiting on the issuer.
    assert!(
        support::eventually(Duration::from_secs(2), || async { jwks.fetches() == 2 }).await,
        "one background refresh: {} fetches",
        jwks.fetches()
    );
    let answer = post_with(&daemon, Some(&bearer(&token)), &list_body()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(jwks.fetches(), 2, "no second fetch while one hangs");
    daemon.stop().await;
}

/// Cached keys are served past their TTL while the issuer fails, but only up
/// to `jwks_max_stale`: then requests get 503 until the issuer is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_jwks_keys_are_served_only_up_to_max_stale() {
    const TTL: Duration = Duration::from_millis(200);
    const MAX_STALE: Duration = Duration::from_millis(800);
    let jwks = JwksServer::start(vec![rsa_jwk(1, "k1")]).await;
    let daemon = Daemon::start_with(Backend::Sqlite, |c| {
        jwt_jwks(c, &jwks.url, Duration::from_millis(50));
        c.auth.jwks_cache_ttl = TTL;
        c.auth.jwks_max_stale = MAX_STALE;
    })
    .await;
    let token = sign(Algorithm::RS256, Some("k1"), &rsa_key(1), &claims("alice"));
    assert!(listed_threads(&daemon, &token).await.is_empty());
    let fetched_at = Instant::now();
    jwks.set_up(false);
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    // Stale but within bounds: served, while refreshes fail behind it.
    let answer = post_with(&daemon, Some(&bearer(&token)), &list_body()).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        support::eventually(Duration::from_secs(2), || async { jwks.fetches() >= 2 }).await,
        "a refresh was tried"
    );
    let past = (TTL + MAX_STALE + Duration::from_millis(100)).saturating_sub(fetched_at.elapsed());
    tokio::time::sleep(past).await;
    let answer = post_with(&daemon, Some(&bearer(&token)), &list_body()).await;
    assert_error(&answer, 503, "auth_unavailable");
    jwks.set_up(true);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        listed_threads(&daemon, &token).await.is_empty(),
        "back with the issuer"
    );
    daemon.stop().await;
}

/// The JWKS cannot be fetched at start: 503 with a JSON error (the token may
/// be fine; it is not the caller's fault), then tokens work once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_down_at_start_is_503_then_recovers() {
    const INTERVAL: Duration = Duration::from_millis(200);
    // Nothing listens: connection refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let url = format!("http://{closed}/.well-known/jwks.json");
    let daemon = Daemon::start_with(Backend::Sqlite, |c| jwt_jwks(c, &url, INTERVAL)).await;
    let token = sign(Algorithm::RS256, Some("k1"), &rsa_key(1), &claims("alice"));
    let answer = post_with(&daemon, Some(&bearer(&token)), &create_body("hi")).await;
    let message = assert_error(&answer, 503, "auth_unavailable");
    assert!(!message.contains(&closed.to_string()), "{message}");
    assert_eq!(daemon.llm.requests().len(), 0);
    assert_eq!(row_counts(&daemon).await, (0, 0));
    daemon.stop().await;

    // The issuer answers 503 at first, then comes back.
    let jwks = JwksServer::start(vec![rsa_jwk(1, "k1")]).await;
    jwks.set_up(false);
    let daemon = Daemon::start_with(Backend::Sqlite, |c| jwt_jwks(c, &jwks.url, INTERVAL)).await;
    let answer = post_with(&daemon, Some(&bearer(&token)), &create_body("hi")).await;
    assert_error(&answer, 503, "auth_unavailable");
    assert_eq!(jwks.fetches(), 1);
    jwks.set_up(true);
    tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
    let (thread_id, streamed) = daemon.create_thread_as(&token, "back").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    assert_eq!(
        stored_types(&daemon, "alice", &thread_id).await,
        ["user_message", "assistant_message"]
    );
    daemon.stop().await;
}

/// While no keys were ever fetched, every request is a 503, including those
/// that arrive within the refresh interval after a failed fetch: "unknown
/// key" (401) would blame a good token for the issuer's outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_outage_is_503_for_every_request_until_keys_are_known() {
    let jwks = JwksServer::start(vec![rsa_jwk(1, "k1")]).await;
    jwks.set_up(false);
    let daemon = Daemon::start_with(Backend::Sqlite, |c| {
        jwt_jwks(c, &jwks.url, Duration::from_secs(10));
    })
    .await;
    let token = sign(Algorithm::RS256, Some("k1"), &rsa_key(1), &claims("alice"));
    for attempt in 1..=3 {
        let answer = post_with(&daemon, Some(&bearer(&token)), &create_body("hi")).await;
        assert_eq!(
            (answer.status, answer.json["error"]["code"].clone()),
            (503, json!("auth_unavailable")),
            "attempt {attempt} while the JWKS was never fetched: {} (www-authenticate {:?})",
            answer.text,
            answer.header("www-authenticate")
        );
    }
    assert_eq!(
        jwks.fetches(),
        1,
        "the refresh interval still bounds fetches"
    );
    daemon.stop().await;
}

/// `requests_per_minute_per_user = 60, burst = 3`: the 4th quick request is
/// 429 `rate_limited` with Retry-After; another user is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_rate_limited_per_user() {
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        jwt_secret(config);
        config.limits.requests_per_minute_per_user = 60;
        config.limits.burst = 3;
    })
    .await;
    let alice = hs256("alice");
    let bob = hs256("bob");
    // Refused credentials cost the user nothing.
    for _ in 0..5 {
        let answer = post_with(&daemon, Some("Bearer garbage"), &list_body()).await;
        assert_unauthorized(&answer, "garbage token");
    }
    for i in 0..3 {
        let (status, body) = daemon.post_as(&alice, list_body()).await;
        assert_eq!(status, 200, "request {i}: {body}");
    }
    let limited = post_with(&daemon, Some(&bearer(&alice)), &create_body("one more")).await;
    assert_error(&limited, 429, "rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {:?}", limited.header("retry-after")));
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(daemon.llm.requests().len(), 0, "the limited create ran");
    assert_eq!(row_counts(&daemon).await, (0, 0));
    let (status, body) = daemon.post_as(&bob, list_body()).await;
    assert_eq!(status, 200, "another user: {body}");
    // One request a second comes back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, streamed) = daemon.create_thread_as(&alice, "after the wait").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    daemon.stop().await;
}

/// CORS: only configured origins get CORS headers; none by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_configured_origins() {
    const ORIGIN: &str = "https://app.example.com";
    let http = reqwest::Client::new();
    let preflight = async |url: &str, origin: &str| {
        http.request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .await
            .expect("preflight sent")
    };
    let cors_headers = |headers: &reqwest::header::HeaderMap| -> Vec<String> {
        headers
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("access-control-"))
            .collect()
    };

    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        jwt_secret(config);
        config.server.cors_allowed_origins = vec![ORIGIN.to_owned()];
    })
    .await;
    let response = preflight(&daemon.url, ORIGIN).await;
    assert_eq!(response.status().as_u16(), 200);
    let headers = response.headers();
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(get("access-control-allow-origin"), ORIGIN);
    let allowed_headers = get("access-control-allow-headers");
    for needed in ["authorization", "content-type"] {
        assert!(
            allowed_headers.contains(needed),
            "allow-headers {allowed_headers:?} lacks {needed}"
        );
    }
    assert!(
        get("access-control-allow-methods").contains("post"),
        "{:?}",
        get("access-control-allow-methods")
    );
    let other = preflight(&daemon.url, "https://evil.example.com").await;
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        other.headers()
    );
    // The actual request from the allowed origin carries the header too.
    let response = http
        .post(&daemon.url)
        .header("origin", ORIGIN)
        .bearer_auth(hs256("alice"))
        .json(&list_body())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(ORIGIN)
    );
    let response = http
        .post(&daemon.url)
        .header("origin", "https://evil.example.com")
        .bearer_auth(hs256("alice"))
        .json(&list_body())
        .send()
        .await
        .expect("sent");
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    daemon.stop().await;

    let daemon = Daemon::start_with(Backend::Sqlite, jwt_secret).await;
    let response = preflight(&daemon.url, ORIGIN).await;
    assert!(
        cors_headers(response.headers()).is_empty(),
        "default config: {:?}",
        response.headers()
    );
    let response = http
        .post(&daemon.url)
        .header("origin", ORIGIN)
        .bearer_auth(hs256("alice"))
        .json(&list_body())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        cors_headers(response.headers()).is_empty(),
        "default config: {:?}",
        response.headers()
    );
    daemon.stop().await;
}

/// Display claims fill `{{user.name}}` and `{{user.email}}` in the system
/// prompt and never act as identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_claims_reach_the_prompt_but_not_identity() {
    let daemon = Daemon::start_with(Backend::Sqlite, |config| {
        jwt_secret(config);
        config.agent.title_generation = false;
        let file = config.base_dir.join("instructions.md");
        std::fs::write(&file, "Hello {{user.name}} <{{user.email}}>").expect("instructions");
        config.agent.instructions = Some(file);
    })
    .await;
    let mut alice = claims("alice");
    alice["name"] = json!("Alice Example");
    alice["email"] = json!("alice@example.com");
    let token = sign(Algorithm::HS256, None, &hmac_key(), &alice);
    let (_, streamed) = daemon.create_thread_as(&token, "hi").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    let requests = daemon.llm.requests();
    assert_eq!(
        requests[0].messages()[0],
        json!({"role": "system", "content": "Hello Alice Example <alice@example.com>"})
    );

    // A `name` (or email) naming another user changes nothing about who acts.
    let mut spoof = claims("alice");
    spoof["name"] = json!("bob");
    spoof["email"] = json!("bob@example.com");
    spoof["user_id"] = json!("bob");
    let token = sign(Algorithm::HS256, None, &hmac_key(), &spoof);
    let (thread_id, streamed) = daemon.create_thread_as(&token, "I am bob").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    assert_eq!(
        stored_types(&daemon, "alice", &thread_id).await,
        ["user_message", "assistant_message"]
    );
    assert!(daemon.stored_items("bob", &thread_id).await.is_empty());
    assert!(listed_threads(&daemon, &hs256("bob")).await.is_empty());
    assert_eq!(
        daemon.llm.requests()[1].messages()[0]["content"],
        "Hello bob <bob@example.com>"
    );
    // Without display claims the placeholders are empty.
    let (_, streamed) = daemon.create_thread_as(&hs256("carol"), "hi").await;
    assert!(streamed.answer().is_some(), "{}", streamed.raw);
    assert_eq!(
        daemon.llm.requests()[2].messages()[0]["content"],
        "Hello  <>"
    );
    daemon.stop().await;
}

/// `mode = "none"` is refused on a non-loopback address unless
/// `allow_insecure_none_auth = true`; loopback and `jwt` are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_none_refuses_non_loopback_addresses() {
    chatkitd::tls::install_crypto_provider();
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let build = async |tweak: &dyn Fn(&mut Config)| {
        let url = format!("sqlite://{}", dir.path().join("chatkitd.db").display());
        let mut config = support::test_config(&url, &llm.base_url(), dir.path().to_path_buf());
        tweak(&mut config);
        App::build(config).await.expect("app builds")
    };
    let anywhere = Some("0.0.0.0:0".parse().expect("address"));
    let loopback = Some("127.0.0.1:0".parse().expect("address"));

    let app = build(&|c| assert_eq!(c.auth.mode, AuthMode::None)).await;
    let error = app.bind(anywhere).await.expect_err("none on 0.0.0.0");
    assert!(
        error.to_string().contains("allow_insecure_none_auth"),
        "{error}"
    );
    let v6 = app
        .bind(Some("[::]:0".parse().expect("address")))
        .await
        .expect_err("none on [::]");
    assert!(v6.to_string().contains("allow_insecure_none_auth"), "{v6}");
    app.bind(loopback).await.expect("none on loopback binds");

    let app = build(&|c| c.auth.allow_insecure_none_auth = true).await;
    let listener = app.bind(anywhere).await.expect("explicitly allowed");
    assert!(
        listener
            .local_addr()
            .expect("address")
            .ip()
            .is_unspecified()
    );

    let app = build(&|c| jwt_secret(c)).await;
    app.bind(anywhere).await.expect("jwt binds anywhere");
    assert!(llm.requests().is_empty());
}
