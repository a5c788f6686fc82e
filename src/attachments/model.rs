//! Attachments as the model reads them, and images from tool servers kept
//! as attachments: an image as a `data:` URL (or a signed URL the endpoint
//! fetches), a text file as its text, a document as the endpoint's file
//! input. Uploads are checked here to be what their type says, so the model
//! is never sent bytes it rejects.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{AttachmentError, Attachments, Purpose, unix_now};
use crate::config::{AttachmentsConfig, ImageDelivery, ModelInput};
use crate::protocol::{Attachment, AttachmentKind, IdKind, new_id};
use crate::store::StoredAttachment;

/// What the model reads of one attachment.
#[derive(Debug, Clone, PartialEq)]
pub enum ForModel {
    /// An image part: a `data:` URL or a signed URL.
    Image { url: String },
    /// A text file's text, cut to `max_inline_text_bytes`.
    Text { name: String, text: String },
    /// A document as the endpoint's file input.
    File { name: String, data_url: String },
}

impl ForModel {
    /// Bytes it adds to a request, for `max_history_bytes`.
    pub fn weight(&self) -> usize {
        match self {
            ForModel::Image { url } => url.len(),
            ForModel::Text { text, .. } => text.len(),
            ForModel::File { data_url, .. } => data_url.len(),
        }
    }
}

/// Whether `bytes` start like an image of `mime` (the formats the model
/// takes).
fn looks_like(mime: &str, bytes: &[u8]) -> bool {
    match mime {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "image/gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "image/webp" => bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
        _ => false,
    }
}

/// Refuses an upload that is not what its type says: an image without its
/// format's signature, a text file that is not UTF-8.
pub(super) fn check_content(
    config: &AttachmentsConfig,
    attachment: &Attachment,
    bytes: &[u8],
) -> Result<(), AttachmentError> {
    let name = &attachment.name;
    let mime = &attachment.mime_type;
    match config.model_input(mime) {
        Some(ModelInput::Image) if !looks_like(mime, bytes) => Err(AttachmentError::Invalid(
            format!("{name} is not a valid {mime} file"),
        )),
        Some(ModelInput::Text) if std::str::from_utf8(bytes).is_err() => Err(
            AttachmentError::Invalid(format!("{name} is not UTF-8 text")),
        ),
        _ => Ok(()),
    }
}

fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", STANDARD.encode(bytes))
}

impl Attachments {
    /// What the model reads of `attachment` (one of `user`'s).
    pub async fn for_model(
        &self,
        user: &str,
        attachment: &Attachment,
    ) -> Result<ForModel, AttachmentError> {
        let name = attachment.name.clone();
        let mime = attachment.mime_type.as_str();
        let input = match attachment.kind {
            AttachmentKind::Image => Some(ModelInput::Image),
            AttachmentKind::File => self.config.model_input(mime),
        };
        if input == Some(ModelInput::Image) && self.config.images_to_model == ImageDelivery::Url {
            return Ok(ForModel::Image {
                url: self.url(
                    &attachment.id,
                    Purpose::Preview,
                    user,
                    self.config.preview_ttl,
                ),
            });
        }
        let bytes = self.bytes(user, &attachment.id).await?;
        Ok(match input {
            Some(ModelInput::Image) => ForModel::Image {
                url: data_url(mime, &bytes),
            },
            Some(ModelInput::File) => ForModel::File {
                name,
                data_url: data_url(mime, &bytes),
            },
            // Text, and a type no longer configured: read as text, which
            // the upload checked to be UTF-8 when it was allowed.
            Some(ModelInput::Text) | None => {
                let text = String::from_utf8_lossy(&bytes);
                ForModel::Text {
                    name,
                    text: crate::text::cut_bytes_marked(&text, self.config.max_inline_text_bytes)
                        .into_owned(),
                }
            }
        })
    }

    /// Keeps an image a tool returned in `thread_id` as `user`'s
    /// attachment, deleted with the thread; returns it with a preview URL.
    pub async fn save_tool_image(
        &self,
        user: &str,
        thread_id: &str,
        name: &str,
        mime_type: &str,
        data: &[u8],
    ) -> Result<Attachment, AttachmentError> {
        if !looks_like(mime_type, data) {
            return Err(AttachmentError::Invalid(format!(
                "the tool's image is not a valid {mime_type} file"
            )));
        }
        let id = new_id(IdKind::Attachment);
        let mut attachment = Attachment {
            kind: AttachmentKind::Image,
            id: id.clone(),
            name: name.to_owned(),
            mime_type: mime_type.to_owned(),
            preview_url: None,
            upload_descriptor: None,
            thread_id: None,
            metadata: None,
        };
        let record = StoredAttachment {
            attachment: attachment.clone(),
            owner: user.to_owned(),
            size: data.len() as u64,
            uploaded: false,
            created_unix: unix_now(),
        };
        self.records.insert_attachment(&record).await?;
        let kept = match &self.files {
            Some(files) => {
                files.write(&id, data).await?;
                None
            }
            None => Some(data),
        };
        self.records.set_uploaded(user, &id, kept).await?;
        self.records.claim_attachment(user, &id, thread_id).await?;
        attachment.thread_id = Some(thread_id.to_owned());
        attachment.preview_url = Some(self.preview_url(&id, user));
        Ok(attachment)
    }

    /// What the model reads of an image whose bytes are at hand.
    pub fn image_for_model(&self, user: &str, attachment: &Attachment, data: &[u8]) -> ForModel {
        match self.config.images_to_model {
            ImageDelivery::Url => ForModel::Image {
                url: self.url(
                    &attachment.id,
                    Purpose::Preview,
                    user,
                    self.config.preview_ttl,
                ),
            },
            ImageDelivery::DataUrl => ForModel::Image {
                url: data_url(&attachment.mime_type, data),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_must_be_what_their_type_says() {
        let config = AttachmentsConfig::default();
        let file = |name: &str, mime: &str| Attachment {
            kind: AttachmentKind::File,
            id: "atc_1".into(),
            name: name.into(),
            mime_type: mime.into(),
            preview_url: None,
            upload_descriptor: None,
            thread_id: None,
            metadata: None,
        };
        let png = file("a.png", "image/png");
        assert!(check_content(&config, &png, b"\x89PNG\r\n\x1a\n....").is_ok());
        let err = check_content(&config, &png, b"<html>").unwrap_err();
        assert_eq!(err.to_string(), "a.png is not a valid image/png file");
        let text = file("notes.txt", "text/plain");
        assert!(check_content(&config, &text, "héllo".as_bytes()).is_ok());
        let err = check_content(&config, &text, &[0xff, 0xfe, 0x00]).unwrap_err();
        assert_eq!(err.to_string(), "notes.txt is not UTF-8 text");
        assert!(looks_like("image/webp", b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!looks_like("image/webp", b"RIFF"));
    }
}
