//! Media in the model's input. Before a run builds its messages, it loads
//! what the model reads of every attachment and tool image its history
//! names ([`named_attachments`]), newest first, within `[attachments]
//! max_history_bytes` (older ones are only named). A user message with attachments becomes a multimodal
//! message: its text, then each image, file or text file. A tool result's
//! images follow the tool results in a user message, since chat completions
//! take images only from users; no user message may sit between the results
//! of one step, so those are moved after them.

use std::collections::HashMap;

use serde_json::Value;

use super::records::{GeneratedImageRecord, StoredImage, ToolRecord};
use crate::attachments::ForModel;
use crate::llm::{ChatMessage, ContentPart, FileData};
use crate::protocol::{Attachment, AttachmentKind, ItemKind, ThreadItem, UserContent, UserMessage};

/// What the model reads of each attachment a history names, by id; one
/// missing is named, not shown.
pub type Media = HashMap<String, ForModel>;

/// A tool image as an attachment record, for [`Attachments::for_model`].
fn image_attachment(image: &StoredImage) -> Attachment {
    Attachment {
        kind: AttachmentKind::Image,
        id: image.id.clone(),
        name: image.id.clone(),
        mime_type: image.mime_type.clone(),
        preview_url: None,
        upload_descriptor: None,
        thread_id: None,
        metadata: None,
    }
}

