//! Requests: the `{"type", "params", "metadata"}` envelope and each type's params.
//!
//! Parsing is strict where the reference is (a missing `params`, a wrong JSON
//! type, a value outside a literal set are errors) and tolerant where it is
//! (unknown fields are ignored). Errors say which request and which field
//! (its path in `params`, as `input.answers.q1.values[0]`).
//!
//! Two checks go further, because a body is the attacker's first tool: a
//! key written twice in one object is refused (a parser that keeps the last
//! one lets `{"type":"threads.list","type":"threads.delete"}` mean whatever
//! the reader's parser decides), and every id a request names must be one
//! chatkitd could have issued ([`is_id`]), before anything uses it.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use thiserror::Error;

use super::ids::{MAX_ID_LEN, is_id};
use super::items::{InferenceOptions, UserContent};
use super::structured::StructuredInputParams;
use super::unique_keys::UniqueKeys;

/// Declares every request type once: its variant, its params type and its
/// `type` literal. The enum, [`REQUEST_TYPES`], parsing and
/// [`Request::type_name`] are all generated from this one list, so they
/// cannot disagree.
macro_rules! request_types {
    ($($variant:ident($params:ty) = $literal:literal,)*) => {
        /// A parsed, validated request.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Request {
            $($variant($params),)*
        }

        /// The request types, in the order of the protocol document.
        pub const REQUEST_TYPES: [&str; [$($literal),*].len()] = [$($literal),*];

        impl Request {
            /// The params of the request type `kind` (one of [`REQUEST_TYPES`]).
            fn from_params(kind: &'static str, params: Value) -> Result<Request, RequestError> {
                match kind {
                    $($literal => Ok(Request::$variant(params_of(kind, params)?)),)*
                    other => Err(RequestError::UnknownType(other.to_owned())),
                }
            }

            /// The request's `type` literal.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Request::$variant(_) => $literal,)*
                }
            }
        }
    };
}

request_types! {
    ThreadsCreate(ThreadInputParams) = "threads.create",
    ThreadsAddUserMessage(ThreadInputParams) = "threads.add_user_message",
    ThreadsAddClientToolOutput(ClientToolOutputParams) = "threads.add_client_tool_output",
    ThreadsAddStructuredInput(StructuredInputParams) = "threads.add_structured_input",
    ThreadsRetryAfterItem(RetryParams) = "threads.retry_after_item",
    ThreadsCustomAction(ActionParams) = "threads.custom_action",
    ThreadsSyncCustomAction(ActionParams) = "threads.sync_custom_action",
    ThreadsGetById(ThreadIdParams) = "threads.get_by_id",
    ThreadsList(ListParams) = "threads.list",
    ThreadsUpdate(ThreadUpdateParams) = "threads.update",
    ThreadsDelete(ThreadIdParams) = "threads.delete",
    ItemsList(ItemsListParams) = "items.list",
    ItemsFeedback(FeedbackParams) = "items.feedback",
    AttachmentsCreate(AttachmentCreateParams) = "attachments.create",
    AttachmentsDelete(AttachmentDeleteParams) = "attachments.delete",
    InputTranscribe(TranscribeParams) = "input.transcribe",
}

/// Why a request body was refused.
#[derive(Debug, Error, PartialEq)]
pub enum RequestError {
    #[error("the request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("the request body must be a JSON object with `type` and `params`")]
    NotAnObject,
    #[error("the request has no `type` string")]
    MissingType,
    #[error("unknown request type {0:?}")]
    UnknownType(String),
    #[error("{0} requires `params` (send `\"params\": {{}}` when every param has a default)")]
    MissingParams(&'static str),
    #[error("invalid params for {kind}: {message}")]
    InvalidParams { kind: &'static str, message: String },
    #[error(
        "invalid params for {kind}: `{field}` is not an id this server issues (1 to {MAX_ID_LEN} letters, digits, `_` or `-`)"
    )]
    InvalidId {
        kind: &'static str,
        field: &'static str,
    },
}

