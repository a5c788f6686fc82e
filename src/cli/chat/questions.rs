//! A tool server's question in a terminal: each question of a pending
//! `structured_input` item as text (choices numbered), and a typed line as
//! its answer (a choice by number or by value, several separated by commas;
//! an empty line skips the question). The session sends the answers as the
//! ChatKit UI's form would; the daemon checks them.

use serde_json::{Value, json};

/// What a line typed at a question says.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Typed {
    /// `/skip`: the whole form is skipped.
    SkipForm,
    /// This question's answer (`{"values": [...], "skipped": bool}`).
    Answer(Value),
}

/// The lines showing one question: its text, its description, its choices
/// numbered from 1.
pub(super) fn question_lines(question: &Value) -> Vec<String> {
    let mut lines: Vec<String> = question["question"]
        .as_str()
        .unwrap_or_default()
        .lines()
        .map(|l| format!("? {l}"))
        .collect();
    if let Some(description) = question["description"].as_str() {
        lines.push(format!("  ({description})"));
    }
    if let Some(options) = question["options"].as_array() {
        let choices: Vec<String> = options
            .iter()
            .enumerate()
            .map(|(i, o)| format!("{}) {}", i + 1, label(o)))
            .collect();
        lines.push(format!("  {}", choices.join("  ")));
        if question["multiple"] == true {
            lines.push("  (several: separate them with commas)".to_owned());
        }
    }
    lines
}

fn label(option: &Value) -> &str {
    option["label"]
        .as_str()
        .or_else(|| option["value"].as_str())
        .unwrap_or_default()
}

/// Reads a typed line as the answer to `question`: a choice by its number,
/// its value or its label (any case); free text as typed; empty to skip.
pub(super) fn read_answer(question: &Value, line: &str) -> Typed {
    let line = line.trim();
    if line == "/skip" {
        return Typed::SkipForm;
    }
    if line.is_empty() {
        return Typed::Answer(json!({"values": [], "skipped": true}));
    }
    let values: Vec<String> = match question["options"].as_array() {
        Some(options) => line
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| choice(options, part))
            .collect(),
        None => vec![line.to_owned()],
    };
    Typed::Answer(json!({"values": values, "skipped": false}))
}

/// The value of the choice a typed part names; unknown parts are sent as
/// typed, for the daemon to refuse with the choices.
fn choice(options: &[Value], part: &str) -> String {
    let by_number = part
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| options.get(i));
    let by_name = || {
        options.iter().find(|o| {
            o["value"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(part))
                || label(o).eq_ignore_ascii_case(part)
        })
    };
    by_number
        .or_else(by_name)
        .and_then(|o| o["value"].as_str())
        .unwrap_or(part)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice_question(multiple: bool) -> Value {
        json!({"type": "multiple_choice", "id": "color", "question": "Pick one\n\nColor",
               "options": [{"value": "red", "label": "Red"}, {"value": "blue", "label": "Blue"}],
               "multiple": multiple})
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
        let free =
            json!({"type": "freeform", "id": "age", "question": "Age", "description": "a number"});
        assert_eq!(question_lines(&free), ["? Age", "  (a number)"]);
    }

    #[test]
    fn typed_lines_become_answers() {
        let q = choice_question(true);
        assert_eq!(
            read_answer(&q, "2, red"),
            Typed::Answer(json!({"values": ["blue", "red"], "skipped": false}))
        );
        assert_eq!(
            read_answer(&q, "BLUE"),
            Typed::Answer(json!({"values": ["blue"], "skipped": false}))
        );
        assert_eq!(
            read_answer(&q, "7"),
            Typed::Answer(json!({"values": ["7"], "skipped": false}))
        );
        assert_eq!(
            read_answer(&q, "  "),
            Typed::Answer(json!({"values": [], "skipped": true}))
        );
        assert_eq!(read_answer(&q, "/skip"), Typed::SkipForm);
        let free = json!({"type": "freeform", "id": "note", "question": "Note"});
        assert_eq!(
            read_answer(&free, " 3, or so "),
            Typed::Answer(json!({"values": ["3, or so"], "skipped": false}))
        );
    }
}
