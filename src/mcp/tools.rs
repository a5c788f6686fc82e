//! What the model sees of the servers' tools: names, schemas, results.
//!
//! Names are sanitized to `[a-zA-Z0-9_-]` and at most 64 bytes (what OpenAI's
//! API accepts), qualified as `server__tool` only when two servers offer the
//! same name, and shortened with a stable hash when too long. They depend
//! only on the configuration and the tool lists, so a restart gives the same
//! names and stored history still replays.
//!
//! Parameters named in `inject` are removed from the schema the model sees;
//! the daemon sets them on every call, over anything the model sent.

use std::collections::{BTreeMap, HashMap};

use rmcp::model::{CallToolResult, ContentBlock, Tool};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::Approval;

/// Longest tool name the model may be given.
pub const MAX_NAME: usize = 64;

/// One tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTool {
    /// The name the model calls it by.
    pub name: String,
    /// The server that runs it, and its own name there.
    pub server: String,
    pub tool: String,
    pub description: String,
    /// The input schema without the injected parameters.
    pub parameters: Value,
    /// Whether a call waits for the user's approval (the server's or the
    /// tool's `approval` rule, and the tool's `destructiveHint`).
    pub needs_approval: bool,
}

/// One tool a server offers, with what its configuration says of it.
#[derive(Debug, Clone)]
pub struct OfferedTool {
    pub tool: Tool,
    /// Parameters the daemon fills in (hidden from the model).
    pub injected: Vec<String>,
    pub approval: Approval,
}

/// Whether a call of `tool` waits for approval under `rule`.
pub fn needs_approval(tool: &Tool, rule: Approval) -> bool {
    match rule {
        Approval::Never => false,
        Approval::Always => true,
        Approval::Destructive => tool
            .annotations
            .as_ref()
            .and_then(|a| a.destructive_hint)
            .unwrap_or(false),
    }
}

/// Keeps `[a-zA-Z0-9_-]`, replacing anything else with `_`.
pub fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "tool".to_owned()
    } else {
        cleaned
    }
}

/// Cuts a name to [`MAX_NAME`] bytes, ending it with a short hash of the full
/// name so that two long names stay distinct.
fn fit(name: String) -> String {
    if name.len() <= MAX_NAME {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let suffix = hex::encode(&digest[..4]);
    format!("{}_{suffix}", &name[..MAX_NAME - suffix.len() - 1])
}

/// Assigns model-facing names to every server's tools. `servers` maps server
/// name to its (already filtered) tools.
pub fn name_tools(servers: &BTreeMap<String, Vec<OfferedTool>>) -> Vec<ModelTool> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for tools in servers.values() {
        for OfferedTool { tool, .. } in tools {
            *counts.entry(sanitize(&tool.name)).or_default() += 1;
        }
    }
    let mut named = Vec::new();
    for (server, tools) in servers {
        for OfferedTool {
            tool,
            injected,
            approval,
        } in tools
        {
            let plain = sanitize(&tool.name);
            let name = if counts.get(&plain).copied().unwrap_or(0) > 1 {
                fit(format!("{}__{plain}", sanitize(server)))
            } else {
                fit(plain)
            };
            named.push(ModelTool {
                name,
                server: server.clone(),
                tool: tool.name.to_string(),
                description: tool
                    .description
                    .as_deref()
                    .or(tool.title.as_deref())
                    .unwrap_or_default()
                    .to_owned(),
                parameters: hide_parameters(&tool.input_schema, injected),
                needs_approval: needs_approval(tool, *approval),
            });
        }
    }
    named
}

/// The schema without the `hidden` properties (and without them in `required`).
pub fn hide_parameters(schema: &Map<String, Value>, hidden: &[String]) -> Value {
    let mut schema = schema.clone();
    if let Some(Value::Object(properties)) = schema.get_mut("properties") {
        for name in hidden {
            properties.remove(name);
        }
    }
    if let Some(Value::Array(required)) = schema.get_mut("required") {
        required.retain(|r| !r.as_str().is_some_and(|r| hidden.iter().any(|h| h == r)));
    }
    if !schema.contains_key("type") {
        schema.insert("type".into(), Value::String("object".into()));
    }
    if !schema.contains_key("properties") {
        schema.insert("properties".into(), Value::Object(Map::new()));
    }
    Value::Object(schema)
}

