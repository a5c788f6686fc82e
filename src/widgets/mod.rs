//! ChatKit widgets that chatkitd builds: `.widget` templates rendered from a
//! tool's structured result (this file), the approval card (`approval.rs`),
//! and reading any widget back as plain text or as the actions it offers
//! (`read.rs`).
//!
//! A `.widget` file is what ChatKit's widget builder exports: a JSON object
//! with `version` (`"1.0"`), `name`, `template` (a Jinja template whose output
//! is the widget JSON, values inserted with `| tojson`) and `jsonSchema` (the
//! data it expects, documentation for its author). It is rendered like the
//! Python SDK's `WidgetTemplate`: the data object's keys are the template's
//! variables, an undefined variable is an error, and the output must be a
//! widget root (`Card`, `ListView` or `Basic`); nulls are dropped at every
//! depth. Rendering is bounded (fuel, output size), so a tool that returns a
//! huge or odd result costs a warning, never a stalled run.
//!
//! This module does not know where data comes from: not the tool servers, the
//! store, the agent or HTTP.

mod approval;
mod read;

use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

pub use approval::{APPROVE, ApprovalCall, DENY, Verdict, approval_card, resolved_card};
pub use read::{offered_actions, offers_action, plain_text};

/// The only `.widget` format version there is.
const SPEC_VERSION: &str = "1.0";
/// Template instructions one render may execute: far more than a list of a
/// few hundred rows needs, far less than a loop that never ends.
const RENDER_FUEL: u64 = 2_000_000;
/// Largest widget JSON one render may produce.
pub const MAX_WIDGET_BYTES: usize = 256 * 1024;
/// The types a widget's root may have.
const ROOT_TYPES: [&str; 3] = ["Card", "ListView", "Basic"];

/// What can go wrong loading or rendering a widget template.
#[derive(Debug, thiserror::Error)]
pub enum WidgetError {
    #[error("cannot read the widget template {path}: {message}")]
    Read { path: String, message: String },
    #[error("{origin} is not a `.widget` file: {message}")]
    Format { origin: String, message: String },
    #[error("the template of {origin} does not compile: {message}")]
    Syntax { origin: String, message: String },
    #[error("the widget {name:?} did not render: {message}")]
    Render { name: String, message: String },
}

/// One `.widget` template, compiled once.
pub struct WidgetTemplate {
    name: String,
    env: Environment<'static>,
}

impl std::fmt::Debug for WidgetTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WidgetTemplate")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl WidgetTemplate {
    /// Reads and compiles a `.widget` file.
    pub fn load(path: &Path) -> Result<WidgetTemplate, WidgetError> {
        let text = std::fs::read_to_string(path).map_err(|e| WidgetError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        WidgetTemplate::parse(&text, &path.display().to_string())
    }

    /// Compiles a `.widget` definition; `origin` names it in errors.
    pub fn parse(definition: &str, origin: &str) -> Result<WidgetTemplate, WidgetError> {
        let format = |message: String| WidgetError::Format {
            origin: origin.to_owned(),
            message,
        };
        let value: Value =
            serde_json::from_str(definition).map_err(|e| format(format!("invalid JSON ({e})")))?;
        let field = |key: &str| value.get(key).and_then(Value::as_str);
        match field("version") {
            Some(SPEC_VERSION) => {}
            Some(other) => {
                return Err(format(format!(
                    "version {other:?} is not supported (only {SPEC_VERSION:?})"
                )));
            }
            None => return Err(format("it has no string `version`".to_owned())),
        }
        let name = field("name")
            .ok_or_else(|| format("it has no string `name`".to_owned()))?
            .to_owned();
        let template = field("template")
            .ok_or_else(|| format("it has no string `template`".to_owned()))?
            .to_owned();
        let mut env = strict_environment();
        env.add_template_owned("widget", template)
            .map_err(|e| WidgetError::Syntax {
                origin: origin.to_owned(),
                message: describe(&e),
            })?;
        Ok(WidgetTemplate { name, env })
    }

    /// The template's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders the widget for `data`, a JSON object whose keys are the
    /// template's variables.
    pub fn render(&self, data: &Value) -> Result<Value, WidgetError> {
        let failed = |message: String| WidgetError::Render {
            name: self.name.clone(),
            message,
        };
        if !data.is_object() {
            return Err(failed("the data is not a JSON object".to_owned()));
        }
        let template = self
            .env
            .get_template("widget")
            .map_err(|e| failed(describe(&e)))?;
        let text = template
            .render(minijinja::Value::from(minijinja::value::Serde(data)))
            .map_err(|e| failed(describe(&e)))?;
        if text.len() > MAX_WIDGET_BYTES {
            return Err(failed(format!(
                "it produced {} bytes of JSON (at most {MAX_WIDGET_BYTES})",
                text.len()
            )));
        }
        let mut widget: Value = serde_json::from_str(&text)
            .map_err(|e| failed(format!("its output is not JSON ({e})")))?;
        drop_nulls(&mut widget);
        check_root(&widget).map_err(failed)?;
        Ok(widget)
    }
}

