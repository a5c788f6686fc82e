//! Attachments and media end to end, over real HTTP with the fake model:
//! the two-phase upload (signed URL and bearer), what the model receives
//! for an image and a text file (and again from history), signed preview
//! URLs (working without a bearer; refused when tampered, expired or asked
//! by another user), every limit refused before any byte is stored, another
//! user's ids as 404 on every path, a deleted thread taking its bytes with
//! it (checked in the database), unused uploads swept, bytes in a
//! directory, and a tool's image reaching the model as an image.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chatkitd::attachments::{Purpose, Signer};
use chatkitd::config::{AttachmentStorage, AuthMode, Config};
use chatkitd_testkit::{FakeToolCall, Script};
use serde_json::{Value, json};
use support::{Backend, Daemon, Streamed, eventually};

const SECRET: &str = "chatkitd-e2e-attachments-secret-0123456789abcdef";
const SIGNING_KEY: &str = "attachments-signing-key-for-tests-0123456789";

/// A 1x1 PNG, as fake-mcp's `image` tool returns it.
const TINY_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

fn png() -> Vec<u8> {
    STANDARD.decode(TINY_PNG).expect("png")
}

fn token(user: &str) -> String {
    support::hs256_token(SECRET, user)
}

fn with_jwt(config: &mut Config) {
    config.auth.mode = AuthMode::Jwt;
    config.auth.secret = Some(SECRET.to_owned());
    config.attachments.signing_key = Some(SIGNING_KEY.to_owned());
}

