//! What the configuration makes interactive, loaded once: the widget
//! template of each tool, what each widget action type does, and the client
//! tools the model may call. Built from `agent.toml` at start-up, where a
//! template that does not load or compile stops the daemon with its path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::config::{ActionTarget, Config};
use crate::llm::ToolDefinition;
use crate::widgets::{APPROVE, DENY, TextTemplate, WidgetError, WidgetTemplate};

/// The interactive configuration of an agent.
#[derive(Debug, Default)]
pub struct Interactions {
    /// `(server, tool)` (the tool's own name) → its widget template.
    widgets: HashMap<(String, String), Arc<WidgetTemplate>>,
    actions: BTreeMap<String, Action>,
    client_tools: Vec<ToolDefinition>,
}

/// What [`Interactions::counts`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub widgets: usize,
    pub actions: usize,
    pub client_tools: usize,
}

/// What one widget action type does.
#[derive(Debug)]
pub enum Action {
    /// Calls `tool` on `server` with the payload as arguments, then renders
    /// the sending widget afresh.
    Tool {
        server: String,
        tool: String,
    },
    /// The agent answers the action as the user's words: `message` rendered.
    Agent {
        message: Box<TextTemplate>,
    },
    /// The approval card's buttons.
    Approve,
    Deny,
}

impl Interactions {
    /// Loads every widget template and action message the configuration names.
    pub fn load(config: &Config) -> Result<Interactions, WidgetError> {
        let mut widgets = HashMap::new();
        for (server, settings) in &config.mcp_servers {
            for (tool, settings) in &settings.tools {
                if let Some(path) = &settings.widget {
                    let template = WidgetTemplate::load(&config.base_dir.join(path))?;
                    widgets.insert((server.clone(), tool.clone()), Arc::new(template));
                }
            }
        }
        let mut actions = BTreeMap::new();
        for (kind, action) in &config.actions {
            let bound = match action.target() {
                Some(ActionTarget::Tool { server, tool }) => Action::Tool {
                    server: server.to_owned(),
                    tool: tool.to_owned(),
                },
                Some(ActionTarget::Agent { message }) => Action::Agent {
                    message: Box::new(TextTemplate::parse(
                        message,
                        &format!("[actions.{kind:?}] message"),
                    )?),
                },
                // Validation refuses any other shape before this runs.
                None => continue,
            };
            actions.insert(kind.clone(), bound);
        }
        actions.insert(APPROVE.to_owned(), Action::Approve);
        actions.insert(DENY.to_owned(), Action::Deny);
        let client_tools = config
            .client_tools
            .iter()
            .map(|(name, tool)| {
                ToolDefinition::new(name, &tool.description, tool.parameters.clone())
            })
            .collect();
        Ok(Interactions {
            widgets,
            actions,
            client_tools,
        })
    }

    /// How many templates, configured actions and client tools there are.
    pub fn counts(&self) -> Counts {
        Counts {
            widgets: self.widgets.len(),
            actions: self
                .actions
                .values()
                .filter(|a| !matches!(a, Action::Approve | Action::Deny))
                .count(),
            client_tools: self.client_tools.len(),
        }
    }

    /// The widget template of `server`'s tool `tool`, if it has one.
    pub fn widget(&self, server: &str, tool: &str) -> Option<&Arc<WidgetTemplate>> {
        self.widgets.get(&(server.to_owned(), tool.to_owned()))
    }

    /// What an action type does; `None` for a type nobody configured.
    pub fn action(&self, kind: &str) -> Option<&Action> {
        self.actions.get(kind)
    }

    /// The configured action types, for error messages.
    pub fn action_types(&self) -> Vec<&str> {
        self.actions.keys().map(String::as_str).collect()
    }

    /// The client tools, as the model is offered them.
    pub fn client_tools(&self) -> &[ToolDefinition] {
        &self.client_tools
    }

    /// Whether the model's tool `name` is a client tool.
    pub fn is_client_tool(&self, name: &str) -> bool {
        self.client_tools.iter().any(|t| t.name() == name)
    }

    /// The widget of a call's result, when its tool has a template and the
    /// result has data. A template that fails is a warning: the call still
    /// shows as tool activity and the model still reads its text.
    pub fn render_result(&self, server: &str, tool: &str, data: Option<&Value>) -> Option<Value> {
        let template = self.widget(server, tool)?;
        let Some(data) = data else {
            tracing::warn!(
                server,
                tool,
                "the tool's result has no JSON data for its widget"
            );
            return None;
        };
        match template.render(data) {
            Ok(widget) => Some(widget),
            Err(e) => {
                tracing::warn!(server, tool, error = %e, "the tool's widget did not render; shown as plain tool activity");
                None
            }
        }
    }
}

/// What an action handed to the agent means: its `message` rendered over
/// `action.type` and `action.payload`.
pub fn action_text(message: &TextTemplate, kind: &str, payload: &Value) -> Result<String, String> {
    let data = serde_json::json!({"action": {"type": kind, "payload": payload}});
    message.render(&data).map_err(|e| e.to_string())
}
