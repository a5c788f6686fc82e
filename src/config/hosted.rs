//! `[llm.hosted_tools]`: the tools OpenAI runs itself in the Responses API
//! (web search, file search over vector stores, image generation), what
//! each is configured with, and the rules they keep: each needs
//! `api = "responses"`, and the bounds an answer's images are read within.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::document::Document;

/// `[llm.hosted_tools]`: each table present offers that tool.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostedTools {
    pub web_search: Option<WebSearch>,
    pub file_search: Option<FileSearch>,
    pub image_generation: Option<ImageGeneration>,
}

impl HostedTools {
    /// Whether any hosted tool is offered.
    pub fn any(&self) -> bool {
        self.web_search.is_some() || self.file_search.is_some() || self.image_generation.is_some()
    }
}

/// `[llm.hosted_tools.web_search]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSearch {
    /// Only these domains are searched (`filters.allowed_domains`); empty:
    /// the whole web.
    pub allowed_domains: Vec<String>,
    /// Where the user is, roughly, for local results.
    pub user_location: Option<UserLocation>,
    /// How much of the pages found the model reads (`low`, `medium`, `high`).
    pub search_context_size: Option<SearchContextSize>,
}

/// `[llm.hosted_tools.web_search.user_location]`: an approximate location.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserLocation {
    /// Two-letter ISO country code (`US`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// IANA time zone (`America/Chicago`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// `search_context_size` of a web search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchContextSize {
    Low,
    Medium,
    High,
}

/// `[llm.hosted_tools.file_search]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSearch {
    /// The OpenAI vector stores searched (at least one).
    pub vector_store_ids: Vec<String>,
    /// Most results the search returns to the model (1 to 50).
    pub max_num_results: Option<u32>,
}

/// `[llm.hosted_tools.image_generation]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageGeneration {
    /// `auto`, `1024x1024`, `1024x1536` or `1536x1024`.
    pub size: ImageSize,
    /// `auto`, `low`, `medium` or `high`.
    pub quality: ImageQuality,
    /// Partial images streamed while one is drawn (0 to 3); each is shown
    /// as the image's progress.
    pub partial_images: u8,
    /// Largest image (decoded) read from the stream; a larger one ends the
    /// answer with an error, its text kept.
    pub max_image_bytes: usize,
    /// Most images one model answer may generate.
    pub max_images: usize,
}

impl Default for ImageGeneration {
    fn default() -> Self {
        ImageGeneration {
            size: ImageSize::Auto,
            quality: ImageQuality::Auto,
            partial_images: 1,
            max_image_bytes: 8 * 1024 * 1024,
            max_images: 2,
        }
    }
}

/// The size of a generated image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum ImageSize {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "1024x1024")]
    Square,
    #[serde(rename = "1024x1536")]
    Portrait,
    #[serde(rename = "1536x1024")]
    Landscape,
}

/// The quality of a generated image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageQuality {
    Auto,
    Low,
    Medium,
    High,
}

/// Checks `[llm.hosted_tools]` of an `[llm]` speaking `responses` (or not).
pub(super) fn validate(
    hosted: &HostedTools,
    responses: bool,
    document: &Document<'_>,
) -> Result<(), ConfigError> {
    let invalid = |keys: &[&str], message: &str| {
        let mut path = vec!["llm", "hosted_tools"];
        path.extend_from_slice(keys);
        ConfigError::Invalid {
            path: document.path().to_owned(),
            line: document.key_line(&path),
            key: path.join("."),
            message: message.to_owned(),
        }
    };
    let offered = [
        ("web_search", hosted.web_search.is_some()),
        ("file_search", hosted.file_search.is_some()),
        ("image_generation", hosted.image_generation.is_some()),
    ];
    if !responses && let Some((name, _)) = offered.iter().find(|(_, on)| *on) {
        return Err(invalid(
            &[name],
            "needs api = \"responses\" (hosted tools run only in OpenAI's Responses API)",
        ));
    }
    if let Some(search) = &hosted.web_search
        && search.allowed_domains.iter().any(|d| !is_domain(d))
    {
        return Err(invalid(
            &["web_search", "allowed_domains"],
            "each must be a bare domain such as \"example.com\" (no scheme, path or spaces)",
        ));
    }
    if let Some(files) = &hosted.file_search {
        if files.vector_store_ids.is_empty()
            || files.vector_store_ids.iter().any(|id| id.trim().is_empty())
        {
            return Err(invalid(
                &["file_search", "vector_store_ids"],
                "must name at least one vector store, none empty",
            ));
        }
        if files
            .max_num_results
            .is_some_and(|n| !(1..=50).contains(&n))
        {
            return Err(invalid(
                &["file_search", "max_num_results"],
                "must be from 1 to 50",
            ));
        }
    }
    if let Some(images) = &hosted.image_generation {
        if images.partial_images > 3 {
            return Err(invalid(
                &["image_generation", "partial_images"],
                "must be from 0 to 3",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&images.max_image_bytes) {
            return Err(invalid(
                &["image_generation", "max_image_bytes"],
                "must be from 1024 to 67108864 (64 MiB)",
            ));
        }
        if !(1..=16).contains(&images.max_images) {
            return Err(invalid(
                &["image_generation", "max_images"],
                "must be from 1 to 16",
            ));
        }
    }
    Ok(())
}

/// A bare domain name: labels of letters, digits and hyphens, with dots.
fn is_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::is_domain;

    #[test]
    fn a_domain_is_bare() {
        assert!(is_domain("example.com"));
        assert!(is_domain("docs.rust-lang.org"));
        for not in [
            "",
            "https://example.com",
            "example.com/path",
            "a..b",
            "ex ample.com",
        ] {
            assert!(!is_domain(not), "{not:?}");
        }
    }
}
