//! The invariants every request chatkitd sends to the model must keep, as a
//! strict OpenAI-compatible server would enforce them (for the Responses
//! API: [`check_responses_request_well_formed`]): a non-empty history,
//! a role on every message, no tool result without its call and no call left
//! without its result, images and files only in user messages. The fake checks them on every recorded request,
//! streaming and non-streaming alike; see [`super::FakeLlm`].

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::RecordedRequest;

/// Checks that a chat-completions request body would be accepted by a strict
/// server: a non-empty `messages` array, a `role` on every message, every
/// `tool` message answering an earlier assistant tool call, and every
/// assistant tool call answered by a later `tool` message unless that
/// assistant message is the last one; then that the answers come right
/// after the assistant message that made the calls, each once, before any
/// other message (OpenAI rejects a history where anything else comes
/// between). Call ids are not required to be unique across turns: they come
/// from the fake model's scripts, not from chatkitd.
pub fn check_request_well_formed(body: &Value) -> Result<(), String> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| "no `messages` array".to_owned())?;
    if messages.is_empty() {
        return Err("`messages` is empty".to_owned());
    }
    // Tool call id -> index of the assistant message that made it.
    let mut offered: HashMap<&str, usize> = HashMap::new();
    let mut answered: HashSet<&str> = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("message {i} has no `role`: {message}"))?;
        match role {
            "assistant" => {
                let calls = message.get("tool_calls").and_then(Value::as_array);
                for call in calls.into_iter().flatten() {
                    let id = call.get("id").and_then(Value::as_str).ok_or_else(|| {
                        format!("message {i} has a tool call without `id`: {call}")
                    })?;
                    offered.insert(id, i);
                }
            }
            "tool" | "system" if !message.get("content").is_some_and(Value::is_string) => {
                return Err(format!(
                    "{role} message {i} must have string content (images and files go in user messages): {message}"
                ));
            }
            "tool" => {
                let id = message
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("tool message {i} has no `tool_call_id`"))?;
                if !offered.contains_key(id) {
                    return Err(format!(
                        "tool message {i} answers tool_call_id {id:?}, which no earlier assistant message called"
                    ));
                }
                answered.insert(id);
            }
            _ => {}
        }
    }
    let last = messages.len() - 1;
    let mut unanswered: Vec<(usize, &str)> = offered
        .iter()
        .filter(|(id, at)| **at != last && !answered.contains(*id))
        .map(|(id, at)| (*at, *id))
        .collect();
    unanswered.sort();
    if let Some((at, id)) = unanswered.first() {
        return Err(format!(
            "assistant message {at} calls tool {id:?}, but no later `tool` message answers it"
        ));
    }
    check_answers_follow_their_calls(messages)
}

/// The ordering half of [`check_request_well_formed`], run once every call
/// is known to be answered somewhere: the answers of an assistant message
/// directly after it, each once.
fn check_answers_follow_their_calls(messages: &[Value]) -> Result<(), String> {
    // The assistant message whose calls are still being answered, and those calls.
    let mut open: Option<(usize, HashSet<&str>)> = None;
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role == "tool" {
            let id = message
                .get("tool_call_id")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some((_, pending)) = open.as_mut().filter(|(_, pending)| pending.contains(id))
            else {
                return Err(format!(
                    "tool message {i} answers {id:?}, but not right after the assistant message that called it, or a second time"
                ));
            };
            pending.remove(id);
            if pending.is_empty() {
                open = None;
            }
            continue;
        }
        if let Some((at, pending)) = &open {
            let mut ids: Vec<&&str> = pending.iter().collect();
            ids.sort();
            return Err(format!(
                "assistant message {at} calls tool {:?}, but message {i} ({role}) comes before its answer",
                ids[0]
            ));
        }
        let calls = message.get("tool_calls").and_then(Value::as_array);
        let mut pending = HashSet::new();
        for call in calls.into_iter().flatten() {
            pending.insert(call.get("id").and_then(Value::as_str).unwrap_or(""));
        }
        if !pending.is_empty() {
            open = Some((i, pending));
        }
    }
    Ok(())
}
/// A description of the first request in `requests` that breaks
/// [`check_request_well_formed`], with its body; `None` if all keep it.
pub(crate) fn first_malformed(requests: &[RecordedRequest]) -> Option<String> {
    requests.iter().enumerate().find_map(|(i, request)| {
        let checked = if request.body.get("input").is_some() {
            check_responses_request_well_formed(&request.body)
        } else {
            check_request_well_formed(&request.body)
        };
        checked.err().map(|problem| {
            let body = serde_json::to_string_pretty(&request.body).unwrap_or_default();
            let kind = if request.stream {
                "streaming"
            } else {
                "non-streaming"
            };
            format!("request {i} ({kind}) is malformed: {problem}\nrequest body: {body}")
        })
    })
}

