//! Who is calling: bearer JWTs verified against a secret, a public key or a
//! JWKS, or the explicit development mode.
//!
//! Authentication fails closed: a missing, malformed, expired, not yet valid,
//! wrongly signed, `alg: none` or algorithm-confused token is refused, and
//! there is no fallback user. The user id comes from one configured claim;
//! display claims (name, email) are carried for the system prompt only.
//! This module knows no HTTP: the caller hands it the `Authorization` value.

mod jwks;

use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::config::{AuthConfig, AuthMode, KeySource};
use crate::protocol::{MAX_USER_ID_LEN, is_user_id};
use jwks::{Jwks, JwksTiming};

/// The verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user every store query and tool call is scoped to.
    pub user_id: String,
    /// Display claims: for the system prompt, never for identity.
    pub name: Option<String>,
    pub email: Option<String>,
}

impl Identity {
    /// An identity with no display claims.
    pub fn user(user_id: impl Into<String>) -> Self {
        Identity {
            user_id: user_id.into(),
            name: None,
            email: None,
        }
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("a bearer token is required (Authorization: Bearer <JWT>)")]
    Missing,
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("the token is not accepted: {0}")]
    Rejected(String),
    /// The signing keys could not be fetched; not the caller's fault.
    #[error("tokens cannot be verified right now: {0}")]
    KeysUnavailable(String),
}

/// The keys an [`Authenticator`] verifies with, as [`Authenticator::probe_keys`] found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProbe {
    /// `mode = "none"`: no keys; every request is this user.
    Development { user: String },
    /// An HMAC secret.
    SharedSecret,
    /// A public key read from a PEM file.
    PublicKey,
    /// A JWKS, fetched just now, holding this many usable keys.
    Jwks { keys: usize },
}

/// Why authentication could not be set up at start.
#[derive(Debug, Error)]
pub enum AuthSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Key(String),
}

/// Verifies callers.
#[derive(Clone)]
pub struct Authenticator {
    mode: Arc<Mode>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

enum Mode {
    None { user: String },
    Jwt(Box<JwtVerifier>),
}

/// Keys with the algorithms they may verify.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

enum Keys {
    Static(VerifyingKey),
    Jwks(Jwks),
}

struct JwtVerifier {
    keys: Keys,
    /// The configured allow-list, if any.
    allowed: Option<Vec<Algorithm>>,
    issuer: Option<String>,
    audience: Option<Vec<String>>,
    leeway: u64,
    user_claim: String,
    name_claim: String,
    email_claim: String,
}

/// Every algorithm of a key family: what a key of that type can verify.
pub(crate) fn family_algorithms(family: AlgorithmFamily) -> Vec<Algorithm> {
    use Algorithm::*;
    match family {
        AlgorithmFamily::Hmac => vec![HS256, HS384, HS512],
        AlgorithmFamily::Rsa => vec![RS256, RS384, RS512, PS256, PS384, PS512],
        AlgorithmFamily::Ec => vec![ES256, ES384],
        AlgorithmFamily::Ed => vec![EdDSA],
    }
}

impl Authenticator {
    /// The development mode: every request is `user`.
    pub fn none(user: impl Into<String>) -> Self {
        Authenticator {
            mode: Arc::new(Mode::None { user: user.into() }),
        }
    }

