//! Tests of `[llm]`'s API and reasoning keys: their values, from the
//! environment as the shipped `agent.toml` sets them, and a wrong one named.

use super::load;

#[test]
fn the_api_and_reasoning_keys_read_their_values_and_name_a_wrong_one() {
    let config = load(
        "[llm]\napi = \"responses\"\nreasoning_effort = \"high\"\nreasoning_summary = \"detailed\"\n",
        &[],
    )
    .expect("valid");
    assert_eq!(config.llm.api, crate::config::LlmApi::Responses);
    assert_eq!(
        config.llm.reasoning_effort,
        Some(crate::config::ReasoningEffort::High)
    );
    assert_eq!(
        config.llm.reasoning_summary,
        Some(crate::config::ReasoningSummary::Detailed)
    );
    // As the shipped agent.toml sets it: from the environment.
    let shipped = "[llm]\napi = \"${CHATKITD_LLM_API:-chat_completions}\"\n";
    let config = load(shipped, &[("CHATKITD_LLM_API", "responses")]).expect("valid");
    assert_eq!(config.llm.api, crate::config::LlmApi::Responses);
    let config = load(shipped, &[]).expect("valid");
    assert_eq!(config.llm.api, crate::config::LlmApi::ChatCompletions);
    let error = load("[llm]\napi = \"grpc\"\n", &[])
        .expect_err("an unknown api")
        .to_string();
    assert!(
        error.contains("agent.toml:2") && error.contains("chat_completions"),
        "{error}"
    );
}
