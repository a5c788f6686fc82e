//! An image's preview, read in bounded chunks: from its file (`storage =
//! "directory"`) or from the store, one statement per chunk. Nothing holds
//! the whole image: a chunk is read only when the previous one was taken,
//! so a reader that stalls holds one chunk, whatever the image's size.
//! Chunk reads take turns ([`CHUNK_READS`] at once): SQLite copies the whole
//! blob to cut a slice of it, which must not happen for every preview at once.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::{Access, AttachmentError, Attachments};
use crate::protocol::AttachmentKind;
use crate::store::AttachmentRecords;

use super::signing::Purpose;

/// The most bytes one chunk of a preview read from a file holds (the
/// store says its own, [`AttachmentRecords::chunk_len`]).
pub const PREVIEW_CHUNK: usize = 64 * 1024;

/// Chunk reads running at once, across all previews.
pub const CHUNK_READS: usize = 4;

/// An image to preview: its type, size and owner, and its bytes to read.
#[derive(Debug)]
pub struct Preview {
    /// The image's MIME type.
    pub mime: String,
    /// Its length in bytes.
    pub size: u64,
    /// The user it belongs to (whom a signed URL speaks for).
    pub owner: String,
    /// Its bytes, read a chunk at a time.
    pub bytes: PreviewBytes,
}

/// The bytes of a [`Preview`], read a chunk at a time.
pub struct PreviewBytes {
    source: Source,
    /// The next byte to read.
    offset: u64,
    size: u64,
    /// The most bytes of one chunk.
    chunk: usize,
    /// Turns at reading a chunk, shared by every preview.
    turns: Arc<Semaphore>,
}

enum Source {
    File(tokio::fs::File),
    Store {
        records: Arc<dyn AttachmentRecords>,
        owner: String,
        id: String,
    },
}

impl std::fmt::Debug for PreviewBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewBytes")
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl PreviewBytes {
    /// The next chunk (at most the chunk length), or `None` once all
    /// `size` bytes were read. An image that changed or went away meanwhile
    /// is an error: its response must not end as if it were whole.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, AttachmentError> {
        let left = self.size.saturating_sub(self.offset);
        if left == 0 {
            return Ok(None);
        }
        let want = usize::try_from(left).map_or(self.chunk, |l| l.min(self.chunk));
        // Closed never: the semaphore lives as long as the service.
        let _turn = self.turns.acquire().await.ok();
        let chunk = match &mut self.source {
            Source::File(file) => {
                let mut buf = BytesMut::with_capacity(want);
                while buf.len() < want {
                    let mut part = (&mut *file).take((want - buf.len()) as u64);
                    if part.read_buf(&mut buf).await? == 0 {
                        break;
                    }
                }
                buf.freeze()
            }
            Source::Store { records, owner, id } => {
                let len = u32::try_from(want).unwrap_or(u32::MAX);
                records
                    .attachment_chunk(owner, id, self.offset, len)
                    .await?
                    .map(Bytes::from)
                    .unwrap_or_default()
            }
        };
        if chunk.len() != want {
            return Err(AttachmentError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the image ended at byte {} of {}",
                    self.offset + chunk.len() as u64,
                    self.size
                ),
            )));
        }
        self.offset += want as u64;
        Ok(Some(chunk))
    }
}

impl Attachments {
    /// An image's preview for its signed URL (or its owner): refused unless
    /// it is an uploaded image `access` may see; its bytes are read later,
    /// a chunk at a time.
    pub async fn preview(&self, id: &str, access: Access<'_>) -> Result<Preview, AttachmentError> {
        let record = self.authorized(id, access, Purpose::Preview).await?;
        if record.attachment.kind != AttachmentKind::Image || !record.uploaded {
            return Err(AttachmentError::NotFound(id.to_owned()));
        }
        let (source, size, chunk) = match &self.files {
            Some(files) => {
                let file = match files.open(id).await {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(AttachmentError::NotFound(id.to_owned()));
                    }
                    Err(e) => return Err(e.into()),
                };
                let size = file.metadata().await?.len();
                (Source::File(file), size, PREVIEW_CHUNK)
            }
            None => (
                Source::Store {
                    records: self.records.clone(),
                    owner: record.owner.clone(),
                    id: id.to_owned(),
                },
                record.size,
                usize::try_from(self.records.chunk_len()).unwrap_or(PREVIEW_CHUNK),
            ),
        };
        Ok(Preview {
            mime: record.attachment.mime_type,
            size,
            owner: record.owner,
            bytes: PreviewBytes {
                source,
                offset: 0,
                size,
                chunk: chunk.max(1),
                turns: self.chunk_reads.clone(),
            },
        })
    }
}
