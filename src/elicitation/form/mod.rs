//! A tool server's question to the user (MCP elicitation, form mode) as
//! ChatKit structured input, and the user's submission back as the content
//! the server asked for.
//!
//! The requested schema is a flat object of primitive fields. Each becomes
//! one question: an enum is a `multiple_choice` (an array of enums, one
//! with `multiple`), a boolean a yes/no choice, a string or a number a
//! `freeform` whose description states its constraints. A submission is
//! checked against the schema (required fields, types, lengths, ranges,
//! formats, choices) before anything reaches the server: a wrong answer is
//! refused with what is wrong, and the question stays open.
//!
//! Reading and checking live together: the question a field kind becomes
//! and the check of its answer must agree kind by kind. The tests are in
//! `form/tests.rs`.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::protocol::{ChoiceOption, Question, QuestionAnswer};

/// Most fields one form asks.
const MAX_FIELDS: usize = 32;
/// Most choices of one question.
const MAX_OPTIONS: usize = 100;
/// Longest title, description or choice label shown, in characters.
const MAX_TEXT: usize = 500;
/// Longest field name or choice value, in characters.
const MAX_NAME: usize = 200;

/// The value of a yes/no question's options.
const YES: &str = "yes";
const NO: &str = "no";

/// A requested schema, read into questions.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    title: String,
    description: Option<String>,
    required: bool,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Choice {
        /// (value sent to the server, label shown).
        options: Vec<(String, String)>,
        multiple: bool,
        min_items: Option<u64>,
        max_items: Option<u64>,
    },
    Boolean,
    Text {
        min_length: Option<u64>,
        max_length: Option<u64>,
        format: Option<String>,
    },
    Number {
        integer: bool,
        minimum: Option<f64>,
        maximum: Option<f64>,
    },
}

impl Form {
    /// Reads a requested schema; a field of a type elicitation does not
    /// allow is refused with its name.
    pub fn from_schema(schema: &Value) -> Result<Form, String> {
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .ok_or("the requested schema has no properties")?;
        if properties.len() > MAX_FIELDS {
            return Err(format!(
                "{} fields; a form asks at most {MAX_FIELDS}",
                properties.len()
            ));
        }
        if let Some(long) = properties.keys().find(|k| k.chars().count() > MAX_NAME) {
            return Err(format!(
                "a field name of {} characters; at most {MAX_NAME}",
                long.chars().count()
            ));
        }
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let fields = properties
            .iter()
            .map(|(name, property)| {
                Ok(Field {
                    name: name.clone(),
                    title: text(property, "title").unwrap_or_else(|| name.clone()),
                    description: text(property, "description"),
                    required: required.contains(&name.as_str()),
                    kind: kind(property).map_err(|e| format!("field `{name}`: {e}"))?,
                })
            })
            .collect::<Result<Vec<Field>, String>>()?;
        Ok(Form { fields })
    }

    /// The questions of a `structured_input` item, one per field, ids being
    /// the field names.
    pub fn questions(&self) -> Vec<Question> {
        self.fields.iter().map(Field::question).collect()
    }

    /// The content to send for a submission's answers by question id,
    /// checked against the schema.
    pub fn content(
        &self,
        answers: &BTreeMap<String, QuestionAnswer>,
    ) -> Result<Map<String, Value>, String> {
        let mut content = Map::new();
        for field in &self.fields {
            let answer = answers.get(&field.name);
            let skipped = answer.is_some_and(|a| a.skipped);
            let values: Vec<&str> = answer
                .map(|a| a.values.iter().map(String::as_str).collect())
                .unwrap_or_default();
            if skipped || values.is_empty() || values == [""] {
                if field.required {
                    return Err(format!("{}: an answer is required", field.title));
                }
                continue;
            }
            let value = field
                .value(&values)
                .map_err(|e| format!("{}: {e}", field.title))?;
            content.insert(field.name.clone(), value);
        }
        Ok(content)
    }
}

/// A text the user reads, cut to [`MAX_TEXT`] characters.
fn text(property: &Value, key: &str) -> Option<String> {
    property
        .get(key)
        .and_then(Value::as_str)
        .map(|t| crate::text::cut_chars(t, MAX_TEXT, "…").into_owned())
}

