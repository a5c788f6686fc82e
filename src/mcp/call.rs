//! The call path: one tool call of the model (or of `chatkitd tools call`)
//! for a user, with identity injected, a deadline, and every failure turned
//! into an error result the model reads.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Instant;

use serde_json::{Map, Value};

use super::instance::CallFailure;
use super::manager::McpManager;
use super::{Elicitor, ProgressReporter, ToolOutcome, media, tools};
use crate::config::InjectSource;

/// Largest text result parsed as data for a widget.
const MAX_DATA_BYTES: usize = 1024 * 1024;

/// A tool call about to run ([`McpManager::call`]), with what its caller
/// wants to hear while it runs; awaiting it runs it.
#[must_use = "a call runs when awaited"]
pub struct Call<'a> {
    manager: &'a McpManager,
    user: &'a str,
    name: &'a str,
    arguments: &'a str,
    progress: Option<ProgressReporter>,
    elicitor: Option<Elicitor>,
}

impl Call<'_> {
    /// Hands the server's progress notifications for the call to `progress`.
    pub fn reporting(mut self, progress: ProgressReporter) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Hands the server's questions to the user (elicitation) to `elicitor`.
    pub fn asking(mut self, elicitor: Elicitor) -> Self {
        self.elicitor = Some(elicitor);
        self
    }
}

impl<'a> IntoFuture for Call<'a> {
    type Output = ToolOutcome;
    type IntoFuture = Pin<Box<dyn Future<Output = ToolOutcome> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let outcome = self
                .manager
                .call_inner(
                    self.user,
                    self.name,
                    self.arguments,
                    self.progress,
                    self.elicitor,
                )
                .await;
            crate::metrics::get().tool_call(
                &outcome.server,
                &outcome.tool,
                outcome.is_error,
                outcome.elapsed,
            );
            outcome
        })
    }
}

impl McpManager {
    /// Runs one call of `server`'s tool `tool` (its own name, not the
    /// model's) for `user`, exactly as a model's call would run: injected
    /// parameters are overwritten, only offered tools can be called. Never
    /// fails: problems become error results.
    pub async fn call_tool(
        &self,
        user: &str,
        server: &str,
        tool: &str,
        arguments: &str,
    ) -> ToolOutcome {
        let started = Instant::now();
        let tools = self.tools_for(user).await;
        match tools.iter().find(|t| t.server == server && t.tool == tool) {
            Some(found) => self.call(user, &found.name, arguments).await,
            None => ToolOutcome::error(
                server,
                tool,
                if self.servers().contains_key(server) {
                    format!("Error: the {server} tool server offers no tool named {tool:?}.")
                } else {
                    format!("Error: no tool server named {server:?} is configured.")
                },
                started.elapsed(),
            ),
        }
    }

    /// One tool call of the model's tool `name` for `user`, to await.
    /// Never fails: every problem becomes an error result the model reads.
    /// Optional hooks: [`Call::reporting`] hands the server's progress
    /// notifications over as they come, [`Call::asking`] its questions to
    /// the user (declined without one).
    pub fn call<'a>(&'a self, user: &'a str, name: &'a str, arguments: &'a str) -> Call<'a> {
        Call {
            manager: self,
            user,
            name,
            arguments,
            progress: None,
            elicitor: None,
        }
    }

    async fn call_inner(
        &self,
        user: &str,
        name: &str,
        arguments: &str,
        progress: Option<ProgressReporter>,
        elicitor: Option<Elicitor>,
    ) -> ToolOutcome {
        let started = Instant::now();
        let tools = self.current_tools();
        let Some(tool) = tools.iter().find(|t| t.name == name) else {
            return ToolOutcome::error(
                "",
                name,
                format!("Error: there is no tool named {name:?}."),
                started.elapsed(),
            );
        };
        let error = |output: String| {
            ToolOutcome::error(&tool.server, &tool.tool, output, started.elapsed())
        };
        let Some(server) = self.servers().get(&tool.server).cloned() else {
            return error(format!(
                "Error: the {} tool server is not configured.",
                tool.server
            ));
        };
        let mut arguments = match parse_arguments(arguments) {
            Ok(arguments) => arguments,
            Err(message) => return error(format!("Error: {message}")),
        };
        for (parameter, source) in &server.config.inject {
            let value = match source {
                InjectSource::UserId => Value::String(user.to_owned()),
            };
            arguments.insert(parameter.clone(), value);
        }
        let deadline = tokio::time::Instant::now() + server.config.call_timeout;
        server.make_room(user).await;
        let lease = match server.pool_for(user).lease(deadline).await {
            Ok(lease) => lease,
            Err(e) => return error(format!("Error: {e}.")),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        match lease
            .call(&tool.tool, arguments, remaining, progress, elicitor)
            .await
        {
            Ok(result) => {
                let is_error = result.is_error.unwrap_or(false);
                let content = media::result_content(&result, self.output_limits());
                ToolOutcome {
                    output: content.text,
                    images: content.images,
                    structured: tools::result_data(&result, MAX_DATA_BYTES),
                    is_error,
                    server: tool.server.clone(),
                    tool: tool.tool.clone(),
                    elapsed: started.elapsed(),
                }
            }
            Err(CallFailure::Timeout(after)) => error(format!(
                "Error: the {} tool server did not answer within {}s; the call was cancelled.",
                tool.server,
                server
                    .config
                    .call_timeout
                    .as_secs_f64()
                    .max(after.as_secs_f64())
                    .round()
            )),
            Err(CallFailure::Closed) => error(format!(
                "Error: the {} tool server stopped during the call (it will be restarted); the tool may or may not have run.",
                tool.server
            )),
            Err(CallFailure::Protocol(message)) => error(format!("Error: {message}")),
        }
    }
}

/// The model's arguments as a JSON object (`""` counts as `{}`).
fn parse_arguments(text: &str) -> Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "the arguments must be a JSON object, not {}",
            match other {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            }
        )),
        Err(e) => Err(format!(
            "the arguments are not valid JSON ({e}); send a JSON object"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_arguments;

    #[test]
    fn arguments_must_be_an_object() {
        assert!(parse_arguments("").expect("empty is {}").is_empty());
        assert_eq!(parse_arguments(r#"{"a":1}"#).expect("object").len(), 1);
        assert!(
            parse_arguments("[1]")
                .expect_err("array")
                .contains("an array")
        );
        assert!(
            parse_arguments("{oops")
                .expect_err("invalid")
                .contains("not valid JSON")
        );
    }
}
