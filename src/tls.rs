//! The process's TLS set-up: rustls with ring as its crypto provider.
//!
//! Every HTTP client in the daemon (the model's, the JWKS fetcher's, the
//! operator's checks) goes through reqwest on rustls without a built-in
//! provider, so one must be installed before the first client is built. This
//! module knows nothing of those clients; they call it.

/// Installs ring as rustls' crypto provider (once per process); reqwest
/// panics when building a client without one. Calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
