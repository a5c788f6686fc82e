//! Identifier generation: the reference's `<prefix>_<hex>` shape with more randomness.
//!
//! The reference uses 8 hex characters (32 bits), which collide within a busy
//! store; chatkitd uses 24 (96 bits) so ids are unique per store, not only per
//! thread.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_are_distinct() {
        let a = new_id(IdKind::Thread);
        let b = new_id(IdKind::Thread);
        assert!(a.starts_with("thr_") && a.len() == 4 + 24, "{a}");
        assert_ne!(a, b);
        assert!(new_id(IdKind::SdkHiddenContext).starts_with("shcx_"));
    }
}
