//! Attachments: files and images users attach to messages, and images tool
//! servers return, as ChatKit's two-phase upload serves them.
//!
//! [`Attachments`] creates a record (checking size and type against
//! `[attachments]` before any byte is stored), takes the upload on its signed
//! URL (or with the owner's bearer), serves images on signed preview URLs that
//! need no bearer, gives a message its attachments, reads them for the model
//! (`model.rs`), deletes them with their thread and sweeps uploads no message
//! used (`lifecycle.rs`). Bytes live in the store or in a directory
//! (`files.rs`) and previews are read from either a chunk at a time
//! (`preview.rs`); URLs are signed by `signing.rs`.
//!
//! It knows the store's attachment records, the file system and the
//! configuration; it does not know HTTP, the model's wire format or the agent.

mod files;
mod lifecycle;
mod model;
mod preview;
mod signing;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use thiserror::Error;

pub use model::ForModel;
pub use preview::{CHUNK_READS, PREVIEW_CHUNK, Preview, PreviewBytes};
pub use signing::{Purpose, SignatureError, Signer};

use crate::config::{AttachmentStorage, AttachmentsConfig, ModelInput, base_mime};
use crate::protocol::{Attachment, AttachmentCreateParams, AttachmentKind, IdKind, new_id};
use crate::store::{AttachmentRecords, StoreError, StoredAttachment};
use files::Files;

/// Why an attachment request was refused.
#[derive(Debug, Error)]
pub enum AttachmentError {
    /// `[attachments] enabled = false`.
    #[error("attachments are not enabled on this server")]
    Disabled,
    /// A request the limits or the rules refuse (400).
    #[error("{0}")]
    Invalid(String),
    /// Bytes over the limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Absent, someone else's, or a signature that does not hold (404).
    #[error("attachment {0} not found")]
    NotFound(String),
    /// A genuine link past its time (403).
    #[error("this link to attachment {0} has expired; ask for a fresh one")]
    Expired(String),
    /// Uploaded already (409).
    #[error("attachment {0} is already uploaded")]
    AlreadyUploaded(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("attachment files: {0}")]
    Io(#[from] std::io::Error),
}

/// Who is uploading or previewing: a caller with a bearer, or a signed URL.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// An authenticated user, who must own the attachment.
    User(&'a str),
    /// A signed URL's `expires` and `signature`.
    Signed { expires: i64, signature: &'a str },
}

/// An upload the service waits for: its announced size and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedUpload {
    /// The size announced at `attachments.create`, which the body must have.
    pub size: u64,
    /// The user it belongs to (whom a signed URL speaks for).
    pub owner: String,
}

/// The attachment service of one daemon.
pub struct Attachments {
    config: AttachmentsConfig,
    records: Arc<dyn AttachmentRecords>,
    files: Option<Files>,
    signer: Signer,
    /// `[attachments] public_url`, or the listening address once known.
    public_url: OnceLock<String>,
    /// `{[server] path}/attachments`: where the upload and preview routes live.
    route: String,
    /// Turns at reading a preview's chunk ([`preview::CHUNK_READS`]).
    chunk_reads: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Attachments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachments")
            .field("route", &self.route)
            .field("public_url", &self.public_url.get())
            .finish_non_exhaustive()
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether `id` can be an attachment id (and so a file name): the store's
/// ids are a prefix, `_` and hex; anything else is refused before any lookup.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Attachments {
    /// The service `[attachments]` describes, over `records`, its directory
    /// relative to `base_dir`, its routes under `endpoint` (`[server] path`).
    pub fn new(
        attachments: &AttachmentsConfig,
        base_dir: &Path,
        endpoint: &str,
        records: Arc<dyn AttachmentRecords>,
    ) -> Attachments {
        let attachments = attachments.clone();
        let files = (attachments.storage == AttachmentStorage::Directory)
            .then(|| Files::new(base_dir.join(&attachments.directory)));
        let public_url = OnceLock::new();
        if let Some(url) = &attachments.public_url {
            let _ = public_url.set(url.trim_end_matches('/').to_owned());
        }
        Attachments {
            signer: Signer::new(attachments.signing_key.as_deref()),
            config: attachments,
            records,
            files,
            public_url,
            route: format!("{}/attachments", endpoint.trim_end_matches('/')),
            chunk_reads: Arc::new(tokio::sync::Semaphore::new(preview::CHUNK_READS)),
        }
    }

    /// Whether `attachments.create` answers.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The configuration.
    pub fn config(&self) -> &AttachmentsConfig {
        &self.config
    }

