//! Property tests of [`Request::parse`]: arbitrary bytes, and arbitrary JSON
//! shaped like request envelopes (a known or unknown `type`, params built of
//! the keys real requests use), never panic, and every outcome is the one
//! the envelope's shape calls for.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{REQUEST_TYPES, Request, RequestError};

/// Keys that real params use, so generated params often get deep into the
/// typed parsing instead of failing at the first field.
const KEYS: &[&str] = &[
    "thread_id",
    "item_id",
    "item_ids",
    "input",
    "content",
    "type",
    "text",
    "attachments",
    "inference_options",
    "quoted_text",
    "limit",
    "order",
    "after",
    "kind",
    "result",
    "title",
    "action",
    "payload",
    "metadata",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(REQUEST_TYPES.to_vec()).prop_map(Value::from),
        prop::sample::select(vec!["asc", "desc", "input_text", "positive", ""])
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ]
}

/// Arbitrary JSON, a few levels deep, with keys mostly from [`KEYS`].
fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// An envelope: a known type most of the time, and any params.
fn envelope() -> impl Strategy<Value = (Value, Option<Value>)> {
    let kind = prop_oneof![
        4 => prop::sample::select(REQUEST_TYPES.to_vec()).prop_map(Value::from),
        1 => leaf(),
    ];
    (kind, prop::option::of(json()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Request::parse(&body);
    }

    #[test]
    fn arbitrary_envelopes_parse_or_fail_as_their_shape_says((kind, params) in envelope()) {
        let mut object = Map::new();
        object.insert("type".to_owned(), kind.clone());
        if let Some(params) = &params {
            object.insert("params".to_owned(), params.clone());
        }
        let body = serde_json::to_vec(&Value::Object(object)).expect("serializes");
        let parsed = Request::parse(&body);
        match (&kind, &params) {
            (Value::String(kind), _) if !REQUEST_TYPES.contains(&kind.as_str()) => {
                prop_assert!(matches!(parsed, Err(RequestError::UnknownType(_))), "{parsed:?}");
            }
            (Value::String(_), None | Some(Value::Null)) => {
                prop_assert!(matches!(parsed, Err(RequestError::MissingParams(_))), "{parsed:?}");
            }
            (Value::String(_), Some(_)) => {
                // Typed or refused with a reason (a shape, or an id outside
                // the alphabet ids are issued in), never anything else.
                prop_assert!(
                    matches!(
                        parsed,
                        Ok(_)
                            | Err(RequestError::InvalidParams { .. } | RequestError::InvalidId { .. })
                    ),
                    "{parsed:?}"
                );
            }
            _ => prop_assert!(matches!(parsed, Err(RequestError::MissingType)), "{parsed:?}"),
        }
    }
}
