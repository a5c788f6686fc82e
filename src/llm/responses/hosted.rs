//! OpenAI's hosted tools in the Responses API (`[llm.hosted_tools]`): their
//! definitions sent with every answer's request ([`HostedRequest`]), and
//! what their output items and the answer's citations become
//! ([`HostedEvent`]): a web or file search begun and done with what it
//! searched and found, an image begun, drawn in partial images and done,
//! and a citation of a URL or a file at a place in the text.
//!
//! All of it read within bounds: so many queries and sources per search, so
//! many bytes per URL and title, images no larger than `max_image_bytes`,
//! no more than `max_images` per answer and no more partial images than
//! asked for.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::config::HostedTools;
use crate::llm::hosted::{Citation, HostedEvent, UrlSource};

/// Most queries kept of one search.
const MAX_QUERIES: usize = 16;
/// Most sources kept of one search.
const MAX_SOURCES: usize = 32;
/// Longest URL, title or file name kept, in bytes.
const MAX_FIELD_BYTES: usize = 2048;

/// The hosted tools offered with an answer's request, and what the request
/// must `include` for them to be shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::llm) struct HostedRequest {
    /// The tools' definitions, in the request's `tools`.
    pub(in crate::llm) tools: Vec<Value>,
    /// Extra `include` entries (a web search's sources).
    pub(in crate::llm) include: Vec<&'static str>,
}

impl HostedRequest {
    /// The definitions of the configured hosted tools.
    pub(in crate::llm) fn new(config: &HostedTools) -> HostedRequest {
        let mut request = HostedRequest::default();
        if let Some(search) = &config.web_search {
            let mut tool = Map::new();
            tool.insert("type".to_owned(), json!("web_search"));
            if !search.allowed_domains.is_empty() {
                tool.insert(
                    "filters".to_owned(),
                    json!({"allowed_domains": search.allowed_domains}),
                );
            }
            if let Some(location) = &search.user_location {
                let mut location = json!(location);
                if let Some(fields) = location.as_object_mut() {
                    fields.insert("type".to_owned(), json!("approximate"));
                }
                tool.insert("user_location".to_owned(), location);
            }
            if let Some(size) = search.search_context_size {
                tool.insert("search_context_size".to_owned(), json!(size));
            }
            request.tools.push(Value::Object(tool));
            request.include.push("web_search_call.action.sources");
        }
        if let Some(files) = &config.file_search {
            let mut tool =
                json!({"type": "file_search", "vector_store_ids": files.vector_store_ids});
            if let (Some(max), Some(fields)) = (files.max_num_results, tool.as_object_mut()) {
                fields.insert("max_num_results".to_owned(), json!(max));
            }
            request.tools.push(tool);
        }
        if let Some(images) = &config.image_generation {
            request.tools.push(json!({
                "type": "image_generation",
                "size": images.size,
                "quality": images.quality,
                "partial_images": images.partial_images,
                "output_format": "png",
            }));
        }
        request
    }
}

/// The length of `bytes` bytes, base64-encoded.
fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3).saturating_mul(4)
}

/// A string field of `value`, within [`MAX_FIELD_BYTES`].
fn field(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty() && text.len() <= MAX_FIELD_BYTES)
        .map(str::to_owned)
}

/// A web search's output item, added (`done` false) or done.
pub(super) fn web_search(item: &Value, done: bool) -> Option<HostedEvent> {
    let id = field(item, "id")?;
    let action = item.get("action").unwrap_or(&Value::Null);
    let mut queries: Vec<String> = action
        .get("queries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|q| !q.is_empty() && q.len() <= MAX_FIELD_BYTES)
        .take(MAX_QUERIES)
        .map(str::to_owned)
        .collect();
    if let Some(query) = field(action, "query")
        && !queries.contains(&query)
    {
        queries.insert(0, query);
        queries.truncate(MAX_QUERIES);
    }
    let mut sources: Vec<UrlSource> = action
        .get("sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|source| {
            Some(UrlSource {
                url: field(source, "url")?,
                title: field(source, "title"),
            })
        })
        .take(MAX_SOURCES)
        .collect();
    // A page opened or searched within: its URL is the source.
    if sources.is_empty()
        && let Some(url) = field(action, "url")
    {
        sources.push(UrlSource { url, title: None });
    }
    Some(HostedEvent::WebSearch {
        id,
        queries,
        sources,
        done,
    })
}

/// A file search's output item, added (`done` false) or done.
pub(super) fn file_search(item: &Value, done: bool) -> Option<HostedEvent> {
    let id = field(item, "id")?;
    let strings = |key: &str, inner: Option<&str>| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for value in item
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let text = match inner {
                Some(inner) => field(value, inner),
                None => value
                    .as_str()
                    .filter(|t| !t.is_empty() && t.len() <= MAX_FIELD_BYTES)
                    .map(str::to_owned),
            };
            if let Some(text) = text
                && !out.contains(&text)
            {
                out.push(text);
            }
            if out.len() == MAX_SOURCES {
                break;
            }
        }
        out
    };
    Some(HostedEvent::FileSearch {
        id,
        queries: strings("queries", None),
        files: strings("results", Some("filename")),
        done,
    })
}

/// An annotation of the answer's text (`response.output_text.annotation.added`),
/// as openai-chatkit's `ResponseStreamConverter` reads it: a URL citation
/// at its end index, a file citation at its index (none without a file
/// name), a container file citation at its end index.
pub(super) fn citation(annotation: &Value) -> Option<Citation> {
    let index = |key: &str| annotation.get(key).and_then(Value::as_i64);
    match annotation.get("type").and_then(Value::as_str)? {
        "url_citation" => Some(Citation::Url {
            url: field(annotation, "url")?,
            title: field(annotation, "title"),
            index: index("end_index"),
        }),
        "file_citation" => Some(Citation::File {
            filename: field(annotation, "filename")?,
            index: index("index"),
        }),
        "container_file_citation" => Some(Citation::File {
            filename: field(annotation, "filename")?,
            index: index("end_index"),
        }),
        _ => None,
    }
}