/// The attachments an item names: a user message's, a tool result's images.
pub fn named_attachments(item: &ThreadItem) -> Vec<Attachment> {
    match &item.kind {
        ItemKind::UserMessage(message) => message.attachments.clone(),
        // Only a result with images is parsed: history has many records.
        ItemKind::HiddenContextItem { content } if content.get("image").is_some() => {
            GeneratedImageRecord::from_content(content)
                .map(|record| vec![image_attachment(&record.image)])
                .unwrap_or_default()
        }
        ItemKind::HiddenContextItem { content } if content.get("images").is_some() => {
            match ToolRecord::from_content(content) {
                Some(ToolRecord::Result { images, .. }) => {
                    images.iter().map(image_attachment).collect()
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

/// One attachment as a part of a user message.
fn part(attachment: &Attachment, media: &Media) -> ContentPart {
    match media.get(&attachment.id) {
        Some(ForModel::Image { url }) => ContentPart::image(url.clone()),
        Some(ForModel::Text { name, text }) => {
            ContentPart::text(format!("Attached file {name}:\n{text}"))
        }
        Some(ForModel::File { name, data_url }) => ContentPart::File {
            file: FileData {
                filename: name.clone(),
                file_data: data_url.clone(),
            },
        },
        None => ContentPart::text(format!(
            "[{} ({}) is not shown: it is no longer available, or past what one request may carry]",
            attachment.name, attachment.mime_type
        )),
    }
}

/// A user message as the model reads it: plain text, or its text followed
/// by its attachments.
pub fn user_message(message: &UserMessage, media: &Media) -> ChatMessage {
    let text = user_text(message);
    if message.attachments.is_empty() {
        return ChatMessage::User { content: text };
    }
    let mut parts = vec![ContentPart::text(text)];
    parts.extend(message.attachments.iter().map(|a| part(a, media)));
    ChatMessage::UserParts { content: parts }
}

/// The user message showing a tool result's images (`None` without any).
pub fn tool_images(
    tool: &str,
    images: impl IntoIterator<Item = ContentPart>,
) -> Option<ChatMessage> {
    let images: Vec<ContentPart> = images.into_iter().collect();
    if images.is_empty() {
        return None;
    }
    let mut parts = vec![ContentPart::text(format!(
        "(Not typed by the user: the images the {tool} tool returned, in order.)"
    ))];
    parts.extend(images);
    Some(ChatMessage::UserParts { content: parts })
}

/// The images of a stored tool result, from the loaded media.
pub fn stored_tool_images(
    tool: &str,
    images: &[StoredImage],
    media: &Media,
) -> Option<ChatMessage> {
    tool_images(
        tool,
        images
            .iter()
            .map(|image| part(&image_attachment(image), media)),
    )
}

/// The user message showing an image the model generated earlier.
pub fn generated_image(record: &GeneratedImageRecord, media: &Media) -> ChatMessage {
    let text = match &record.prompt {
        Some(prompt) => {
            format!("(Not typed by the user: the image you generated from the prompt {prompt:?}.)")
        }
        None => "(Not typed by the user: the image you generated.)".to_owned(),
    };
    ChatMessage::UserParts {
        content: vec![
            ContentPart::text(text),
            part(&image_attachment(&record.image), media),
        ],
    }
}

/// Moves each user message that sits between two tool results after the
/// last of them: a step's results must follow its calls without a break.
pub fn images_after_results(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    let mut held: Vec<ChatMessage> = Vec::new();
    for message in messages {
        let in_results = matches!(out.last(), Some(ChatMessage::Tool { .. }));
        match message {
            ChatMessage::Tool { .. } => out.push(message),
            ChatMessage::User { .. } | ChatMessage::UserParts { .. } if in_results => {
                held.push(message);
            }
            other => {
                out.append(&mut held);
                out.push(other);
            }
        }
    }
    out.append(&mut held);
    out
}

/// What the model reads of a user message's text: the quoted text it
/// answers, the typed text with @-mentions inline, the mentions' data, and
/// attachment names.
pub fn user_text(message: &UserMessage) -> String {
    let mut text = String::new();
    if let Some(quoted) = message.quoted_text.as_deref().filter(|q| !q.is_empty()) {
        text.push_str("The user is referring to this in particular:\n");
        text.push_str(quoted);
        text.push_str("\n\n");
    }
    let mut mentions = Vec::new();
    for part in &message.content {
        match part {
            UserContent::InputText { text: typed } => text.push_str(typed),
            UserContent::InputTag {
                text: tag, data, ..
            } => {
                text.push('@');
                text.push_str(tag);
                if !data.is_empty() {
                    mentions.push(format!("@{tag}: {}", Value::Object(data.clone())));
                }
            }
        }
    }
    if !mentions.is_empty() {
        text.push_str("\n\nMentioned entities:\n");
        text.push_str(&mentions.join("\n"));
    }
    for attachment in &message.attachments {
        text.push_str(&format!(
            "\n[attachment: {} ({})]",
            attachment.name, attachment.mime_type
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(id: &str) -> ChatMessage {
        ChatMessage::Tool {
            tool_call_id: id.into(),
            content: "ok".into(),
        }
    }

    fn images() -> ChatMessage {
        tool_images("shot", [ContentPart::image("data:image/png;base64,AAAA")]).expect("images")
    }

    #[test]
    fn tool_images_wait_for_the_last_result_of_their_step() {
        let messages = vec![
            ChatMessage::Assistant {
                content: None,
                tool_calls: Vec::new(),
            },
            tool("a"),
            images(),
            tool("b"),
            ChatMessage::assistant("done"),
        ];
        let ordered = images_after_results(messages);
        assert!(matches!(ordered[1], ChatMessage::Tool { .. }));
        assert!(matches!(ordered[2], ChatMessage::Tool { .. }));
        assert!(matches!(ordered[3], ChatMessage::UserParts { .. }));
        assert_eq!(ordered[4], ChatMessage::assistant("done"));
        // At the end of the transcript too.
        let ordered = images_after_results(vec![tool("a"), images(), tool("b")]);
        assert!(matches!(ordered[2], ChatMessage::UserParts { .. }));
    }

    #[test]
    fn a_message_with_attachments_carries_each_as_a_part() {
        let attachment = |id: &str, kind, name: &str, mime: &str| Attachment {
            kind,
            id: id.into(),
            name: name.into(),
            mime_type: mime.into(),
            preview_url: None,
            upload_descriptor: None,
            thread_id: None,
            metadata: None,
        };
        let message = UserMessage {
            content: vec![UserContent::InputText {
                text: "What is this?".into(),
            }],
            attachments: vec![
                attachment("atc_i", AttachmentKind::Image, "cat.png", "image/png"),
                attachment("atc_t", AttachmentKind::File, "notes.txt", "text/plain"),
                attachment("atc_gone", AttachmentKind::File, "old.txt", "text/plain"),
            ],
            quoted_text: None,
            inference_options: Default::default(),
        };
        let mut media = Media::new();
        media.insert(
            "atc_i".into(),
            ForModel::Image {
                url: "data:image/png;base64,AAAA".into(),
            },
        );
        media.insert(
            "atc_t".into(),
            ForModel::Text {
                name: "notes.txt".into(),
                text: "milk".into(),
            },
        );
        let ChatMessage::UserParts { content } = user_message(&message, &media) else {
            panic!("a multimodal message");
        };
        assert_eq!(content.len(), 4);
        assert_eq!(content[1], ContentPart::image("data:image/png;base64,AAAA"));
        assert_eq!(
            content[2],
            ContentPart::text("Attached file notes.txt:\nmilk")
        );
        assert!(
            matches!(&content[3], ContentPart::Text { text } if text.contains("old.txt (text/plain) is not shown")),
            "{content:?}"
        );
    }
}
