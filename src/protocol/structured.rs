//! Structured input (protocol 4.4): the questions a `structured_input` item
//! asks, the answers recorded on them, and the user's submission that
//! answers them (`threads.add_structured_input`'s params).
//!
//! Shaped after the reference's `chatkit/types.py`: questions are tagged by
//! `type` (`multiple_choice` or `freeform`), an answer is always written as
//! `{"values": [...], "skipped": bool}`. chatkitd's own items carry two
//! fields the reference does not define, both optional and omitted when
//! absent: a `label` on each choice, and a `description` on a
//! `multiple_choice` question too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a `structured_input` item stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputStatus {
    #[default]
    Pending,
    Answered,
    Skipped,
}

/// One question of a `structured_input` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Question {
    /// A choice among `options`, of one (or, `multiple`, several).
    MultipleChoice {
        id: String,
        question: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        options: Vec<ChoiceOption>,
        #[serde(default)]
        multiple: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<QuestionAnswer>,
    },
    /// A question answered with free text.
    Freeform {
        id: String,
        question: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer: Option<QuestionAnswer>,
    },
}

impl Question {
    /// A `multiple_choice` question, unanswered and with no description.
    pub fn multiple_choice(
        id: impl Into<String>,
        question: impl Into<String>,
        options: Vec<ChoiceOption>,
        multiple: bool,
    ) -> Question {
        Question::MultipleChoice {
            id: id.into(),
            question: question.into(),
            description: None,
            options,
            multiple,
            answer: None,
        }
    }

    /// A `freeform` question, unanswered and with no description.
    pub fn freeform(id: impl Into<String>, question: impl Into<String>) -> Question {
        Question::Freeform {
            id: id.into(),
            question: question.into(),
            description: None,
            answer: None,
        }
    }

    /// This question with `description` (or none).
    pub fn with_description(mut self, description: Option<String>) -> Question {
        match &mut self {
            Question::MultipleChoice { description: d, .. }
            | Question::Freeform { description: d, .. } => *d = description,
        }
        self
    }

    /// The id its answer is submitted under.
    pub fn id(&self) -> &str {
        match self {
            Question::MultipleChoice { id, .. } | Question::Freeform { id, .. } => id,
        }
    }

    /// The text the user reads.
    pub fn question(&self) -> &str {
        match self {
            Question::MultipleChoice { question, .. } | Question::Freeform { question, .. } => {
                question
            }
        }
    }

    /// Replaces the text the user reads.
    pub fn set_question(&mut self, text: String) {
        match self {
            Question::MultipleChoice { question, .. } | Question::Freeform { question, .. } => {
                *question = text
            }
        }
    }

    /// The text under the question, if any.
    pub fn description(&self) -> Option<&str> {
        match self {
            Question::MultipleChoice { description, .. }
            | Question::Freeform { description, .. } => description.as_deref(),
        }
    }

    /// The choices offered: none for a `freeform` question.
    pub fn options(&self) -> &[ChoiceOption] {
        match self {
            Question::MultipleChoice { options, .. } => options,
            Question::Freeform { .. } => &[],
        }
    }

    /// Whether several choices may be picked.
    pub fn is_multiple(&self) -> bool {
        matches!(self, Question::MultipleChoice { multiple: true, .. })
    }

    /// Whether the answer is exactly one of the options.
    pub fn is_single_choice(&self) -> bool {
        matches!(
            self,
            Question::MultipleChoice {
                multiple: false,
                ..
            }
        )
    }

    /// The answer recorded, once the item is answered or skipped.
    pub fn answer(&self) -> Option<&QuestionAnswer> {
        match self {
            Question::MultipleChoice { answer, .. } | Question::Freeform { answer, .. } => {
                answer.as_ref()
            }
        }
    }

    /// Records `recorded` as the answer.
    pub fn set_answer(&mut self, recorded: QuestionAnswer) {
        match self {
            Question::MultipleChoice { answer, .. } | Question::Freeform { answer, .. } => {
                *answer = Some(recorded)
            }
        }
    }
}

/// One choice of a `multiple_choice` question: the value answered, and
/// (chatkitd's own) the label shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoiceOption {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl ChoiceOption {
    /// A choice with its label.
    pub fn new(value: impl Into<String>, label: impl Into<String>) -> ChoiceOption {
        ChoiceOption {
            value: value.into(),
            label: Some(label.into()),
        }
    }

    /// The text shown: the label, or else the value.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.value)
    }
}

