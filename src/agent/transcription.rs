//! Voice input: `input.transcribe` decodes the composer's audio and has the
//! configured transcription model turn it into the text the composer shows.
//! Every refusal (not enabled, an unsupported type, an oversized clip, bad
//! base64) comes before the model service is called.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Agent;
use crate::protocol::TranscribeParams;

/// The audio types accepted, by base media type, and the file extension the
/// transcription service reads the format from.
const AUDIO_TYPES: [(&str, &str); 10] = [
    ("audio/webm", "webm"),
    ("audio/ogg", "ogg"),
    ("audio/mp4", "mp4"),
    ("audio/mpeg", "mp3"),
    ("audio/mp3", "mp3"),
    ("audio/wav", "wav"),
    ("audio/x-wav", "wav"),
    ("audio/flac", "flac"),
    ("audio/m4a", "m4a"),
    ("audio/x-m4a", "m4a"),
];

/// Why a clip was not transcribed.
#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error(
        "voice input is not enabled on this server: set [llm] transcription_model in agent.toml"
    )]
    NotEnabled,
    /// The request is wrong (type, size, encoding): the message says how.
    #[error("{0}")]
    Refused(String),
    /// The transcription service failed.
    #[error("the transcription service failed: {0}")]
    Service(String),
}

impl Agent {
    /// The text of one audio clip.
    pub async fn transcribe(&self, params: &TranscribeParams) -> Result<String, TranscribeError> {
        let Some(max_bytes) = self.llm.max_audio_bytes() else {
            return Err(TranscribeError::NotEnabled);
        };
        let base_type = params
            .mime_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let Some((_, extension)) = AUDIO_TYPES.iter().find(|(t, _)| *t == base_type) else {
            let accepted: Vec<&str> = AUDIO_TYPES.iter().map(|(t, _)| *t).collect();
            return Err(TranscribeError::Refused(format!(
                "the audio type {:?} is not supported; send one of: {}",
                params.mime_type,
                accepted.join(", ")
            )));
        };
        // A data URL's prefix is tolerated; the rest must be plain base64.
        let encoded = params
            .audio_base64
            .split_once(";base64,")
            .filter(|(prefix, _)| prefix.starts_with("data:"))
            .map_or(params.audio_base64.as_str(), |(_, data)| data)
            .trim();
        // Judged before decoding, so an oversized clip costs no allocation.
        let decoded_len = encoded.len() / 4 * 3;
        if decoded_len > max_bytes.saturating_add(3) {
            return Err(TranscribeError::Refused(format!(
                "the audio clip is about {decoded_len} bytes; at most {max_bytes} are accepted"
            )));
        }
        let audio = STANDARD.decode(encoded).map_err(|e| {
            TranscribeError::Refused(format!("audio_base64 is not valid base64: {e}"))
        })?;
        if audio.is_empty() {
            return Err(TranscribeError::Refused(
                "the audio clip is empty".to_owned(),
            ));
        }
        if audio.len() > max_bytes {
            return Err(TranscribeError::Refused(format!(
                "the audio clip is {} bytes; at most {max_bytes} are accepted",
                audio.len()
            )));
        }
        let started = std::time::Instant::now();
        let bytes = audio.len();
        let text = self
            .llm
            .transcribe(audio, &base_type, &format!("audio.{extension}"))
            .await
            .map_err(|e| TranscribeError::Service(e.to_string()))?;
        tracing::info!(
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "audio transcribed"
        );
        Ok(text)
    }
}
