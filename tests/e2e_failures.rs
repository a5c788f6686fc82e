//! Failure and robustness scenarios over real HTTP, on both backends: a model
//! service that refuses, fails, cuts or stalls its stream, a missing API key,
//! a client that hangs up (the stop button), concurrent runs on one thread,
//! shutdown with a run in flight, and many threads at once.
//!
//! Why one file: each file under `tests/` is its own test binary, linked
//! against the whole daemon; this suite's scenarios share their fixtures,
//! and splitting them would add binaries to build and link in every CI run
//! without making any one scenario easier to find (each is a named test).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chatkitd_testkit::Script;
use chatkitd_testkit::fake_llm::message_text;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{
    Backend, Daemon, Streamed, add_message_body, create_body, eventually, is_text_delta,
    start_reading_answer, transcript,
};

/// The development user of `auth.mode = "none"`.
const USER: &str = "dev";
/// The hidden item a cancelled run leaves behind (protocol 5.4).
const MARKER: &str = "The user cancelled the stream. Stop responding to the prior request.";

/// `n` content chunks `word0 `, `word1 `, …
fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("word{i} ")).collect()
}

/// The event types of a follow-up message answered with `chunks` text deltas.
fn answered(chunks: usize) -> Vec<String> {
    let mut types = vec![
        "thread.item.done",
        "stream_options",
        "thread.item.added",
        "thread.item.updated",
    ];
    types.extend(std::iter::repeat_n("thread.item.updated", chunks + 1));
    types.push("thread.item.done");
    types.into_iter().map(str::to_owned).collect()
}

/// Builds an expected [`transcript`].
fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(kind, text)| ((*kind).to_owned(), (*text).to_owned()))
        .collect()
}

/// A chat message as the daemon sends it to the model.
fn chat(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content})
}

/// The messages of a model request after the system prompt (which must come first).
fn after_system(messages: &[Value]) -> Vec<Value> {
    assert_eq!(messages[0]["role"], "system", "{messages:?}");
    messages[1..].to_vec()
}

