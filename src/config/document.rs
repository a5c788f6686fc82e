//! `agent.toml` parsed but not yet read into the schema: the spanned TOML
//! document, which knows where every key and value was written. Errors are
//! placed here: a byte span becomes a line, a key path becomes the line that
//! sets it, and a value's span becomes the key it belongs to.
//!
//! What the values mean is not known here: see `schema.rs`.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// A parsed configuration file and its name, for error messages.
pub(super) struct Document<'a> {
    path: &'a str,
    text: &'a str,
    root: Spanned<DeTable<'a>>,
}

impl<'a> Document<'a> {
    /// Parses the text as TOML; a syntax error names its line.
    pub fn parse(text: &'a str, path: &'a str) -> Result<Document<'a>, ConfigError> {
        let root = DeTable::parse(text).map_err(|error| {
            let offset = error.span().map_or(0, |span| span.start);
            let line = line_at(text, offset);
            let mut message = error.message().to_owned();
            let bare_reference = text.lines().nth(line - 1).is_some_and(|written| {
                written
                    .split_once('=')
                    .is_some_and(|(_, value)| value.trim_start().starts_with("${"))
            });
            if bare_reference {
                // Environment references are read inside strings only.
                message.push_str(
                    " (write `${…}` inside a string: `\"${NAME}\"` is read as a number \
                     or a boolean where the key wants one)",
                );
            }
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                message,
            }
        })?;
        Ok(Document { path, text, root })
    }

    /// The file name given at load.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The document as parsed.
    pub fn root(&self) -> &Spanned<DeTable<'a>> {
        &self.root
    }

    /// The raw text of a span.
    pub fn text(&self, span: Range<usize>) -> &'a str {
        self.text.get(span).unwrap_or_default()
    }

    /// The 1-based line holding byte `offset`.
    pub fn line_at(&self, offset: usize) -> usize {
        line_at(self.text, offset)
    }

    /// The line that sets the key at `keys` (its table header for a table).
    pub fn key_line(&self, keys: &[&str]) -> Option<usize> {
        let (last, parents) = keys.split_last()?;
        let mut table = self.root.get_ref();
        for key in parents {
            table = table.get(*key)?.get_ref().as_table()?;
        }
        let (key, _) = table.get_key_value(*last)?;
        Some(self.line_at(key.span().start))
    }

    /// A value the schema refused, as an error: under its key when the span
    /// is a value's, else (a misspelt key, a syntax slip) as a parse error.
    pub fn error(&self, error: &toml::de::Error) -> ConfigError {
        let message = error.message().to_owned();
        let Some(span) = error.span() else {
            return ConfigError::Parse {
                path: self.path.to_owned(),
                line: 1,
                message,
            };
        };
        let line = self.line_at(span.start);
        let mut keys = Vec::new();
        match key_of_value(self.root.get_ref(), &span, &mut keys) {
            Some(key) => ConfigError::Invalid {
                path: self.path.to_owned(),
                line: Some(line),
                key,
                message,
            },
            None => ConfigError::Parse {
                path: self.path.to_owned(),
                line,
                message,
            },
        }
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// The dotted key of the innermost value written at exactly `span`.
fn key_of_value(
    table: &DeTable<'_>,
    span: &Range<usize>,
    keys: &mut Vec<String>,
) -> Option<String> {
    let mut found = None;
    for (key, value) in table.iter() {
        keys.push(key.get_ref().to_string());
        if value.span() == *span {
            found = Some(keys.join("."));
        }
        if let Some(inner) = key_within(value.get_ref(), span, keys) {
            found = Some(inner);
        }
        keys.pop();
    }
    found
}

/// The key of a value at `span` inside `value`: an element of an array
/// belongs to the array's key.
fn key_within(value: &DeValue<'_>, span: &Range<usize>, keys: &mut Vec<String>) -> Option<String> {
    match value {
        DeValue::Table(table) => key_of_value(table, span, keys),
        DeValue::Array(items) => items.iter().fold(None, |found, item| {
            let inner = key_within(item.get_ref(), span, keys);
            if item.span() == *span {
                inner.or_else(|| Some(keys.join(".")))
            } else {
                inner.or(found)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nlisten = \"x\"\n\n[mcp_servers.tasks]\ncommand = \"t\"\nargs = [\"a\", 1]\nenv = { K = \"v\" }\n";

    #[test]
    fn keys_are_found_on_their_lines() {
        let document = Document::parse(TEXT, "agent.toml").expect("parses");
        assert_eq!(document.key_line(&["server", "listen"]), Some(2));
        assert_eq!(document.key_line(&["mcp_servers", "tasks"]), Some(4));
        assert_eq!(
            document.key_line(&["mcp_servers", "tasks", "env", "K"]),
            Some(7)
        );
        assert_eq!(document.key_line(&["mcp_servers", "tasks", "cwd"]), None);
        assert_eq!(document.key_line(&["llm", "model"]), None);
    }

    #[test]
    fn values_are_traced_back_to_their_keys() {
        let document = Document::parse(TEXT, "agent.toml").expect("parses");
        let mut keys = Vec::new();
        let one = TEXT.find("1]").expect("in text");
        assert_eq!(
            key_of_value(document.root().get_ref(), &(one..one + 1), &mut keys).as_deref(),
            Some("mcp_servers.tasks.args")
        );
        let v = TEXT.find("\"v\"").expect("in text");
        assert_eq!(
            key_of_value(document.root().get_ref(), &(v..v + 3), &mut keys).as_deref(),
            Some("mcp_servers.tasks.env.K")
        );
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let err = Document::parse("[llm]\nmodel = \"x\nbase_url = 1\n", "agent.toml")
            .err()
            .expect("refused");
        assert!(err.to_string().starts_with("agent.toml:2: "), "{err}");
        let err = Document::parse("[limits]\n\nburst = ${BURST:-3}\n", "agent.toml")
            .err()
            .expect("refused");
        assert!(err.to_string().starts_with("agent.toml:3: "), "{err}");
        assert!(err.to_string().contains("inside a string"), "{err}");
    }
}
