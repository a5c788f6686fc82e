//! Signing keys from a JWKS URL, cached and refreshed.
//!
//! Keys are fetched on first use and kept for `jwks_cache_ttl`. A token whose
//! `kid` is unknown triggers a refresh (key rotation is picked up without a
//! restart), but at most once per `jwks_min_refresh_interval`, so a stream of
//! forged `kid`s cannot turn the daemon against the issuer. When a refresh
//! fails, the keys already known stay in use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, VerifyingKey, family_algorithms};

/// A JWKS endpoint and what was fetched from it.
pub struct Jwks {
    url: String,
    http: reqwest::Client,
    ttl: Duration,
    min_refresh: Duration,
    state: RwLock<State>,
    /// One fetch at a time; waiters then read what it brought.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct State {
    by_kid: HashMap<String, VerifyingKey>,
    /// Keys published without a `kid`.
    anonymous: Vec<VerifyingKey>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

impl State {
    fn find(&self, kid: Option<&str>) -> Option<VerifyingKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            // Without a kid the choice must be unambiguous.
            None => match (self.anonymous.as_slice(), self.by_kid.len()) {
                ([only], 0) => Some(only.clone()),
                ([], 1) => self.by_kid.values().next().cloned(),
                _ => None,
            },
        }
    }
}

impl Jwks {
    /// A JWKS source; nothing is fetched until the first token.
    pub fn new(url: String, ttl: Duration, min_refresh: Duration) -> Self {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Jwks {
            url,
            http,
            ttl,
            min_refresh,
            state: RwLock::new(State::default()),
            fetching: Mutex::new(()),
        }
    }

    /// The key for a token's `kid`.
    pub async fn key(&self, kid: Option<&str>) -> Result<VerifyingKey, AuthError> {
        {
            let state = self.state.read().await;
            let fresh = state.fetched_at.is_some_and(|at| at.elapsed() < self.ttl);
            if fresh && let Some(key) = state.find(kid) {
                return Ok(key);
            }
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while we waited.
        let (fresh, allowed_to_fetch, known) = {
            let state = self.state.read().await;
            (
                state.fetched_at.is_some_and(|at| at.elapsed() < self.ttl),
                state
                    .last_attempt
                    .is_none_or(|at| at.elapsed() >= self.min_refresh),
                state.find(kid),
            )
        };
        if fresh && let Some(key) = known {
            return Ok(key);
        }
        if allowed_to_fetch {
            match self.fetch().await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed");
                    let state = self.state.read().await;
                    if state.fetched_at.is_none() {
                        return Err(AuthError::KeysUnavailable(e));
                    }
                }
            }
        }
        let state = self.state.read().await;
        if state.fetched_at.is_none() {
            // No key was ever fetched: the issuer is unreachable, which says
            // nothing about the token.
            return Err(AuthError::KeysUnavailable(format!(
                "the signing keys at {} have not been fetched yet",
                self.url
            )));
        }
        state
            .find(kid)
            .ok_or_else(|| AuthError::Rejected("it is signed with an unknown key".to_owned()))
    }

    /// Fetches the keys now, whatever the cache holds; the number of usable
    /// keys fetched.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _fetching = self.fetching.lock().await;
        self.fetch().await?;
        let state = self.state.read().await;
        Ok(state.by_kid.len() + state.anonymous.len())
    }

    async fn fetch(&self) -> Result<(), String> {
        self.state.write().await.last_attempt = Some(Instant::now());
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{} answered {}", self.url, response.status()));
        }
        let set: JwkSet = response.json().await.map_err(|e| e.to_string())?;
        let mut by_kid = HashMap::new();
        let mut anonymous = Vec::new();
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping a JWKS key that cannot verify");
                continue;
            };
            let mut algorithms = family_algorithms(key.family());
            // A key that names its algorithm verifies only that one.
            if let Some(named) = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::try_from(a).ok())
            {
                algorithms.retain(|a| *a == named);
            }
            let verifying = VerifyingKey { key, algorithms };
            match &jwk.common.key_id {
                Some(kid) => {
                    by_kid.insert(kid.clone(), verifying);
                }
                None => anonymous.push(verifying),
            }
        }
        tracing::info!(url = %self.url, keys = by_kid.len() + anonymous.len(), "JWKS fetched");
        let mut state = self.state.write().await;
        state.by_kid = by_kid;
        state.anonymous = anonymous;
        state.fetched_at = Some(Instant::now());
        Ok(())
    }
}