/// Checks that the stream has exactly one `error` event, that it is the last
/// event and has the protocol's shape; returns its message.
fn the_error(streamed: &Streamed, allow_retry: bool) -> String {
    let errors: Vec<&Value> = streamed
        .events
        .iter()
        .filter(|e| e["type"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "one error event: {}", streamed.raw);
    assert_eq!(
        streamed.events.last(),
        Some(errors[0]),
        "the error ends the stream"
    );
    let message = errors[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(!message.trim().is_empty(), "the error says what went wrong");
    assert_eq!(
        errors[0],
        &json!({"type": "error", "code": "custom", "message": message, "allow_retry": allow_retry})
    );
    message
}

/// The stream was read to its end and holds only whole `data:` frames.
fn assert_ends_cleanly(streamed: &Streamed) {
    assert!(!streamed.hung_up);
    assert!(
        streamed.raw.ends_with("\n\n"),
        "the last frame is complete: {:?}",
        streamed.raw
    );
    let frames: Vec<&str> = streamed.raw.split_terminator("\n\n").collect();
    assert_eq!(frames.len(), streamed.events.len(), "{:?}", streamed.raw);
    for frame in frames {
        assert!(
            frame.starts_with("data: {") && !frame.contains('\n'),
            "{frame:?}"
        );
    }
}

/// 1. A 429 and a 500 before the stream starts are retried; the user never
///    notices.
async fn transient_refusals_are_retried(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    for (status, retry_after) in [(429, Some(0)), (500, None)] {
        daemon.llm.clear_requests();
        daemon.llm.push(Script::Status {
            status,
            retry_after,
            body: None,
        });
        daemon.llm.push(Script::text(["Fine, ", "thanks."]));
        let streamed = daemon
            .add_message(&thread_id, &format!("after a {status}"))
            .await;
        assert_eq!(streamed.types(), answered(2), "{}", streamed.raw);
        assert_eq!(streamed.error(), None);
        assert_eq!(streamed.answer().as_deref(), Some("Fine, thanks."));
        let requests = daemon.llm.stream_requests();
        assert_eq!(requests.len(), 2, "one refused request and its retry");
        assert_eq!(
            requests[0].body, requests[1].body,
            "the retry is the same request"
        );
    }
    assert_eq!(daemon.llm.pending_scripts(), (0, 0));
    assert_eq!(
        transcript(&daemon.stored_values(USER, &thread_id).await),
        expect(&[
            ("user_message", "hello"),
            ("assistant_message", "Hello! You said: hello"),
            ("user_message", "after a 429"),
            ("assistant_message", "Fine, thanks."),
            ("user_message", "after a 500"),
            ("assistant_message", "Fine, thanks."),
        ])
    );
    daemon.stop().await;
}

/// 2. A model service that keeps failing: bounded retries, an `error` event,
///    the user message kept, and the thread goes on afterwards.
async fn persistent_failure_is_reported(backend: Backend) {
    let daemon = Daemon::start_with(backend, |config| config.llm.max_retries = 2).await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    daemon.llm.clear_requests();
    // One more failure than the daemon will try.
    for _ in 0..4 {
        daemon.llm.push(Script::status(500));
    }
    let streamed = daemon.add_message(&thread_id, "second").await;
    assert_eq!(
        streamed.types(),
        ["thread.item.done", "stream_options", "error"],
        "{}",
        streamed.raw
    );
    let message = the_error(&streamed, true);
    assert!(message.contains("500"), "{message}");
    assert_ends_cleanly(&streamed);
    assert_eq!(
        daemon.llm.stream_requests().len(),
        3,
        "max_retries + 1 attempts"
    );
    let stored = daemon.stored_values(USER, &thread_id).await;
    assert_eq!(
        transcript(&stored),
        expect(&[
            ("user_message", "hello"),
            ("assistant_message", "Hello! You said: hello"),
            ("user_message", "second"),
        ])
    );
    assert_eq!(
        stored[2],
        streamed.done_items()[0],
        "the user message as sent"
    );

    // The next message works: the fake's last scripted 500 is retried.
    daemon.llm.clear_requests();
    let streamed = daemon.add_message(&thread_id, "third").await;
    assert_eq!(streamed.error(), None, "{}", streamed.raw);
    assert_eq!(streamed.answer().as_deref(), Some("Hello! You said: third"));
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        after_system(requests[1].messages()),
        [
            chat("user", "hello"),
            chat("assistant", "Hello! You said: hello"),
            chat("user", "second"),
            chat("user", "third"),
        ]
    );
    daemon.stop().await;
}

/// 2b. A `Retry-After` beyond `llm.max_retry_after` fails at once.
async fn long_retry_after_is_not_waited_for(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    daemon.llm.clear_requests();
    daemon.llm.push(Script::Status {
        status: 429,
        retry_after: Some(30),
        body: None,
    });
    let started = Instant::now();
    let streamed = daemon.add_message(&thread_id, "now please").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        streamed.types(),
        ["thread.item.done", "stream_options", "error"],
        "{}",
        streamed.raw
    );
    let message = the_error(&streamed, true);
    assert!(message.contains("429"), "{message}");
    assert_eq!(daemon.llm.stream_requests().len(), 1, "no retry");
    assert_eq!(
        transcript(&daemon.stored_values(USER, &thread_id).await),
        expect(&[
            ("user_message", "hello"),
            ("assistant_message", "Hello! You said: hello"),
            ("user_message", "now please"),
        ])
    );
    daemon.stop().await;
}

/// 3. A stream cut cleanly, aborted, or carrying an error object: the partial
///    answer is stored and finished, then an `error` event, then a clean end.
async fn broken_streams_keep_the_partial_answer(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    let chunks = || vec!["Hel".to_owned(), "lo".to_owned()];
    let cases = [
        ("cut", Script::CutAfter { chunks: chunks() }, None),
        ("abort", Script::Abort { chunks: chunks() }, None),
        (
            "error",
            Script::ErrorInStream {
                chunks: chunks(),
                message: "the GPU caught fire".to_owned(),
            },
            Some("the GPU caught fire"),
        ),
    ];
    for (name, script, surfaced) in cases {
        daemon.llm.push(script);
        let streamed = daemon.add_message(&thread_id, name).await;
        let mut types = answered(2);
        types.push("error".to_owned());
        assert_eq!(streamed.types(), types, "{name}: {}", streamed.raw);
        assert_eq!(streamed.streamed_text(), "Hello", "{name}");
        let done = streamed.done_items();
        assert_eq!(done[1]["type"], "assistant_message", "{name}");
        assert_eq!(done[1]["content"][0]["text"], "Hello", "{name}");
        let message = the_error(&streamed, true);
        if let Some(surfaced) = surfaced {
            assert!(message.contains(surfaced), "{name}: {message}");
        }
        assert_ends_cleanly(&streamed);
        let stored = daemon.stored_values(USER, &thread_id).await;
        assert_eq!(
            stored[stored.len() - 2..],
            done[..],
            "{name}: stored as sent"
        );
    }
    assert_eq!(daemon.llm.pending_scripts(), (0, 0));
    assert_eq!(
        transcript(&daemon.items(&thread_id).await),
        expect(&[
            ("user_message", "hello"),
            ("assistant_message", "Hello! You said: hello"),
            ("user_message", "cut"),
            ("assistant_message", "Hello"),
            ("user_message", "abort"),
            ("assistant_message", "Hello"),
            ("user_message", "error"),
            ("assistant_message", "Hello"),
        ])
    );
    daemon.stop().await;
}