impl Request {
    /// Parses a raw request body.
    pub fn parse(body: &[u8]) -> Result<Request, RequestError> {
        let UniqueKeys(value) =
            serde_json::from_slice(body).map_err(|e| RequestError::InvalidJson(e.to_string()))?;
        let Value::Object(mut envelope) = value else {
            return Err(RequestError::NotAnObject);
        };
        let kind = match envelope.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            _ => return Err(RequestError::MissingType),
        };
        let kind: &'static str = REQUEST_TYPES
            .iter()
            .find(|known| **known == kind)
            .ok_or(RequestError::UnknownType(kind))?;
        let params = match envelope.remove("params") {
            Some(Value::Null) | None => return Err(RequestError::MissingParams(kind)),
            Some(params) => params,
        };
        let request = Request::from_params(kind, params)?;
        request.check_ids()?;
        Ok(request)
    }

    /// Refuses any id the request names that chatkitd cannot have issued.
    fn check_ids(&self) -> Result<(), RequestError> {
        let kind = self.type_name();
        let check = |field: &'static str, id: &str| {
            if is_id(id) {
                Ok(())
            } else {
                Err(RequestError::InvalidId { kind, field })
            }
        };
        let input_attachments = |input: &UserMessageInput| {
            input
                .attachments
                .iter()
                .try_for_each(|id| check("input.attachments", id))
        };
        match self {
            // A missing `thread_id` on `add_user_message` is the dispatcher's
            // error to name.
            Request::ThreadsCreate(p) | Request::ThreadsAddUserMessage(p) => {
                if let Some(id) = &p.thread_id {
                    check("thread_id", id)?;
                }
                input_attachments(&p.input)
            }
            Request::ThreadsAddClientToolOutput(p) => check("thread_id", &p.thread_id),
            Request::ThreadsAddStructuredInput(p) => {
                check("thread_id", &p.thread_id)?;
                check("item_id", &p.item_id)
            }
            Request::ThreadsRetryAfterItem(p) => {
                check("thread_id", &p.thread_id)?;
                check("item_id", &p.item_id)
            }
            Request::ThreadsCustomAction(p) | Request::ThreadsSyncCustomAction(p) => {
                check("thread_id", &p.thread_id)?;
                p.item_id
                    .as_deref()
                    .map_or(Ok(()), |id| check("item_id", id))
            }
            Request::ThreadsGetById(p) | Request::ThreadsDelete(p) => {
                check("thread_id", &p.thread_id)
            }
            Request::ThreadsList(p) => p.after.as_deref().map_or(Ok(()), |id| check("after", id)),
            Request::ThreadsUpdate(p) => check("thread_id", &p.thread_id),
            Request::ItemsList(p) => {
                check("thread_id", &p.thread_id)?;
                p.after.as_deref().map_or(Ok(()), |id| check("after", id))
            }
            Request::ItemsFeedback(p) => {
                check("thread_id", &p.thread_id)?;
                p.item_ids.iter().try_for_each(|id| check("item_ids", id))
            }
            Request::AttachmentsDelete(p) => check("attachment_id", &p.attachment_id),
            Request::AttachmentsCreate(_) | Request::InputTranscribe(_) => Ok(()),
        }
    }

    /// Whether the answer is an event stream rather than one JSON document.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Request::ThreadsCreate(_)
                | Request::ThreadsAddUserMessage(_)
                | Request::ThreadsAddClientToolOutput(_)
                | Request::ThreadsAddStructuredInput(_)
                | Request::ThreadsRetryAfterItem(_)
                | Request::ThreadsCustomAction(_)
        )
    }
}

fn params_of<T: DeserializeOwned>(kind: &'static str, params: Value) -> Result<T, RequestError> {
    if !params.is_object() {
        return Err(RequestError::InvalidParams {
            kind,
            message: "`params` must be a JSON object".to_owned(),
        });
    }
    // The path says where in `params` the error is (`input.answers.x`).
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let error = e.into_inner();
        let message = match path.as_str() {
            "." => error.to_string(),
            path => format!("`{path}`: {error}"),
        };
        RequestError::InvalidParams { kind, message }
    })
}