    /// Builds the configured authenticator; key files are read now, a JWKS
    /// on first use.
    pub fn from_config(config: &AuthConfig, base_dir: &Path) -> Result<Self, AuthSetupError> {
        let jwt = match config.mode {
            AuthMode::None => return Ok(Authenticator::none(config.dev_user.clone())),
            AuthMode::Jwt => config,
        };
        let allowed = match &jwt.algorithms {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        n.parse::<Algorithm>().map_err(|_| {
                            AuthSetupError::Key(format!("unknown JWT algorithm {n:?}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let source = jwt
            .key_source()
            .map_err(|e| AuthSetupError::Key(e.to_string()))?;
        let keys = match source {
            KeySource::Secret(secret) => {
                let key = DecodingKey::from_secret(secret.as_bytes());
                Keys::Static(VerifyingKey {
                    algorithms: family_algorithms(key.family()),
                    key,
                })
            }
            KeySource::PublicKeyFile(file) => {
                let path = base_dir.join(file);
                let pem = std::fs::read(&path).map_err(|source| AuthSetupError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .or_else(|_| DecodingKey::from_ec_pem(&pem))
                    .or_else(|_| DecodingKey::from_ed_pem(&pem))
                    .map_err(|e| {
                        AuthSetupError::Key(format!(
                            "{}: not an RSA, EC or Ed25519 public key in PEM form ({e})",
                            path.display()
                        ))
                    })?;
                Keys::Static(VerifyingKey {
                    algorithms: family_algorithms(key.family()),
                    key,
                })
            }
            KeySource::JwksUrl(url) => Keys::Jwks(Jwks::new(
                url.to_owned(),
                JwksTiming {
                    ttl: jwt.jwks_cache_ttl,
                    min_refresh: jwt.jwks_min_refresh_interval,
                    max_stale: jwt.jwks_max_stale,
                },
            )),
        };
        Ok(Authenticator {
            mode: Arc::new(Mode::Jwt(Box::new(JwtVerifier {
                keys,
                allowed,
                issuer: jwt.issuer.clone(),
                audience: jwt.audience.clone(),
                leeway: jwt.leeway.as_secs(),
                user_claim: jwt.user_claim.clone(),
                name_claim: jwt.name_claim.clone(),
                email_claim: jwt.email_claim.clone(),
            }))),
        })
    }

    /// Loads the verification keys now (a JWKS is fetched at once, not on
    /// the first token) and says what they are, for `chatkitd check`.
    pub async fn probe_keys(&self) -> Result<KeyProbe, AuthError> {
        let verifier = match &*self.mode {
            Mode::None { user } => return Ok(KeyProbe::Development { user: user.clone() }),
            Mode::Jwt(verifier) => verifier,
        };
        match &verifier.keys {
            Keys::Static(key) if key.key.family() == AlgorithmFamily::Hmac => {
                Ok(KeyProbe::SharedSecret)
            }
            Keys::Static(_) => Ok(KeyProbe::PublicKey),
            Keys::Jwks(jwks) => match jwks.refresh().await {
                Ok(0) => Err(AuthError::KeysUnavailable(
                    "the JWKS document holds no keys".to_owned(),
                )),
                Ok(keys) => Ok(KeyProbe::Jwks { keys }),
                Err(e) => Err(AuthError::KeysUnavailable(e)),
            },
        }
    }

    /// Whether this is the development mode.
    pub fn is_development(&self) -> bool {
        matches!(*self.mode, Mode::None { .. })
    }

    /// Verifies the `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        match &*self.mode {
            Mode::None { user } => Ok(Identity::user(user.clone())),
            Mode::Jwt(verifier) => verifier.verify(authorization).await,
        }
    }
}

impl JwtVerifier {
    async fn verify(&self, authorization: Option<&str>) -> Result<Identity, AuthError> {
        let token = bearer_token(authorization.ok_or(AuthError::Missing)?)?;
        // Parsing the header refuses `alg: none` (no such algorithm here) and
        // anything that is not three base64url parts.
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            tracing::debug!(error = %e, "a token's header could not be read");
            AuthError::Malformed(malformed(&e).to_owned())
        })?;
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit`
        // names an extension it does not understand, and this one
        // understands none.
        if header.crit.is_some() {
            return Err(AuthError::Rejected(
                "its header marks extensions critical (`crit`) that this server does not understand"
                    .to_owned(),
            ));
        }
        let key = match &self.keys {
            Keys::Static(key) => key.clone(),
            Keys::Jwks(jwks) => jwks.key(header.kid.as_deref()).await?,
        };
        // Only algorithms of the key's own family, so a token cannot make us
        // use an RSA public key as an HMAC secret (algorithm confusion).
        let algorithms: Vec<Algorithm> = key
            .algorithms
            .iter()
            .copied()
            .filter(|a| {
                self.allowed
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(a))
            })
            .collect();
        if !algorithms.contains(&header.alg) {
            return Err(AuthError::Rejected(format!(
                "the algorithm {:?} is not accepted for this key",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = algorithms;
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not merely
        // correct when present (jsonwebtoken checks them only if there).
        let mut required = vec!["exp"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match &self.issuer {
            Some(issuer) => validation.set_issuer(&[issuer]),
            None => validation.iss = None,
        }
        match &self.audience {
            Some(audience) => validation.set_audience(audience),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "a token was refused");
                AuthError::Rejected(describe(&e, token))
            })?;
        let claims = data.claims;
        let user_id = match claims.get(&self.user_claim) {
            Some(Value::String(user)) if is_user_id(user) => user.clone(),
            _ => {
                return Err(AuthError::Rejected(format!(
                    "the token has no usable `{}` claim (a user id is 1 to {MAX_USER_ID_LEN} bytes of text without control characters)",
                    self.user_claim
                )));
            }
        };
        let text = |claim: &str| claims.get(claim).and_then(Value::as_str).map(str::to_owned);
        Ok(Identity {
            user_id,
            name: text(&self.name_claim),
            email: text(&self.email_claim),
        })
    }
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let header = header.trim();
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

/// What is wrong with a token whose header cannot be read, in words that
/// do not change with the library (its detail is logged at debug).
fn malformed(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidToken => "it is not three base64url parts separated by dots",
        ErrorKind::Base64(_) => "its header is not base64url",
        _ => "its header is not a JSON object naming a known `alg`",
    }
}

/// A short reason for a refused token, without echoing the token or naming
/// the library's types (its detail is logged at debug). `token` has been
/// verified when the error is about a claim, so its claims may be read to
/// say whether a required one is missing or unreadable.
fn describe(error: &jsonwebtoken::errors::Error, token: &str) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "it has expired".to_owned(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".to_owned(),
        ErrorKind::InvalidSignature => "its signature does not verify".to_owned(),
        ErrorKind::InvalidIssuer => "wrong issuer".to_owned(),
        ErrorKind::InvalidAudience => "wrong audience".to_owned(),
        ErrorKind::InvalidSubject => "wrong subject".to_owned(),
        ErrorKind::InvalidAlgorithm => "its algorithm does not match the key".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) if has_claim(token, claim) => unreadable(claim),
        ErrorKind::MissingRequiredClaim(claim) => format!("the `{claim}` claim is missing"),
        ErrorKind::InvalidClaimFormat(claim) => unreadable(claim),
        ErrorKind::InvalidToken => "it is not three base64url parts separated by dots".to_owned(),
        ErrorKind::Base64(_) => "a part of it is not base64url".to_owned(),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => "its claims are not a JSON object".to_owned(),
        _ => "it cannot be verified with this server's keys".to_owned(),
    }
}

/// Why a present claim was not accepted: `exp` and `nbf` are NumericDates,
/// and the library reads any other required claim as a string.
fn unreadable(claim: &str) -> String {
    match claim {
        "exp" | "nbf" => format!(
            "the `{claim}` claim is not a NumericDate (seconds since 1970, from 0 to 2^64 - 1)"
        ),
        _ => format!("the `{claim}` claim is not of the expected type"),
    }
}

/// Whether the token's claims hold `claim` at all (read without
/// verification: called only once the signature has been verified).
fn has_claim(token: &str, claim: &str) -> bool {
    jsonwebtoken::dangerous::insecure_decode_claims::<Map<String, Value>>(token)
        .is_ok_and(|claims| claims.contains_key(claim))
}

#[cfg(test)]
mod token_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_required() {
        assert_eq!(bearer_token("Bearer abc"), Ok("abc"));
        assert_eq!(bearer_token("bearer  abc "), Ok("abc"));
        assert_eq!(bearer_token("Basic abc"), Err(AuthError::Missing));
        assert_eq!(bearer_token("Bearer "), Err(AuthError::Missing));
        assert_eq!(bearer_token("abc"), Err(AuthError::Missing));
    }
}