/// The structured form of a result: its `structuredContent`, else its only
/// text block when that parses as a JSON object; `None` for an error result.
/// `max_bytes` bounds the text parsed.
pub fn result_data(result: &CallToolResult, max_bytes: usize) -> Option<Value> {
    if result.is_error == Some(true) {
        return None;
    }
    if let Some(structured) = &result.structured_content {
        return Some(structured.clone());
    }
    match result.content.as_slice() {
        [ContentBlock::Text(text)] if text.text.len() <= max_bytes => {
            serde_json::from_str::<Value>(&text.text)
                .ok()
                .filter(Value::is_object)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ToolAnnotations;
    use serde_json::json;
    use std::sync::Arc;

    fn tool(name: &str, schema: Value) -> Tool {
        let Value::Object(schema) = schema else {
            panic!("schema must be an object")
        };
        Tool::new(name.to_owned(), "does things", Arc::new(schema))
    }

    fn offered(name: &str) -> OfferedTool {
        OfferedTool {
            tool: tool(name, json!({"type": "object"})),
            injected: vec![],
            approval: Approval::default(),
        }
    }

    #[test]
    fn names_are_plain_unless_they_collide() {
        let mut servers = BTreeMap::new();
        servers.insert(
            "tasks".to_owned(),
            vec![offered("add_task"), offered("search")],
        );
        servers.insert("web.search".to_owned(), vec![offered("search")]);
        let names: Vec<String> = name_tools(&servers).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["add_task", "tasks__search", "web_search__search"]);
    }

    #[test]
    fn approval_follows_the_rule_then_the_destructive_hint() {
        let plain = tool("list", json!({"type": "object"}));
        let destructive = tool("delete", json!({"type": "object"}))
            .annotate(ToolAnnotations::new().destructive(true));
        let safe = tool("add", json!({"type": "object"}))
            .annotate(ToolAnnotations::new().destructive(false));
        assert!(!needs_approval(&plain, Approval::Destructive));
        assert!(needs_approval(&destructive, Approval::Destructive));
        assert!(!needs_approval(&safe, Approval::Destructive));
        assert!(needs_approval(&plain, Approval::Always));
        assert!(!needs_approval(&destructive, Approval::Never));
    }

    #[test]
    fn structured_data_comes_from_structured_content_or_a_json_text() {
        let structured = CallToolResult::structured(json!({"tasks": []}));
        assert_eq!(result_data(&structured, 100), Some(json!({"tasks": []})));
        let text = CallToolResult::success(vec![ContentBlock::text(r#"{"a":1}"#)]);
        assert_eq!(result_data(&text, 100), Some(json!({"a": 1})));
        assert_eq!(result_data(&text, 3), None, "over the parse limit");
        let prose = CallToolResult::success(vec![ContentBlock::text("done")]);
        assert_eq!(result_data(&prose, 100), None);
        let error = CallToolResult::error(vec![ContentBlock::text(r#"{"a":1}"#)]);
        assert_eq!(result_data(&error, 100), None);
    }

    #[test]
    fn long_and_odd_names_are_made_valid_and_stay_distinct() {
        assert_eq!(sanitize("a.b c/d"), "a_b_c_d");
        let a = fit(format!("{}a", "x".repeat(80)));
        let b = fit(format!("{}b", "x".repeat(80)));
        assert_eq!(a.len(), MAX_NAME);
        assert_ne!(a, b);
        assert_eq!(a, fit(format!("{}a", "x".repeat(80))), "stable");
    }

    #[test]
    fn injected_parameters_are_hidden() {
        let schema = json!({
            "type": "object",
            "properties": {"user_id": {"type": "string"}, "title": {"type": "string"}},
            "required": ["user_id", "title"]
        });
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        assert_eq!(
            hide_parameters(&schema, &["user_id".to_owned()]),
            json!({
                "type": "object",
                "properties": {"title": {"type": "string"}},
                "required": ["title"]
            })
        );
    }
}