/// What the composer sends; the server turns it into a `user_message` item.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UserMessageInput {
    pub content: Vec<UserContent>,
    pub attachments: Vec<String>,
    #[serde(default)]
    pub quoted_text: Option<String>,
    pub inference_options: InferenceOptions,
}

/// Params of `threads.create` (no `thread_id`) and `threads.add_user_message`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThreadInputParams {
    #[serde(default)]
    pub thread_id: Option<String>,
    pub input: UserMessageInput,
}

/// Params of `threads.add_client_tool_output`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClientToolOutputParams {
    pub thread_id: String,
    pub result: Value,
}

/// Params of `threads.retry_after_item`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RetryParams {
    pub thread_id: String,
    pub item_id: String,
}

/// Params of `threads.custom_action` and `threads.sync_custom_action`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActionParams {
    pub thread_id: String,
    #[serde(default)]
    pub item_id: Option<String>,
    pub action: CustomAction,
}

/// A widget action: `{"type", "payload"}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CustomAction {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
}

/// Params naming one thread (`get_by_id`, `delete`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThreadIdParams {
    pub thread_id: String,
}

/// Sort order of a listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// Params of `threads.list`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub order: Order,
    #[serde(default)]
    pub after: Option<String>,
}

/// Params of `items.list`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ItemsListParams {
    pub thread_id: String,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub order: Order,
    #[serde(default)]
    pub after: Option<String>,
}

/// Params of `threads.update`: a title cannot be cleared, only replaced.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ThreadUpdateParams {
    pub thread_id: String,
    pub title: String,
}

/// Thumbs up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    Positive,
    Negative,
}

impl FeedbackKind {
    /// The literal, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Positive => "positive",
            FeedbackKind::Negative => "negative",
        }
    }
}

/// Params of `items.feedback`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FeedbackParams {
    pub thread_id: String,
    pub item_ids: Vec<String>,
    pub kind: FeedbackKind,
}

/// Params of `attachments.create`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AttachmentCreateParams {
    pub name: String,
    pub size: u64,
    pub mime_type: String,
}

/// Params of `attachments.delete`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AttachmentDeleteParams {
    pub attachment_id: String,
}