/// 4. A model that goes silent mid-answer is given up on after `idle_timeout`.
async fn silent_model_times_out(backend: Backend) {
    let daemon = Daemon::start_with(backend, |config| {
        config.llm.idle_timeout = Duration::from_secs(1);
    })
    .await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    daemon.llm.push(Script::Hang {
        chunks: vec!["partial".to_owned()],
    });
    let started = Instant::now();
    let streamed = daemon.add_message(&thread_id, "are you there?").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "the error came after {took:?}"
    );
    let mut types = answered(1);
    types.push("error".to_owned());
    assert_eq!(streamed.types(), types, "{}", streamed.raw);
    assert_eq!(streamed.answer().as_deref(), Some("partial"));
    the_error(&streamed, true);
    assert_ends_cleanly(&streamed);
    let stored = daemon.stored_values(USER, &thread_id).await;
    assert_eq!(stored[2..], streamed.done_items()[..]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            daemon.llm.open_streams() == 0
        })
        .await,
        "the daemon hung up on the silent model"
    );
    daemon.stop().await;
}

/// 5. No API key for OpenAI's own endpoint: a clear, non-retryable error, and
///    nothing is sent anywhere.
async fn unconfigured_model_says_so(backend: Backend) {
    let daemon = Daemon::start_with(backend, |config| {
        config.llm.api_key = None;
        config.llm.base_url = "https://api.openai.com/v1".to_owned();
    })
    .await;
    let (thread_id, streamed) = daemon.create_thread("hello").await;
    assert_eq!(
        streamed.types(),
        [
            "thread.created",
            "thread.item.done",
            "stream_options",
            "error"
        ],
        "{}",
        streamed.raw
    );
    let message = the_error(&streamed, false);
    assert!(message.contains("OPENAI_API_KEY"), "{message}");
    assert_ends_cleanly(&streamed);
    assert_eq!(daemon.llm.requests().len(), 0, "nothing reached a model");
    let user_message = streamed.done_items();
    assert_eq!(daemon.stored_values(USER, &thread_id).await, user_message);
    assert_eq!(daemon.items(&thread_id).await, user_message);
    daemon.stop().await;
}

