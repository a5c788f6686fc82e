//! A user's submission of `threads.add_structured_input` (read and refused
//! when malformed by the protocol's types), checked against the question's
//! schema into the answer its server reads, and recorded on the item as
//! protocol 4.4 says.

use std::collections::BTreeMap;

use super::Form;
use crate::mcp::ElicitationAnswer;
use crate::protocol::{
    InputStatus, ItemKind, QuestionAnswer, StructuredInputSubmission, SubmissionStatus, ThreadItem,
};

/// The user's checked answer to a question, as its server will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer(pub(super) ElicitationAnswer);

/// A submission of `threads.add_structured_input`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// `false` when the user skipped the whole form.
    pub answered: bool,
    /// The answers by question id.
    pub answers: BTreeMap<String, QuestionAnswer>,
}

impl From<StructuredInputSubmission> for Submission {
    fn from(input: StructuredInputSubmission) -> Submission {
        Submission {
            answered: input.status == SubmissionStatus::Answered,
            answers: input.answers,
        }
    }
}

impl Submission {
    /// The whole form skipped.
    pub fn skipped() -> Submission {
        Submission {
            answered: false,
            answers: BTreeMap::new(),
        }
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
    /// or is skipped when the form was, or it has no answer, an answer
    /// skipped or no values; a single choice keeps its first value.
    pub fn apply(&self, item: &mut ThreadItem) {
        let ItemKind::StructuredInput { status, inputs } = &mut item.kind else {
            return;
        };
        *status = if self.answered {
            InputStatus::Answered
        } else {
            InputStatus::Skipped
        };
        for question in inputs.iter_mut() {
            let mut values = match self.answers.get(question.id()) {
                Some(answer) if self.answered && !answer.skipped => answer.values.clone(),
                _ => Vec::new(),
            };
            if question.is_single_choice() {
                values.truncate(1);
            }
            question.set_answer(if values.is_empty() {
                QuestionAnswer::skipped()
            } else {
                QuestionAnswer::given(values)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::{ChoiceOption, Question};

    fn item() -> ThreadItem {
        let options = vec![
            ChoiceOption::new("red", "Red"),
            ChoiceOption::new("blue", "Blue"),
        ];
        ThreadItem::new(
            "msg_1",
            "thr_1",
            ItemKind::StructuredInput {
                status: InputStatus::Pending,
                inputs: vec![
                    Question::multiple_choice("color", "color", options.clone(), false),
                    Question::freeform("note", "note"),
                    Question::multiple_choice("tones", "tones", options, true),
                ],
            },
        )
    }

    fn submission(input: serde_json::Value) -> Submission {
        serde_json::from_value::<StructuredInputSubmission>(input)
            .expect("a valid submission")
            .into()
    }

    /// The item's `status` and each question's `answer`, as JSON.
    fn recorded(item: &ThreadItem) -> serde_json::Value {
        let json = serde_json::to_value(item).expect("json");
        let answers: Vec<_> = json
            .get("inputs")
            .and_then(|i| i.as_array())
            .expect("inputs")
            .iter()
            .map(|q| q.get("answer").cloned())
            .collect();
        json!({"status": json.get("status"), "answers": answers})
    }

    #[test]
    fn submissions_are_recorded_as_the_protocol_says() {
        let answered = submission(json!({"answers": {
            "color": {"values": ["blue", "red"]},
            "tones": {"values": ["blue", "red"]},
            "unknown": {"values": ["x"]}
        }}));
        assert!(answered.answered);
        let mut item = item();
        answered.apply(&mut item);
        assert_eq!(
            recorded(&item),
            json!({"status": "answered", "answers": [
                {"values": ["blue"], "skipped": false},
                {"values": [], "skipped": true},
                {"values": ["blue", "red"], "skipped": false}
            ]})
        );

        // A skipped answer records no values, whatever it carries.
        let mut item = self::item();
        submission(json!({"answers": {"color": {"values": ["red"], "skipped": true}}}))
            .apply(&mut item);
        assert_eq!(
            recorded(&item),
            json!({"status": "answered", "answers": [
                {"values": [], "skipped": true},
                {"values": [], "skipped": true},
                {"values": [], "skipped": true}
            ]})
        );

        for skipped in [
            submission(json!({"status": "skipped",
            "answers": {"color": {"values": ["red"]}}})),
            Submission::skipped(),
        ] {
            assert!(!skipped.answered);
            let mut item = self::item();
            skipped.apply(&mut item);
            let none = json!({"values": [], "skipped": true});
            assert_eq!(
                recorded(&item),
                json!({"status": "skipped", "answers": [none, none, none]})
            );
        }
    }

    #[test]
    fn another_kind_of_item_is_left_alone() {
        let mut item = ThreadItem::new("msg_1", "thr_1", ItemKind::EndOfTurn);
        Submission::skipped().apply(&mut item);
        assert_eq!(item.kind, ItemKind::EndOfTurn);
    }
}
