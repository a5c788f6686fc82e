//! The approval card: what a tool call that needs the user's consent shows
//! (each call with its arguments, and Approve / Deny buttons firing the
//! `tool.approve` / `tool.deny` actions with the calls' ids), and the same
//! card once decided, without buttons.

use serde_json::{Value, json};

/// The action type of the Approve button.
pub const APPROVE: &str = "tool.approve";
/// The action type of the Deny button.
pub const DENY: &str = "tool.deny";

/// Longest arguments text the card shows per call.
const MAX_ARGUMENTS_CHARS: usize = 1_000;

/// One call waiting for approval, as the card shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalCall {
    /// The tool's name as the model called it.
    pub tool: String,
    /// The server that would run it.
    pub server: String,
    /// The arguments the model sent (injected parameters are not among them).
    pub arguments: Value,
}

/// How an approval was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approved,
    Denied,
    /// The conversation went on without an answer; nothing ran.
    Expired,
}

/// The card asking to approve `calls`; both buttons carry `call_ids`.
pub fn approval_card(calls: &[ApprovalCall], call_ids: &[String]) -> Value {
    let payload = json!({ "call_ids": call_ids });
    let mut children = vec![title(calls, None)];
    children.extend(calls.iter().map(call_block));
    children.push(json!({
        "type": "Row",
        "gap": 2,
        "children": [
            {
                "type": "Button",
                "key": "approve",
                "label": "Approve",
                "style": "primary",
                "onClickAction": action(APPROVE, &payload),
            },
            {
                "type": "Button",
                "key": "deny",
                "label": "Deny",
                "style": "secondary",
                "variant": "outline",
                "onClickAction": action(DENY, &payload),
            },
        ],
    }));
    json!({ "type": "Card", "size": "md", "children": children })
}

/// A button's action as the reference writes it, defaults included: handled
/// by the server, in a stream (the conversation goes on).
fn action(kind: &str, payload: &Value) -> Value {
    json!({
        "type": kind,
        "payload": payload,
        "handler": "server",
        "loadingBehavior": "auto",
        "streaming": true,
    })
}

/// The card once settled: the same calls, the verdict, no buttons.
pub fn resolved_card(calls: &[ApprovalCall], verdict: Verdict) -> Value {
    let mut children = vec![title(calls, Some(verdict))];
    children.extend(calls.iter().map(call_block));
    let note = match verdict {
        Verdict::Approved => "Approved: the assistant ran it.",
        Verdict::Denied => "Denied: nothing ran.",
        Verdict::Expired => "Expired: the conversation went on, so nothing ran.",
    };
    children.push(json!({ "type": "Caption", "value": note }));
    json!({ "type": "Card", "size": "md", "children": children })
}

fn title(calls: &[ApprovalCall], verdict: Option<Verdict>) -> Value {
    let what = match calls {
        [one] => one.tool.clone(),
        many => format!("{} tool calls", many.len()),
    };
    let value = match verdict {
        None => format!("Run {what}?"),
        Some(Verdict::Approved) => format!("Approved: {what}"),
        Some(Verdict::Denied) => format!("Denied: {what}"),
        Some(Verdict::Expired) => format!("Not run: {what}"),
    };
    json!({ "type": "Title", "value": value, "size": "sm" })
}

fn call_block(call: &ApprovalCall) -> Value {
    let arguments = serde_json::to_string_pretty(&call.arguments).unwrap_or_default();
    let arguments = crate::text::cut_chars(&arguments, MAX_ARGUMENTS_CHARS, "…");
    json!({
        "type": "Markdown",
        "value": format!("**{}** on {}\n```json\n{arguments}\n```", call.tool, call.server),
    })
}
