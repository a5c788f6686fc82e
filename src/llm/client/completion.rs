//! Short non-streamed answers: a title, a guardrail's verdict as JSON that
//! a schema describes (asked with the endpoint's JSON schema format, and
//! again without it when the endpoint refuses the format), read within a
//! bound.

use super::{LlmClient, MIN_RESPONSES_COMPLETION_TOKENS};
use crate::config::LlmApi;
use crate::llm::LlmError;
use crate::llm::body::read_at_most;
use crate::llm::responses;
use crate::llm::wire::{ChatMessage, ChatRequest, Completion};

impl LlmClient {
    /// A short non-streamed answer (titles).
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
    ) -> Result<String, LlmError> {
        self.complete_with(messages, max_tokens, None, None).await
    }

    /// A short non-streamed answer as JSON that `schema` describes (named
    /// `name`), from `model` (default: the configured one): asked with the
    /// endpoint's JSON schema format, and again without it when the
    /// endpoint refuses the format (400), so the caller must read the text
    /// tolerantly.
    pub async fn complete_json(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
        model: Option<&str>,
        (name, schema): (&str, &serde_json::Value),
    ) -> Result<String, LlmError> {
        let format = match self.api {
            LlmApi::ChatCompletions => serde_json::json!({"type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": true}}),
            LlmApi::Responses => serde_json::json!({"type": "json_schema",
                "name": name, "schema": schema, "strict": true}),
        };
        match self
            .complete_with(messages, max_tokens, model, Some(&format))
            .await
        {
            Err(LlmError::Api {
                status: 400,
                message,
            }) => {
                tracing::info!(%message, "the endpoint refused a JSON schema format; asking without it");
                self.complete_with(messages, max_tokens, model, None).await
            }
            other => other,
        }
    }

    async fn complete_with(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
        model: Option<&str>,
        format: Option<&serde_json::Value>,
    ) -> Result<String, LlmError> {
        self.check_configured()?;
        let model = model.unwrap_or(&self.model);
        let response = match self.api {
            LlmApi::ChatCompletions => {
                let request = ChatRequest {
                    model,
                    messages,
                    stream: false,
                    temperature: self.temperature,
                    max_tokens: Some(max_tokens),
                    tools: &[],
                    tool_choice: None,
                    stream_options: None,
                    reasoning_effort: None,
                    response_format: format,
                };
                self.send(&self.chat_url, &request).await?
            }
            LlmApi::Responses => {
                let body = responses::request_body(
                    messages,
                    &[],
                    responses::Options {
                        model,
                        stream: false,
                        temperature: self.temperature,
                        // A reasoning model spends its thinking from the same
                        // budget: a title's few tokens would all go there.
                        max_output_tokens: Some(max_tokens.max(MIN_RESPONSES_COMPLETION_TOKENS)),
                        tool_choice: None,
                        reasoning: None,
                        hosted: None,
                        text_format: format,
                    },
                );
                self.send(&self.responses_url, &body).await?
            }
        };
        let max = self.limits.max_chunk_bytes();
        let body = tokio::time::timeout(self.request_timeout, read_at_most(response, max))
            .await
            .map_err(|_| LlmError::Timeout(self.request_timeout))?
            .map_err(|e| self.request_failed(e))?
            .ok_or_else(|| {
                LlmError::Protocol(format!("the completion is longer than {max} bytes"))
            })?;
        if self.api == LlmApi::Responses {
            return responses::completion_text(&body);
        }
        let completion: Completion = serde_json::from_slice(&body)
            .map_err(|e| LlmError::Protocol(format!("not a completion: {e}")))?;
        if let Some(usage) = &completion.usage {
            usage.record();
        }
        completion
            .choices
            .into_iter()
            .find_map(|c| c.message.and_then(|m| m.content))
            .ok_or_else(|| LlmError::Protocol("the completion has no message content".to_owned()))
    }
}
