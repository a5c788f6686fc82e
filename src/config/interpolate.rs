//! `${VAR}` and `${VAR:-default}` in the string values of the parsed
//! document, read from an environment lookup.
//!
//! References are replaced in values, after parsing, so a substituted value
//! is taken literally (quotes and backslashes included) and comments, being
//! no values, are never read. Keys are not interpolated. A string that held
//! a reference may still stand for a number or a boolean: [`Expansions::coerce`]
//! turns it into one when the schema asks for one.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::document::Document;

/// Looks up an environment variable (a closure, so tests never touch the
/// process environment).
pub type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// The expanded text of every string value that held a reference, by the
/// span of the value in the file.
#[derive(Debug, Default)]
pub(super) struct Expansions {
    by_span: BTreeMap<(usize, usize), String>,
}

/// Expands every string value of the document. An unset variable without a
/// default is an error naming the line of the reference.
pub(super) fn expand(document: &Document<'_>, env: Env<'_>) -> Result<Expansions, ConfigError> {
    let mut expansions = Expansions::default();
    let mut failure = None;
    for_each_string(document.root().get_ref(), &mut |span, text| {
        if failure.is_some() {
            return;
        }
        match expand_str(text, env) {
            Ok(None) => {}
            Ok(Some(expanded)) => {
                expansions.by_span.insert((span.start, span.end), expanded);
            }
            Err(error) => {
                // Within a multi-line string the reference may sit lines below
                // the opening quote: find it in the raw text.
                let raw = document.text(span.clone());
                let at = raw.find(error.needle().as_str()).unwrap_or(0);
                failure = Some(ConfigError::Parse {
                    path: document.path().to_owned(),
                    line: document.line_at(span.start + at),
                    message: error.to_string(),
                });
            }
        }
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(expansions),
    }
}

impl Expansions {
    /// Puts each expanded text in place of its string.
    pub fn apply<'a>(&'a self, table: &mut DeTable<'a>) {
        for_each_value_mut(table, &mut |value| {
            let span = value.span();
            if let Some(expanded) = self.by_span.get(&(span.start, span.end))
                && let DeValue::String(text) = value.get_mut()
            {
                *text = Cow::Borrowed(expanded);
            }
        });
    }

    /// Makes the expanded string at `span` the integer, float or boolean it
    /// spells, for a key that wants one. False when there is no such string
    /// or it spells none of these.
    pub fn coerce<'a>(&'a self, table: &mut DeTable<'a>, span: &Range<usize>) -> bool {
        let Some(expanded) = self.by_span.get(&(span.start, span.end)) else {
            return false;
        };
        let Ok(parsed) = DeValue::parse(expanded) else {
            return false;
        };
        let parsed = parsed.into_inner();
        if !(parsed.is_integer() || parsed.is_float() || parsed.is_bool()) {
            return false;
        }
        let mut parsed = Some(parsed);
        let mut coerced = false;
        for_each_value_mut(table, &mut |value| {
            if value.span() == *span
                && value.get_ref().is_str()
                && let Some(parsed) = parsed.take()
            {
                *value.get_mut() = parsed;
                coerced = true;
            }
        });
        coerced
    }
}

/// Why a reference could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ExpandError {
    #[error("unterminated `${{` (write `${{NAME}}`)")]
    Unterminated,
    #[error("environment variable {0} is not set (use ${{{0}:-default}} for a fallback)")]
    Unset(String),
}

impl ExpandError {
    /// The text that starts the faulty reference in the file.
    fn needle(&self) -> String {
        match self {
            ExpandError::Unterminated => "${".to_owned(),
            ExpandError::Unset(name) => format!("${{{name}"),
        }
    }
}

/// The string with its references replaced; `None` when it holds none.
fn expand_str(text: &str, env: Env<'_>) -> Result<Option<String>, ExpandError> {
    if !text.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(ExpandError::Unterminated)?;
        let spec = &after[..end];
        let (name, default) = match spec.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (spec, None),
        };
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(ExpandError::Unset(name.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn for_each_string(table: &DeTable<'_>, visit: &mut dyn FnMut(Range<usize>, &str)) {
    for value in table.values() {
        string_within(value, visit);
    }
}

fn string_within(value: &Spanned<DeValue<'_>>, visit: &mut dyn FnMut(Range<usize>, &str)) {
    match value.get_ref() {
        DeValue::String(text) => visit(value.span(), text),
        DeValue::Table(table) => for_each_string(table, visit),
        DeValue::Array(items) => items.iter().for_each(|item| string_within(item, visit)),
        DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
    }
}

fn for_each_value_mut<'a>(
    table: &mut DeTable<'a>,
    visit: &mut dyn FnMut(&mut Spanned<DeValue<'a>>),
) {
    for (_, value) in table.iter_mut() {
        value_within_mut(value, visit);
    }
}

fn value_within_mut<'a>(
    value: &mut Spanned<DeValue<'a>>,
    visit: &mut dyn FnMut(&mut Spanned<DeValue<'a>>),
) {
    visit(value);
    match value.get_mut() {
        DeValue::Table(table) => for_each_value_mut(table, visit),
        DeValue::Array(items) => items
            .iter_mut()
            .for_each(|item| value_within_mut(item, visit)),
        DeValue::String(_)
        | DeValue::Integer(_)
        | DeValue::Float(_)
        | DeValue::Boolean(_)
        | DeValue::Datetime(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "QUOTED" => Some(r#"a "quoted" \path\ 'x'"#.to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced_literally() {
        assert_eq!(
            expand_str("<${QUOTED}>", &env),
            Ok(Some(r#"<a "quoted" \path\ 'x'>"#.to_owned()))
        );
        assert_eq!(
            expand_str("${NOPE:-x:-y}", &env),
            Ok(Some("x:-y".to_owned()))
        );
        // Set but empty is set: the default is for unset variables.
        assert_eq!(expand_str("${EMPTY:-d}", &env), Ok(Some(String::new())));
        assert_eq!(expand_str("no reference", &env), Ok(None));
        assert_eq!(
            expand_str("a ${QUOTED", &env),
            Err(ExpandError::Unterminated)
        );
        assert_eq!(
            expand_str("${NOPE}", &env),
            Err(ExpandError::Unset("NOPE".to_owned()))
        );
    }

    #[test]
    fn strings_deep_in_the_document_are_expanded() {
        let text = "[a]\nlist = [\"${QUOTED}\", { k = \"${NOPE:-d}\" }]\nn = 3\n";
        let document = Document::parse(text, "agent.toml").expect("parses");
        let expansions = expand(&document, &env).expect("expands");
        let mut root = document.root().clone();
        expansions.apply(root.get_mut());
        let list = root.get_ref()["a"].get_ref()["list"].get_ref();
        assert_eq!(list[0].get_ref().as_str(), Some(r#"a "quoted" \path\ 'x'"#));
        assert_eq!(list[1].get_ref()["k"].get_ref().as_str(), Some("d"));
    }

    #[test]
    fn an_unset_variable_names_its_line() {
        let text = "[a]\nx = \"\"\"\nfirst\n${NOPE}\"\"\"\n";
        let document = Document::parse(text, "agent.toml").expect("parses");
        let err = expand(&document, &env).expect_err("unset");
        assert_eq!(
            err.to_string(),
            "agent.toml:4: environment variable NOPE is not set (use ${NOPE:-default} for a fallback)"
        );
    }
}
