//! Text that every store can hold.
//!
//! PostgreSQL cannot store the character U+0000 in `text` or `jsonb`, so a
//! message containing it would fail to persist there while SQLite took it.
//! chatkitd replaces it with U+FFFD (the replacement character) wherever text
//! enters (user input, model output) and, as a last resort, in whatever JSON
//! a store writes, so both backends keep the same thing.

use std::borrow::Cow;

use serde_json::Value;

/// The character that replaces U+0000.
pub const REPLACEMENT: char = '\u{FFFD}';

/// The text with every U+0000 replaced; borrowed when there is none.
pub fn scrub(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Replaces U+0000 in place in a string.
pub fn scrub_in_place(text: &mut String) {
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
    }
}

/// Replaces U+0000 in every string and key of a JSON value.
pub fn scrub_value(value: &mut Value) {
    match value {
        Value::String(s) => scrub_in_place(s),
        Value::Array(items) => items.iter_mut().for_each(scrub_value),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(map);
                for (key, mut inner) in entries {
                    scrub_value(&mut inner);
                    map.insert(scrub(&key).into_owned(), inner);
                }
            } else {
                map.values_mut().for_each(scrub_value);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_nul_everywhere() {
        assert_eq!(scrub("a\0b"), "a\u{FFFD}b");
        assert!(matches!(scrub("plain"), Cow::Borrowed(_)));
        let mut value = json!({"k\u{0}": ["x\u{0}", {"y": "\u{0}"}], "n": 1});
        scrub_value(&mut value);
        assert_eq!(
            value,
            json!({"k\u{FFFD}": ["x\u{FFFD}", {"y": "\u{FFFD}"}], "n": 1})
        );
    }
}
