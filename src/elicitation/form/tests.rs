//! Tests of reading a requested schema into questions and of checking
//! answers back against it, field kind by field kind.

use super::*;

fn answers(pairs: &[(&str, &[&str])]) -> BTreeMap<String, QuestionAnswer> {
    pairs
        .iter()
        .map(|(id, values)| {
            let values = values.iter().map(|v| (*v).to_owned()).collect();
            ((*id).to_owned(), QuestionAnswer::given(values))
        })
        .collect()
}

#[test]
fn each_field_type_becomes_its_question() {
    let form = Form::from_schema(&json!({
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 1, "maximum": 120},
            "agree": {"type": "boolean", "title": "Agree?"},
            "color": {"type": "string", "enum": ["r", "g"], "enumNames": ["Red", "Green"]},
            "name": {"type": "string", "minLength": 2, "description": "Your name"},
            "tools": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 2}
        },
        "required": ["name"]
    }))
    .expect("a valid schema");
    // The questions on the wire, as the item carries them, one per field in
    // the schema's key order.
    let questions = serde_json::to_value(form.questions()).expect("json");
    assert_eq!(
        questions,
        json!([
            {"type": "freeform", "id": "age", "question": "age",
             "description": "a whole number, from 1 to 120"},
            {"type": "multiple_choice", "id": "agree", "question": "Agree?",
             "options": [{"value": "yes", "label": "Yes"}, {"value": "no", "label": "No"}],
             "multiple": false},
            {"type": "multiple_choice", "id": "color", "question": "color",
             "options": [{"value": "r", "label": "Red"}, {"value": "g", "label": "Green"}],
             "multiple": false},
            {"type": "freeform", "id": "name", "question": "name",
             "description": "Your name (at least 2 characters)"},
            {"type": "multiple_choice", "id": "tools", "question": "tools",
             "options": [{"value": "a", "label": "a"}, {"value": "b", "label": "b"},
                         {"value": "c", "label": "c"}],
             "multiple": true}
        ])
    );
}

#[test]
fn answers_are_typed_and_checked() {
    let form = Form::from_schema(&json!({
        "type": "object",
        "properties": {
            "agree": {"type": "boolean"},
            "name": {"type": "string", "minLength": 2},
            "email": {"type": "string", "format": "email"},
            "age": {"type": "integer", "minimum": 1, "maximum": 120},
            "tools": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 2}
        },
        "required": ["name"]
    }))
    .expect("a valid schema");
    let content = form
        .content(&answers(&[
            ("agree", &["yes"]),
            ("name", &["Ada"]),
            ("email", &["ada@example.com"]),
            ("age", &["36"]),
            ("tools", &["a", "c"]),
        ]))
        .expect("valid answers");
    assert_eq!(
        Value::Object(content),
        json!({"agree": true, "name": "Ada", "email": "ada@example.com", "age": 36, "tools": ["a", "c"]})
    );
    let refused = |pairs: &[(&str, &[&str])]| form.content(&answers(pairs)).expect_err("refused");
    assert_eq!(refused(&[]), "name: an answer is required");
    assert!(refused(&[("name", &["A"])]).contains("at least 2 characters"));
    assert!(refused(&[("name", &["Ada"]), ("age", &["200"])]).contains("out of range"));
    assert!(refused(&[("name", &["Ada"]), ("age", &["3.5"])]).contains("not a whole number"));
    assert!(refused(&[("name", &["Ada"]), ("email", &["nope"])]).contains("an email address"));
    assert!(refused(&[("name", &["Ada"]), ("tools", &["a", "b", "c"])]).contains("choose"));
    assert!(refused(&[("name", &["Ada"]), ("tools", &["z"])]).contains("not one of the choices"));
    assert!(refused(&[("name", &["Ada"]), ("agree", &["maybe"])]).contains("yes or no"));
    // Optional fields left out are left out.
    let only_name = form
        .content(&answers(&[("name", &["Ada"])]))
        .expect("valid");
    assert_eq!(Value::Object(only_name), json!({"name": "Ada"}));
}

#[test]
fn schemas_elicitation_cannot_ask_are_refused() {
    let nested = json!({"type": "object", "properties": {"x": {"type": "object"}}});
    assert_eq!(
        Form::from_schema(&nested).expect_err("nested"),
        "field `x`: type Some(\"object\") cannot be asked"
    );
    assert!(Form::from_schema(&json!({"type": "object"})).is_err());

    // Bounded: a flood of fields or choices is not asked; long texts are cut.
    let fields: serde_json::Map<String, Value> = (0..=MAX_FIELDS)
        .map(|i| (format!("f{i}"), json!({"type": "string"})))
        .collect();
    let many = json!({"type": "object", "properties": fields});
    assert!(
        Form::from_schema(&many)
            .expect_err("too many")
            .contains("at most 32")
    );
    let choices: Vec<String> = (0..=MAX_OPTIONS).map(|i| format!("c{i}")).collect();
    let wide = json!({"type": "object", "properties": {"x": {"type": "string", "enum": choices}}});
    assert!(
        Form::from_schema(&wide)
            .expect_err("too many")
            .contains("at most 100")
    );
    let long = json!({"type": "object", "properties": {"x": {"type": "string", "title": "t".repeat(5000)}}});
    let form = Form::from_schema(&long).expect("asked");
    let questions = form.questions();
    assert_eq!(questions[0].question().chars().count(), MAX_TEXT + 1);
}