/// 6. Hanging up after the first delta is the stop button (protocol 5.4): what
///    the client saw is kept, a hidden marker follows, the model is no longer
///    read, and the next turn tells the model.
async fn hanging_up_is_the_stop_button(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let full = words(40);
    daemon.llm.push(Script::Text {
        chunks: full.clone(),
        delay: Duration::from_millis(100),
    });
    let streamed = daemon
        .stream_until(create_body("first"), is_text_delta)
        .await;
    assert!(streamed.hung_up, "{}", streamed.raw);
    let thread_id = streamed.thread_id().to_owned();
    let seen = streamed.streamed_text();
    assert_eq!(seen, "word0 ");
    assert!(
        eventually(Duration::from_secs(2), || async {
            daemon.llm.open_streams() == 0
        })
        .await,
        "the daemon still reads the model 2 s after the client left (the answer takes 4 s)"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            daemon.stored_values(USER, &thread_id).await.len() >= 3
        })
        .await,
        "the cancelled run stores its partial answer and the marker: {:?}",
        daemon.stored_values(USER, &thread_id).await
    );
    let stored = daemon.stored_values(USER, &thread_id).await;
    assert_eq!(stored.len(), 3, "{stored:#?}");
    assert_eq!(stored[0], streamed.done_items()[0], "the user message");
    let partial = stored[1]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        partial.starts_with(&seen) && partial.len() < full.concat().len(),
        "stored {partial:?}, the client saw {seen:?}"
    );
    let added = streamed
        .events
        .iter()
        .find(|e| e["type"] == "thread.item.added")
        .expect("thread.item.added")["item"]
        .clone();
    let mut expected = added;
    expected["content"] = json!([{"annotations": [], "text": partial, "type": "output_text"}]);
    assert_eq!(
        stored[1], expected,
        "the message the client saw being added"
    );
    let marker_id = stored[2]["id"].as_str().unwrap_or_default().to_owned();
    assert!(marker_id.starts_with("shcx_"), "{marker_id}");
    assert_eq!(
        stored[2],
        json!({
            "id": marker_id,
            "thread_id": thread_id,
            "created_at": stored[2]["created_at"],
            "type": "sdk_hidden_context",
            "content": MARKER,
        })
    );
    assert_eq!(
        daemon.items(&thread_id).await,
        stored[..2],
        "no hidden item"
    );

    let next = daemon.add_message(&thread_id, "next").await;
    assert_eq!(next.error(), None, "{}", next.raw);
    assert_eq!(next.answer().as_deref(), Some("Hello! You said: next"));
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        after_system(requests[1].messages()),
        [
            chat("user", "first"),
            chat("assistant", &partial),
            chat("user", MARKER),
            chat("user", "next"),
        ]
    );
    daemon.stop().await;
}

/// 7. Hanging up before the first token: nothing to keep but the marker.
async fn hanging_up_before_the_first_token(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    daemon.llm.push(Script::Slow {
        chunks: vec!["too ".to_owned(), "late".to_owned()],
        first_token_delay: Duration::from_secs(2),
        delay: Duration::ZERO,
    });
    let streamed = daemon
        .stream_until(create_body("first"), |e| e["type"] == "stream_options")
        .await;
    assert!(streamed.hung_up);
    assert_eq!(
        streamed.types(),
        ["thread.created", "thread.item.done", "stream_options"]
    );
    let thread_id = streamed.thread_id().to_owned();
    assert!(
        eventually(Duration::from_secs(10), || async {
            daemon
                .stored_values(USER, &thread_id)
                .await
                .iter()
                .any(|item| item["type"] == "sdk_hidden_context")
        })
        .await,
        "the marker is stored: {:?}",
        daemon.stored_values(USER, &thread_id).await
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            daemon.llm.open_streams() == 0
        })
        .await,
        "the daemon stops waiting for the model"
    );
    // The marker is the run's last write; nothing else may follow it.
    let stored = daemon.stored_values(USER, &thread_id).await;
    assert_eq!(
        transcript(&stored),
        expect(&[("user_message", "first"), ("sdk_hidden_context", MARKER)])
    );
    assert_eq!(daemon.items(&thread_id).await, streamed.done_items());
    daemon.stop().await;
}

/// 8. Two messages sent at once to one thread run one after the other.
async fn one_run_per_thread(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    daemon.llm.clear_requests();
    let delay = Duration::from_millis(150);
    daemon.llm.push(Script::Text {
        chunks: vec!["first ".into(), "slow ".into(), "answer".into()],
        delay,
    });
    daemon.llm.push(Script::Text {
        chunks: vec!["second ".into(), "answer".into()],
        delay,
    });
    let (one, two) = tokio::join!(
        daemon.add_message(&thread_id, "one"),
        daemon.add_message(&thread_id, "two")
    );
    for streamed in [&one, &two] {
        assert_eq!(streamed.status, 200);
        assert_eq!(streamed.error(), None, "{}", streamed.raw);
    }
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 2);
    let first = requests[0].last_user_text().unwrap_or_default();
    let second = requests[1].last_user_text().unwrap_or_default();
    assert_eq!(
        HashSet::from([first.as_str(), second.as_str()]),
        HashSet::from(["one", "two"])
    );
    let base = [
        chat("user", "hello"),
        chat("assistant", "Hello! You said: hello"),
    ];
    let mut expected_first = base.to_vec();
    expected_first.push(chat("user", &first));
    assert_eq!(after_system(requests[0].messages()), expected_first);
    let mut expected_second = expected_first.clone();
    expected_second.push(chat("assistant", "first slow answer"));
    expected_second.push(chat("user", &second));
    assert_eq!(
        after_system(requests[1].messages()),
        expected_second,
        "the second run saw the first run's complete answer"
    );
    let (first_stream, second_stream) = if first == "one" {
        (&one, &two)
    } else {
        (&two, &one)
    };
    assert_eq!(first_stream.answer().as_deref(), Some("first slow answer"));
    assert_eq!(second_stream.answer().as_deref(), Some("second answer"));
    assert_eq!(
        transcript(&daemon.items(&thread_id).await),
        expect(&[
            ("user_message", "hello"),
            ("assistant_message", "Hello! You said: hello"),
            ("user_message", &first),
            ("assistant_message", "first slow answer"),
            ("user_message", &second),
            ("assistant_message", "second answer"),
        ])
    );
    daemon.stop().await;
}

