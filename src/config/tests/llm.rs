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

#[test]
fn hosted_tools_read_their_tables_and_name_a_wrong_key() {
    let config = load(
        "[llm]\napi = \"responses\"\n\n[llm.hosted_tools.web_search]\nallowed_domains = [\"rust-lang.org\"]\nuser_location = { country = \"FR\", city = \"Lyon\" }\n\n[llm.hosted_tools.file_search]\nvector_store_ids = [\"vs_1\"]\n\n[llm.hosted_tools.image_generation]\nsize = \"1024x1536\"\nquality = \"high\"\npartial_images = 2\n",
        &[],
    )
    .expect("valid");
    let hosted = &config.llm.hosted_tools;
    assert_eq!(
        hosted
            .web_search
            .as_ref()
            .map(|w| w.allowed_domains.clone()),
        Some(vec!["rust-lang.org".to_owned()])
    );
    assert_eq!(
        hosted
            .file_search
            .as_ref()
            .map(|f| f.vector_store_ids.len()),
        Some(1)
    );
    let images = hosted.image_generation.as_ref().expect("images");
    assert_eq!(
        (images.size, images.quality, images.partial_images),
        (
            crate::config::ImageSize::Portrait,
            crate::config::ImageQuality::High,
            2
        )
    );
    for (toml, line, words) in [
        // Hosted tools need the Responses API.
        (
            "[llm]\n\n[llm.hosted_tools.web_search]\n",
            "agent.toml:3",
            "needs api = \"responses\"",
        ),
        (
            "[llm]\napi = \"responses\"\n[llm.hosted_tools.web_search]\nallowed_domains = [\"https://e.com/x\"]\n",
            "agent.toml:4",
            "bare domain",
        ),
        (
            "[llm]\napi = \"responses\"\n[llm.hosted_tools.file_search]\nvector_store_ids = []\n",
            "agent.toml:4",
            "at least one vector store",
        ),
        (
            "[llm]\napi = \"responses\"\n[llm.hosted_tools.image_generation]\npartial_images = 4\n",
            "agent.toml:4",
            "from 0 to 3",
        ),
        (
            "[llm]\napi = \"responses\"\n[llm.hosted_tools.image_generation]\nsize = \"2048x2048\"\n",
            "agent.toml:4",
            "1024x1024",
        ),
        (
            "[llm]\napi = \"responses\"\n[llm.hosted_tools.code_interpreter]\n",
            "agent.toml:3",
            "code_interpreter",
        ),
    ] {
        let error = load(toml, &[]).expect_err(toml).to_string();
        assert!(
            error.contains(line) && error.contains(words),
            "{toml}: {error}"
        );
    }
}

#[test]
fn the_model_picker_lists_the_default_and_no_twice() {
    let config = load("[llm]\nmodel = \"a\"\nmodels = [\"a\", \"b\"]\n", &[]).expect("valid");
    assert_eq!(config.llm.models, ["a", "b"]);
    let config = load(
        "[llm]\nmodel = \"a\"\nmodels = [\"a\", { name = \"o4\", reasoning_effort = \"high\" }]\n",
        &[],
    )
    .expect("valid");
    assert_eq!(
        config.llm.models[1].reasoning_effort,
        Some(crate::config::ReasoningEffort::High)
    );
    for (text, expected) in [
        (
            "[llm]\nmodel = \"a\"\nmodels = [\"b\"]\n",
            "agent.toml:3: `llm.models`: must include the default model \"a\" (`llm.model`)",
        ),
        (
            "[llm]\nmodel = \"a\"\nmodels = [\"a\", \"a\"]\n",
            "agent.toml:3: `llm.models`: \"a\" is listed twice",
        ),
        (
            "[llm]\nmodel = \"a\"\nmodels = [\"a\", \" \"]\n",
            "agent.toml:3: `llm.models`: model names must not be empty",
        ),
        (
            "[llm]\nmodel = \"a\"\nmodels = [\"a\", { name = \"b\", reasoning_summary = \"auto\" }]\n",
            "agent.toml:3: `llm.models`: \"b\" sets reasoning_summary, which needs api = \"responses\"",
        ),
        (
            "[llm]\nmodel = \"a\"\nmodels = [\"a\", { name = \"b\", effort = \"high\" }]\n",
            "agent.toml:3: `llm.models`: each model is a name, or a table with `name` and optionally `reasoning_effort` (none, minimal, low, medium, high) and `reasoning_summary` (auto, concise, detailed)",
        ),
        (
            "[llm]\ntranscription_model = \"\"\n",
            "agent.toml:2: `llm.transcription_model`: must not be empty",
        ),
        (
            "[llm]\ntranscription_model = \"w\"\ntranscription_base_url = \"ftp://x\"\n",
            "agent.toml:3: `llm.transcription_base_url`: \"ftp://x\" is not an http(s) URL",
        ),
        (
            "[llm]\nmax_audio_bytes = 10\n",
            "agent.toml:2: `llm.max_audio_bytes`: must be at least 1024",
        ),
        (
            "[llm]\nreasoning_summary = \"auto\"\n",
            "agent.toml:2: `llm.reasoning_summary`: needs api = \"responses\" (chat completions stream no reasoning summary)",
        ),
    ] {
        assert_eq!(load(text, &[]).expect_err(text).to_string(), expected);
    }
}
