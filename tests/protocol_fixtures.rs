//! The protocol types against JSON the reference SDK (openai-chatkit 1.6.5)
//! produced: every fixture parses into our type and serializes back to the
//! same JSON, timestamps compared by instant (we write UTC with `Z`).
//!
//! Regenerate the fixtures with `tests/fixtures/generate.py` (see its README).

use std::path::{Path, PathBuf};

use chatkitd::protocol::{
    Attachment, Page, REQUEST_TYPES, Request, Thread, ThreadItem, ThreadStreamEvent, Timestamp,
};
use pretty_assertions::assert_eq;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixtures() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).expect("readable fixture");
            (name, serde_json::from_str(&text).expect("fixture is JSON"))
        })
        .collect()
}

/// Rewrites every `created_at` to our canonical form so that the reference's
/// naive timestamps compare by instant.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "created_at" {
                    if let Some(text) = inner.as_str() {
                        let t = Timestamp::parse(text).expect("timestamp parses");
                        *inner = Value::String(t.to_string());
                    }
                } else {
                    normalize(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(name: &str, fixture: &Value) {
    let parsed: T = serde_json::from_value(fixture.clone())
        .unwrap_or_else(|e| panic!("{name}: does not parse: {e}"));
    let mut ours = serde_json::to_value(&parsed).expect("serializes");
    let mut theirs = fixture.clone();
    normalize(&mut ours);
    normalize(&mut theirs);
    assert_eq!(
        ours, theirs,
        "{name}: re-serialized JSON differs from the reference"
    );
}

#[test]
fn every_reference_fixture_round_trips() {
    let fixtures = fixtures();
    assert!(
        fixtures.len() >= 80,
        "expected the full fixture set, found {}",
        fixtures.len()
    );
    let mut checked = 0;
    for (name, value) in &fixtures {
        match name.split('.').next() {
            Some("item") => round_trip::<ThreadItem>(name, value),
            Some("thread") => round_trip::<Thread>(name, value),
            Some("event") => round_trip::<ThreadStreamEvent>(name, value),
            Some("attachment") => round_trip::<Attachment>(name, value),
            Some("page") if name.starts_with("page.threads") => {
                round_trip::<Page<Thread>>(name, value)
            }
            Some("page") => round_trip::<Page<ThreadItem>>(name, value),
            Some("request") => {
                let bytes = serde_json::to_vec(value).expect("bytes");
                let request = Request::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                let expected = value["type"].as_str().expect("type");
                assert_eq!(request.type_name(), expected, "{name}");
            }
            Some("response") => continue,
            other => panic!("{name}: unknown fixture kind {other:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 75, "only {checked} fixtures checked");
}

#[test]
fn every_request_type_has_a_fixture() {
    let names: Vec<String> = fixtures().into_iter().map(|(n, _)| n).collect();
    for kind in REQUEST_TYPES {
        assert!(
            names.iter().any(|n| n == &format!("request.{kind}.json")),
            "no fixture for {kind}"
        );
    }
}

#[test]
fn attachment_metadata_is_never_written() {
    let attachment: Attachment = serde_json::from_str(
        r#"{"type":"file","id":"atc_1","name":"a.txt","mime_type":"text/plain","metadata":{"bucket":"private"}}"#,
    )
    .expect("parses");
    assert!(attachment.metadata.is_some(), "kept server-side");
    let json = serde_json::to_string(&attachment).expect("serializes");
    assert!(!json.contains("bucket"), "{json}");
}

/// The widgets chatkitd builds are exactly what the reference builds: the
/// shipped task list rendered by minijinja equals the reference's Jinja2
/// rendering of the same `.widget` file and data, and the approval card,
/// open and settled, equals the one built from the reference's components.
#[test]
fn chatkitds_own_widgets_are_what_the_reference_builds() {
    use chatkitd::widgets::{ApprovalCall, Verdict, WidgetTemplate, approval_card, resolved_card};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = |name: &str| -> Value {
        let path = root.join("tests/fixtures/reference").join(name);
        let text = std::fs::read_to_string(&path).expect("fixture");
        let item: Value = serde_json::from_str(&text).expect("JSON");
        item["widget"].clone()
    };
    let template = WidgetTemplate::load(&root.join("widgets/task-list.widget")).expect("loads");
    let data: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/task-list.data.json")).expect("data"),
    )
    .expect("JSON");
    assert_eq!(
        template.render(&data).expect("renders"),
        fixture("item.widget.task_list.json")
    );
    assert_eq!(
        template
            .render(&serde_json::json!({"tasks": []}))
            .expect("renders"),
        fixture("item.widget.task_list.empty.json")
    );
    let calls = [ApprovalCall {
        tool: "delete_task".to_owned(),
        server: "tasks".to_owned(),
        arguments: serde_json::json!({"task_id": "task_1a2b3c4d5e6f"}),
    }];
    assert_eq!(
        approval_card(&calls, &["call_1".to_owned()]),
        fixture("item.widget.approval.json")
    );
    assert_eq!(
        resolved_card(&calls, Verdict::Denied),
        fixture("item.widget.approval.denied.json")
    );
}