async fn daemon(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Daemon {
    Daemon::start_with(backend, |config| {
        with_jwt(config);
        tweak(config);
    })
    .await
}

/// `attachments.create` as `user`.
async fn create(daemon: &Daemon, user: &str, name: &str, size: usize, mime: &str) -> (u16, Value) {
    daemon
        .post_as(
            &token(user),
            json!({"type": "attachments.create",
                   "params": {"name": name, "size": size, "mime_type": mime}}),
        )
        .await
}

/// The upload URL of a created attachment.
fn upload_url(attachment: &Value) -> String {
    assert_eq!(
        attachment["upload_descriptor"]["method"], "POST",
        "{attachment}"
    );
    attachment["upload_descriptor"]["url"]
        .as_str()
        .expect("an upload URL")
        .to_owned()
}

/// Uploads `bytes` as a multipart form's `file` field to `url`, with no
/// bearer; returns the status and the JSON answer.
async fn upload(url: &str, name: &str, mime: &str, bytes: Vec<u8>) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .expect("mime");
    let form = reqwest::multipart::Form::new().part("file", part);
    let response = reqwest::Client::new()
        .post(url)
        .multipart(form)
        .send()
        .await
        .expect("upload sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A GET of `url` with an optional bearer: status, content type, bytes.
async fn fetch(url: &str, bearer: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.expect("GET sent");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (
        status,
        content_type,
        response.bytes().await.expect("bytes").to_vec(),
    )
}

/// A created and uploaded attachment (multipart, on its signed URL).
async fn attach(daemon: &Daemon, user: &str, name: &str, mime: &str, bytes: &[u8]) -> Value {
    let (status, created) = create(daemon, user, name, bytes.len(), mime).await;
    assert_eq!(status, 200, "{created}");
    let (status, uploaded) = upload(&upload_url(&created), name, mime, bytes.to_vec()).await;
    assert_eq!(status, 200, "{uploaded}");
    assert!(uploaded.get("upload_descriptor").is_none(), "{uploaded}");
    uploaded
}

/// A `threads.create` body whose message names `attachments`.
fn create_with(text: &str, attachments: &[&str]) -> Value {
    json!({"type": "threads.create", "params": {"input": {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments, "inference_options": {}}}})
}

/// `threads.delete` as the bearer of `token`; the status.
async fn delete_thread(daemon: &Daemon, token: &str, thread_id: &str) -> u16 {
    daemon
        .post_as(
            token,
            json!({"type": "threads.delete", "params": {"thread_id": thread_id}}),
        )
        .await
        .0
}

/// The content parts of the last user message with parts in a request.
fn last_parts(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .rev()
        .find(|m| m["role"] == "user" && m["content"].is_array())
        .map(|m| m["content"].as_array().expect("parts").clone())
        .unwrap_or_default()
}

fn png_data_url() -> String {
    format!("data:image/png;base64,{TINY_PNG}")
}

async fn image_and_text_reach_the_model(backend: Backend) {
    let daemon = daemon(backend, |_| {}).await;
    let ann = token("ann");
    let image = attach(&daemon, "ann", "dot.png", "image/png", &png()).await;
    assert_eq!(image["type"], "image");
    let preview = image["preview_url"]
        .as_str()
        .expect("a preview URL")
        .to_owned();
    // The second file goes up with PUT, raw bytes and the owner's bearer,
    // on the route without its signature.
    let (status, notes) =
        create(&daemon, "ann", "notes.txt", 13, "text/plain; charset=utf-8").await;
    assert_eq!(status, 200, "{notes}");
    assert_eq!(notes["type"], "file");
    assert_eq!(notes["mime_type"], "text/plain");
    assert!(notes.get("preview_url").is_none(), "{notes}");
    let route = upload_url(&notes);
    let route = route.split('?').next().expect("path");
    let put = reqwest::Client::new()
        .put(route)
        .bearer_auth(&ann)
        .body("milk and eggs")
        .send()
        .await
        .expect("PUT");
    assert_eq!(put.status().as_u16(), 200);

    daemon.llm.push(Script::text(["I see a dot."]));
    let ids = [
        image["id"].as_str().expect("present"),
        notes["id"].as_str().expect("present"),
    ];
    let streamed = daemon
        .stream_as(&ann, create_with("What are these?", &ids))
        .await;
    assert!(streamed.error().is_none(), "{:?}", streamed.events);
    let thread_id = streamed.thread_id().to_owned();
    let user_item = streamed
        .done_items()
        .into_iter()
        .find(|i| i["type"] == "user_message")
        .expect("the user message");
    let attachments = user_item["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 2);
    assert!(
        attachments
            .iter()
            .all(|a| a["thread_id"] == thread_id.as_str())
    );

    let request = &daemon.llm.stream_requests()[0].body;
    let parts = last_parts(request);
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(
        parts[0]["text"]
            .as_str()
            .expect("present")
            .starts_with("What are these?")
    );
    assert_eq!(
        parts[1],
        json!({"type": "image_url", "image_url": {"url": png_data_url()}})
    );
    assert_eq!(
        parts[2],
        json!({"type": "text", "text": "Attached file notes.txt:\nmilk and eggs"})
    );

    // History replays them on the next turn.
    daemon.llm.push(Script::text(["Still a dot."]));
    let next = daemon
        .stream_as(&ann, support::add_message_body(&thread_id, "And now?"))
        .await;
    assert!(next.error().is_none(), "{:?}", next.events);
    let second = &daemon.llm.stream_requests()[1].body;
    let first_user = second["messages"]
        .as_array()
        .expect("present")
        .iter()
        .find(|m| m["role"] == "user")
        .expect("the first message");
    assert_eq!(first_user["content"][1]["image_url"]["url"], png_data_url());
    daemon.llm.assert_requests_well_formed();

    // The preview works in an <img>: no bearer.
    let (status, content_type, bytes) = fetch(&preview, None).await;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert_eq!(bytes, png());
    // A listing signs it afresh, and that URL works too.
    let (status, listed) = daemon
        .post_as(
            &ann,
            json!({"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}}),
        )
        .await;
    assert_eq!(status, 200);
    let listed_preview = listed["data"][0]["attachments"][0]["preview_url"]
        .as_str()
        .expect("a listed preview URL");
    assert_eq!(fetch(listed_preview, None).await.0, 200);

    // Deleting the thread deletes the records and their bytes.
    assert_eq!(delete_thread(&daemon, &ann, &thread_id).await, 200);
    assert_eq!(attachment_rows(&daemon).await, 0);
    assert_eq!(fetch(&preview, None).await.0, 404);
}

/// Rows of the attachments table, read with SQL.
async fn attachment_rows(daemon: &Daemon) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&daemon.store_url)
        .await
        .expect("database");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attachments")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    count
}

/// The preview URL of `id` with `expires` and a signature made with `key`.
fn signed_preview(daemon: &Daemon, id: &str, owner: &str, expires: i64, key: &str) -> String {
    let signature = Signer::new(Some(key)).sign(Purpose::Preview, id, owner, expires);
    format!(
        "{}/attachments/{id}/preview?expires={expires}&signature={signature}",
        daemon.url
    )
}

async fn previews_refuse_tampering_expiry_and_other_users(backend: Backend) {
    let daemon = daemon(backend, |_| {}).await;
    let image = attach(&daemon, "ann", "dot.png", "image/png", &png()).await;
    let id = image["id"].as_str().expect("present");
    let preview = image["preview_url"].as_str().expect("present");
    assert_eq!(fetch(preview, None).await.0, 200);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("present")
        .as_secs() as i64;
    // Genuine but past its time.
    let expired = signed_preview(&daemon, id, "ann", now - 1, SIGNING_KEY);
    let (status, _, body) = fetch(&expired, None).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    // Tampered: another key, another owner, a longer life, a flipped byte.
    let later = now + 600;
    for url in [
        signed_preview(
            &daemon,
            id,
            "ann",
            later,
            "another-key-of-enough-length-0123456789",
        ),
        signed_preview(&daemon, id, "bob", later, SIGNING_KEY),
        preview.replace("expires=", "expires=9"),
        preview.replace("signature=", "signature=A"),
    ] {
        assert_eq!(fetch(&url, None).await.0, 404, "{url}");
    }
    // Bob's bearer does not open Ann's image; hers does.
    let route = preview.split('?').next().expect("present");
    assert_eq!(fetch(route, Some(&token("bob"))).await.0, 404);
    assert_eq!(fetch(route, Some(&token("ann"))).await.0, 200);
    // Neither a signature nor a bearer.
    assert_eq!(fetch(route, None).await.0, 401);
    // Garbage in the query and an id that could name another file.
    assert_eq!(
        fetch(&format!("{route}?expires=soon&signature=x"), None)
            .await
            .0,
        400
    );
    // A path id no server could have issued is refused before any look-up.
    let traversal = format!("{}/attachments/..%2F..%2Fetc%2Fpasswd/preview", daemon.url);
    assert_eq!(fetch(&traversal, Some(&token("ann"))).await.0, 400);
}

async fn another_users_attachment_is_not_found_anywhere(backend: Backend) {
    let daemon = daemon(backend, |_| {}).await;
    let bob = token("bob");
    let image = attach(&daemon, "ann", "dot.png", "image/png", &png()).await;
    let id = image["id"].as_str().expect("present");
    let (status, pending) = create(&daemon, "ann", "later.png", png().len(), "image/png").await;
    assert_eq!(status, 200);
    let route = upload_url(&pending);
    let route = route.split('?').next().expect("present");
    // Bob's bearer on Ann's upload route.
    let answer = reqwest::Client::new()
        .put(route)
        .bearer_auth(&bob)
        .body(png())
        .send()
        .await
        .expect("PUT");
    assert_eq!(answer.status().as_u16(), 404);
    // Nobody's: neither a signature nor a bearer.
    let anonymous = reqwest::Client::new()
        .put(route)
        .body(png())
        .send()
        .await
        .expect("PUT");
    assert_eq!(anonymous.status().as_u16(), 401);
    // Bob's message naming Ann's attachment.
    let (status, body) = daemon.post_as(&bob, create_with("mine?", &[id])).await;
    assert_eq!(status, 404, "{body}");
    assert!(daemon.llm.stream_requests().is_empty());
    // Bob deleting it.
    let (status, _) = daemon
        .post_as(
            &bob,
            json!({"type": "attachments.delete", "params": {"attachment_id": id}}),
        )
        .await;
    assert_eq!(status, 404);
    // Ann still has it, and may delete it; then it is gone.
    assert_eq!(
        fetch(image["preview_url"].as_str().expect("present"), None)
            .await
            .0,
        200
    );
    let (status, answer) = daemon
        .post_as(
            &token("ann"),
            json!({"type": "attachments.delete", "params": {"attachment_id": id}}),
        )
        .await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(
        fetch(image["preview_url"].as_str().expect("present"), None)
            .await
            .0,
        404
    );
}

async fn limits_refuse_before_any_bytes_are_stored(backend: Backend) {
    let daemon = daemon(backend, |config| {
        config.attachments.max_bytes = 1000;
        config.attachments.max_per_message = 1;
        config.attachments.max_concurrent_uploads = 1;
    })
    .await;
    let cases = [
        (
            "big.png",
            1001,
            "image/png",
            "big.png is 1001 bytes; attachments may be at most 1000 bytes",
        ),
        ("empty.txt", 0, "text/plain", "empty.txt is empty"),
        ("", 10, "text/plain", "`name` must be 1 to 255 bytes"),
        (
            "tool.exe",
            10,
            "application/x-msdownload",
            "cannot be attached here; allowed types: image/png",
        ),
    ];
    for (name, size, mime, expected) in cases {
        let (status, body) = create(&daemon, "ann", name, size, mime).await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().expect("present");
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(attachment_rows(&daemon).await, 0);

    // Uploads: the wrong size, bytes that are not what the type says, a
    // body over the limit: refused, nothing kept, and the URL still works.
    let (_, created) = create(&daemon, "ann", "dot.png", png().len(), "image/png").await;
    let url = upload_url(&created);
    let (status, body) = upload(&url, "dot.png", "image/png", vec![1, 2, 3]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("present")
            .contains("announced as"),
        "{body}"
    );
    // One byte more than announced is over the size it was allowed: 413.
    let mut longer = png();
    longer.push(0);
    let (status, body) = upload(&url, "dot.png", "image/png", longer).await;
    assert_eq!(status, 413, "{body}");
    let mut not_png = b"<html>".to_vec();
    not_png.resize(png().len(), b' ');
    let (status, body) = upload(&url, "dot.png", "image/png", not_png).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("present")
            .contains("not a valid image/png")
    );
    let huge = reqwest::Client::new()
        .post(&url)
        .body(vec![0u8; 200 * 1024])
        .send()
        .await
        .expect("sent");
    assert_eq!(huge.status().as_u16(), 413);
    let malformed = reqwest::Client::new()
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x\r\nnot a part")
        .send()
        .await
        .expect("sent");
    assert_eq!(malformed.status().as_u16(), 400);
    // One upload in flight at most here: a second waits for none, it is
    // told to come back.
    let (_, slow) = create(&daemon, "ann", "slow.png", png().len(), "image/png").await;
    let (feed, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    feed.send(Ok(png()[..8].to_vec()))
        .await
        .expect("first bytes");
    let held = tokio::spawn(
        reqwest::Client::new()
            .put(upload_url(&slow))
            .body(reqwest::Body::wrap_stream(futures::stream::unfold(
                body,
                |mut body| async move { body.recv().await.map(|chunk| (chunk, body)) },
            )))
            .send(),
    );
    // Each try on a fresh attachment, in case one went up before the
    // held upload took the slot.
    let busy = eventually(Duration::from_secs(5), || async {
        let (_, probe) = create(&daemon, "ann", "probe.png", png().len(), "image/png").await;
        upload(&upload_url(&probe), "probe.png", "image/png", png())
            .await
            .0
            == 429
    })
    .await;
    assert!(busy, "a second upload was not refused while one was held");
    feed.send(Ok(png()[8..].to_vec())).await.expect("the rest");
    drop(feed);
    let held = held.await.expect("joined").expect("sent");
    assert_eq!(held.status().as_u16(), 200);
    // Not uploaded yet: a message cannot use it.
    let id = created["id"].as_str().expect("present");
    let ann = token("ann");
    let (status, body) = daemon.post_as(&ann, create_with("see", &[id])).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("present")
            .contains("has not been uploaded yet")
    );
    // Now it goes up, once.
    assert_eq!(upload(&url, "dot.png", "image/png", png()).await.0, 200);
    assert_eq!(upload(&url, "dot.png", "image/png", png()).await.0, 409);
    // Too many on one message.
    let other = attach(&daemon, "ann", "two.png", "image/png", &png()).await;
    let two = [id, other["id"].as_str().expect("present")];
    let (status, body) = daemon.post_as(&ann, create_with("see", &two)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("present")
            .contains("at most 1 attachments")
    );
    assert!(daemon.llm.stream_requests().is_empty());
    // An unknown type of upload URL query, and the disabled service.
    let disabled = Daemon::start_with(Backend::Sqlite, |config| {
        with_jwt(config);
        config.attachments.enabled = false;
    })
    .await;
    let (status, body) = create(&disabled, "ann", "dot.png", 10, "image/png").await;
    assert_eq!(status, 501, "{body}");
    let (status, body) = disabled
        .post_as(&ann, create_with("see", &["atc_0123"]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("a message")
            .contains("not enabled")
    );
}

async fn a_tool_image_reaches_the_model_as_an_image(backend: Backend) {
    let daemon = daemon(backend, |config| {
        config
            .mcp_servers
            .insert("fake".into(), support::fake_mcp_server());
    })
    .await;
    let ann = token("ann");
    daemon.llm.push(Script::ToolCalls {
        calls: vec![
            FakeToolCall::new("call_img", "image", "{}"),
            FakeToolCall::new("call_media", "media", "{}"),
        ],
    });
    daemon.llm.push(Script::text(["A red dot."]));
    let streamed: Streamed = daemon
        .stream_as(&ann, support::create_body("Show me the image."))
        .await;
    assert!(streamed.error().is_none(), "{:?}", streamed.events);
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1].body["messages"]
        .as_array()
        .expect("present")
        .clone();
    let tool_text = |id: &str| {
        messages
            .iter()
            .find(|m| m["tool_call_id"] == id)
            .and_then(|m| m["content"].as_str())
            .expect("a tool result")
            .to_owned()
    };
    let image_result = tool_text("call_img");
    assert_eq!(
        image_result,
        "A 1x1 red pixel.\n[image 1: image/png, shown to you after the tool results]"
    );
    let media_result = tool_text("call_media");
    assert!(
        media_result.contains("audio cannot be shown to you"),
        "{media_result}"
    );
    assert!(media_result.contains("[resource file:///notes.md (text/markdown)]\n# Notes"));
    assert!(media_result.contains("[resource link https://example.com/report: report]"));
    for message in &messages {
        assert!(
            !message.to_string().contains("UklGR"),
            "raw audio reached the model"
        );
    }
    // The image follows both results, in a user message.
    let last = messages.last().expect("present");
    assert_eq!(last["role"], "user");
    assert_eq!(last["content"][1]["image_url"]["url"], png_data_url());
    daemon.llm.assert_requests_well_formed();

    // The UI shows it, from a preview URL that works without a bearer.
    let shown = streamed
        .done_items()
        .into_iter()
        .find(|i| i["type"] == "generated_image")
        .expect("a generated image item");
    let url = shown["image"]["url"].as_str().expect("present");
    let (status, content_type, bytes) = fetch(url, None).await;
    assert_eq!(
        (status, content_type.as_str(), bytes),
        (200, "image/png", png())
    );

    // The next turn reads it from history, after the results again.
    daemon.llm.push(Script::text(["Still red."]));
    let next = daemon
        .stream_as(
            &ann,
            support::add_message_body(streamed.thread_id(), "Again?"),
        )
        .await;
    assert!(next.error().is_none(), "{:?}", next.events);
    let replay = &daemon.llm.stream_requests()[2].body;
    assert!(replay.to_string().contains(&png_data_url()));
    daemon.llm.assert_requests_well_formed();
    // Deleting the thread deletes the tool's image too.
    assert_eq!(attachment_rows(&daemon).await, 1);
    assert_eq!(
        delete_thread(&daemon, &ann, streamed.thread_id()).await,
        200
    );
    assert_eq!(attachment_rows(&daemon).await, 0);
}

both_backends!(
    image_and_text_reach_the_model,
    previews_refuse_tampering_expiry_and_other_users,
    another_users_attachment_is_not_found_anywhere,
    limits_refuse_before_any_bytes_are_stored,
    a_tool_image_reaches_the_model_as_an_image,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_a_directory_go_with_their_thread() {
    let daemon = daemon(Backend::Sqlite, |config| {
        config.attachments.storage = AttachmentStorage::Directory;
        config.attachments.directory = "files".into();
    })
    .await;
    let directory = daemon.dir.path().join("files");
    let image = attach(&daemon, "ann", "dot.png", "image/png", &png()).await;
    let id = image["id"].as_str().expect("present");
    assert_eq!(std::fs::read(directory.join(id)).expect("the file"), png());
    daemon.llm.push(Script::text(["A dot."]));
    let ann = token("ann");
    let streamed = daemon.stream_as(&ann, create_with("see", &[id])).await;
    assert!(streamed.error().is_none(), "{:?}", streamed.events);
    assert_eq!(
        last_parts(&daemon.llm.stream_requests()[0].body)[1]["image_url"]["url"],
        png_data_url()
    );
    assert_eq!(
        delete_thread(&daemon, &ann, streamed.thread_id()).await,
        200
    );
    assert!(!directory.join(id).exists(), "the file outlived its thread");
    assert_eq!(attachment_rows(&daemon).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_no_message_used_are_swept() {
    let daemon = daemon(Backend::Sqlite, |config| {
        config.attachments.unused_ttl = Duration::from_secs(1);
    })
    .await;
    attach(&daemon, "ann", "dot.png", "image/png", &png()).await;
    // One that a message used stays.
    let kept = attach(&daemon, "ann", "kept.png", "image/png", &png()).await;
    daemon.llm.push(Script::text(["ok"]));
    let streamed = daemon
        .stream_as(
            &token("ann"),
            create_with("see", &[kept["id"].as_str().expect("present")]),
        )
        .await;
    assert!(streamed.error().is_none());
    assert_eq!(attachment_rows(&daemon).await, 2);
    let swept = eventually(Duration::from_secs(10), || async {
        attachment_rows(&daemon).await == 1
    })
    .await;
    assert!(swept, "the unused upload was not swept");
    assert_eq!(
        fetch(kept["preview_url"].as_str().expect("present"), None)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_servers_image_and_links_reach_the_model_as_such() {
    let server = support::server_everything();
    let daemon = daemon(Backend::Sqlite, |config| {
        config.mcp_servers.insert("everything".into(), server);
    })
    .await;
    daemon.llm.push(Script::ToolCalls {
        calls: vec![
            FakeToolCall::new("call_img", "get-tiny-image", "{}"),
            FakeToolCall::new("call_links", "get-resource-links", r#"{"count":1}"#),
        ],
    });
    daemon.llm.push(Script::text(["The MCP logo."]));
    let streamed = daemon
        .stream_as(
            &token("ann"),
            support::create_body("Show me the tiny image."),
        )
        .await;
    assert!(streamed.error().is_none(), "{:?}", streamed.events);
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 2, "{:?}", streamed.events);
    let messages = requests[1].body["messages"]
        .as_array()
        .expect("messages")
        .clone();
    let image_result = messages
        .iter()
        .find(|m| m["tool_call_id"] == "call_img")
        .and_then(|m| m["content"].as_str())
        .expect("the image tool's result");
    assert!(
        image_result.contains("[image 1: image/png, shown to you after the tool results]"),
        "{image_result}"
    );
    assert!(
        !image_result.contains("iVBORw0KGgo"),
        "base64 in the text: {image_result}"
    );
    let links = messages
        .iter()
        .find(|m| m["tool_call_id"] == "call_links")
        .and_then(|m| m["content"].as_str())
        .expect("the links tool's result");
    assert!(links.contains("[resource link demo://resource/"), "{links}");
    let last = messages.last().expect("a last message");
    assert_eq!(last["role"], "user");
    let url = last["content"][1]["image_url"]["url"]
        .as_str()
        .expect("an image part");
    assert!(
        url.starts_with("data:image/png;base64,iVBORw0KGgo"),
        "{url}"
    );
    daemon.llm.assert_requests_well_formed();
}
