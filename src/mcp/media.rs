//! What the model reads of a tool result, block by block: text as it is,
//! images decoded (shown to the model as images, within a byte limit, and
//! named in the text where they stand), embedded resources as their URI and
//! text, resource links as their URI, audio and binary blobs described.
//! Base64 never reaches the model as text, and the text cap counts only what
//! the model reads.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

/// How much of a result the model may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Bytes of text (`[agent] max_tool_output_bytes`).
    pub text_bytes: usize,
    /// Decoded bytes of images (`[agent] max_tool_image_bytes`).
    pub image_bytes: usize,
}

/// Images a result may show by default, when only a text cap is given.
pub const DEFAULT_IMAGE_BYTES: usize = 4 * 1024 * 1024;

impl From<usize> for OutputLimits {
    /// A text cap, with the default image cap.
    fn from(text_bytes: usize) -> Self {
        OutputLimits {
            text_bytes,
            image_bytes: DEFAULT_IMAGE_BYTES,
        }
    }
}

/// An image a tool returned, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolImage {
    pub mime_type: String,
    pub data: Vec<u8>,
}

/// The image types the model takes.
const MODEL_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// What the model reads of a result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultContent {
    /// The text, cut to the text cap; images are named where they stand.
    pub text: String,
    /// The images shown to the model, in order.
    pub images: Vec<ToolImage>,
}

/// Approximate decoded size of base64 text.
fn decoded_len(data: &str) -> usize {
    data.len() / 4 * 3
}

fn described(kind: &str, mime: Option<&str>, bytes: usize) -> String {
    match mime {
        Some(mime) => format!("{kind}, {mime}, about {bytes} bytes"),
        None => format!("{kind}, about {bytes} bytes"),
    }
}