/// Checks that a Responses API request would be accepted by OpenAI, sent
/// statelessly as chatkitd sends it: `store: false` and no
/// `previous_response_id`; a non-empty `input` of known item types; every
/// `function_call_output` after the `function_call` it answers, every call
/// answered; every reasoning item with its `encrypted_content` and followed
/// by what it led to (not last, not a user's message); every tool a
/// function with a name and an object schema, or a hosted tool
/// (`web_search`, `file_search` with its vector stores, `image_generation`).
pub fn check_responses_request_well_formed(body: &Value) -> Result<(), String> {
    if body.get("previous_response_id").is_some() {
        return Err("`previous_response_id` is set: chatkitd sends the whole input".to_owned());
    }
    if body.get("store") != Some(&json!(false)) {
        return Err(format!("`store` is {:?}, not false", body.get("store")));
    }
    let input = body
        .get("input")
        .and_then(Value::as_array)
        .ok_or_else(|| "no `input` array".to_owned())?;
    if input.is_empty() {
        return Err("`input` is empty".to_owned());
    }
    let mut called: HashSet<&str> = HashSet::new();
    let mut answered: HashSet<&str> = HashSet::new();
    for (i, item) in input.iter().enumerate() {
        let kind =
            item.get("type")
                .and_then(Value::as_str)
                .unwrap_or(if item.get("role").is_some() {
                    "message"
                } else {
                    ""
                });
        let text = |key: &str| item.get(key).and_then(Value::as_str);
        match kind {
            "message" => {
                let role = text("role").unwrap_or_default();
                if !matches!(role, "user" | "assistant" | "system" | "developer") {
                    return Err(format!("input item {i} has role {role:?}: {item}"));
                }
                if !item
                    .get("content")
                    .is_some_and(|c| c.is_string() || c.is_array())
                {
                    return Err(format!("input item {i} has no content: {item}"));
                }
            }
            "function_call" => {
                let (Some(call_id), Some(_), Some(_)) =
                    (text("call_id"), text("name"), text("arguments"))
                else {
                    return Err(format!(
                        "function call {i} lacks call_id, name or arguments: {item}"
                    ));
                };
                called.insert(call_id);
            }
            "function_call_output" => {
                let call_id = text("call_id").unwrap_or_default();
                if !called.contains(call_id) {
                    return Err(format!(
                        "function_call_output {i} answers {call_id:?}, which no earlier function_call made"
                    ));
                }
                if text("output").is_none() {
                    return Err(format!("function_call_output {i} has no text output"));
                }
                answered.insert(call_id);
            }
            "reasoning" => {
                if text("encrypted_content").is_none() {
                    return Err(format!(
                        "reasoning item {i} has no encrypted_content: {item}"
                    ));
                }
                let next = input.get(i + 1);
                let follows = next.is_some_and(|n| {
                    n.get("role").and_then(Value::as_str) != Some("user")
                        || n.get("type").and_then(Value::as_str) == Some("reasoning")
                });
                if !follows {
                    return Err(format!(
                        "reasoning item {i} is not followed by what it led to: {item}"
                    ));
                }
            }
            other => return Err(format!("input item {i} has unknown type {other:?}: {item}")),
        }
    }
    if let Some(open) = called.iter().find(|id| !answered.contains(*id)) {
        return Err(format!(
            "function call {open:?} has no function_call_output"
        ));
    }
    for tool in body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // OpenAI's hosted tools, with the fields the API requires.
        match tool.get("type").and_then(Value::as_str) {
            Some("web_search" | "image_generation") => continue,
            Some("file_search") => {
                let stores = tool.get("vector_store_ids").and_then(Value::as_array);
                if stores.is_none_or(|ids| ids.is_empty() || !ids.iter().all(Value::is_string)) {
                    return Err(format!("file_search without vector_store_ids: {tool}"));
                }
                continue;
            }
            _ => {}
        }
        let named = tool.get("type") == Some(&json!("function"))
            && tool
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
        if !named || tool.pointer("/parameters/type") != Some(&json!("object")) {
            return Err(format!(
                "tool is not a named function with an object schema: {tool}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_formedness() {
        let ok = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        ]});
        assert_eq!(check_request_well_formed(&ok), Ok(()));

        let orphan_tool = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "tool", "tool_call_id": "c9", "content": "done"},
        ]});
        assert!(
            check_request_well_formed(&orphan_tool)
                .unwrap_err()
                .contains("c9")
        );

        let unanswered = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1"}]},
            {"role": "user", "content": "hi"},
        ]});
        assert!(
            check_request_well_formed(&unanswered)
                .unwrap_err()
                .contains("c1")
        );

        let interrupted = json!({"messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1"}, {"id": "c2"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "user", "content": "stop"},
            {"role": "tool", "tool_call_id": "c2", "content": "cancelled"},
        ]});
        assert!(
            check_request_well_formed(&interrupted)
                .unwrap_err()
                .contains("message 3 (user) comes before its answer")
        );

        let twice = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "tool", "tool_call_id": "c1", "content": "again"},
            {"role": "user", "content": "hi"},
        ]});
        assert!(
            check_request_well_formed(&twice)
                .unwrap_err()
                .contains("tool message 2 answers \"c1\"")
        );

        let late = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "assistant", "tool_calls": [{"id": "c2"}]},
            {"role": "tool", "tool_call_id": "c2", "content": "done"},
            {"role": "tool", "tool_call_id": "c1", "content": "late"},
        ]});
        assert!(check_request_well_formed(&late).is_err());

        // Scripts may reuse ids from turn to turn.
        let reused = json!({"messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "assistant", "tool_calls": [{"id": "c1"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
            {"role": "user", "content": "hi"},
        ]});
        assert_eq!(check_request_well_formed(&reused), Ok(()));

        assert!(check_request_well_formed(&json!({"messages": []})).is_err());
        assert!(check_request_well_formed(&json!({"model": "m"})).is_err());
        assert!(
            check_request_well_formed(&json!({"messages": [{"content": "x"}]}))
                .unwrap_err()
                .contains("role")
        );
    }

    #[test]
    fn responses_requests_are_stateless_and_pair_their_items() {
        let input = |items: Value| json!({"model": "m", "store": false, "input": items});
        let good = input(json!([
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "e"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"role": "assistant", "content": "done"},
        ]));
        assert_eq!(check_responses_request_well_formed(&good), Ok(()));
        let bad = [
            json!({"model": "m", "input": [{"role": "user", "content": "hi"}]}),
            json!({"model": "m", "store": false, "previous_response_id": "r", "input": [{"role": "user", "content": "hi"}]}),
            input(json!([])),
            input(json!([{"type": "function_call_output", "call_id": "c9", "output": "x"}])),
            input(
                json!([{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]),
            ),
            input(
                json!([{"type": "reasoning", "id": "rs", "summary": []}, {"role": "assistant", "content": "x"}]),
            ),
            input(
                json!([{"type": "reasoning", "id": "rs", "encrypted_content": "e"}, {"role": "user", "content": "x"}]),
            ),
        ];
        for body in bad {
            assert!(
                check_responses_request_well_formed(&body).is_err(),
                "{body}"
            );
        }
    }
}
