//! A user's submission of `threads.add_structured_input`: read and
//! refused when malformed, checked against the question's schema into the
//! answer its server reads, and recorded on the item as protocol 4.4 says.

use serde_json::{Value, json};

use super::Form;
use crate::mcp::ElicitationAnswer;
use crate::protocol::{ItemKind, ThreadItem};

/// The user's checked answer to a question, as its server will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer(pub(super) ElicitationAnswer);

/// A submission of `threads.add_structured_input`, read.
#[derive(Debug)]
pub struct Submission {
    /// `false` when the user skipped the whole form.
    pub answered: bool,
    /// Question id → `{"values": [...], "skipped": bool}`.
    pub answers: Value,
}

impl Submission {
    /// The whole form skipped.
    pub fn skipped() -> Submission {
        Submission {
            answered: false,
            answers: json!({}),
        }
    }

    /// Reads the request's `input`: `status` (`answered`, the default, or
    /// `skipped`) and `answers`, whose values must be strings.
    pub fn read(input: &Value) -> Result<Submission, String> {
        let answered = match input.get("status").and_then(Value::as_str) {
            None | Some("answered") => true,
            Some("skipped") => false,
            Some(other) => {
                return Err(format!(
                    "`input.status` is \"answered\" or \"skipped\", not {other:?}"
                ));
            }
        };
        let answers = input.get("answers").cloned().unwrap_or(json!({}));
        let Some(map) = answers.as_object() else {
            return Err("`input.answers` must be an object of answers by question id".into());
        };
        for (id, answer) in map {
            let strings = answer
                .get("values")
                .map_or(Some(true), |v| {
                    v.as_array().map(|a| a.iter().all(Value::is_string))
                })
                .unwrap_or(false);
            if !answer.is_object() || !strings {
                return Err(format!(
                    "the answer to {id:?} must be {{\"values\": [strings], \"skipped\": bool}}"
                ));
            }
        }
        Ok(Submission { answered, answers })
    }

    /// What the server is sent: the content checked against `form`, or
    /// `decline` for a skipped form. A wrong answer is refused with why.
    pub fn answer(&self, form: &Form) -> Result<Answer, String> {
        if !self.answered {
            return Ok(Answer(ElicitationAnswer::Decline));
        }
        form.content(&self.answers)
            .map(|content| Answer(ElicitationAnswer::Accept(content)))
    }

    /// `item` as answered (protocol 4.4): each question records its values,
    /// or is skipped when the form was, or it has no answer or no values;
    /// a single choice keeps its first value.
    pub fn apply(&self, item: &mut ThreadItem) {
        let ItemKind::StructuredInput { status, inputs } = &mut item.kind else {
            return;
        };
        *status = if self.answered { "answered" } else { "skipped" }.to_owned();
        for input in inputs.iter_mut() {
            let id = input["id"].as_str().unwrap_or_default();
            let answer = self.answers.get(id);
            let skipped = answer
                .and_then(|a| a.get("skipped"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let mut values: Vec<Value> = answer
                .and_then(|a| a.get("values"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let single = input["type"] == "multiple_choice" && input["multiple"] != true;
            if single {
                values.truncate(1);
            }
            input["answer"] = if !self.answered || skipped || values.is_empty() {
                json!({"values": [], "skipped": true})
            } else {
                json!({"values": values, "skipped": false})
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item() -> ThreadItem {
        ThreadItem::new(
            "msg_1",
            "thr_1",
            ItemKind::StructuredInput {
                status: "pending".into(),
                inputs: vec![
                    json!({"type": "multiple_choice", "id": "color", "question": "color",
                           "options": [{"value": "red"}, {"value": "blue"}], "multiple": false}),
                    json!({"type": "freeform", "id": "note", "question": "note"}),
                ],
            },
        )
    }

    #[test]
    fn submissions_are_recorded_as_the_protocol_says() {
        let submission = Submission::read(&json!({
            "answers": {"color": {"values": ["blue", "red"]}, "unknown": {"values": ["x"]}}
        }))
        .expect("read");
        let mut answered = item();
        submission.apply(&mut answered);
        let ItemKind::StructuredInput { status, inputs } = answered.kind else {
            panic!("a structured input");
        };
        assert_eq!(status, "answered");
        assert_eq!(
            inputs[0]["answer"],
            json!({"values": ["blue"], "skipped": false})
        );
        assert_eq!(inputs[1]["answer"], json!({"values": [], "skipped": true}));

        let skipped = Submission::read(&json!({"status": "skipped"})).expect("read");
        let mut item = item();
        skipped.apply(&mut item);
        assert!(
            matches!(item.kind, ItemKind::StructuredInput { ref status, .. } if status == "skipped")
        );
    }

    #[test]
    fn malformed_submissions_are_refused() {
        for bad in [
            json!({"status": "maybe"}),
            json!({"answers": []}),
            json!({"answers": {"color": "blue"}}),
            json!({"answers": {"color": {"values": [1]}}}),
        ] {
            assert!(Submission::read(&bad).is_err(), "{bad}");
        }
    }
}
