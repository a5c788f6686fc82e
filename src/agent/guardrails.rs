//! Guardrails (`[guardrails.NAME]`, the Agents SDK's input and output
//! guardrails): small agents that read the user's message or the final
//! answer and say whether it trips their wire, as JSON
//! `{"tripwire": bool, "reason": "…"}` (asked with the endpoint's JSON
//! schema format, read tolerantly where the endpoint ignores it). The
//! guardrails of one side are asked together; the first to trip decides.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Config, ConfigError, GuardrailFailure, GuardrailOn};
use crate::llm::{ChatMessage, LlmClient};

/// Most tokens a verdict may take (a reasoning model thinks within them).
const VERDICT_TOKENS: u32 = 1024;

/// The guardrails of one assistant, by the side they check.
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    pub input: Vec<Guardrail>,
    pub output: Vec<Guardrail>,
}

/// One guardrail.
#[derive(Debug, Clone)]
pub struct Guardrail {
    pub name: String,
    prompt: String,
    model: Option<String>,
    /// What the user reads when it trips.
    pub message: String,
    fail_open: bool,
}

/// A guardrail that tripped, or could not check and blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Trip {
    pub guardrail: String,
    /// What the user reads.
    pub message: String,
    /// Why, as the guardrail said (or why it could not check).
    pub reason: String,
}

/// What the guardrails of one side decided: each one's verdict, and the
/// first that stops the text.
#[derive(Debug, Clone, Default)]
pub struct Decision {
    /// (guardrail, tripped, reason) for each guardrail asked.
    pub verdicts: Vec<(String, bool, String)>,
    pub trip: Option<Trip>,
}

impl Guardrails {
    /// The guardrails of `config`, their prompts read.
    pub fn load(config: &Config) -> Result<Guardrails, ConfigError> {
        let mut guardrails = Guardrails::default();
        for (name, guardrail) in &config.guardrails {
            let loaded = Guardrail {
                name: name.clone(),
                prompt: config.read_instructions(
                    guardrail.instructions.as_deref(),
                    guardrail.instructions_text.as_deref(),
                )?,
                model: guardrail.model.clone(),
                message: guardrail.message.clone(),
                fail_open: guardrail.on_error == GuardrailFailure::Allow,
            };
            match guardrail.on {
                GuardrailOn::Input => guardrails.input.push(loaded),
                GuardrailOn::Output => guardrails.output.push(loaded),
            }
        }
        Ok(guardrails)
    }
}

/// Asks every guardrail of `list` about `text` at once.
pub async fn check(llm: &LlmClient, list: &[Guardrail], text: &str) -> Decision {
    let verdicts = futures::future::join_all(list.iter().map(|g| verdict(llm, g, text))).await;
    let mut decision = Decision::default();
    for (guardrail, verdict) in list.iter().zip(verdicts) {
        let (tripped, reason) = match verdict {
            Ok(verdict) => (verdict.tripwire, verdict.reason),
            Err(error) => {
                tracing::warn!(guardrail = %guardrail.name, %error, "a guardrail could not check");
                crate::metrics::get().guardrail(&guardrail.name, "failed");
                (
                    !guardrail.fail_open,
                    format!("the guardrail could not check: {error}"),
                )
            }
        };
        if tripped {
            crate::metrics::get().guardrail(&guardrail.name, "tripped");
            if decision.trip.is_none() {
                decision.trip = Some(Trip {
                    guardrail: guardrail.name.clone(),
                    message: guardrail.message.clone(),
                    reason: reason.clone(),
                });
            }
        }
        decision
            .verdicts
            .push((guardrail.name.clone(), tripped, reason));
    }
    decision
}

/// A guardrail's answer.
#[derive(Debug, Deserialize)]
struct Verdict {
    tripwire: bool,
    #[serde(default)]
    reason: String,
}

/// One guardrail's verdict on `text`.
async fn verdict(llm: &LlmClient, guardrail: &Guardrail, text: &str) -> Result<Verdict, String> {
    let messages = [
        ChatMessage::System {
            content: format!(
                "{}\n\nAnswer only with a JSON object {{\"tripwire\": true or false, \"reason\": \"why, in a sentence\"}}. \
                 `tripwire` is true when the text must be stopped.",
                guardrail.prompt
            ),
        },
        ChatMessage::User {
            content: text.to_owned(),
        },
    ];
    let schema = json!({"type": "object",
        "properties": {"tripwire": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["tripwire", "reason"], "additionalProperties": false});
    let answer = llm
        .complete_json(
            &messages,
            VERDICT_TOKENS,
            guardrail.model.as_deref(),
            ("guardrail_verdict", &schema),
        )
        .await
        .map_err(|e| e.to_string())?;
    read_verdict(&answer).ok_or_else(|| {
        format!(
            "its answer is not a verdict: {}",
            crate::text::cut_chars(&answer, 200, "…")
        )
    })
}

/// A verdict in a model's text: the JSON object, wherever it sits (code
/// fences and words around it are skipped).
fn read_verdict(answer: &str) -> Option<Verdict> {
    let start = answer.find('{')?;
    let end = answer.rfind('}')?;
    let object: Value = serde_json::from_str(answer.get(start..=end)?).ok()?;
    let tripwire = match object.get("tripwire")? {
        Value::Bool(b) => *b,
        Value::String(s) if s.eq_ignore_ascii_case("true") => true,
        Value::String(s) if s.eq_ignore_ascii_case("false") => false,
        _ => return None,
    };
    let reason = object
        .get("reason")
        .and_then(Value::as_str)
        .map(|r| crate::text::cut_chars(r, 500, "…").into_owned())
        .unwrap_or_default();
    Some(Verdict { tripwire, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_is_read_tolerantly() {
        let plain = read_verdict(r#"{"tripwire": true, "reason": "off topic"}"#).expect("read");
        assert!(plain.tripwire);
        assert_eq!(plain.reason, "off topic");
        let fenced = read_verdict("Sure:\n```json\n{\"tripwire\": \"false\"}\n```").expect("read");
        assert!(!fenced.tripwire);
        assert!(read_verdict("no JSON here").is_none());
        assert!(read_verdict(r#"{"tripwire": 1}"#).is_none());
    }
}