fn number(property: &Value, key: &str) -> Option<f64> {
    property.get(key).and_then(Value::as_f64)
}

/// The options of an enum schema: `enum` (with `enumNames` as labels) or
/// `oneOf`/`anyOf` of `{const, title}`.
fn options(schema: &Value) -> Option<Vec<(String, String)>> {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names = schema.get("enumNames").and_then(Value::as_array);
        return Some(
            values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let value = v.as_str()?.to_owned();
                    let label = names
                        .and_then(|n| n.get(i))
                        .and_then(Value::as_str)
                        .map_or_else(
                            || value.clone(),
                            |l| crate::text::cut_chars(l, MAX_TEXT, "…").into_owned(),
                        );
                    Some((value, label))
                })
                .collect(),
        );
    }
    let choices = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)?;
    Some(
        choices
            .iter()
            .filter_map(|c| {
                let value = c.get("const")?.as_str()?.to_owned();
                let label = text(c, "title").unwrap_or_else(|| value.clone());
                Some((value, label))
            })
            .collect(),
    )
}

/// The options of an enum schema, refused past [`MAX_OPTIONS`] or with a
/// value longer than [`MAX_NAME`].
fn bounded_options(schema: &Value) -> Result<Option<Vec<(String, String)>>, String> {
    let Some(options) = options(schema) else {
        return Ok(None);
    };
    if options.len() > MAX_OPTIONS {
        return Err(format!(
            "{} choices; a question offers at most {MAX_OPTIONS}",
            options.len()
        ));
    }
    if options
        .iter()
        .any(|(value, _)| value.chars().count() > MAX_NAME)
    {
        return Err(format!("a choice longer than {MAX_NAME} characters"));
    }
    Ok(Some(options))
}

fn kind(property: &Value) -> Result<Kind, String> {
    let count = |key: &str| property.get(key).and_then(Value::as_u64);
    match property.get("type").and_then(Value::as_str) {
        Some("string") => Ok(match bounded_options(property)? {
            Some(options) if !options.is_empty() => Kind::Choice {
                options,
                multiple: false,
                min_items: None,
                max_items: None,
            },
            _ => Kind::Text {
                min_length: count("minLength"),
                max_length: count("maxLength"),
                format: text(property, "format"),
            },
        }),
        Some("array") => {
            let items = property.get("items").unwrap_or(&Value::Null);
            match bounded_options(items)? {
                Some(options) if !options.is_empty() => Ok(Kind::Choice {
                    options,
                    multiple: true,
                    min_items: count("minItems"),
                    max_items: count("maxItems"),
                }),
                _ => Err("an array must be of enum values".to_owned()),
            }
        }
        Some("boolean") => Ok(Kind::Boolean),
        Some(kind @ ("number" | "integer")) => Ok(Kind::Number {
            integer: kind == "integer",
            minimum: number(property, "minimum"),
            maximum: number(property, "maximum"),
        }),
        other => Err(format!("type {other:?} cannot be asked")),
    }
}

impl Field {
    fn question(&self) -> Question {
        let constraints = self.constraints();
        let description = match (&self.description, constraints.is_empty()) {
            (Some(d), true) => Some(d.clone()),
            (Some(d), false) => Some(format!("{d} ({constraints})")),
            (None, false) => Some(constraints),
            (None, true) => None,
        };
        let (id, title) = (self.name.clone(), self.title.clone());
        let question = match &self.kind {
            Kind::Choice {
                options, multiple, ..
            } => {
                let options = options
                    .iter()
                    .map(|(value, label)| ChoiceOption::new(value, label))
                    .collect();
                Question::multiple_choice(id, title, options, *multiple)
            }
            Kind::Boolean => {
                let options = vec![ChoiceOption::new(YES, "Yes"), ChoiceOption::new(NO, "No")];
                Question::multiple_choice(id, title, options, false)
            }
            Kind::Text { .. } | Kind::Number { .. } => Question::freeform(id, title),
        };
        question.with_description(description)
    }

