//! `[attachments]`: files and images users attach to messages (limits, where
//! the bytes live, the signed URLs' lifetimes, how they reach the model),
//! the MIME type rules shared with the attachment service, and validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::document::Document;

/// Where uploaded bytes are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentStorage {
    /// In the store's database (a `bytea` / blob column): one database
    /// holds everything, and replicas share it.
    #[default]
    Database,
    /// Files under `[attachments] directory`; every replica must mount it.
    Directory,
}

/// How an attached image reaches the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageDelivery {
    /// Inline, as a `data:` URL: works with every endpoint.
    #[default]
    DataUrl,
    /// As a signed URL under `public_url`, which the model endpoint fetches.
    Url,
}

/// `[attachments]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentsConfig {
    /// `attachments.create` answers at all.
    pub enabled: bool,
    pub storage: AttachmentStorage,
    /// Directory of the bytes when `storage = "directory"` (relative to the
    /// config file).
    pub directory: PathBuf,
    /// Largest attachment, in bytes.
    pub max_bytes: u64,
    /// Most attachments on one message.
    pub max_per_message: usize,
    /// Uploads whose bytes the daemon holds at once (each up to
    /// `max_bytes`); more get 429.
    pub max_concurrent_uploads: usize,
    /// Uploads one user may have in progress at once; more get 429.
    pub max_concurrent_uploads_per_user: usize,
    /// Longest pause between two parts of an upload's body; a longer one
    /// ends the upload with 408 and frees its slot.
    #[serde(with = "humantime_serde")]
    pub upload_idle_timeout: Duration,
    /// The least average rate of an upload's body once
    /// `upload_idle_timeout` has passed (0: none); slower ones get 408.
    pub upload_min_bytes_per_second: u64,
    /// Previews streaming at once; more get 429.
    pub max_concurrent_previews: usize,
    /// Previews of one user's images streaming at once; more get 429.
    pub max_concurrent_previews_per_user: usize,
    /// MIME types users may attach; `type/*` matches a whole family.
    pub allowed_mime_types: Vec<String>,
    /// Types sent to the model as the chat-completions `file` input (for
    /// example `application/pdf` with OpenAI); images and text need none.
    pub file_input_types: Vec<String>,
    /// The URL clients reach the daemon at (`https://chat.example.com`),
    /// for upload and preview URLs. Unset: `http://` and the address the
    /// daemon listens on, which only suits a local setup.
    pub public_url: Option<String>,
    /// Key of the signed upload and preview URLs. Unset: a random key per
    /// process, so URLs stop working at a restart and on other replicas.
    pub signing_key: Option<String>,
    /// How long an upload URL is valid.
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,
    /// How long a preview URL is valid (listings sign them afresh).
    #[serde(with = "humantime_serde")]
    pub preview_ttl: Duration,
    /// An attachment no message used is deleted after this long.
    #[serde(with = "humantime_serde")]
    pub unused_ttl: Duration,
    /// How images reach the model.
    pub images_to_model: ImageDelivery,
    /// Text files longer than this are cut, with a marker, before the model
    /// reads them.
    pub max_inline_text_bytes: usize,
    /// Attachment bytes one model request may carry (images and files of the
    /// history, newest first); older ones are only named.
    pub max_history_bytes: u64,
}

impl Default for AttachmentsConfig {
    fn default() -> Self {
        AttachmentsConfig {
            enabled: true,
            storage: AttachmentStorage::Database,
            directory: PathBuf::from("attachments"),
            max_bytes: 10 * 1024 * 1024,
            max_per_message: 10,
            max_concurrent_uploads: 16,
            max_concurrent_uploads_per_user: 4,
            upload_idle_timeout: Duration::from_secs(10),
            upload_min_bytes_per_second: 1024,
            max_concurrent_previews: 64,
            max_concurrent_previews_per_user: 16,
            allowed_mime_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "text/plain",
                "text/markdown",
                "text/csv",
                "application/json",
            ]
            .map(str::to_owned)
            .to_vec(),
            file_input_types: Vec::new(),
            public_url: None,
            signing_key: None,
            upload_ttl: Duration::from_secs(15 * 60),
            preview_ttl: Duration::from_secs(60 * 60),
            unused_ttl: Duration::from_secs(60 * 60),
            images_to_model: ImageDelivery::DataUrl,
            max_inline_text_bytes: 64 * 1024,
            max_history_bytes: 20 * 1024 * 1024,
        }
    }
}

/// How the model reads an attachment of a MIME type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelInput {
    /// An image part.
    Image,
    /// Its text, inline with its name.
    Text,
    /// The endpoint's `file` input.
    File,
}

/// Images the chat-completions API takes as image parts.
const MODEL_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Types read as text besides `text/*`.
const TEXT_TYPES: [&str; 6] = [
    "application/json",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/x-ndjson",
    "application/javascript",
];

