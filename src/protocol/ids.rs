//! Identifiers: generation, in the reference's `<prefix>_<hex>` shape with more
//! randomness, the check every id a client sends passes first, and what a
//! user id (a token's subject, `[auth] dev_user`) may be ([`is_user_id`]).
//!
//! The reference uses 8 hex characters (32 bits), which collide within a busy
//! store; chatkitd uses 24 (96 bits) so ids are unique per store, not only per
//! thread.
//!
//! Every id chatkitd issues is made of ASCII letters, digits, `_` and `-`
//! (see [`is_id`]). A client's id outside that alphabet names nothing that
//! can exist, so it is refused where the request is read, before any store,
//! lock or file work: a NUL or a control character never reaches a
//! database (Postgres refuses NUL in text, and a refused statement must not
//! be a way to disturb other users' work), and both stores answer alike.

use rand::RngCore;

/// What an id names; decides its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Thread,
    Message,
    ToolCall,
    Task,
    Workflow,
    Attachment,
    SdkHiddenContext,
}

impl IdKind {
    fn prefix(self) -> &'static str {
        match self {
            IdKind::Thread => "thr",
            IdKind::Message => "msg",
            IdKind::ToolCall => "tc",
            IdKind::Task => "tsk",
            IdKind::Workflow => "wf",
            IdKind::Attachment => "atc",
            IdKind::SdkHiddenContext => "shcx",
        }
    }
}

/// A fresh random id such as `thr_4f1c0a9e2b7d5c3a1e0f9b8d`.
pub fn new_id(kind: IdKind) -> String {
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("{}_{}", kind.prefix(), hex::encode(bytes))
}

/// The longest id a client may send. Issued ids are under 40 bytes; the
/// margin leaves room for other prefixes without admitting megabyte keys.
pub const MAX_ID_LEN: usize = 128;

/// Whether `id` could be an id chatkitd issued: 1 to [`MAX_ID_LEN`] ASCII
/// letters, digits, `_` or `-`.
pub fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The longest user id a token may carry: every store row and tool call is
/// keyed by it, so it is bounded like any other key.
pub const MAX_USER_ID_LEN: usize = 256;

/// Whether `user` can be a user id: not blank, at most [`MAX_USER_ID_LEN`]
/// bytes, and no control characters (a NUL cannot be stored in Postgres
/// text, and a newline would forge log lines).
pub fn is_user_id(user: &str) -> bool {
    !user.trim().is_empty() && user.len() <= MAX_USER_ID_LEN && !user.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_pass_and_hostile_strings_do_not() {
        for kind in [IdKind::Thread, IdKind::Attachment, IdKind::SdkHiddenContext] {
            assert!(is_id(&new_id(kind)));
        }
        assert!(is_id("thr_missing_abc123"));
        assert!(is_id(&format!("shcx_{}", new_id(IdKind::Message))));
        for hostile in [
            "",
            "thr_\0",
            "thr_\u{0}",
            "thr\nx",
            "thr x",
            "thr_\u{7f}",
            "thr_é",
            "../etc/passwd",
            "thr_%00",
            "thr'; DROP TABLE threads; --",
        ] {
            assert!(!is_id(hostile), "{hostile:?}");
        }
        assert!(is_id(&"a".repeat(MAX_ID_LEN)));
        assert!(!is_id(&"a".repeat(MAX_ID_LEN + 1)));
    }

    #[test]
    fn ids_have_prefix_and_are_distinct() {
        let a = new_id(IdKind::Thread);
        let b = new_id(IdKind::Thread);
        assert!(a.starts_with("thr_") && a.len() == 4 + 24, "{a}");
        assert_ne!(a, b);
        assert!(new_id(IdKind::SdkHiddenContext).starts_with("shcx_"));
    }

    #[test]
    fn user_ids_are_bounded_text_without_controls() {
        assert!(is_user_id("alice"));
        assert!(is_user_id("auth0|5f7c8ec7c33c6c004bbafe82"));
        assert!(is_user_id(&"u".repeat(MAX_USER_ID_LEN)));
        for bad in ["", "  ", "al\0ice", "al\nice", "\u{1b}[31m", "a\u{7f}"] {
            assert!(!is_user_id(bad), "{bad:?}");
        }
        assert!(!is_user_id(&"u".repeat(MAX_USER_ID_LEN + 1)));
    }
}
