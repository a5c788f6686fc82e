//! `[llm] models`: the models a user may pick in the composer, each a name
//! or a table that also sets that model's own reasoning options
//! (`{ name = "o4-mini", reasoning_effort = "high" }`), which override
//! `[llm] reasoning_effort` and `reasoning_summary` for it.

use serde::Deserialize;

/// One entry of `[llm] models`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelChoice {
    pub name: String,
    /// Overrides `[llm] reasoning_effort` for this model.
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Overrides `[llm] reasoning_summary` for this model.
    pub reasoning_summary: Option<ReasoningSummary>,
}

impl From<&str> for ModelChoice {
    fn from(name: &str) -> Self {
        ModelChoice {
            name: name.to_owned(),
            reasoning_effort: None,
            reasoning_summary: None,
        }
    }
}

impl PartialEq<&str> for ModelChoice {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

/// What the file may hold for one entry.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Name(String),
    Table(Table),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    name: String,
    #[serde(default)]
    reasoning_effort: Option<ReasoningEffort>,
    #[serde(default)]
    reasoning_summary: Option<ReasoningSummary>,
}

impl<'de> Deserialize<'de> for ModelChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Entry::deserialize(deserializer) {
            Ok(Entry::Name(name)) => Ok(ModelChoice::from(name.as_str())),
            Ok(Entry::Table(table)) => Ok(ModelChoice {
                name: table.name,
                reasoning_effort: table.reasoning_effort,
                reasoning_summary: table.reasoning_summary,
            }),
            Err(_) => Err(serde::de::Error::custom(
                "each model is a name, or a table with `name` and optionally `reasoning_effort` \
                 (none, minimal, low, medium, high) and `reasoning_summary` (auto, concise, detailed)",
            )),
        }
    }
}

/// `[llm] reasoning_effort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
}

/// `[llm] reasoning_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningSummary {
    Auto,
    Concise,
    Detailed,
}