/// The base type of a MIME type, lowercased, without parameters
/// (`Text/Plain; charset=utf-8` is `text/plain`).
pub fn base_mime(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `mime` (a base type) matches `pattern` (`type/sub` or `type/*`).
pub fn mime_matches(pattern: &str, mime: &str) -> bool {
    let pattern = base_mime(pattern);
    match pattern.strip_suffix("/*") {
        Some(family) => mime
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1),
        None => pattern == mime,
    }
}

impl AttachmentsConfig {
    /// Whether users may attach `mime` (any case, parameters ignored).
    pub fn allows(&self, mime: &str) -> bool {
        let mime = base_mime(mime);
        self.allowed_mime_types
            .iter()
            .any(|pattern| mime_matches(pattern, &mime))
    }

    /// How the model reads `mime`; `None` when it cannot.
    pub fn model_input(&self, mime: &str) -> Option<ModelInput> {
        let mime = base_mime(mime);
        if MODEL_IMAGES.contains(&mime.as_str()) {
            Some(ModelInput::Image)
        } else if mime.starts_with("text/") || TEXT_TYPES.contains(&mime.as_str()) {
            Some(ModelInput::Text)
        } else if self
            .file_input_types
            .iter()
            .any(|pattern| mime_matches(pattern, &mime))
        {
            Some(ModelInput::File)
        } else {
            None
        }
    }
}

