//! Signing keys from a JWKS URL, cached and refreshed.
//!
//! Keys are fetched on first use and kept for `jwks_cache_ttl`. A token whose
//! `kid` is unknown triggers a refresh (key rotation is picked up without a
//! restart), but at most once per `jwks_min_refresh_interval`, so a stream of
//! forged `kid`s cannot turn the daemon against the issuer.
//!
//! Once the cache expires, a token whose `kid` is known is verified from the
//! cache at once while one background refresh runs: an issuer that hangs or
//! fails delays no login. Cached keys are served so for up to
//! `jwks_max_stale` past the TTL; beyond it they are dropped from use and a
//! login waits for a fetch (503 if it fails), as when no key was ever fetched.
//! Fetches are single-flight: one at a time, and waiters read what it brought.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::{AuthError, VerifyingKey, family_algorithms};

/// How long fetched keys are used, and how they are refreshed.
#[derive(Debug, Clone, Copy)]
pub struct JwksTiming {
    /// `jwks_cache_ttl`: age at which keys are refreshed.
    pub ttl: Duration,
    /// `jwks_min_refresh_interval`: the shortest time between two fetches.
    pub min_refresh: Duration,
    /// `jwks_max_stale`: how long past `ttl` cached keys are still served
    /// while a refresh fails or hangs.
    pub max_stale: Duration,
}

/// A JWKS endpoint and what was fetched from it.
pub struct Jwks {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    http: reqwest::Client,
    timing: JwksTiming,
    state: RwLock<State>,
    /// One fetch at a time; waiters then read what it brought.
    fetching: Arc<Mutex<()>>,
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

    /// Keys younger than the TTL.
    fn fresh(&self, timing: &JwksTiming) -> bool {
        self.fetched_at.is_some_and(|at| at.elapsed() < timing.ttl)
    }

    /// Keys that may still be served, if stale: younger than TTL + max stale.
    fn usable(&self, timing: &JwksTiming) -> bool {
        self.fetched_at
            .is_some_and(|at| at.elapsed() < timing.ttl.saturating_add(timing.max_stale))
    }

    fn may_fetch(&self, timing: &JwksTiming) -> bool {
        self.last_attempt
            .is_none_or(|at| at.elapsed() >= timing.min_refresh)
    }
}

impl Jwks {
    /// A JWKS source; nothing is fetched until the first token.
    pub fn new(url: String, timing: JwksTiming) -> Self {
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Jwks {
            shared: Arc::new(Shared {
                url,
                http,
                timing,
                state: RwLock::new(State::default()),
                fetching: Arc::new(Mutex::new(())),
            }),
        }
    }

    /// The key for a token's `kid`.
    pub async fn key(&self, kid: Option<&str>) -> Result<VerifyingKey, AuthError> {
        let shared = &self.shared;
        let timing = &shared.timing;
        {
            let state = shared.state.read().await;
            if let Some(key) = state.find(kid) {
                if state.fresh(timing) {
                    return Ok(key);
                }
                if state.usable(timing) {
                    // Served from the cache now; the refresh runs on its own.
                    if state.may_fetch(timing) {
                        self.refresh_in_background();
                    }
                    return Ok(key);
                }
            }
        }
        let _fetching = shared.fetching.lock().await;
        // Another request may have fetched while we waited.
        let (fresh, allowed_to_fetch, known) = {
            let state = shared.state.read().await;
            (
                state.fresh(timing),
                state.may_fetch(timing),
                state.find(kid).filter(|_| state.usable(timing)),
            )
        };
        if fresh && let Some(key) = known {
            return Ok(key);
        }
        if allowed_to_fetch && let Err(e) = shared.fetch().await {
            tracing::warn!(url = %shared.url, error = %e, "JWKS fetch failed");
            if !shared.state.read().await.usable(timing) {
                return Err(AuthError::KeysUnavailable(e));
            }
        }
        let state = shared.state.read().await;
        if !state.usable(timing) {
            // No key was ever fetched, or the last ones are too old: the
            // issuer is unreachable, which says nothing about the token.
            return Err(AuthError::KeysUnavailable(format!(
                "the signing keys at {} could not be fetched",
                shared.url
            )));
        }
        state
            .find(kid)
            .ok_or_else(|| AuthError::Rejected("it is signed with an unknown key".to_owned()))
    }

    /// Starts one refresh in a task of its own, unless a fetch is running.
    fn refresh_in_background(&self) {
        let Ok(fetching) = self.shared.fetching.clone().try_lock_owned() else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _fetching = fetching;
            // A request that took the lock since may have fetched already.
            if !shared.state.read().await.may_fetch(&shared.timing) {
                return;
            }
            if let Err(e) = shared.fetch().await {
                tracing::warn!(url = %shared.url, error = %e, "JWKS refresh failed; serving the cached keys");
            }
        });
    }

    /// Fetches the keys now, whatever the cache holds; the number of usable
    /// keys fetched.
    pub async fn refresh(&self) -> Result<usize, String> {
        let shared = &self.shared;
        let _fetching = shared.fetching.lock().await;
        shared.fetch().await?;
        let state = shared.state.read().await;
        Ok(state.by_kid.len() + state.anonymous.len())
    }
}

impl Shared {
    /// Fetches and replaces the keys; the caller holds `fetching`.
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
