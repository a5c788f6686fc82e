//! What a run shows besides text: a tool's result rendered as a widget (with
//! the hidden record of the call it came from, so an action can render it
//! afresh), the images a tool returned (kept as attachments of the thread,
//! shown as `generated_image` items), and a client tool call that hands the
//! turn to the browser.

use serde_json::{Map, Value};

use super::{Run, Stop};
use crate::agent::transcript::{UiRecord, WidgetSource};
use crate::attachments::ForModel;
use crate::llm::{ContentPart, ToolCall};
use crate::mcp::ToolImage;
use crate::protocol::{
    Attachment, ClientToolCall, ClientToolCallStatus, IdKind, ItemKind, ThreadItem, new_id,
};

/// A widget item of `thread_id`, created now.
pub(super) fn widget_item(thread_id: &str, widget: Value) -> ThreadItem {
    ThreadItem::new(
        new_id(IdKind::Message),
        thread_id,
        ItemKind::Widget {
            widget,
            copy_text: None,
        },
    )
}

impl Run<'_> {
    /// Stores a widget item with its state record, then streams it.
    pub(super) async fn show_widget(
        &mut self,
        widget: Value,
        source: Option<WidgetSource>,
    ) -> Result<(), Stop> {
        let thread_id = self.input.thread.id.clone();
        let item = widget_item(&thread_id, widget);
        let state = UiRecord::WidgetState {
            widget_id: item.id.clone(),
            source,
            approval: None,
        }
        .into_item(&thread_id);
        self.publish(item, &[&state]).await
    }

    /// Keeps the images of a tool's result as attachments of the thread:
    /// their records for the stored result, and what the model reads of
    /// them. One that cannot be kept is logged and left out.
    pub(super) async fn keep_tool_images(
        &mut self,
        tool: &str,
        images: &[ToolImage],
    ) -> (Vec<Attachment>, Vec<ContentPart>) {
        let user = &self.input.identity.user_id;
        let thread_id = &self.input.thread.id;
        let attachments = self.agent.attachments.clone();
        let mut kept = Vec::new();
        let mut parts = Vec::new();
        for (n, image) in images.iter().enumerate() {
            let extension = image.mime_type.rsplit('/').next().unwrap_or("img");
            let name = format!("{tool}-{}.{extension}", n + 1);
            match attachments
                .save_tool_image(user, thread_id, &name, &image.mime_type, &image.data)
                .await
            {
                Ok(attachment) => {
                    if let ForModel::Image { url } =
                        attachments.image_for_model(user, &attachment, &image.data)
                    {
                        parts.push(ContentPart::image(url));
                    }
                    kept.push(attachment);
                }
                Err(e) => tracing::warn!(tool, error = %e, "a tool's image was not kept"),
            }
        }
        (kept, parts)
    }

    /// Stores and streams a `generated_image` item per image a tool returned.
    pub(super) async fn show_images(&mut self, images: Vec<Attachment>) -> Result<(), Stop> {
        for image in images {
            let item = ThreadItem::new(
                new_id(IdKind::Message),
                self.input.thread.id.clone(),
                ItemKind::GeneratedImage {
                    image: Some(serde_json::json!({
                        "id": image.id,
                        "url": image.preview_url.unwrap_or_default(),
                    })),
                },
            );
            self.publish(item, &[]).await?;
        }
        Ok(())
    }

    /// Ends the turn on a call of a client tool: a pending `client_tool_call`
    /// item, answered by `threads.add_client_tool_output` (protocol 7).
    pub(super) async fn pend_client_call(&mut self, call: &ToolCall) -> Result<(), Stop> {
        let arguments = match serde_json::from_str::<Value>(&call.function.arguments) {
            Ok(Value::Object(arguments)) => arguments,
            _ => {
                // The item's `arguments` is an object on the wire.
                if !call.function.arguments.trim().is_empty() {
                    tracing::warn!(tool = %call.function.name, "a client tool call's arguments are not a JSON object; sent as {{}}");
                }
                Map::new()
            }
        };
        let item = ThreadItem::new(
            new_id(IdKind::ToolCall),
            self.input.thread.id.clone(),
            ItemKind::ClientToolCall(ClientToolCall {
                status: ClientToolCallStatus::Pending,
                call_id: call.id.clone(),
                name: call.function.name.clone(),
                arguments: Value::Object(arguments),
                output: None,
            }),
        );
        self.publish(item, &[]).await
    }
}