/// Why an image from the stream was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ImageRefused {
    /// Not base64.
    Unreadable,
    /// Larger than this many bytes, decoded.
    TooLarge(usize),
}

/// The bytes of a base64 image, within `max` bytes decoded.
pub(super) fn image_bytes(base64: &str, max: usize) -> Result<Vec<u8>, ImageRefused> {
    if base64.len() > base64_len(max) {
        return Err(ImageRefused::TooLarge(max));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64.trim())
        .map_err(|_| ImageRefused::Unreadable)?;
    if bytes.len() > max {
        return Err(ImageRefused::TooLarge(max));
    }
    Ok(bytes)
}

/// Whether `base64` is a partial image worth showing: base64 of at most
/// `max` bytes.
pub(super) fn partial_image_ok(base64: &str, max: usize) -> bool {
    !base64.is_empty()
        && base64.len() <= base64_len(max)
        && base64
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::config::{ImageGeneration, UserLocation, WebSearch};

    #[test]
    fn hosted_tools_are_defined_as_the_api_names_them() {
        let config = HostedTools {
            web_search: Some(WebSearch {
                allowed_domains: vec!["rust-lang.org".to_owned()],
                user_location: Some(UserLocation {
                    country: Some("FR".to_owned()),
                    ..UserLocation::default()
                }),
                search_context_size: None,
            }),
            file_search: None,
            image_generation: Some(ImageGeneration::default()),
        };
        let request = HostedRequest::new(&config);
        assert_eq!(
            request.tools,
            vec![
                json!({"type": "web_search", "filters": {"allowed_domains": ["rust-lang.org"]},
                    "user_location": {"country": "FR", "type": "approximate"}}),
                json!({"type": "image_generation", "size": "auto", "quality": "auto",
                    "partial_images": 1, "output_format": "png"}),
            ]
        );
        assert_eq!(request.include, ["web_search_call.action.sources"]);
        assert_eq!(
            HostedRequest::new(&HostedTools::default()),
            HostedRequest::default()
        );
    }

    #[test]
    fn a_search_keeps_its_query_and_sources_within_bounds() {
        let sources: Vec<Value> = (0..100)
            .map(|n| json!({"type": "url", "url": format!("https://e.com/{n}")}))
            .chain([json!({"type": "url", "url": "x".repeat(5000)})])
            .collect();
        let item = json!({"type": "web_search_call", "id": "ws_1", "status": "completed",
            "action": {"type": "search", "query": "rust", "sources": sources}});
        let Some(HostedEvent::WebSearch {
            queries, sources, ..
        }) = web_search(&item, true)
        else {
            panic!("not a search");
        };
        assert_eq!(queries, ["rust"]);
        assert_eq!(sources.len(), MAX_SOURCES);
        let opened = json!({"type": "web_search_call", "id": "ws_2",
            "action": {"type": "open_page", "url": "https://e.com/"}});
        let Some(HostedEvent::WebSearch { sources, .. }) = web_search(&opened, true) else {
            panic!("not a search");
        };
        assert_eq!(sources[0].url, "https://e.com/");
    }

    #[test]
    fn a_file_search_keeps_its_queries_and_each_file_once() {
        let item = json!({"type": "file_search_call", "id": "fs_1", "status": "completed",
            "queries": ["refund policy", "refund policy"],
            "results": [{"file_id": "f1", "filename": "policy.pdf", "score": 0.9},
                {"file_id": "f1", "filename": "policy.pdf", "score": 0.8},
                {"file_id": "f2", "filename": "faq.md"}]});
        assert_eq!(
            file_search(&item, true),
            Some(HostedEvent::FileSearch {
                id: "fs_1".to_owned(),
                queries: vec!["refund policy".to_owned()],
                files: vec!["policy.pdf".to_owned(), "faq.md".to_owned()],
                done: true
            })
        );
        let cited =
            json!({"type": "file_citation", "file_id": "f2", "filename": "faq.md", "index": 12});
        assert_eq!(
            citation(&cited),
            Some(Citation::File {
                filename: "faq.md".to_owned(),
                index: Some(12)
            })
        );
    }

    #[test]
    fn citations_are_read_as_the_reference_reads_them() {
        let url = json!({"type": "url_citation", "start_index": 3, "end_index": 9,
            "url": "https://e.com/", "title": "E"});
        assert_eq!(
            citation(&url),
            Some(Citation::Url {
                url: "https://e.com/".to_owned(),
                title: Some("E".to_owned()),
                index: Some(9)
            })
        );
        let nameless = json!({"type": "file_citation", "file_id": "f", "index": 2});
        assert_eq!(citation(&nameless), None);
        assert_eq!(citation(&json!({"type": "unknown"})), None);
    }

    #[test]
    fn images_are_read_within_their_bound() {
        let png = base64::engine::general_purpose::STANDARD.encode([7u8; 100]);
        assert_eq!(image_bytes(&png, 100), Ok(vec![7u8; 100]));
        assert_eq!(image_bytes(&png, 99), Err(ImageRefused::TooLarge(99)));
        assert_eq!(image_bytes("@@@@", 100), Err(ImageRefused::Unreadable));
        assert!(partial_image_ok(&png, 100));
        assert!(!partial_image_ok("a\"b", 100));
    }
}
