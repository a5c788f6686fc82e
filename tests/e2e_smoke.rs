//! The first conversation over real HTTP, on both backends.

mod support;

use pretty_assertions::assert_eq;
use support::{Backend, Daemon};

async fn first_conversation(backend: Backend) {
    let daemon = Daemon::start(backend).await;
    let (thread_id, streamed) = daemon.create_thread("hello there").await;
    assert_eq!(streamed.content_type, "text/event-stream");
    assert_eq!(
        streamed.types()[..3],
        ["thread.created", "thread.item.done", "stream_options"]
    );
    assert_eq!(
        streamed.answer().as_deref(),
        Some("Hello! You said: hello there")
    );
    assert_eq!(streamed.streamed_text(), "Hello! You said: hello there");
    let items = daemon.items(&thread_id).await;
    assert_eq!(items, streamed.done_items());
    daemon.stop().await;
}

both_backends!(first_conversation);