/// A plain-text Jinja template (an action's `message`), strict and bounded
/// like a widget's.
pub struct TextTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for TextTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTemplate").finish_non_exhaustive()
    }
}

impl TextTemplate {
    /// Compiles `source`; `origin` names it in errors.
    pub fn parse(source: &str, origin: &str) -> Result<TextTemplate, WidgetError> {
        let mut env = strict_environment();
        env.add_template_owned("text", source.to_owned())
            .map_err(|e| WidgetError::Syntax {
                origin: origin.to_owned(),
                message: describe(&e),
            })?;
        Ok(TextTemplate { env })
    }

    /// Renders the text for `data` (a JSON object of variables), at most
    /// [`MAX_WIDGET_BYTES`] long.
    pub fn render(&self, data: &Value) -> Result<String, WidgetError> {
        let failed = |message: String| WidgetError::Render {
            name: "message".to_owned(),
            message,
        };
        let text = self
            .env
            .get_template("text")
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(data))))
            .map_err(|e| failed(describe(&e)))?;
        if text.len() > MAX_WIDGET_BYTES {
            return Err(failed(format!("it is over {MAX_WIDGET_BYTES} bytes")));
        }
        Ok(text)
    }
}

/// An environment where an undefined variable is an error and a render has
/// a bounded number of instructions.
fn strict_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.add_filter("tojson", strict_tojson);
    env
}

/// `tojson` that refuses an undefined value, as Jinja2's strict mode does
/// (minijinja's would write `null`, which then silently vanishes).
fn strict_tojson(
    value: &minijinja::Value,
    indent: Option<minijinja::Value>,
    args: minijinja::value::Kwargs,
) -> Result<minijinja::Value, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            "`tojson` was given an undefined value",
        ));
    }
    minijinja::filters::tojson(value, indent, args)
}

/// A template error with its line, as minijinja reports it.
fn describe(error: &minijinja::Error) -> String {
    match error.line() {
        Some(line) => format!("{error} (template line {line})"),
        None => error.to_string(),
    }
}

/// Removes `null` members and elements at every depth, as ChatKit does.
pub fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => {
            items.retain(|v| !v.is_null());
            items.iter_mut().for_each(drop_nulls);
        }
        _ => {}
    }
}

/// Checks that `widget` is a widget root.
pub fn check_root(widget: &Value) -> Result<(), String> {
    match widget.get("type").and_then(Value::as_str) {
        Some(kind) if ROOT_TYPES.contains(&kind) => Ok(()),
        Some(kind) => Err(format!(
            "its root is a {kind:?}; a widget's root is one of {ROOT_TYPES:?}"
        )),
        None => Err("its output has no root component `type`".to_owned()),
    }
}

#[cfg(test)]
mod tests;
