//! Cutting text short: one rule for where a cut falls (never inside a
//! character) and how it is marked, for everything the daemon shortens:
//! tool output the model reads, task summaries the UI shows, titles, the
//! terminal's lines, log fields. And showing text as it is inside Markdown:
//! a code block whose fence nothing in the text can close.
//!
//! Nothing here knows who reads the text; callers choose the limit and the
//! marker.

use std::borrow::Cow;

/// `text` cut to at most `max_chars` characters, followed by `marker` when
/// anything was cut.
pub fn cut_chars<'a>(text: &'a str, max_chars: usize, marker: &str) -> Cow<'a, str> {
    match text.char_indices().nth(max_chars) {
        None => Cow::Borrowed(text),
        Some((end, _)) => Cow::Owned(format!("{}{marker}", &text[..end])),
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a
/// character boundary.
pub fn prefix_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max_bytes` bytes (on a character boundary),
/// followed by a line that says how much was left out, for a reader (the
/// model) that must know the text is incomplete.
pub fn cut_bytes_marked(text: &str, max_bytes: usize) -> Cow<'_, str> {
    let kept = prefix_bytes(text, max_bytes);
    if kept.len() == text.len() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!(
        "{kept}\n[output truncated: {} of {} bytes shown]",
        kept.len(),
        text.len()
    ))
}

/// `text` as a fenced Markdown code block with `info` (a language, or
/// empty) on its opening line. The fence is a run of backticks longer than
/// any inside `text` (at least three), so no line of `text` can close it
/// (CommonMark: a closing fence is at least as long as the opening one):
/// whatever `text` holds, it is shown as text, never read as Markdown.
pub fn code_block(info: &str, text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{info}\n{text}\n{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_cuts_mark_only_what_was_cut() {
        assert_eq!(cut_chars("abc", 3, "…"), "abc");
        assert_eq!(cut_chars("abcdef", 3, "…"), "abc…");
        assert_eq!(cut_chars("héllo", 2, "..."), "hé...");
        assert_eq!(cut_chars("", 0, "…"), "");
        assert_eq!(cut_chars("x", 0, "…"), "…");
    }

    #[test]
    fn byte_cuts_fall_on_character_boundaries() {
        assert_eq!(prefix_bytes("héllo", 2), "h");
        assert_eq!(prefix_bytes("héllo", 3), "hé");
        assert_eq!(prefix_bytes("short", 10), "short");
        assert_eq!(cut_bytes_marked("short", 10), "short");
        assert_eq!(
            cut_bytes_marked("héllo wörld", 3),
            "h\u{e9}\n[output truncated: 3 of 13 bytes shown]"
        );
    }

    #[test]
    fn code_blocks_are_fenced_longer_than_any_backticks_inside() {
        assert_eq!(code_block("json", "{}"), "```json\n{}\n```");
        assert_eq!(code_block("", "a `b` c"), "```\na `b` c\n```");
        assert_eq!(
            code_block("json", "{\"x\":\"```\\n# injected\"}"),
            "````json\n{\"x\":\"```\\n# injected\"}\n````"
        );
        let hostile = "x\n```\n# heading\n``````\n[link](https://example.com)";
        let block = code_block("", hostile);
        assert!(block.starts_with("```````\n"), "{block}");
        assert!(block.ends_with("\n```````"), "{block}");
        // No line inside is as long a run of backticks as the fence.
        let inner = &block["```````\n".len()..block.len() - "\n```````".len()];
        assert_eq!(inner, hostile);
        assert!(inner.lines().all(|line| !line.starts_with("```````")));
    }
}
