//! What OpenAI's hosted tools did, as ChatKit shows it (`[llm.hosted_tools]`,
//! Responses API):
//!
//! - A web or file search is a `web_search` or `file` task (its queries,
//!   the pages or files found) of a workflow added at the first search and
//!   closed like the thinking, with its duration, when the text begins,
//!   the model thinks again or the answer ends. openai-chatkit shows no
//!   search at all; the task is ChatKit's own type for one.
//! - A citation in the text is an annotation of the streamed message
//!   (`assistant_message.content_part.annotation_added`), a `url` source
//!   at its end index or a `file` source, as openai-chatkit's
//!   `ResponseStreamConverter` makes them; stored with the message.
//! - A generated image is a `generated_image` item: added when it begins,
//!   each partial image sent as `generated_image.updated` (inline, as a
//!   `data:` URL, not stored), and the final image kept as an attachment of
//!   the thread (deleted with it), stored with its signed preview URL and a
//!   hidden record that shows it to the model on later turns.

use std::time::Instant;

use serde_json::json;

use super::{Run, Stop};
use crate::agent::transcript::{GeneratedImageRecord, StoredImage};
use crate::llm::{Citation, HostedEvent, ImageStage, UrlSource};
use crate::protocol::{
    Annotation, FileTask, IdKind, ItemKind, ItemUpdate, Task, TaskStatus, ThreadItem,
    ThreadStreamEvent, WebSearchTask, Workflow, WorkflowSummary, new_id,
};

/// Most searches shown in one workflow; more are not shown.
const MAX_SEARCHES: usize = 32;

/// The searches of a model answer, while it streams.
pub(super) struct Searches {
    /// The workflow item, as added (its tasks are filled when it closes).
    item: ThreadItem,
    started: Instant,
    /// Each search's output item id and its task.
    tasks: Vec<(String, Task)>,
}

/// The image being generated.
pub(super) struct Drawing {
    /// The `generated_image` item, as added.
    item: ThreadItem,
    /// The image generation's own id.
    id: String,
}

