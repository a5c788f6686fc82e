//! An attachment's life after its upload: given to a new message (checked:
//! the sender's, uploaded, not another thread's), claimed by the thread that
//! stored it, its files removed after its thread, and uploads no message
//! used swept after `unused_ttl`.

use std::sync::Arc;
use std::time::Duration;

use super::{Access, AttachmentError, Attachments, Purpose, unix_now};
use crate::protocol::{Attachment, AttachmentKind};

/// Most unused attachments one sweep deletes.
const SWEEP_BATCH: u32 = 500;

impl Attachments {
    /// The attachments of a new message in `thread_id` (`None`: a thread
    /// not created yet), refused when there are too many, when one is not
    /// the user's, not uploaded, or already part of another thread.
    pub async fn for_message(
        &self,
        user: &str,
        ids: &[String],
        thread_id: Option<&str>,
    ) -> Result<Vec<Attachment>, AttachmentError> {
        if ids.len() > self.config.max_per_message {
            return Err(AttachmentError::Invalid(format!(
                "a message may carry at most {} attachments; this one has {}",
                self.config.max_per_message,
                ids.len()
            )));
        }
        let mut attachments = Vec::with_capacity(ids.len());
        for (index, id) in ids.iter().enumerate() {
            if ids[..index].contains(id) {
                return Err(AttachmentError::Invalid(format!(
                    "attachment {id} is listed twice"
                )));
            }
            let record = self
                .authorized(id, Access::User(user), Purpose::Upload)
                .await?;
            if !record.uploaded {
                return Err(AttachmentError::Invalid(format!(
                    "attachment {id} ({}) has not been uploaded yet",
                    record.attachment.name
                )));
            }
            if let Some(owner_thread) = &record.attachment.thread_id
                && Some(owner_thread.as_str()) != thread_id
            {
                return Err(AttachmentError::Invalid(format!(
                    "attachment {id} belongs to another thread; attach the file again"
                )));
            }
            let mut attachment = record.attachment;
            if attachment.kind == AttachmentKind::Image {
                attachment.preview_url = Some(self.preview_url(id, user));
            }
            attachments.push(attachment);
        }
        Ok(attachments)
    }

    /// Gives a stored message's attachments to its thread, which deletes
    /// them with it. One that another thread took meanwhile is logged.
    pub async fn claim(&self, user: &str, thread_id: &str, attachments: &[Attachment]) {
        for attachment in attachments {
            match self
                .records
                .claim_attachment(user, &attachment.id, thread_id)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(attachment = %attachment.id, %thread_id, "attachment taken by another thread meanwhile")
                }
                Err(e) => {
                    tracing::warn!(error = %e, attachment = %attachment.id, "could not give an attachment to its thread")
                }
            }
        }
    }

    /// The ids of a thread's attachments, read before the thread is deleted
    /// (the store deletes their records with it).
    pub async fn of_thread(
        &self,
        user: &str,
        thread_id: &str,
    ) -> Result<Vec<String>, AttachmentError> {
        if self.files.is_none() {
            return Ok(Vec::new());
        }
        Ok(self.records.thread_attachments(user, thread_id).await?)
    }

    /// Removes the files of attachments whose records are gone.
    pub async fn forget(&self, ids: &[String]) {
        if let Some(files) = &self.files {
            files.remove(ids).await;
        }
    }

    /// Deletes attachments no message used within `unused_ttl`; returns how
    /// many.
    pub async fn sweep(&self) -> Result<usize, AttachmentError> {
        let ttl = i64::try_from(self.config.unused_ttl.as_secs()).unwrap_or(i64::MAX);
        let before = unix_now().saturating_sub(ttl);
        let mut total = 0;
        loop {
            let ids = self.records.sweep_unused(before, SWEEP_BATCH).await?;
            self.forget(&ids).await;
            total += ids.len();
            if ids.len() < SWEEP_BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Sweeps every `unused_ttl / 4` (at most hourly) until `stop`.
    pub fn spawn_sweeper(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let every =
            (self.config.unused_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match self.sweep().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "unused attachments deleted"),
                    Err(e) => tracing::warn!(error = %e, "sweeping unused attachments failed"),
                }
            }
        })
    }
}