/// 9. Shutdown lets a run go on for `shutdown_grace`, then cancels it: the
///    partial answer and the marker are stored and the daemon exits.
async fn shutdown_cancels_runs_after_the_grace(backend: Backend) {
    let mut daemon = Daemon::start_with(backend, |config| {
        config.server.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    let (thread_id, _) = daemon.create_thread("hello").await;
    let full = words(60);
    daemon.llm.push(Script::Text {
        chunks: full.clone(),
        delay: Duration::from_millis(100),
    });
    let reader = start_reading_answer(
        &daemon.url,
        add_message_body(&thread_id, "tell me a long story"),
    )
    .await;
    let started = Instant::now();
    daemon.shut_down().await;
    let took = started.elapsed();
    let (streamed, failure) = reader.await.expect("reader");
    assert!(
        took < Duration::from_secs(3),
        "shutdown took {took:?} with a 300 ms grace (the answer needs 6 s); the client read {:?}",
        streamed.streamed_text()
    );
    assert_eq!(failure, None, "the stream still ends cleanly");
    let stored = daemon.stored_values(USER, &thread_id).await;
    let kinds: Vec<&str> = stored
        .iter()
        .map(|i| i["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        [
            "user_message",
            "assistant_message",
            "user_message",
            "assistant_message",
            "sdk_hidden_context"
        ],
        "{stored:#?}"
    );
    let partial = stored[3]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        partial.starts_with(&streamed.streamed_text()) && partial.len() < full.concat().len(),
        "stored {partial:?}, the client saw {:?}",
        streamed.streamed_text()
    );
    assert!(!partial.is_empty());
    assert_eq!(stored[4]["content"], MARKER);
    daemon.stop().await;
}

/// 10. Sixteen new threads at once each get their own answer.
async fn many_threads_at_once(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let streams = futures::future::join_all(
        (0..16).map(|i| daemon.stream(create_body(&format!("thread number {i}")))),
    )
    .await;
    let mut ids = HashSet::new();
    for (i, streamed) in streams.iter().enumerate() {
        assert_eq!(streamed.status, 200);
        assert_eq!(streamed.error(), None, "{}", streamed.raw);
        let expected = format!("Hello! You said: thread number {i}");
        assert_eq!(streamed.answer(), Some(expected.clone()));
        let thread_id = streamed.thread_id().to_owned();
        assert_eq!(
            transcript(&daemon.stored_values(USER, &thread_id).await),
            expect(&[
                ("user_message", &format!("thread number {i}")),
                ("assistant_message", &expected),
            ])
        );
        ids.insert(thread_id);
    }
    assert_eq!(ids.len(), 16);
    let requests = daemon.llm.stream_requests();
    assert_eq!(requests.len(), 16);
    for request in &requests {
        let user_messages: Vec<String> = request
            .messages()
            .iter()
            .filter(|m| m["role"] == "user")
            .filter_map(message_text)
            .collect();
        assert_eq!(user_messages.len(), 1, "one thread's history only");
    }
    daemon.stop().await;
}

both_backends!(
    transient_refusals_are_retried,
    persistent_failure_is_reported,
    long_retry_after_is_not_waited_for,
    broken_streams_keep_the_partial_answer,
    silent_model_times_out,
    unconfigured_model_says_so,
    hanging_up_is_the_stop_button,
    hanging_up_before_the_first_token,
    one_run_per_thread,
    shutdown_cancels_runs_after_the_grace,
    many_threads_at_once,
);
