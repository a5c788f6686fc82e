//! Who is calling. Identity comes from verified request context only, never
//! from the request body or the model.
//!
//! `mode = "none"` is the development mode: every request acts as one
//! configured user, and the daemon warns about it at start.

use axum::http::HeaderMap;

use super::error::ApiError;
use crate::chatkit::RequestContext;
use crate::config::{AuthConfig, AuthMode};

/// Turns request headers into a [`RequestContext`], or refuses them.
#[derive(Debug, Clone)]
pub struct Authenticator {
    mode: AuthMode,
    dev_user: String,
}

impl Authenticator {
    /// An authenticator for the configured mode.
    pub fn new(config: &AuthConfig) -> Self {
        Authenticator {
            mode: config.mode,
            dev_user: config.dev_user.clone(),
        }
    }

    /// The caller's identity.
    pub fn authenticate(&self, _headers: &HeaderMap) -> Result<RequestContext, ApiError> {
        match self.mode {
            AuthMode::None => {
                if self.dev_user.is_empty() {
                    return Err(ApiError::unauthorized("no user is configured"));
                }
                Ok(RequestContext {
                    user_id: self.dev_user.clone(),
                })
            }
        }
    }
}