/// Checks `[attachments]`.
pub(super) fn validate(
    attachments: &AttachmentsConfig,
    document: &Document<'_>,
) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid {
        path: document.path().to_owned(),
        line: document.key_line(&["attachments", key]),
        key: format!("attachments.{key}"),
        message,
    };
    if attachments.max_bytes == 0 {
        return Err(invalid("max_bytes", "must be at least 1".to_owned()));
    }
    if attachments.max_per_message == 0 {
        return Err(invalid("max_per_message", "must be at least 1".to_owned()));
    }
    for (key, value) in [
        ("max_concurrent_uploads", attachments.max_concurrent_uploads),
        (
            "max_concurrent_uploads_per_user",
            attachments.max_concurrent_uploads_per_user,
        ),
        (
            "max_concurrent_previews",
            attachments.max_concurrent_previews,
        ),
        (
            "max_concurrent_previews_per_user",
            attachments.max_concurrent_previews_per_user,
        ),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be at least 1".to_owned()));
        }
    }
    for (key, value) in [
        ("upload_idle_timeout", attachments.upload_idle_timeout),
        ("upload_ttl", attachments.upload_ttl),
        ("preview_ttl", attachments.preview_ttl),
        ("unused_ttl", attachments.unused_ttl),
    ] {
        if value.is_zero() {
            return Err(invalid(key, "must not be 0".to_owned()));
        }
    }
    for pattern in attachments
        .allowed_mime_types
        .iter()
        .chain(&attachments.file_input_types)
    {
        let base = base_mime(pattern);
        let valid = base.split_once('/').is_some_and(|(family, sub)| {
            !family.is_empty() && !family.contains('*') && !sub.is_empty()
        });
        if !valid || base != pattern.trim() {
            return Err(invalid(
                "allowed_mime_types",
                format!(
                    "{pattern:?} is not a lowercase MIME type like \"image/png\" or \"text/*\""
                ),
            ));
        }
    }
    // What users may attach must be something the model can read: refused
    // at `attachments.create`, never found out at the model.
    for pattern in &attachments.allowed_mime_types {
        // A family is fine when the model reads some of it: its members
        // the model cannot read are refused at `attachments.create`.
        let readable = match pattern.strip_suffix("/*") {
            Some(family) => {
                family == "image"
                    || family == "text"
                    || attachments.file_input_types.iter().any(|f| f == pattern)
            }
            None => attachments.model_input(pattern).is_some(),
        };
        if !readable {
            return Err(invalid(
                "allowed_mime_types",
                format!(
                    "the model cannot read {pattern:?}: allow images (png, jpeg, gif, webp) and text, \
                     or list the type in file_input_types if the model endpoint takes it as a file"
                ),
            ));
        }
    }
    if let Some(url) = &attachments.public_url {
        let valid = (url.starts_with("http://") || url.starts_with("https://"))
            && reqwest::Url::parse(url).is_ok_and(|u| u.query().is_none());
        if !valid {
            return Err(invalid(
                "public_url",
                format!("{url:?} is not a URL like https://chat.example.com"),
            ));
        }
    }
    if attachments.images_to_model == ImageDelivery::Url && attachments.public_url.is_none() {
        return Err(invalid(
            "images_to_model",
            "\"url\" needs public_url: the model endpoint fetches images from there".to_owned(),
        ));
    }
    if let Some(key) = &attachments.signing_key
        && key.len() < 32
    {
        return Err(invalid(
            "signing_key",
            "must be at least 32 characters (use a random secret)".to_owned(),
        ));
    }
    if attachments.storage == AttachmentStorage::Directory
        && attachments.directory.as_os_str().is_empty()
    {
        return Err(invalid("directory", "must not be empty".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "agent.toml", PathBuf::from("."), &|_| None)
    }

    #[test]
    fn attachment_keys_load_and_are_checked_with_their_line() {
        let config = load("").expect("defaults");
        assert!(config.attachments.enabled);
        assert_eq!(config.attachments.storage, AttachmentStorage::Database);
        let config = load(
            "[attachments]\nstorage = \"directory\"\nfile_input_types = [\"application/pdf\"]\n\
             allowed_mime_types = [\"image/*\", \"text/*\", \"application/pdf\"]\n",
        )
        .expect("a directory and PDFs");
        assert_eq!(config.attachments.storage, AttachmentStorage::Directory);
        let cases = [
            (
                "max_bytes = 0",
                "agent.toml:2: `attachments.max_bytes`: must be at least 1",
            ),
            (
                "max_per_message = 0",
                "agent.toml:2: `attachments.max_per_message`: must be at least 1",
            ),
            (
                "max_concurrent_uploads_per_user = 0",
                "agent.toml:2: `attachments.max_concurrent_uploads_per_user`: must be at least 1",
            ),
            (
                "max_concurrent_previews = 0",
                "agent.toml:2: `attachments.max_concurrent_previews`: must be at least 1",
            ),
            (
                "max_concurrent_previews_per_user = 0",
                "agent.toml:2: `attachments.max_concurrent_previews_per_user`: must be at least 1",
            ),
            (
                "upload_idle_timeout = \"0s\"",
                "agent.toml:2: `attachments.upload_idle_timeout`: must not be 0",
            ),
            (
                "unused_ttl = \"0s\"",
                "agent.toml:2: `attachments.unused_ttl`: must not be 0",
            ),
            (
                "allowed_mime_types = [\"application/pdf\"]",
                "agent.toml:2: `attachments.allowed_mime_types`: the model cannot read \"application/pdf\": allow images (png, jpeg, gif, webp) and text, or list the type in file_input_types if the model endpoint takes it as a file",
            ),
            (
                "allowed_mime_types = [\"Image/PNG\"]",
                "agent.toml:2: `attachments.allowed_mime_types`: \"Image/PNG\" is not a lowercase MIME type like \"image/png\" or \"text/*\"",
            ),
            (
                "allowed_mime_types = [\"*/*\"]",
                "agent.toml:2: `attachments.allowed_mime_types`: \"*/*\" is not a lowercase MIME type like \"image/png\" or \"text/*\"",
            ),
            (
                "public_url = \"chat.example.com\"",
                "agent.toml:2: `attachments.public_url`: \"chat.example.com\" is not a URL like https://chat.example.com",
            ),
            (
                "images_to_model = \"url\"",
                "agent.toml:2: `attachments.images_to_model`: \"url\" needs public_url: the model endpoint fetches images from there",
            ),
            (
                "signing_key = \"short\"",
                "agent.toml:2: `attachments.signing_key`: must be at least 32 characters (use a random secret)",
            ),
        ];
        for (line, expected) in cases {
            let text = format!("[attachments]\n{line}\n");
            let err = load(&text).expect_err(line);
            assert_eq!(err.to_string(), expected, "{line}");
        }
        let err = load("[attachments]\nstorage = \"s3\"\n").expect_err("unknown storage");
        assert!(err.to_string().starts_with("agent.toml:2: "), "{err}");
    }

    #[test]
    fn mime_types_match_by_base_type_and_family() {
        assert!(mime_matches("text/*", "text/csv"));
        assert!(!mime_matches("text/*", "textual/csv"));
        assert!(!mime_matches("text/*", "text/"));
        assert!(mime_matches("image/png", &base_mime("Image/PNG; q=1")));
        let config = AttachmentsConfig::default();
        assert!(config.allows("text/plain; charset=utf-8"));
        assert!(!config.allows("application/pdf"));
        assert_eq!(config.model_input("image/webp"), Some(ModelInput::Image));
        assert_eq!(
            config.model_input("application/json"),
            Some(ModelInput::Text)
        );
        assert_eq!(config.model_input("application/pdf"), None);
        let with_pdf = AttachmentsConfig {
            file_input_types: vec!["application/pdf".into()],
            ..AttachmentsConfig::default()
        };
        assert_eq!(
            with_pdf.model_input("application/pdf"),
            Some(ModelInput::File)
        );
    }
}
