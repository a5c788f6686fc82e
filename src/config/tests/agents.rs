//! Tests of `[agents]` and the entry agent's handoff keys: their values,
//! and each broken rule named with its line.

use super::{load, load_in};

#[test]
fn agents_read_their_keys() {
    let config = load(
        "[agent]\nhandoffs = [\"billing\"]\nhandoff_return = \"entry\"\nmax_handoffs = 3\n\n[agents.billing]\ninstructions_text = \"You bill.\"\nmodel = \"m\"\nenabled_tools = [\"echo\"]\ndisabled_tools = [\"pid\"]\nmax_turns = 2\nhandoff_description = \"Invoices.\"\ndisplay_name = \"Billing desk\"\nhandoffs = [\"entry\"]\n",
        &[],
    )
    .expect("valid");
    assert_eq!(config.agent.handoffs, ["billing"]);
    assert_eq!(
        config.agent.handoff_return,
        crate::config::HandoffReturn::Entry
    );
    assert_eq!(config.agent.max_handoffs, 3);
    let billing = &config.agents["billing"];
    assert_eq!(billing.model.as_deref(), Some("m"));
    assert_eq!(billing.max_turns, Some(2));
    assert_eq!(billing.display_name.as_deref(), Some("Billing desk"));
    assert_eq!(billing.handoffs, ["entry"]);
    let config = load(
        "[guardrails.topic]\ninstructions_text = \"Trip off topic.\"\non = \"output\"\nmodel = \"small\"\nmessage = \"No.\"\non_error = \"allow\"\n",
        &[],
    )
    .expect("valid");
    let topic = &config.guardrails["topic"];
    assert_eq!(
        (
            topic.on,
            topic.on_error,
            topic.model.as_deref(),
            topic.message.as_str()
        ),
        (
            crate::config::GuardrailOn::Output,
            crate::config::GuardrailFailure::Allow,
            Some("small"),
            "No."
        )
    );
}

#[test]
fn broken_agents_are_named_with_their_line() {
    for (toml, expected) in [
        (
            "[agent]\nhandoffs = [\"billing\"]\n",
            "agent.toml:2: `agent.handoffs`: entry 0: \"billing\" is not an agent of [agents]",
        ),
        (
            "[agents.billing]\ninstructions_text = \"x\"\nhandoffs = [\"sales\"]\n",
            "agent.toml:3: `agents.billing.handoffs`: \"sales\" is not an agent of [agents] (or \"entry\")",
        ),
        (
            "[agents.billing]\ninstructions_text = \"x\"\nhandoffs = [\"billing\"]\n",
            "agent.toml:3: `agents.billing.handoffs`: an agent cannot hand off to itself",
        ),
        (
            "[agents.billing]\nmodel = \"m\"\n",
            "agent.toml:1: `agents.billing`: needs `instructions` (a file) or `instructions_text`",
        ),
        (
            "[agents.billing]\ninstructions = \"missing.md\"\n",
            "agent.toml:2: `agents.billing.instructions`: prompt file ./missing.md does not exist",
        ),
        (
            "[agents.billing]\ninstructions_text = \"x\"\nservers = [\"nowhere\"]\n",
            "agent.toml:3: `agents.billing.servers`: \"nowhere\" is not a server of [mcp_servers]",
        ),
        (
            "[agents.Billing]\ninstructions_text = \"x\"\n",
            "agent.toml:1: `agents.Billing`: an agent's name is 1 to 50 of a-z, 0-9, `_` and `-`, and not \"entry\"",
        ),
        (
            "[agents.entry]\ninstructions_text = \"x\"\n",
            "agent.toml:1: `agents.entry`: an agent's name is 1 to 50 of a-z, 0-9, `_` and `-`, and not \"entry\"",
        ),
        (
            "[agents.billing]\ninstructions_text = \"x\"\nmax_turns = 0\n",
            "agent.toml:3: `agents.billing.max_turns`: must be at least 1",
        ),
        (
            "[agents.billing]\ninstructions_text = \"x\"\nhandof = []\n",
            "agent.toml:3",
        ),
        ("[agent]\nhandoff_return = \"never\"\n", "agent.toml:2"),
        (
            "[agent]\ntools_from_agents = [\"helper\"]\n",
            "agent.toml:2: `agent.tools_from_agents`: \"helper\" is not an agent of [agents]",
        ),
        (
            "[agents.a]\ninstructions_text = \"x\"\ntools_from_agents = [\"b\"]\n[agents.b]\ninstructions_text = \"y\"\ntools_from_agents = [\"a\"]\n",
            "agent.toml:3: `agents.a.tools_from_agents`: agents ask each other as tools in a circle (a → b → a), which could never end",
        ),
        (
            "[agents.a]\ninstructions_text = \"x\"\ntools_from_agents = [\"a\"]\n",
            "agent.toml:3: `agents.a.tools_from_agents`: agents ask each other as tools in a circle (a → a), which could never end",
        ),
        (
            "[agents.billing]\ninstructions_text = \"x\"\nclient_tools = [\"map\"]\n",
            "agent.toml:3: `agents.billing.client_tools`: \"map\" is not a tool of [client_tools]",
        ),
        (
            "[agents.billing]\ninstructions_text = \"x\"\nreasoning_summary = \"auto\"\n",
            "agent.toml:3: `agents.billing.reasoning_summary`: needs api = \"responses\"",
        ),
        (
            "[guardrails.topic]\non = \"input\"\n",
            "agent.toml:1: `guardrails.topic`: needs `instructions` (a file) or `instructions_text`",
        ),
        (
            "[guardrails.topic]\ninstructions_text = \"x\"\nmessage = \" \"\n",
            "agent.toml:3: `guardrails.topic.message`: must not be empty: it is what the user reads",
        ),
        (
            "[guardrails.topic]\ninstructions_text = \"x\"\non = \"both\"\n",
            "agent.toml:3",
        ),
        (
            "[guardrails.topic]\ninstructions_text = \"x\"\non_error = \"maybe\"\n",
            "agent.toml:3",
        ),
        (
            "[guardrails.topic]\ninstructions = \"nowhere.md\"\n",
            "agent.toml:2: `guardrails.topic.instructions`: prompt file ./nowhere.md does not exist",
        ),
    ] {
        let error = load(toml, &[]).expect_err(toml).to_string();
        assert!(error.starts_with(expected), "{toml}\n{error}");
    }
}

#[test]
fn an_instructions_file_is_read_relative_to_the_config() {
    let dir = tempfile::tempdir().expect("a directory");
    std::fs::write(dir.path().join("billing.md"), "You bill.").expect("written");
    let config = load_in(
        &dir.path().display().to_string(),
        "[agents.billing]\ninstructions = \"billing.md\"\n",
        &[],
    )
    .expect("valid");
    assert!(config.agents["billing"].instructions.is_some());
}