/// Params of `input.transcribe`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TranscribeParams {
    pub audio_base64: String,
    pub mime_type: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Request, RequestError> {
        Request::parse(text.as_bytes())
    }

    #[test]
    fn envelope_errors_are_precise() {
        assert!(matches!(
            parse("{not json"),
            Err(RequestError::InvalidJson(_))
        ));
        assert!(matches!(parse(""), Err(RequestError::InvalidJson(_))));
        assert_eq!(parse("[]"), Err(RequestError::NotAnObject));
        assert_eq!(parse(r#"{"params":{}}"#), Err(RequestError::MissingType));
        assert_eq!(
            parse(r#"{"type":"threads.explode","params":{}}"#),
            Err(RequestError::UnknownType("threads.explode".into()))
        );
        assert_eq!(
            parse(r#"{"type":"threads.list"}"#),
            Err(RequestError::MissingParams("threads.list"))
        );
        let err = parse(r#"{"type":"threads.get_by_id","params":{"thread_id":123}}"#)
            .expect_err("number is not a string");
        assert!(err.to_string().contains("threads.get_by_id"), "{err}");
        assert!(parse(r#"{"type":"threads.list","params":{"order":"sideways"}}"#).is_err());
    }

    #[test]
    fn a_key_written_twice_is_refused_at_any_depth() {
        let twice = parse(r#"{"type":"threads.list","type":"threads.delete","params":{}}"#);
        assert!(
            matches!(&twice, Err(RequestError::InvalidJson(m)) if m.contains("\"type\" appears twice")),
            "{twice:?}"
        );
        let nested = parse(
            r#"{"type":"threads.get_by_id","params":{"thread_id":"thr_a","thread_id":"thr_b"}}"#,
        );
        assert!(
            matches!(nested, Err(RequestError::InvalidJson(_))),
            "{nested:?}"
        );
        let deep = parse(r#"{"type":"threads.list","params":{"x":[{"a":1,"a":2}]}}"#);
        assert!(
            matches!(deep, Err(RequestError::InvalidJson(_))),
            "{deep:?}"
        );
        // Numbers, nulls and nesting read as before.
        assert!(parse(r#"{"type":"threads.list","params":{"limit":5,"after":null,"x":[1.5,-2,{"y":true}]}}"#).is_ok());
    }

    #[test]
    fn every_id_a_request_names_is_checked() {
        let bad = [r#""thr_\u0000""#, r#""a b""#, r#""thr\n""#, r#""""#];
        let long = format!("\"{}\"", "t".repeat(MAX_ID_LEN + 1));
        let input = r#"{"content":[],"attachments":[],"inference_options":{}}"#;
        for id in bad.iter().copied().chain([long.as_str()]) {
            let bodies = [
                format!(r#"{{"type":"threads.get_by_id","params":{{"thread_id":{id}}}}}"#),
                format!(r#"{{"type":"threads.delete","params":{{"thread_id":{id}}}}}"#),
                format!(r#"{{"type":"threads.update","params":{{"thread_id":{id},"title":"t"}}}}"#),
                format!(r#"{{"type":"threads.list","params":{{"after":{id}}}}}"#),
                format!(r#"{{"type":"items.list","params":{{"thread_id":"thr_1","after":{id}}}}}"#),
                format!(
                    r#"{{"type":"items.feedback","params":{{"thread_id":"thr_1","item_ids":["msg_1",{id}],"kind":"positive"}}}}"#
                ),
                format!(
                    r#"{{"type":"threads.add_user_message","params":{{"thread_id":{id},"input":{input}}}}}"#
                ),
                format!(
                    r#"{{"type":"threads.create","params":{{"input":{{"content":[],"attachments":[{id}],"inference_options":{{}}}}}}}}"#
                ),
                format!(
                    r#"{{"type":"threads.retry_after_item","params":{{"thread_id":"thr_1","item_id":{id}}}}}"#
                ),
                format!(
                    r#"{{"type":"threads.add_structured_input","params":{{"thread_id":"thr_1","item_id":{id},"input":{{}}}}}}"#
                ),
                format!(
                    r#"{{"type":"threads.add_client_tool_output","params":{{"thread_id":{id},"result":1}}}}"#
                ),
                format!(
                    r#"{{"type":"threads.custom_action","params":{{"thread_id":"thr_1","item_id":{id},"action":{{"type":"a"}}}}}}"#
                ),
                format!(r#"{{"type":"attachments.delete","params":{{"attachment_id":{id}}}}}"#),
            ];
            for body in bodies {
                let parsed = parse(&body);
                assert!(
                    matches!(parsed, Err(RequestError::InvalidId { .. })),
                    "{body}: {parsed:?}"
                );
            }
        }
        let message = RequestError::InvalidId {
            kind: "items.list",
            field: "after",
        }
        .to_string();
        assert!(message.contains("`after` is not an id"), "{message}");
        assert!(
            parse(r#"{"type":"threads.get_by_id","params":{"thread_id":"thr_missing_1-a"}}"#)
                .is_ok()
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_defaults_apply() {
        let req = parse(
            r#"{"type":"threads.list","params":{"limit":1,"future":true},"metadata":{},"x":1}"#,
        )
        .expect("valid");
        assert_eq!(
            req,
            Request::ThreadsList(ListParams {
                limit: Some(1),
                order: Order::Desc,
                after: None
            })
        );
        assert!(!req.is_streaming());
    }

    #[test]
    fn input_tag_data_defaults_to_empty() {
        let req = parse(
            r#"{"type":"threads.create","params":{"input":{"content":[{"type":"input_tag","id":"t","text":"Ann"}],"attachments":[],"inference_options":{}}}}"#,
        )
        .expect("valid");
        let Request::ThreadsCreate(params) = req else {
            panic!("wrong variant")
        };
        assert!(matches!(
            &params.input.content[0],
            UserContent::InputTag { data, interactive: false, .. } if data.is_empty()
        ));
    }
}