impl Run<'_> {
    /// Shows what a hosted tool did, or a citation of the text.
    pub(super) async fn push_hosted(&mut self, event: HostedEvent) -> Result<(), Stop> {
        match event {
            HostedEvent::WebSearch {
                id,
                queries,
                sources,
                done,
            } => {
                let task = Task::WebSearch(WebSearchTask {
                    status_indicator: status(done),
                    title: Some(
                        if done {
                            "Searched the web"
                        } else {
                            "Searching the web"
                        }
                        .to_owned(),
                    ),
                    title_query: queries.first().cloned(),
                    queries,
                    sources: sources.iter().map(url_source).collect(),
                });
                self.show_search(id, task).await
            }
            HostedEvent::FileSearch {
                id,
                queries,
                files,
                done,
            } => {
                let verb = if done { "Searched" } else { "Searching" };
                let title = match queries.first() {
                    Some(query) => format!("{verb} files for “{query}”"),
                    None => format!("{verb} files"),
                };
                let task = Task::File(FileTask {
                    status_indicator: status(done),
                    title: Some(title),
                    sources: files.iter().map(|name| file_source(name)).collect(),
                });
                self.show_search(id, task).await
            }
            HostedEvent::Citation(citation) => self.cite(citation).await,
            HostedEvent::Image { id, stage } => self.draw(id, stage).await,
        }
    }

    /// Adds a search's task to the searches' workflow (opened now if need
    /// be, after the thinking before it is closed), or updates it.
    async fn show_search(&mut self, id: String, task: Task) -> Result<(), Stop> {
        if self.searches.is_none() {
            self.finish_thinking().await?;
            let item = ThreadItem::new_workflow(self.input.thread.id.clone(), "custom");
            self.searches = Some(Searches {
                item: item.clone(),
                started: Instant::now(),
                tasks: Vec::new(),
            });
            self.emit(ThreadStreamEvent::ItemAdded { item }).await?;
        }
        let Some(searches) = self.searches.as_mut() else {
            return Ok(());
        };
        let update = match searches.tasks.iter().position(|(known, _)| *known == id) {
            Some(task_index) => {
                searches.tasks[task_index].1 = task.clone();
                ItemUpdate::WorkflowTaskUpdated { task_index, task }
            }
            None if searches.tasks.len() < MAX_SEARCHES => {
                searches.tasks.push((id, task.clone()));
                ItemUpdate::WorkflowTaskAdded {
                    task_index: searches.tasks.len() - 1,
                    task,
                }
            }
            None => return Ok(()),
        };
        let item_id = searches.item.id.clone();
        self.emit(ThreadStreamEvent::ItemUpdated { item_id, update })
            .await
    }

    /// Closes the searches' workflow, if any: stored with its tasks and
    /// duration, then sent as done.
    pub(super) async fn finish_searches(&mut self) -> Result<(), Stop> {
        match self.searches.take() {
            Some(searches) => self.publish(searches.into_item(), &[]).await,
            None => Ok(()),
        }
    }

    /// The closed searches to store when a run is interrupted.
    pub(super) fn take_searches(&mut self) -> Option<ThreadItem> {
        self.searches.take().map(Searches::into_item)
    }

    /// Annotates the streamed message with a citation; one before any text
    /// has nothing to annotate and is dropped.
    async fn cite(&mut self, citation: Citation) -> Result<(), Stop> {
        let Some(draft) = self.draft.as_mut() else {
            return Ok(());
        };
        let annotation = match citation {
            Citation::Url { url, title, index } => Annotation {
                source: url_source(&UrlSource { url, title }),
                index,
            },
            Citation::File { filename, index } => Annotation {
                source: file_source(&filename),
                index,
            },
        };
        draft.annotations.push(annotation.clone());
        let update = ItemUpdate::AnnotationAdded {
            content_index: 0,
            annotation_index: draft.annotations.len() - 1,
            annotation,
        };
        let item_id = draft.item.id.clone();
        self.emit(ThreadStreamEvent::ItemUpdated { item_id, update })
            .await
    }

    /// An image generation: begun, a partial image, or done.
    async fn draw(&mut self, id: String, stage: ImageStage) -> Result<(), Stop> {
        if self.drawing.as_ref().is_none_or(|d| d.id != id) {
            // What came before the image is done; so is an earlier image
            // that never finished.
            self.finish_thinking().await?;
            self.finish_searches().await?;
            self.drop_drawing().await?;
            let item = ThreadItem::new(
                new_id(IdKind::Message),
                self.input.thread.id.clone(),
                ItemKind::GeneratedImage { image: None },
            );
            self.drawing = Some(Drawing {
                item: item.clone(),
                id: id.clone(),
            });
            self.emit(ThreadStreamEvent::ItemAdded { item }).await?;
        }
        match stage {
            ImageStage::Started => Ok(()),
            ImageStage::Partial { base64, progress } => {
                let Some(drawing) = self.drawing.as_ref() else {
                    return Ok(());
                };
                let update = ItemUpdate::GeneratedImageUpdated {
                    image: json!({"id": id, "url": format!("data:image/png;base64,{base64}")}),
                    progress: Some(progress),
                };
                let item_id = drawing.item.id.clone();
                self.emit(ThreadStreamEvent::ItemUpdated { item_id, update })
                    .await
            }
            ImageStage::Done {
                bytes,
                revised_prompt,
            } => self.keep_image(&bytes, revised_prompt).await,
        }
    }

    /// Keeps the finished image as an attachment of the thread and shows
    /// it; one that cannot be kept is logged and its item removed.
    async fn keep_image(&mut self, bytes: &[u8], prompt: Option<String>) -> Result<(), Stop> {
        let Some(drawing) = self.drawing.take() else {
            return Ok(());
        };
        let user = &self.input.identity.user_id;
        let thread_id = &self.input.thread.id;
        let name = format!("{}.png", drawing.id);
        let saved = self
            .agent
            .attachments
            .save_tool_image(user, thread_id, &name, "image/png", bytes)
            .await;
        let attachment = match saved {
            Ok(attachment) => attachment,
            Err(e) => {
                tracing::warn!(error = %e, "a generated image was not kept");
                let item_id = drawing.item.id;
                return self.emit(ThreadStreamEvent::ItemRemoved { item_id }).await;
            }
        };
        let record = GeneratedImageRecord {
            image: StoredImage {
                id: attachment.id.clone(),
                mime_type: attachment.mime_type.clone(),
            },
            prompt,
        }
        .into_item(thread_id);
        let mut item = drawing.item;
        item.kind = ItemKind::GeneratedImage {
            image: Some(json!({
                "id": attachment.id,
                "url": attachment.preview_url.unwrap_or_default(),
            })),
        };
        self.publish(item, &[&record]).await
    }

    /// Removes an image that began but never finished (the answer went on
    /// without it, or ended).
    pub(super) async fn drop_drawing(&mut self) -> Result<(), Stop> {
        match self.drawing.take() {
            Some(drawing) => {
                let item_id = drawing.item.id;
                self.emit(ThreadStreamEvent::ItemRemoved { item_id }).await
            }
            None => Ok(()),
        }
    }
}

impl Searches {
    /// The workflow as stored: its searches, how long they took, collapsed.
    fn into_item(self) -> ThreadItem {
        let mut item = self.item;
        item.kind = ItemKind::Workflow {
            workflow: Workflow {
                kind: "custom".to_owned(),
                tasks: self.tasks.into_iter().map(|(_, task)| task).collect(),
                summary: Some(WorkflowSummary::Duration {
                    duration: self.started.elapsed().as_secs(),
                }),
                expanded: false,
            },
        };
        item
    }
}

fn status(done: bool) -> TaskStatus {
    if done {
        TaskStatus::Complete
    } else {
        TaskStatus::Loading
    }
}

/// A ChatKit `url` source (its title is required: the URL when none came).
fn url_source(source: &UrlSource) -> serde_json::Value {
    json!({
        "title": source.title.clone().unwrap_or_else(|| source.url.clone()),
        "type": "url",
        "url": source.url,
    })
}

/// A ChatKit `file` source, titled with its name.
fn file_source(filename: &str) -> serde_json::Value {
    json!({"title": filename, "type": "file", "filename": filename})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_chatkit_sources() {
        let untitled = url_source(&UrlSource {
            url: "https://e.com/".to_owned(),
            title: None,
        });
        assert_eq!(
            untitled,
            json!({"title": "https://e.com/", "type": "url", "url": "https://e.com/"})
        );
        assert_eq!(
            file_source("a.pdf"),
            json!({"title": "a.pdf", "type": "file", "filename": "a.pdf"})
        );
    }
}
