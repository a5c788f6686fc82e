//! OpenAI's Responses API end to end, checked against the reference:
//! recorded event streams (`tests/fixtures/responses/*.jsonl`: reasoning
//! and text; reasoning, a function call and text; a web search with
//! citations; an image generation with a partial image) played by the
//! fake model to the daemon, whose ChatKit events are compared item by
//! item with what openai-chatkit's `stream_agent_response` made of the same
//! streams (`tests/fixtures/reference/streams/`, from
//! `tests/fixtures/generate_streams.py`). Then what the reference leaves
//! to each server: the hosted tools' definitions in the request, a search
//! shown as a task, the image kept as an attachment whose preview serves
//! the PNG and which the model sees again on the next turn; a model's own
//! reasoning options.

mod support;

use std::path::Path;

use base64::Engine as _;
use chatkitd::config::{
    Config, ImageGeneration, LlmApi, ModelChoice, ReasoningEffort, ReasoningSummary, UserLocation,
    WebSearch,
};
use chatkitd_testkit::Script;
use pretty_assertions::assert_eq;
use serde_json::{Value, json};
use support::{Backend, Daemon, fake_mcp_server};

/// Each recorded stream, with the items the reference shows of it and its
/// annotations and partial images.
const SCENARIOS: [(&str, usize, usize); 4] = [
    ("reasoning_text", 2, 0),
    ("reasoning_function_call", 2, 0),
    ("web_search_citations", 2, 2),
    ("image_generation", 2, 1),
];

