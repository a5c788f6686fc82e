//! A tool server's question in a terminal: each question of a pending
//! `structured_input` item as text (choices numbered), and a typed line as
//! its answer (a choice by number or by value, several separated by commas;
//! an empty line skips the question). The session sends the answers as the
//! ChatKit UI's form would; the daemon checks them.

use crate::protocol::{ChoiceOption, Question, QuestionAnswer};

/// What a line typed at a question says.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Typed {
    /// `/skip`: the whole form is skipped.
    SkipForm,
    /// This question's answer.
    Answer(QuestionAnswer),
}

/// The lines showing one question: its text, its description, its choices
/// numbered from 1.
pub(super) fn question_lines(question: &Question) -> Vec<String> {
    let mut lines: Vec<String> = question
        .question()
        .lines()
        .map(|l| format!("? {l}"))
        .collect();
    if let Some(description) = question.description() {
        lines.push(format!("  ({description})"));
    }
    if let Question::MultipleChoice {
        options, multiple, ..
    } = question
    {
        let choices: Vec<String> = options
            .iter()
            .enumerate()
            .map(|(i, o)| format!("{}) {}", i + 1, o.label()))
            .collect();
        lines.push(format!("  {}", choices.join("  ")));
        if *multiple {
            lines.push("  (several: separate them with commas)".to_owned());
        }
    }
    lines
}

/// Reads a typed line as the answer to `question`: a choice by its number,
/// its value or its label (any case); free text as typed; empty to skip.
pub(super) fn read_answer(question: &Question, line: &str) -> Typed {
    let line = line.trim();
    if line == "/skip" {
        return Typed::SkipForm;
    }
    if line.is_empty() {
        return Typed::Answer(QuestionAnswer::skipped());
    }
    let values: Vec<String> = match question {
        Question::MultipleChoice { options, .. } => line
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| choice(options, part))
            .collect(),
        Question::Freeform { .. } => vec![line.to_owned()],
    };
    Typed::Answer(QuestionAnswer::given(values))
}

/// The value of the choice a typed part names; unknown parts are sent as
/// typed, for the daemon to refuse with the choices.
fn choice(options: &[ChoiceOption], part: &str) -> String {
    let by_number = part
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| options.get(i));
    let by_name = || {
        options
            .iter()
            .find(|o| o.value.eq_ignore_ascii_case(part) || o.label().eq_ignore_ascii_case(part))
    };
    by_number
        .or_else(by_name)
        .map_or(part, |o| o.value.as_str())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn choice_question(multiple: bool) -> Question {
        serde_json::from_value(
            json!({"type": "multiple_choice", "id": "color", "question": "Pick one\n\nColor",
                   "options": [{"value": "red", "label": "Red"}, {"value": "blue", "label": "Blue"}],
                   "multiple": multiple}),
        )
        .expect("a question")
    }

    /// The answer a line makes, as it goes on the wire.
    fn sent(question: &Question, line: &str) -> serde_json::Value {
        match read_answer(question, line) {
            Typed::Answer(answer) => serde_json::to_value(answer).expect("json"),
            Typed::SkipForm => json!("/skip"),
        }
    }

    #[test]
    fn questions_read_as_numbered_choices() {
        assert_eq!(
            question_lines(&choice_question(true)),
            [
                "? Pick one",
                "? ",
                "? Color",
                "  1) Red  2) Blue",
                "  (several: separate them with commas)"
            ]
        );
        let free = Question::freeform("age", "Age").with_description(Some("a number".into()));
        assert_eq!(question_lines(&free), ["? Age", "  (a number)"]);
        let unlabelled = Question::multiple_choice(
            "x",
            "X",
            vec![ChoiceOption {
                value: "v".into(),
                label: None,
            }],
            false,
        );
        assert_eq!(question_lines(&unlabelled), ["? X", "  1) v"]);
    }

    #[test]
    fn typed_lines_become_answers() {
        let q = choice_question(true);
        assert_eq!(
            sent(&q, "2, red"),
            json!({"values": ["blue", "red"], "skipped": false})
        );
        assert_eq!(
            sent(&q, "BLUE"),
            json!({"values": ["blue"], "skipped": false})
        );
        assert_eq!(sent(&q, "7"), json!({"values": ["7"], "skipped": false}));
        assert_eq!(sent(&q, "  "), json!({"values": [], "skipped": true}));
        assert_eq!(read_answer(&q, "/skip"), Typed::SkipForm);
        let free = Question::freeform("note", "Note");
        assert_eq!(
            sent(&free, " 3, or so "),
            json!({"values": ["3, or so"], "skipped": false})
        );
    }
}