/// The answer to one question, as submitted and as recorded on the item:
/// both keys always written, both defaulted when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(expecting = "an answer: {\"values\": [strings], \"skipped\": bool}")]
pub struct QuestionAnswer {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub skipped: bool,
}

impl QuestionAnswer {
    /// An answer of `values`.
    pub fn given(values: Vec<String>) -> QuestionAnswer {
        QuestionAnswer {
            values,
            skipped: false,
        }
    }

    /// A question left unanswered.
    pub fn skipped() -> QuestionAnswer {
        QuestionAnswer {
            values: Vec::new(),
            skipped: true,
        }
    }
}

/// Whether a submission answers the form or skips the whole of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionStatus {
    #[default]
    Answered,
    Skipped,
}

/// The `input` of `threads.add_structured_input`: the answers by question
/// id. Read strictly: a wrong shape is refused with where it is wrong.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    expecting = "{\"status\": \"answered\" or \"skipped\", \"answers\": {question id: answer}}"
)]
pub struct StructuredInputSubmission {
    #[serde(default)]
    pub status: SubmissionStatus,
    #[serde(default)]
    pub answers: BTreeMap<String, QuestionAnswer>,
}

/// Params of `threads.add_structured_input`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StructuredInputParams {
    pub thread_id: String,
    pub item_id: String,
    pub input: StructuredInputSubmission,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::protocol::{ItemKind, Request, RequestError, ThreadItem};

    /// A `structured_input` item as chatkitd stored it before these types:
    /// labels on choices, a description on a multiple choice, answers.
    fn stored() -> Value {
        json!({
            "id": "msg_1", "thread_id": "thr_1",
            "created_at": "2025-11-23T23:06:58.605090",
            "type": "structured_input", "status": "answered",
            "inputs": [
                {"type": "multiple_choice", "id": "color", "question": "Pick one\n\nColor",
                 "description": "your favourite",
                 "options": [{"value": "r", "label": "Red"}, {"value": "g", "label": "Green"}],
                 "multiple": false, "answer": {"values": ["g"], "skipped": false}},
                {"type": "multiple_choice", "id": "tools", "question": "tools",
                 "options": [{"value": "a"}, {"value": "b"}], "multiple": true,
                 "answer": {"values": ["a", "b"], "skipped": false}},
                {"type": "freeform", "id": "age", "question": "Age",
                 "description": "a whole number, from 1 to 120",
                 "answer": {"values": [], "skipped": true}},
                {"type": "freeform", "id": "note", "question": "Note"}
            ]
        })
    }

    #[test]
    fn a_stored_item_reads_and_writes_back_the_same_json() {
        let item: ThreadItem = serde_json::from_value(stored()).expect("reads");
        let ItemKind::StructuredInput { status, inputs } = &item.kind else {
            panic!("a structured input: {item:?}");
        };
        assert_eq!(*status, InputStatus::Answered);
        assert_eq!(inputs[0].id(), "color");
        assert_eq!(inputs[0].description(), Some("your favourite"));
        assert_eq!(inputs[0].options()[1].label(), "Green");
        assert!(inputs[0].is_single_choice() && inputs[1].is_multiple());
        assert_eq!(inputs[1].options()[0].label(), "a");
        assert_eq!(inputs[2].answer(), Some(&QuestionAnswer::skipped()));
        assert_eq!(inputs[3].answer(), None);
        assert!(inputs[3].options().is_empty());
        let mut written = serde_json::to_value(&item).expect("writes");
        // The timestamp's own form is `Timestamp`'s business, not this test's.
        written["created_at"] = stored()["created_at"].clone();
        assert_eq!(written, stored());
    }

    #[test]
    fn questions_are_written_as_the_wire_says() {
        let mut choice =
            Question::multiple_choice("color", "Color", vec![ChoiceOption::new("r", "Red")], false)
                .with_description(Some("d".into()));
        assert_eq!(
            serde_json::to_value(&choice).expect("json"),
            json!({"type": "multiple_choice", "id": "color", "question": "Color",
                   "description": "d", "options": [{"value": "r", "label": "Red"}],
                   "multiple": false})
        );
        choice.set_answer(QuestionAnswer::given(vec!["r".into()]));
        choice.set_question("Pick\n\nColor".into());
        assert_eq!(
            serde_json::to_value(&choice).expect("json"),
            json!({"type": "multiple_choice", "id": "color", "question": "Pick\n\nColor",
                   "description": "d", "options": [{"value": "r", "label": "Red"}],
                   "multiple": false, "answer": {"values": ["r"], "skipped": false}})
        );
        let free = Question::freeform("note", "Note");
        assert_eq!(
            serde_json::to_value(&free).expect("json"),
            json!({"type": "freeform", "id": "note", "question": "Note"})
        );
        // Defaults when read: `multiple` false, answers' keys, the status.
        let read: Question = serde_json::from_value(json!({"type": "multiple_choice",
            "id": "x", "question": "x", "options": [], "answer": {}}))
        .expect("reads");
        assert!(read.is_single_choice());
        assert_eq!(read.answer(), Some(&QuestionAnswer::default()));
        let item: ItemKind =
            serde_json::from_value(json!({"type": "structured_input", "inputs": []}))
                .expect("reads");
        assert!(matches!(
            item,
            ItemKind::StructuredInput {
                status: InputStatus::Pending,
                ..
            }
        ));
    }

    #[test]
    fn malformed_questions_are_errors_not_panics() {
        for bad in [
            json!({"type": "slider", "id": "x", "question": "x"}),
            json!({"id": "x", "question": "x"}),
            json!("a question"),
            json!(["multiple_choice"]),
            json!(null),
            json!({"type": "multiple_choice", "id": "x", "question": "x"}),
            json!({"type": "freeform", "id": 1, "question": "x"}),
            json!({"type": "freeform", "id": "x", "question": "x", "answer": "yes"}),
            json!({"type": "freeform", "id": "x", "question": "x", "answer": {"values": [1]}}),
        ] {
            assert!(
                serde_json::from_value::<Question>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let mut item = stored();
        item["inputs"][1]["type"] = json!("slider");
        assert!(serde_json::from_value::<ThreadItem>(item).is_err());
        let mut item = stored();
        item["status"] = json!("maybe");
        assert!(serde_json::from_value::<ThreadItem>(item).is_err());
    }

    fn parse(input: Value) -> Result<StructuredInputSubmission, RequestError> {
        let body = json!({"type": "threads.add_structured_input",
            "params": {"thread_id": "thr_1", "item_id": "msg_1", "input": input}});
        match Request::parse(body.to_string().as_bytes())? {
            Request::ThreadsAddStructuredInput(params) => Ok(params.input),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn submissions_read_with_the_references_defaults() {
        let read =
            parse(json!({"answers": {"color": {"values": ["g"]}, "note": {"skipped": true}}}))
                .expect("valid");
        assert_eq!(read.status, SubmissionStatus::Answered);
        assert_eq!(
            read.answers["color"],
            QuestionAnswer::given(vec!["g".into()])
        );
        assert_eq!(read.answers["note"], QuestionAnswer::skipped());
        assert_eq!(
            serde_json::to_value(&read).expect("json"),
            json!({"status": "answered", "answers": {
                "color": {"values": ["g"], "skipped": false},
                "note": {"values": [], "skipped": true}
            }})
        );
        let skipped = parse(json!({"status": "skipped"})).expect("valid");
        assert_eq!(skipped.status, SubmissionStatus::Skipped);
        assert!(skipped.answers.is_empty());
        assert_eq!(parse(json!({})), Ok(StructuredInputSubmission::default()));
    }

    #[test]
    fn a_malformed_submission_is_refused_naming_the_field() {
        let refused = |input: Value| match parse(input.clone()) {
            Err(RequestError::InvalidParams { kind, message }) => {
                assert_eq!(kind, "threads.add_structured_input");
                message
            }
            other => panic!("{input}: {other:?}"),
        };
        let status = refused(json!({"status": "maybe"}));
        assert!(status.contains("`input.status`"), "{status}");
        assert!(status.contains("`answered` or `skipped`"), "{status}");
        assert!(refused(json!({"status": "pending"})).contains("`input.status`"));
        let answers = refused(json!({"answers": []}));
        assert!(answers.contains("`input.answers`"), "{answers}");
        let answer = refused(json!({"answers": {"color": "blue"}}));
        assert!(answer.contains("`input.answers.color`"), "{answer}");
        assert!(
            answer.contains(r#"{"values": [strings], "skipped": bool}"#),
            "{answer}"
        );
        let value = refused(json!({"answers": {"color": {"values": [1]}}}));
        assert!(value.contains("`input.answers.color.values[0]`"), "{value}");
        let values = refused(json!({"answers": {"color": {"values": "blue"}}}));
        assert!(values.contains("`input.answers.color.values`"), "{values}");
        let whole = refused(json!("answered"));
        assert!(whole.contains("`input`"), "{whole}");
        assert!(
            whole.contains(r#""status": "answered" or "skipped""#),
            "{whole}"
        );
    }
}