    /// The path prefix of the upload and preview routes.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Where clients reach the daemon, unless `public_url` said it already
    /// (the first call wins).
    pub fn set_public_url(&self, url: &str) {
        let _ = self.public_url.set(url.trim_end_matches('/').to_owned());
    }

    /// Whether a signing key was configured (without one, URLs do not
    /// survive a restart or work on another replica).
    pub fn has_signing_key(&self) -> bool {
        self.config.signing_key.is_some()
    }

    /// Creates the files directory, when bytes are kept in one.
    pub async fn prepare(&self) -> Result<(), AttachmentError> {
        if let Some(files) = &self.files {
            files.prepare().await?;
        }
        Ok(())
    }

    fn url(&self, id: &str, purpose: Purpose, owner: &str, ttl: Duration) -> String {
        let expires = expiry(unix_now(), ttl);
        let signature = self.signer.sign(purpose, id, owner, expires);
        let action = match purpose {
            Purpose::Upload => "upload",
            Purpose::Preview => "preview",
        };
        let base = self
            .public_url
            .get()
            .map_or("http://localhost", String::as_str);
        format!(
            "{base}{}/{id}/{action}?expires={expires}&signature={signature}",
            self.route
        )
    }

    /// A signed preview URL of `id` for `owner`.
    pub fn preview_url(&self, id: &str, owner: &str) -> String {
        self.url(id, Purpose::Preview, owner, self.config.preview_ttl)
    }

    /// `attachments.create`: refuses what the limits or types forbid, then
    /// stores a record whose `upload_descriptor` is a signed upload URL.
    pub async fn create(
        &self,
        user: &str,
        params: &AttachmentCreateParams,
    ) -> Result<Attachment, AttachmentError> {
        if !self.config.enabled {
            return Err(AttachmentError::Disabled);
        }
        let name = params.name.trim();
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(AttachmentError::Invalid(
                "`name` must be 1 to 255 bytes without control characters".to_owned(),
            ));
        }
        if params.size == 0 {
            return Err(AttachmentError::Invalid(format!("{name} is empty")));
        }
        if params.size > self.config.max_bytes {
            return Err(AttachmentError::Invalid(format!(
                "{name} is {} bytes; attachments may be at most {} bytes",
                params.size, self.config.max_bytes
            )));
        }
        let mime = base_mime(&params.mime_type);
        if !self.config.allows(&mime) {
            return Err(AttachmentError::Invalid(format!(
                "{name} is {mime:?}, which cannot be attached here; allowed types: {}",
                self.config.allowed_mime_types.join(", ")
            )));
        }
        let kind = match self.config.model_input(&mime) {
            Some(ModelInput::Image) => AttachmentKind::Image,
            Some(_) => AttachmentKind::File,
            None => {
                return Err(AttachmentError::Invalid(format!(
                    "{name} is {mime:?}, which the model cannot read"
                )));
            }
        };
        let id = new_id(IdKind::Attachment);
        let attachment = Attachment {
            kind,
            preview_url: (kind == AttachmentKind::Image).then(|| self.preview_url(&id, user)),
            upload_descriptor: Some(serde_json::json!({
                "url": self.url(&id, Purpose::Upload, user, self.config.upload_ttl),
                "method": "POST",
                "headers": {},
            })),
            id,
            name: name.to_owned(),
            mime_type: mime,
            thread_id: None,
            metadata: None,
        };
        let record = StoredAttachment {
            attachment: Attachment {
                upload_descriptor: None,
                preview_url: None,
                ..attachment.clone()
            },
            owner: user.to_owned(),
            size: params.size,
            uploaded: false,
            created_unix: unix_now(),
        };
        self.records.insert_attachment(&record).await?;
        Ok(attachment)
    }

    /// The record `access` may use: the owner's, or the one a valid
    /// signature names. Everything else is not found.
    async fn authorized(
        &self,
        id: &str,
        access: Access<'_>,
        purpose: Purpose,
    ) -> Result<StoredAttachment, AttachmentError> {
        if !valid_id(id) {
            return Err(AttachmentError::NotFound(id.to_owned()));
        }
        let found = match access {
            Access::User(user) => self.records.load_attachment(user, id).await,
            Access::Signed { .. } => self.records.find_attachment(id).await,
        };
        let record = match found {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => return Err(AttachmentError::NotFound(id.to_owned())),
            Err(e) => return Err(e.into()),
        };
        if let Access::Signed { expires, signature } = access {
            match self
                .signer
                .verify(purpose, id, &record.owner, expires, signature, unix_now())
            {
                Ok(()) => {}
                Err(SignatureError::Invalid) => {
                    return Err(AttachmentError::NotFound(id.to_owned()));
                }
                Err(SignatureError::Expired) => {
                    return Err(AttachmentError::Expired(id.to_owned()));
                }
            }
        }
        Ok(record)
    }

