//! Answer bodies read within a bound: whole up to a size ([`read_at_most`]),
//! as JSON ([`read_json`]), or as an error status's message ([`api_error`]).
//! A model server is untrusted: no body is read whole without a bound.

use futures::StreamExt;

use super::LlmError;

/// Most bytes of an error answer's body read for its message.
pub(super) const ERROR_BODY_BYTES: usize = 64 * 1024;

/// An error status as [`LlmError::Api`], with the start of its body.
pub(super) async fn api_error(response: reqwest::Response) -> LlmError {
    LlmError::Api {
        status: response.status().as_u16(),
        message: match read_at_most(response, ERROR_BODY_BYTES).await {
            Ok(Some(body)) => String::from_utf8_lossy(&body).into_owned(),
            Ok(None) | Err(_) => String::new(),
        },
    }
}

/// A successful answer's JSON body, at most `max` bytes, as `T`; `what`
/// names it in errors.
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    max: usize,
    what: &str,
) -> Result<T, LlmError> {
    let body = read_at_most(response, max)
        .await
        .map_err(|e| LlmError::Protocol(format!("the {what} could not be read: {e}")))?
        .ok_or_else(|| LlmError::Protocol(format!("the {what} is longer than {max} bytes")))?;
    serde_json::from_slice(&body).map_err(|e| LlmError::Protocol(format!("not a {what}: {e}")))
}

/// A whole response body, or `None` as soon as it passes `max` bytes.
pub(super) async fn read_at_most(
    response: reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    let mut reads = response.bytes_stream();
    while let Some(read) = reads.next().await {
        let read = read?;
        if body.len() + read.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&read);
    }
    Ok(Some(body))
}
