//! Widget templates, the approval card and widgets read as text.

use serde_json::json;

use super::*;

fn definition(template: &str) -> String {
    json!({"version": "1.0", "name": "Test", "template": template, "jsonSchema": {}}).to_string()
}

const TASK_LIST: &str = include_str!("../../widgets/task-list.widget");

#[test]
fn the_shipped_task_list_renders_a_button_per_open_task() {
    let template = WidgetTemplate::parse(TASK_LIST, "task-list.widget").expect("compiles");
    assert_eq!(template.name(), "Task list");
    let widget = template
        .render(&json!({"tasks": [
            {"id": "task_1", "title": "Buy \"milk\"", "status": "open", "due": "2026-12-01"},
            {"id": "task_2", "title": "Call Ann", "status": "done"},
        ]}))
        .expect("renders");
    assert_eq!(widget["type"], "ListView");
    assert_eq!(
        offered_actions(&widget),
        vec![("tasks.complete".to_owned(), json!({"task_id": "task_1"}))]
    );
    assert_eq!(
        plain_text(&widget),
        "Buy \"milk\"  due 2026-12-01  [Done]\nCall Ann  (done)"
    );
    let empty = template.render(&json!({"tasks": []})).expect("renders");
    assert_eq!(plain_text(&empty), "No tasks here.");
}

#[test]
fn rendering_is_strict_and_checked() {
    let template = WidgetTemplate::parse(
        &definition(
            r#"{"type": "Card", "children": [{"type": "Text", "value": {{ title | tojson }}}]}"#,
        ),
        "inline",
    )
    .expect("compiles");
    let undefined = template.render(&json!({})).expect_err("title is undefined");
    assert!(undefined.to_string().contains("undefined"), "{undefined}");
    let not_object = template
        .render(&json!([1]))
        .expect_err("an array is not data");
    assert!(not_object.to_string().contains("not a JSON object"));

    let not_json = WidgetTemplate::parse(&definition("{{ title }}"), "inline")
        .expect("compiles")
        .render(&json!({"title": "plain"}))
        .expect_err("not JSON");
    assert!(not_json.to_string().contains("not JSON"), "{not_json}");

    let wrong_root = WidgetTemplate::parse(&definition(r#"{"type": "Text", "value": "x"}"#), "i")
        .expect("compiles")
        .render(&json!({}))
        .expect_err("a Text is no root");
    assert!(wrong_root.to_string().contains("Card"), "{wrong_root}");
}

#[test]
fn nulls_are_dropped_at_every_depth() {
    let template = WidgetTemplate::parse(
        &definition(r#"{"type": "Card", "key": null, "children": [{"type": "Text", "value": "a", "color": null}, null]}"#),
        "inline",
    )
    .expect("compiles");
    assert_eq!(
        template.render(&json!({})).expect("renders"),
        json!({"type": "Card", "children": [{"type": "Text", "value": "a"}]})
    );
}

#[test]
fn runaway_templates_and_huge_output_are_errors() {
    let endless = WidgetTemplate::parse(
        &definition(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        ),
        "inline",
    )
    .expect("compiles");
    let error = endless.render(&json!({})).expect_err("out of fuel");
    assert!(error.to_string().contains("fuel"), "{error}");

    let huge = WidgetTemplate::parse(
        &definition(
            r#"{"type": "Card", "children": [{"type": "Text", "value": {{ text | tojson }}}]}"#,
        ),
        "inline",
    )
    .expect("compiles");
    let error = huge
        .render(&json!({"text": "x".repeat(MAX_WIDGET_BYTES)}))
        .expect_err("too big");
    assert!(error.to_string().contains("bytes"), "{error}");
}

#[test]
fn bad_definitions_say_what_is_wrong() {
    let cases = [
        ("not json", "invalid JSON"),
        (
            r#"{"version": "2.0", "name": "x", "template": ""}"#,
            "not supported",
        ),
        (r#"{"version": "1.0", "template": ""}"#, "`name`"),
        (r#"{"version": "1.0", "name": "x"}"#, "`template`"),
    ];
    for (text, expected) in cases {
        let error = WidgetTemplate::parse(text, "bad.widget").expect_err(text);
        assert!(error.to_string().contains(expected), "{text}: {error}");
    }
    let syntax = WidgetTemplate::parse(&definition("{% for %}"), "bad.widget").expect_err("syntax");
    assert!(syntax.to_string().contains("line 1"), "{syntax}");
    let missing = WidgetTemplate::load(Path::new("/nonexistent/x.widget")).expect_err("missing");
    assert!(
        missing.to_string().contains("/nonexistent/x.widget"),
        "{missing}"
    );
}

#[test]
fn the_approval_card_offers_both_verdicts_and_the_resolved_one_none() {
    let calls = [ApprovalCall {
        tool: "delete_task".to_owned(),
        server: "tasks".to_owned(),
        arguments: json!({"task_id": "task_1"}),
    }];
    let ids = ["call_1".to_owned()];
    let card = approval_card(&calls, &ids);
    check_root(&card).expect("a root");
    assert_eq!(
        offered_actions(&card),
        vec![
            (APPROVE.to_owned(), json!({"call_ids": ["call_1"]})),
            (DENY.to_owned(), json!({"call_ids": ["call_1"]})),
        ]
    );
    let text = plain_text(&card);
    assert!(text.starts_with("Run delete_task?"), "{text}");
    assert!(text.contains("\"task_id\": \"task_1\""), "{text}");
    assert!(text.ends_with("[Approve]  [Deny]"), "{text}");

    let denied = resolved_card(&calls, Verdict::Denied);
    assert!(offered_actions(&denied).is_empty());
    assert!(plain_text(&denied).starts_with("Denied: delete_task"));
}

#[test]
fn client_actions_are_not_offered_to_the_server() {
    let widget = json!({"type": "Card", "children": [
        {"type": "Button", "label": "x", "onClickAction": {"type": "open", "handler": "client"}},
        {"type": "Button", "label": "y", "onClickAction": {"type": "save", "payload": {"a": 1}}},
    ]});
    assert!(!offers_action(&widget, "open"));
    assert!(offers_action(&widget, "save"));
}
