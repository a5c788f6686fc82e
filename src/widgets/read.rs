//! Reading a widget back: the actions it offers (so an action a widget does
//! not offer can be refused) and its text, for `copy_text` and for the
//! terminal chat.

use serde_json::{Map, Value};

/// Deepest component nesting read; deeper parts are ignored.
const MAX_DEPTH: usize = 64;

/// The server actions a widget's components fire: every `{type, payload}`
/// object under a prop named `…Action` (`onClickAction`, `onSubmitAction`,
/// …) or `action` (a card's `confirm` / `cancel`), whose `handler` is not
/// `client`. As `(type, payload)`, in tree order.
pub fn offered_actions(widget: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    collect_actions(widget, &mut found, 0);
    found
}

/// Whether any component of `widget` fires a server action of type `kind`.
pub fn offers_action(widget: &Value, kind: &str) -> bool {
    offered_actions(widget).iter().any(|(k, _)| k == kind)
}

fn collect_actions(value: &Value, found: &mut Vec<(String, Value)>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, member) in map {
                if (key.ends_with("Action") || key == "action")
                    && let Some(action) = server_action(member)
                {
                    found.push(action);
                } else {
                    collect_actions(member, found, depth + 1);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_actions(item, found, depth + 1)),
        _ => {}
    }
}

fn server_action(value: &Value) -> Option<(String, Value)> {
    let kind = value.get("type")?.as_str()?;
    if value.get("handler").and_then(Value::as_str) == Some("client") {
        return None;
    }
    let payload = value.get("payload").cloned().unwrap_or(Value::Null);
    Some((kind.to_owned(), payload))
}

/// The widget as lines of text: each text-bearing component on its own
/// line, the components of a row or list item on one line, buttons as
/// `[label]`.
pub fn plain_text(widget: &Value) -> String {
    let mut lines = Vec::new();
    write_lines(widget, &mut lines, 0);
    lines.retain(|line| !line.trim().is_empty());
    lines.join("\n")
}

fn write_lines(value: &Value, lines: &mut Vec<String>, depth: usize) {
    let Some(component) = value.as_object() else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    let kind = component.get("type").and_then(Value::as_str).unwrap_or("");
    if let Some(text) = own_text(kind, component) {
        lines.push(text);
    }
    let children = component
        .get("children")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if matches!(kind, "Row" | "ListViewItem") {
        let mut parts = Vec::new();
        for child in children {
            let mut inner = Vec::new();
            write_lines(child, &mut inner, depth + 1);
            parts.extend(inner.into_iter().filter(|p| !p.trim().is_empty()));
        }
        lines.push(parts.join("  "));
    } else {
        for child in children {
            write_lines(child, lines, depth + 1);
        }
    }
}

fn own_text(kind: &str, component: &Map<String, Value>) -> Option<String> {
    let field = |key: &str| component.get(key).and_then(Value::as_str);
    match kind {
        "Button" => field("label").map(|label| format!("[{label}]")),
        "Badge" => field("label").map(|label| format!("({label})")),
        "Checkbox" | "Label" => field("label").or_else(|| field("value")).map(str::to_owned),
        _ => field("value").map(str::to_owned),
    }
}