/// Reads a result within `limits`.
pub fn result_content(result: &CallToolResult, limits: OutputLimits) -> ResultContent {
    let mut parts: Vec<String> = Vec::new();
    let mut images: Vec<ToolImage> = Vec::new();
    let mut image_bytes = 0usize;
    for block in &result.content {
        match block {
            ContentBlock::Text(text) => parts.push(text.text.clone()),
            ContentBlock::Image(image) => {
                let mime = image.mime_type.to_ascii_lowercase();
                let size = decoded_len(&image.data);
                if !MODEL_IMAGES.contains(&mime.as_str()) {
                    parts.push(format!(
                        "[{}: not shown, the model takes png, jpeg, gif and webp]",
                        described("image", Some(&mime), size)
                    ));
                } else if image_bytes + size > limits.image_bytes {
                    parts.push(format!(
                        "[{}: not shown, past the limit of {} bytes of images per result]",
                        described("image", Some(&mime), size),
                        limits.image_bytes
                    ));
                } else {
                    match STANDARD.decode(image.data.trim()) {
                        Ok(data) => {
                            image_bytes += data.len();
                            images.push(ToolImage {
                                mime_type: mime.clone(),
                                data,
                            });
                            parts.push(format!(
                                "[image {}: {mime}, shown to you after the tool results]",
                                images.len()
                            ));
                        }
                        Err(_) => parts.push(format!(
                            "[image, {mime}: not shown, its data is not valid base64]"
                        )),
                    }
                }
            }
            ContentBlock::Audio(audio) => parts.push(format!(
                "[{}: audio cannot be shown to you]",
                described("audio", Some(&audio.mime_type), decoded_len(&audio.data))
            )),
            ContentBlock::Resource(embedded) => match &embedded.resource {
                ResourceContents::TextResourceContents {
                    uri,
                    mime_type,
                    text,
                    ..
                } => {
                    let mime = mime_type
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default();
                    parts.push(format!("[resource {uri}{mime}]\n{text}"));
                }
                ResourceContents::BlobResourceContents {
                    uri,
                    mime_type,
                    blob,
                    ..
                } => parts.push(format!(
                    "[resource {uri}: {}, binary, not shown]",
                    described("data", mime_type.as_deref(), decoded_len(blob))
                )),
                // Kinds newer than this build: named, never raw.
                _ => parts.push("[a resource of a kind this server cannot show]".to_owned()),
            },
            ContentBlock::ResourceLink(link) => {
                let mut line = format!("[resource link {}: {}", link.uri, link.name);
                if let Some(mime) = &link.mime_type {
                    line.push_str(&format!(" ({mime})"));
                }
                if let Some(description) = &link.description {
                    line.push_str(&format!(" - {description}"));
                }
                line.push(']');
                parts.push(line);
            }
            _ => parts.push("[content of a kind this server cannot show]".to_owned()),
        }
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = parts.join("\n");
    ResultContent {
        text: crate::text::cut_bytes_marked(&text, limits.text_bytes).into_owned(),
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{AudioContent, EmbeddedResource, ImageContent, Resource};

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\nrest-of-a-tiny-image";

    fn limits(text_bytes: usize, image_bytes: usize) -> OutputLimits {
        OutputLimits {
            text_bytes,
            image_bytes,
        }
    }

    #[test]
    fn images_are_decoded_and_named_never_inlined() {
        let result = CallToolResult::success(vec![
            ContentBlock::text("Here it is:"),
            ContentBlock::Image(ImageContent::new(STANDARD.encode(PNG), "image/png")),
        ]);
        let read = result_content(&result, limits(1000, 1000));
        assert_eq!(
            read.text,
            "Here it is:\n[image 1: image/png, shown to you after the tool results]"
        );
        assert_eq!(
            read.images,
            vec![ToolImage {
                mime_type: "image/png".into(),
                data: PNG.to_vec()
            }]
        );
        // Over the image cap: named, not shown, and no base64 either way.
        let read = result_content(&result, limits(1000, 4));
        assert!(read.images.is_empty());
        assert!(
            read.text.contains("not shown, past the limit of 4 bytes"),
            "{}",
            read.text
        );
        assert!(!read.text.contains(&STANDARD.encode(PNG)));
    }

    #[test]
    fn the_text_cap_counts_what_the_model_reads() {
        let big = STANDARD.encode(vec![7u8; 30_000]);
        let result = CallToolResult::success(vec![
            ContentBlock::text("ok"),
            ContentBlock::Image(ImageContent::new(big, "image/png")),
        ]);
        // The image's 40 KB of base64 do not eat the 200-byte text budget.
        let read = result_content(&result, limits(200, 100_000));
        assert!(read.text.starts_with("ok\n[image 1:"), "{}", read.text);
        assert_eq!(read.images.len(), 1);
    }

    #[test]
    fn bad_images_audio_resources_and_links_become_text() {
        let result = CallToolResult::success(vec![
            ContentBlock::Image(ImageContent::new("%%%not base64", "image/png")),
            ContentBlock::Image(ImageContent::new(STANDARD.encode(PNG), "image/tiff")),
            ContentBlock::Audio(AudioContent::new(STANDARD.encode([0u8; 300]), "audio/wav")),
            ContentBlock::Resource(EmbeddedResource::new(
                ResourceContents::TextResourceContents {
                    uri: "file:///notes.md".into(),
                    mime_type: Some("text/markdown".into()),
                    text: "# Notes".into(),
                    meta: None,
                },
            )),
            ContentBlock::Resource(EmbeddedResource::new(
                ResourceContents::BlobResourceContents {
                    uri: "file:///a.bin".into(),
                    mime_type: None,
                    blob: STANDARD.encode([1u8; 30]),
                    meta: None,
                },
            )),
            ContentBlock::ResourceLink(Resource::new("https://example.com/r", "report")),
        ]);
        let read = result_content(&result, limits(10_000, 10_000));
        assert!(read.images.is_empty());
        let lines: Vec<&str> = read.text.lines().collect();
        assert_eq!(
            lines,
            [
                "[image, image/png: not shown, its data is not valid base64]",
                "[image, image/tiff, about 30 bytes: not shown, the model takes png, jpeg, gif and webp]",
                "[audio, audio/wav, about 300 bytes: audio cannot be shown to you]",
                "[resource file:///notes.md (text/markdown)]",
                "# Notes",
                "[resource file:///a.bin: data, about 30 bytes, binary, not shown]",
                "[resource link https://example.com/r: report]",
            ]
        );
    }
}
