//! Voice input: one audio clip sent to `/audio/transcriptions` (multipart,
//! once, without retries) and its text read back within a bound; where
//! that endpoint is (`Transcriber`).

use super::{LlmClient, TRANSCRIPT_BYTES};
use crate::config::LlmConfig;
use crate::llm::LlmError;
use crate::llm::body::{api_error, read_json};

/// Where and with what audio is transcribed.
#[derive(Clone, Debug)]
pub(super) struct Transcriber {
    /// `{base}/audio/transcriptions`.
    url: reqwest::Url,
    api_key: Option<String>,
    model: String,
    max_bytes: usize,
}

impl Transcriber {
    /// The transcriber of `config`, when `[llm] transcription_model` is set
    /// (its endpoint defaults to `base_url`).
    pub(super) fn from_config(
        config: &LlmConfig,
        base_url: &str,
    ) -> Result<Option<Transcriber>, LlmError> {
        Ok(match &config.transcription_model {
            Some(model) => {
                let base = config
                    .transcription_base_url
                    .as_deref()
                    .unwrap_or(base_url)
                    .trim_end_matches('/');
                let url =
                    reqwest::Url::parse(&format!("{base}/audio/transcriptions")).map_err(|e| {
                        LlmError::NotConfigured(format!(
                            "[llm] transcription_base_url {base:?} is not a URL: {e}"
                        ))
                    })?;
                Some(Transcriber {
                    url,
                    api_key: config
                        .transcription_api_key
                        .clone()
                        .or_else(|| config.api_key.clone())
                        .filter(|k| !k.is_empty()),
                    model: model.clone(),
                    max_bytes: config.max_audio_bytes,
                })
            }
            None => None,
        })
    }
}

impl LlmClient {
    /// The largest audio clip [`LlmClient::transcribe`] takes, when
    /// `[llm] transcription_model` is set.
    pub fn max_audio_bytes(&self) -> Option<usize> {
        self.transcriber.as_ref().map(|t| t.max_bytes)
    }

    /// Transcribes one audio clip (`POST /audio/transcriptions`, multipart,
    /// the file named `file_name` so the service knows its format), once,
    /// without retries: the user is waiting with the microphone button.
    pub async fn transcribe(
        &self,
        audio: Vec<u8>,
        mime_type: &str,
        file_name: &str,
    ) -> Result<String, LlmError> {
        let Some(transcriber) = &self.transcriber else {
            return Err(LlmError::NotConfigured(
                "voice input is not enabled on this server: set [llm] transcription_model"
                    .to_owned(),
            ));
        };
        let file = reqwest::multipart::Part::bytes(audio)
            .file_name(file_name.to_owned())
            .mime_str(mime_type)
            .map_err(|e| LlmError::Protocol(format!("the audio type {mime_type:?}: {e}")))?;
        let form = reqwest::multipart::Form::new()
            .text("model", transcriber.model.clone())
            .text("response_format", "json")
            .part("file", file);
        let request = self
            .http
            .post(transcriber.url.clone())
            .multipart(form)
            .timeout(self.request_timeout);
        let response = self
            .send_once(request, transcriber.api_key.as_deref())
            .await?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        #[derive(serde::Deserialize)]
        struct Transcript {
            text: String,
        }
        read_json::<Transcript>(response, TRANSCRIPT_BYTES, "transcript")
            .await
            .map(|t| t.text)
    }
}
