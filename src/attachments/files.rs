//! Attachment bytes in a directory (`[attachments] storage = "directory"`):
//! one file per attachment, named by its id (checked by `valid_id` before it
//! gets here), written to a temporary name and renamed, so a reader never
//! sees half a file.

use std::path::{Path, PathBuf};

/// The directory of attachment bytes.
#[derive(Debug)]
pub(super) struct Files {
    root: PathBuf,
}

impl Files {
    pub(super) fn new(root: PathBuf) -> Files {
        Files { root }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory if it is missing.
    pub(super) async fn prepare(&self) -> std::io::Result<()> {
        tokio::fs::create_dir_all(&self.root).await
    }

    fn path(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub(super) async fn write(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        let partial = self.root.join(format!(".{id}.partial"));
        tokio::fs::write(&partial, bytes).await?;
        tokio::fs::rename(&partial, self.path(id)).await
    }

    /// The file of `id`, opened to be read a chunk at a time.
    pub(super) async fn open(&self, id: &str) -> std::io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(id)).await
    }

    pub(super) async fn read(&self, id: &str) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.path(id)).await
    }

    /// Removes the files of `ids`; one already gone is not an error.
    pub(super) async fn remove(&self, ids: &[String]) {
        for id in ids {
            match tokio::fs::remove_file(self.path(id)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, attachment = %id, "could not remove an attachment's file")
                }
            }
        }
    }
}
