//! Signed URLs: an HMAC-SHA256 over what a URL may do (upload or preview),
//! the attachment, its owner and the expiry, so that a URL works without a
//! bearer (an `<img>` sends none) for that one attachment, until it expires.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a signed URL allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Upload,
    Preview,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Upload => "upload",
            Purpose::Preview => "preview",
        }
    }
}

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Not made with this key for this attachment, owner and purpose.
    Invalid,
    /// Genuine, but its time is up.
    Expired,
}

/// Signs and checks URLs with one key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with `key`, or with 32 random bytes when there is none.
    pub fn new(key: Option<&str>) -> Signer {
        let key = match key {
            Some(key) => key.as_bytes().to_vec(),
            None => {
                let mut key = vec![0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
                key
            }
        };
        Signer { key }
    }

    fn mac(&self, purpose: Purpose, id: &str, owner: &str, expires: i64) -> HmacSha256 {
        // `new_from_slice` takes keys of any length for HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        for field in [purpose.label(), id, owner, &expires.to_string()] {
            mac.update(field.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// The signature of `purpose` on `id` for `owner`, valid until
    /// `expires` (Unix seconds).
    pub fn sign(&self, purpose: Purpose, id: &str, owner: &str, expires: i64) -> String {
        URL_SAFE_NO_PAD.encode(
            self.mac(purpose, id, owner, expires)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a signature in constant time, then its expiry against `now`.
    pub fn verify(
        &self,
        purpose: Purpose,
        id: &str,
        owner: &str,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| SignatureError::Invalid)?;
        self.mac(purpose, id, owner, expires)
            .verify_slice(&bytes)
            .map_err(|_| SignatureError::Invalid)?;
        if expires < now {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_attachment_owner_purpose_and_time_only() {
        let signer = Signer::new(Some("a key of at least thirty-two characters"));
        let sig = signer.sign(Purpose::Preview, "atc_1", "ann", 100);
        let check = |purpose, id, owner, expires, sig: &str, now| {
            signer.verify(purpose, id, owner, expires, sig, now)
        };
        assert_eq!(
            check(Purpose::Preview, "atc_1", "ann", 100, &sig, 99),
            Ok(())
        );
        assert_eq!(
            check(Purpose::Preview, "atc_1", "ann", 100, &sig, 101),
            Err(SignatureError::Expired)
        );
        for (purpose, id, owner, expires) in [
            (Purpose::Upload, "atc_1", "ann", 100),
            (Purpose::Preview, "atc_2", "ann", 100),
            (Purpose::Preview, "atc_1", "bob", 100),
            (Purpose::Preview, "atc_1", "ann", 1000),
        ] {
            assert_eq!(
                check(purpose, id, owner, expires, &sig, 0),
                Err(SignatureError::Invalid)
            );
        }
        let mut tampered = sig.clone();
        tampered.replace_range(0..1, if sig.starts_with('A') { "B" } else { "A" });
        assert_eq!(
            check(Purpose::Preview, "atc_1", "ann", 100, &tampered, 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            check(Purpose::Preview, "atc_1", "ann", 100, "not base64!", 0),
            Err(SignatureError::Invalid)
        );
        let other = Signer::new(None);
        assert_eq!(
            other.verify(Purpose::Preview, "atc_1", "ann", 100, &sig, 0),
            Err(SignatureError::Invalid)
        );
    }
}
