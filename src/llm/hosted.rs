//! What OpenAI's hosted tools did while an answer streamed, as the rest of
//! the daemon sees it: a web or file search begun and done, an image begun,
//! drawn and done, and a citation in the text ([`HostedEvent`]). Read from
//! the Responses API's events in `responses/hosted.rs`.

/// What a hosted tool did, or a citation of what it found, as the answer
/// streams.
#[derive(Debug, Clone, PartialEq)]
pub enum HostedEvent {
    /// A web search begun (`done` false) or done, with its queries and
    /// the pages it found or opened.
    WebSearch {
        id: String,
        queries: Vec<String>,
        sources: Vec<UrlSource>,
        done: bool,
    },
    /// A search of the configured vector stores, begun or done, with the
    /// names of the files it found when the endpoint lists them.
    FileSearch {
        id: String,
        queries: Vec<String>,
        files: Vec<String>,
        done: bool,
    },
    /// An image being generated.
    Image { id: String, stage: ImageStage },
    /// A place in the answer's text citing a source.
    Citation(Citation),
}

/// A page a web search found or opened.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlSource {
    pub url: String,
    pub title: Option<String>,
}

/// How far a generated image is.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageStage {
    /// The generation began.
    Started,
    /// A partial image (PNG, base64) and how far along it is, from 0 to 1.
    Partial { base64: String, progress: f64 },
    /// The final image's bytes (PNG), and the prompt the model drew from.
    Done {
        bytes: Vec<u8>,
        revised_prompt: Option<String>,
    },
}

/// A citation in the answer's text, at `index` (a character offset: the end
/// of the cited span, as the reference places it).
#[derive(Debug, Clone, PartialEq)]
pub enum Citation {
    Url {
        url: String,
        title: Option<String>,
        index: Option<i64>,
    },
    File {
        filename: String,
        index: Option<i64>,
    },
}
