//! Attachment requests: `attachments.create` and `attachments.delete`, the
//! upload and the preview that the HTTP layer routes here (signed URLs or
//! the owner's bearer), a new message's attachments, a deleted thread's
//! files, and preview URLs signed afresh whenever items are read.

use super::{ChatKit, ChatKitError, Response, json};
use crate::attachments::{Access, AttachmentError, Attachments, ExpectedUpload, Preview};
use crate::auth::Identity;
use crate::protocol::{
    Attachment, AttachmentCreateParams, ItemKind, Page, ThreadItem, UserMessageInput,
};

impl From<AttachmentError> for ChatKitError {
    fn from(error: AttachmentError) -> Self {
        match error {
            AttachmentError::Disabled => ChatKitError::NotImplemented(error.to_string()),
            AttachmentError::Invalid(message) => ChatKitError::BadRequest(message),
            AttachmentError::TooLarge(message) => ChatKitError::TooLarge(message),
            AttachmentError::NotFound(id) => ChatKitError::NotFound(format!("attachment {id}")),
            AttachmentError::Expired(_) => ChatKitError::Forbidden(error.to_string()),
            AttachmentError::AlreadyUploaded(_) => ChatKitError::Conflict(error.to_string()),
            AttachmentError::Store(e) => e.into(),
            AttachmentError::Io(e) => ChatKitError::Internal(format!("attachment files: {e}")),
        }
    }
}

/// A signed URL's query: `expires` and `signature`.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    pub expires: i64,
    pub signature: &'a str,
}

/// Who an upload or a preview comes from: a signed URL wins, else the
/// bearer's user.
fn access<'a>(
    caller: Option<&'a Identity>,
    signed: Option<Signed<'a>>,
) -> Result<Access<'a>, ChatKitError> {
    match (signed, caller) {
        (Some(signed), _) => Ok(Access::Signed {
            expires: signed.expires,
            signature: signed.signature,
        }),
        (None, Some(identity)) => Ok(Access::User(&identity.user_id)),
        (None, None) => Err(ChatKitError::Unauthorized(
            "this URL needs its signature or a bearer token".to_owned(),
        )),
    }
}

impl ChatKit {
    fn attachments(&self) -> std::sync::Arc<Attachments> {
        self.agent().attachments().clone()
    }

    /// `attachments.create`.
    pub(super) async fn create_attachment(
        &self,
        ctx: &Identity,
        params: &AttachmentCreateParams,
    ) -> Result<Response, ChatKitError> {
        let attachment = self.attachments().create(&ctx.user_id, params).await?;
        json(&attachment)
    }

    /// `attachments.delete`.
    pub(super) async fn delete_attachment(
        &self,
        ctx: &Identity,
        id: &str,
    ) -> Result<Response, ChatKitError> {
        self.attachments().delete(&ctx.user_id, id).await?;
        Ok(Response::Json("{}".to_owned()))
    }

    /// Refuses an upload before its body is read: a URL or a caller that
    /// may not upload `id`, or an attachment already uploaded. Returns the
    /// size the upload must have and whose upload it is.
    pub async fn check_upload(
        &self,
        caller: Option<&Identity>,
        signed: Option<Signed<'_>>,
        id: &str,
    ) -> Result<ExpectedUpload, ChatKitError> {
        let access = access(caller, signed)?;
        Ok(self.attachments().check_upload(id, access).await?)
    }

    /// The bytes of attachment `id`, uploaded with its signed URL or by
    /// its owner; returns the attachment JSON.
    pub async fn upload_attachment(
        &self,
        caller: Option<&Identity>,
        signed: Option<Signed<'_>>,
        id: &str,
        bytes: &[u8],
    ) -> Result<String, ChatKitError> {
        let access = access(caller, signed)?;
        let attachment = self.attachments().upload(id, access, bytes).await?;
        serde_json::to_string(&attachment).map_err(|e| ChatKitError::Internal(e.to_string()))
    }

    /// An image attachment's preview, for its signed preview URL (or its
    /// owner): its type, size and owner, its bytes read a chunk at a time.
    pub async fn preview_attachment(
        &self,
        caller: Option<&Identity>,
        signed: Option<Signed<'_>>,
        id: &str,
    ) -> Result<Preview, ChatKitError> {
        let access = access(caller, signed)?;
        Ok(self.attachments().preview(id, access).await?)
    }

    /// The attachments a new message names, checked (see
    /// [`Attachments::for_message`]).
    pub(super) async fn message_attachments(
        &self,
        ctx: &Identity,
        input: &UserMessageInput,
        thread_id: Option<&str>,
    ) -> Result<Vec<Attachment>, ChatKitError> {
        if input.attachments.is_empty() {
            return Ok(Vec::new());
        }
        if !self.attachments().enabled() {
            return Err(ChatKitError::BadRequest(
                "attachments are not enabled on this server; send the message without them"
                    .to_owned(),
            ));
        }
        Ok(self
            .attachments()
            .for_message(&ctx.user_id, &input.attachments, thread_id)
            .await?)
    }

    /// Gives a stored message's attachments to its thread.
    pub(super) async fn claim_attachments(&self, ctx: &Identity, item: &ThreadItem) {
        if let ItemKind::UserMessage(message) = &item.kind
            && !message.attachments.is_empty()
        {
            self.attachments()
                .claim(&ctx.user_id, &item.thread_id, &message.attachments)
                .await;
        }
    }

    /// `threads.delete`: the thread with its items and attachments (their
    /// records go with it in the store; files in a directory after it).
    pub(super) async fn delete_thread(
        &self,
        ctx: &Identity,
        thread_id: &str,
    ) -> Result<Response, ChatKitError> {
        let files = self
            .attachments()
            .of_thread(&ctx.user_id, thread_id)
            .await?;
        if !self.store.delete_thread(&ctx.user_id, thread_id).await? {
            return Err(ChatKitError::NotFound(format!("thread {thread_id}")));
        }
        self.questions.abandon_thread(&ctx.user_id, thread_id);
        self.attachments().forget(&files).await;
        Ok(Response::Json("{}".to_owned()))
    }

    /// Signs the preview URLs of `items` afresh: stored ones have expired.
    pub(super) fn fresh_urls(&self, ctx: &Identity, page: &mut Page<ThreadItem>) {
        for item in &mut page.data {
            fresh_item_urls(&self.attachments(), &ctx.user_id, item);
        }
    }
}

/// Signs the preview URLs of one item afresh: a user message's images, and
/// an image a tool returned (kept as an attachment).
pub(super) fn fresh_item_urls(attachments: &Attachments, user: &str, item: &mut ThreadItem) {
    match &mut item.kind {
        ItemKind::UserMessage(message) => {
            for attachment in &mut message.attachments {
                if attachment.preview_url.is_some() {
                    attachment.preview_url = Some(attachments.preview_url(&attachment.id, user));
                }
            }
        }
        ItemKind::GeneratedImage { image: Some(image) } => {
            let id = image
                .get("id")
                .and_then(serde_json::Value::as_str)
                .filter(|id| id.starts_with("atc_"))
                .map(str::to_owned);
            if let (Some(id), Some(fields)) = (id, image.as_object_mut()) {
                fields.insert("url".to_owned(), attachments.preview_url(&id, user).into());
            }
        }
        _ => {}
    }
}