/// A daemon with the fake MCP server, on the Responses API with reasoning
/// summaries, web search and image generation (one partial image).
async fn daemon_on_hosted(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Daemon {
    let server = fake_mcp_server();
    Daemon::start_with(backend, move |config| {
        config.mcp_servers.insert("fake".into(), server);
        config.llm.api = LlmApi::Responses;
        config.llm.reasoning_summary = Some(ReasoningSummary::Auto);
        config.llm.hosted_tools.web_search = Some(WebSearch {
            allowed_domains: vec!["rust-lang.org".to_owned()],
            user_location: Some(UserLocation {
                country: Some("FR".to_owned()),
                ..UserLocation::default()
            }),
            search_context_size: None,
        });
        config.llm.hosted_tools.image_generation = Some(ImageGeneration::default());
        tweak(config);
    })
    .await
}

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// The events of a recorded stream, one JSON text each.
fn recorded_lines(name: &str) -> Vec<String> {
    let path = fixtures().join(format!("responses/{name}.jsonl"));
    let text = std::fs::read_to_string(&path).expect("the recorded stream");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A recorded stream as the fake model's scripts: one per response.
fn recorded(name: &str) -> Vec<Script> {
    let mut responses: Vec<Vec<String>> = Vec::new();
    for line in recorded_lines(name) {
        let event: Value = serde_json::from_str(&line).expect("an event");
        if event["type"] == "response.created" || responses.is_empty() {
            responses.push(Vec::new());
        }
        if let Some(current) = responses.last_mut() {
            current.push(line);
        }
    }
    responses
        .into_iter()
        .map(|events| Script::Raw { events })
        .collect()
}

/// The events openai-chatkit made of a recorded stream.
fn reference(name: &str) -> Vec<Value> {
    let path = fixtures().join(format!("reference/streams/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("the reference")).expect("JSON")
}

/// The items an answer showed, as the reference would: done items only,
/// without ids and times; chatkitd's own additions left out (its
/// `custom` workflows: the reference shows neither tool calls nor
/// searches), the reasoning workflows of one answer's steps folded into one
/// (the reference keeps one open across its tool calls), and each
/// thought's text trimmed (chatkitd trims, the reference keeps a part's
/// trailing blank line).
fn shown_items(events: &[Value]) -> Vec<Value> {
    let mut shown: Vec<Value> = Vec::new();
    for event in events.iter().filter(|e| e["type"] == "thread.item.done") {
        let mut item = event["item"].clone();
        match item["type"].as_str() {
            Some("user_message") => continue,
            Some("workflow") if item["workflow"]["type"] == "custom" => continue,
            _ => {}
        }
        if let Some(fields) = item.as_object_mut() {
            for key in ["id", "thread_id", "created_at"] {
                fields.remove(key);
            }
        }
        if item["type"] == "workflow" {
            item["workflow"]["summary"] = json!({"duration": 0});
            for task in item["workflow"]["tasks"]
                .as_array_mut()
                .into_iter()
                .flatten()
            {
                let trimmed = task["content"].as_str().map(|c| c.trim().to_owned());
                if let Some(trimmed) = trimmed {
                    task["content"] = json!(trimmed);
                }
            }
            if let Some(last) = shown.last_mut()
                && last["type"] == "workflow"
                && last["workflow"]["type"] == "reasoning"
                && item["workflow"]["type"] == "reasoning"
            {
                let tasks = item["workflow"]["tasks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if let Some(all) = last["workflow"]["tasks"].as_array_mut() {
                    all.extend(tasks);
                }
                continue;
            }
        }
        if item["type"] == "generated_image" {
            // Where the image is served differs (a data URL, a signed
            // preview); its bytes are compared on their own.
            item["image"] = json!("an image");
        }
        shown.push(item);
    }
    shown
}

/// The message updates that carry more than text: each annotation as it
/// was added, and each partial image.
fn rich_updates(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["type"] == "thread.item.updated")
        .map(|e| e["update"].clone())
        .filter(|u| {
            matches!(
                u["type"].as_str(),
                Some("assistant_message.content_part.annotation_added" | "generated_image.updated")
            )
        })
        .map(|mut u| {
            if u["type"] == "generated_image.updated" {
                // The image's own id: the Responses item's in both.
                u["image"].as_object_mut().map(|i| i.remove("id"));
            }
            u
        })
        .collect()
}

/// The bytes of a `data:image/png;base64,` URL.
fn data_url_bytes(url: &str) -> Vec<u8> {
    let encoded = url
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64")
}

/// Each recorded stream, played to chatkitd, shows the items the reference
/// shows (after the documented normalisation), the same annotations and
/// partial images, and the same final image.
async fn recorded_streams_show_what_the_reference_shows(backend: Backend) {
    let daemon = daemon_on_hosted(backend, |_| {}).await;
    for (name, items, updates) in SCENARIOS {
        for script in recorded(name) {
            daemon.llm.push(script);
        }
        let (_, streamed) = daemon.create_thread(&format!("scenario {name}")).await;
        assert!(streamed.error().is_none(), "{name}: {}", streamed.raw);
        let ours = streamed.events.clone();
        let theirs = reference(name);
        assert_eq!(
            (shown_items(&theirs).len(), rich_updates(&theirs).len()),
            (items, updates),
            "{name}: the reference's own events"
        );
        assert_eq!(shown_items(&ours), shown_items(&theirs), "{name}");
        assert_eq!(rich_updates(&ours), rich_updates(&theirs), "{name}");
        if name == "image_generation" {
            let image = |events: &[Value]| -> String {
                events
                    .iter()
                    .find(|e| {
                        e["type"] == "thread.item.done" && e["item"]["type"] == "generated_image"
                    })
                    .and_then(|e| e["item"]["image"]["url"].as_str())
                    .expect("a generated image")
                    .to_owned()
            };
            let (status, body) = fetch(&image(&ours)).await;
            assert_eq!(status, 200);
            assert_eq!(body, data_url_bytes(&image(&theirs)), "the final image");
        }
    }
    daemon.stop().await;
}

async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let response = reqwest::get(url).await.expect("GET sent");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// The hosted tools reach the request as the API names them, with what
/// must be included to show them; a search shows as a `web_search` task
/// with its query and sources, and stays in `items.list`.
async fn a_web_search_is_asked_for_and_shown_as_a_task(backend: Backend) {
    let daemon = daemon_on_hosted(backend, |_| {}).await;
    for script in recorded("web_search_citations") {
        daemon.llm.push(script);
    }
    let (thread_id, streamed) = daemon
        .create_thread("when did the 2024 edition ship?")
        .await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    let request = &daemon.llm.stream_requests()[0].body;
    let tools = request["tools"].as_array().expect("tools");
    assert!(
        tools.contains(&json!({"type": "web_search",
        "filters": {"allowed_domains": ["rust-lang.org"]},
        "user_location": {"country": "FR", "type": "approximate"}})),
        "{request}"
    );
    assert!(
        tools.contains(&json!({"type": "image_generation", "size": "auto",
        "quality": "auto", "partial_images": 1, "output_format": "png"})),
        "{request}"
    );
    assert_eq!(
        request["include"],
        json!([
            "reasoning.encrypted_content",
            "web_search_call.action.sources"
        ]),
        "{request}"
    );

    let search = streamed
        .done_items()
        .into_iter()
        .find(|i| i["type"] == "workflow" && i["workflow"]["type"] == "custom")
        .expect("the search's workflow");
    let task = &search["workflow"]["tasks"][0];
    assert_eq!(task["type"], "web_search", "{task}");
    assert_eq!(task["status_indicator"], "complete");
    assert_eq!(task["title_query"], "rust 2024 edition release date");
    assert_eq!(
        task["sources"][1]["url"],
        "https://doc.rust-lang.org/edition-guide/rust-2024/"
    );
    // It was shown while it ran, then done.
    let updates: Vec<&str> = streamed
        .events
        .iter()
        .filter(|e| e["item_id"] == search["id"])
        .filter_map(|e| e["update"]["task"]["status_indicator"].as_str())
        .collect();
    assert_eq!(updates, ["loading", "complete"]);
    // Listed with the answer's annotations.
    let listed = daemon.items(&thread_id).await;
    let kinds: Vec<&str> = listed.iter().filter_map(|i| i["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["user_message", "workflow", "workflow", "assistant_message"]
    );
    assert_eq!(
        listed[3]["content"][0]["annotations"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    daemon.stop().await;
}

/// A generated image is kept with the thread: the next turn shows it to
/// the model, and deleting the thread deletes it.
async fn a_generated_image_is_kept_and_seen_again(backend: Backend) {
    let daemon = daemon_on_hosted(backend, |_| {}).await;
    for script in recorded("image_generation") {
        daemon.llm.push(script);
    }
    let (thread_id, streamed) = daemon.create_thread("draw a red square").await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    let image = streamed
        .done_items()
        .into_iter()
        .find(|i| i["type"] == "generated_image")
        .expect("the image");
    let url = image["image"]["url"].as_str().expect("a URL").to_owned();
    assert_eq!(fetch(&url).await.0, 200);

    daemon.llm.push(Script::text(["It is red."]));
    daemon.add_message(&thread_id, "what colour is it?").await;
    let requests = daemon.llm.stream_requests();
    let input = requests.last().expect("the second turn").input().to_vec();
    let shown = input
        .iter()
        .find(|item| {
            item["content"]
                .as_array()
                .is_some_and(|parts| parts.iter().any(|p| p["type"] == "input_image"))
        })
        .expect("the generated image in the input");
    assert_eq!(shown["role"], "user", "{shown}");

    let (status, _) = daemon
        .post(json!({"type": "threads.delete", "params": {"thread_id": thread_id}}))
        .await;
    assert_eq!(status, 200);
    assert_ne!(fetch(&url).await.0, 200, "the image outlived its thread");
    daemon.stop().await;
}

/// A model picked in the composer sends its own reasoning options from
/// `[llm] models`; the default model sends `[llm]`'s.
async fn each_model_sends_its_own_reasoning_options(backend: Backend) {
    let daemon = daemon_on_hosted(backend, |config| {
        config.llm.reasoning_effort = Some(ReasoningEffort::Low);
        config.llm.models = vec![
            "fake-model".into(),
            ModelChoice {
                name: "deep-thinker".to_owned(),
                reasoning_effort: Some(ReasoningEffort::High),
                reasoning_summary: Some(ReasoningSummary::Detailed),
            },
        ];
    })
    .await;
    daemon.llm.push(Script::text(["Quick."]));
    daemon.create_thread("default model").await;
    daemon.llm.push(Script::text(["Deep."]));
    let streamed = daemon
        .stream(json!({"type": "threads.create", "params": {"input": {
            "content": [{"type": "input_text", "text": "think hard"}],
            "attachments": [],
            "inference_options": {"model": "deep-thinker"},
        }}}))
        .await;
    assert!(streamed.error().is_none(), "{}", streamed.raw);
    let requests = daemon.llm.stream_requests();
    let reasoning: Vec<(Value, Value)> = requests
        .iter()
        .map(|r| (r.body["model"].clone(), r.body["reasoning"].clone()))
        .collect();
    assert_eq!(
        reasoning,
        [
            (
                json!("fake-model"),
                json!({"effort": "low", "summary": "auto"})
            ),
            (
                json!("deep-thinker"),
                json!({"effort": "high", "summary": "detailed"})
            ),
        ]
    );
    daemon.stop().await;
}

/// A Responses stream cut while the model thinks: the thinking shown so
/// far is kept (closed and listed) and the answer ends with an `error`.
async fn a_stream_cut_mid_reasoning_keeps_the_thinking(backend: Backend) {
    let daemon = daemon_on_hosted(backend, |_| {}).await;
    let mut events: Vec<String> = Vec::new();
    for line in recorded_lines("reasoning_text") {
        let event: Value = serde_json::from_str(&line).expect("an event");
        let cut_here = event["type"] == "response.reasoning_summary_text.done";
        events.push(line);
        if cut_here {
            break;
        }
    }
    daemon.llm.push(Script::Raw { events });
    let (thread_id, streamed) = daemon.create_thread("think about it").await;
    let error = streamed.error().expect("an error event");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("ended before the answer was complete")),
        "{error}"
    );
    let thinking = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .filter(|i| i["type"] == "workflow" && i["workflow"]["type"] == "reasoning")
            .flat_map(|i| {
                i["workflow"]["tasks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|t| t["content"].as_str().map(str::to_owned))
            .collect()
    };
    let shown = thinking(&streamed.done_items());
    assert_eq!(shown.len(), 1, "{}", streamed.raw);
    assert_eq!(thinking(&daemon.items(&thread_id).await), shown);
    daemon.stop().await;
}

both_backends!(
    a_stream_cut_mid_reasoning_keeps_the_thinking,
    recorded_streams_show_what_the_reference_shows,
    a_web_search_is_asked_for_and_shown_as_a_task,
    a_generated_image_is_kept_and_seen_again,
    each_model_sends_its_own_reasoning_options,
);