    /// The constraints a freeform answer is checked against, as words.
    fn constraints(&self) -> String {
        let mut said = Vec::new();
        match &self.kind {
            Kind::Text {
                min_length,
                max_length,
                format,
            } => {
                if let Some(format) = format {
                    said.push(format_name(format).to_owned());
                }
                match (min_length, max_length) {
                    (Some(min), Some(max)) => said.push(format!("{min} to {max} characters")),
                    (Some(min), None) => said.push(format!("at least {min} characters")),
                    (None, Some(max)) => said.push(format!("at most {max} characters")),
                    (None, None) => {}
                }
            }
            Kind::Number {
                integer,
                minimum,
                maximum,
            } => {
                said.push(
                    if *integer {
                        "a whole number"
                    } else {
                        "a number"
                    }
                    .to_owned(),
                );
                match (minimum, maximum) {
                    (Some(min), Some(max)) => said.push(format!("from {min} to {max}")),
                    (Some(min), None) => said.push(format!("at least {min}")),
                    (None, Some(max)) => said.push(format!("at most {max}")),
                    (None, None) => {}
                }
            }
            _ => {}
        }
        said.join(", ")
    }

    fn value(&self, values: &[&str]) -> Result<Value, String> {
        let first = values[0].trim();
        match &self.kind {
            Kind::Choice {
                options,
                multiple,
                min_items,
                max_items,
            } => {
                let known = |v: &&str| options.iter().any(|(value, _)| value == v);
                if let Some(unknown) = values.iter().find(|v| !known(v)) {
                    return Err(format!("{unknown:?} is not one of the choices"));
                }
                if !multiple {
                    return Ok(json!(values[0]));
                }
                let n = values.len() as u64;
                if min_items.is_some_and(|min| n < min) || max_items.is_some_and(|max| n > max) {
                    return Err(format!(
                        "choose {} to {}",
                        min_items.unwrap_or(0),
                        max_items.map_or_else(|| "any".to_owned(), |m| m.to_string())
                    ));
                }
                Ok(json!(values))
            }
            Kind::Boolean => match first {
                YES => Ok(json!(true)),
                NO => Ok(json!(false)),
                other => Err(format!("{other:?} is not yes or no")),
            },
            Kind::Text { .. } => {
                let problem = self.constraints_broken(first);
                problem.map_or_else(|| Ok(json!(first)), Err)
            }
            Kind::Number {
                integer,
                minimum,
                maximum,
            } => {
                let Ok(number) = first.parse::<f64>() else {
                    return Err(format!("{first:?} is not a number"));
                };
                if !number.is_finite() || (*integer && number.fract() != 0.0) {
                    return Err(format!("{first:?} is not a whole number"));
                }
                if minimum.is_some_and(|min| number < min)
                    || maximum.is_some_and(|max| number > max)
                {
                    return Err(format!("{first} is out of range ({})", self.constraints()));
                }
                Ok(if *integer {
                    json!(number as i64)
                } else {
                    json!(number)
                })
            }
        }
    }

    /// What is wrong with a text answer, if anything.
    fn constraints_broken(&self, answer: &str) -> Option<String> {
        let Kind::Text {
            min_length,
            max_length,
            format,
        } = &self.kind
        else {
            return None;
        };
        let length = answer.chars().count() as u64;
        if min_length.is_some_and(|min| length < min) || max_length.is_some_and(|max| length > max)
        {
            return Some(format!("must be {}", self.constraints()));
        }
        let valid = match format.as_deref() {
            Some("email") => answer
                .split_once('@')
                .is_some_and(|(user, host)| !user.is_empty() && host.contains('.')),
            Some("uri") => reqwest::Url::parse(answer).is_ok(),
            Some("date") => chrono::NaiveDate::parse_from_str(answer, "%Y-%m-%d").is_ok(),
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(answer).is_ok(),
            _ => true,
        };
        (!valid).then(|| format!("{answer:?} is not {}", self.constraints()))
    }
}

/// A string format as words.
fn format_name(format: &str) -> &str {
    match format {
        "email" => "an email address",
        "uri" => "a URL",
        "date" => "a date (YYYY-MM-DD)",
        "date-time" => "a date and time (RFC 3339)",
        other => other,
    }
}

#[cfg(test)]
mod tests;