    /// The upload: `bytes` must be exactly the declared size and what the
    /// type says (an image's signature, text's UTF-8). Returns the record
    /// as the client now sees it (no upload descriptor).
    pub async fn upload(
        &self,
        id: &str,
        access: Access<'_>,
        bytes: &[u8],
    ) -> Result<Attachment, AttachmentError> {
        let record = self.expect_upload(id, access).await?;
        let name = &record.attachment.name;
        // More than announced is over the size the upload was allowed (413,
        // as a body over the limit); less is a broken upload (400).
        if bytes.len() as u64 > record.size {
            return Err(AttachmentError::TooLarge(format!(
                "{name} was announced as {} bytes but {} arrived",
                record.size,
                bytes.len()
            )));
        }
        if (bytes.len() as u64) < record.size {
            return Err(AttachmentError::Invalid(format!(
                "{name} was announced as {} bytes but {} arrived",
                record.size,
                bytes.len()
            )));
        }
        model::check_content(&self.config, &record.attachment, bytes)?;
        let kept = match &self.files {
            Some(files) => {
                files.write(id, bytes).await?;
                None
            }
            None => Some(bytes),
        };
        if !self.records.set_uploaded(&record.owner, id, kept).await? {
            return Err(AttachmentError::AlreadyUploaded(id.to_owned()));
        }
        let mut attachment = record.attachment;
        if attachment.kind == AttachmentKind::Image {
            attachment.preview_url = Some(self.preview_url(id, &record.owner));
        }
        Ok(attachment)
    }

    /// Checks, before any byte is read, that `access` may upload `id` and
    /// that it is still waiting for its bytes; returns the size to expect
    /// and whose upload it is.
    pub async fn check_upload(
        &self,
        id: &str,
        access: Access<'_>,
    ) -> Result<ExpectedUpload, AttachmentError> {
        let record = self.expect_upload(id, access).await?;
        Ok(ExpectedUpload {
            size: record.size,
            owner: record.owner,
        })
    }

    async fn expect_upload(
        &self,
        id: &str,
        access: Access<'_>,
    ) -> Result<StoredAttachment, AttachmentError> {
        let record = self.authorized(id, access, Purpose::Upload).await?;
        if record.uploaded {
            return Err(AttachmentError::AlreadyUploaded(id.to_owned()));
        }
        Ok(record)
    }

    /// The bytes of an uploaded attachment.
    async fn bytes(&self, owner: &str, id: &str) -> Result<Vec<u8>, AttachmentError> {
        match &self.files {
            Some(files) => Ok(files.read(id).await?),
            None => self
                .records
                .attachment_bytes(owner, id)
                .await?
                .ok_or_else(|| AttachmentError::NotFound(id.to_owned())),
        }
    }

    /// `attachments.delete`: the record and its bytes.
    pub async fn delete(&self, user: &str, id: &str) -> Result<(), AttachmentError> {
        if !valid_id(id) || !self.records.delete_attachment(user, id).await? {
            return Err(AttachmentError::NotFound(id.to_owned()));
        }
        if let Some(files) = &self.files {
            files.remove(&[id.to_owned()]).await;
        }
        Ok(())
    }

    /// The directory of the bytes, when one holds them.
    pub fn directory(&self) -> Option<PathBuf> {
        self.files.as_ref().map(|f| f.root().to_owned())
    }
}

/// The expiry of a URL signed at `now` for `ttl`, rounded up to a step of a
/// quarter of `ttl`, so that listings within a step give the same URL (which
/// the browser caches) and every URL lives at least `ttl`.
fn expiry(now: i64, ttl: Duration) -> i64 {
    let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 4).max(1);
    let step = (ttl / 4).max(1);
    let at_least = now.saturating_add(ttl);
    (at_least / step + 1).saturating_mul(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_live_at_least_their_ttl_and_repeat_within_a_step() {
        let ttl = Duration::from_secs(3600);
        let first = expiry(1_000_000, ttl);
        assert!(first >= 1_000_000 + 3600);
        assert!(first <= 1_000_000 + 3600 + 900);
        assert_eq!(expiry(1_000_001, ttl), first);
        assert_eq!(expiry(1, Duration::from_secs(1)), 3);
    }

    #[test]
    fn ids_that_could_name_another_file_are_refused() {
        assert!(valid_id("atc_0123abcd"));
        for bad in ["", "../etc/passwd", "a/b", "atc_1.png", &"a".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
