//! Where the tasks live: the database URL, resolved from the environment.
//!
//! `TASKS_DATABASE_URL` (a `postgres://…` or `sqlite://…` URL) wins; else `TASKS_DB` names a
//! SQLite file; else `tasks.db` in the current directory. A SQLite file is created if missing.

use std::path::Path;

/// The environment variable holding a full database URL.
pub const DATABASE_URL_ENV: &str = "TASKS_DATABASE_URL";
/// The environment variable holding a SQLite file path.
pub const DB_PATH_ENV: &str = "TASKS_DB";
/// The SQLite file used when neither variable is set.
pub const DEFAULT_DB_PATH: &str = "tasks.db";

/// The database backend, known from the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL (`postgres://` or `postgresql://`).
    Postgres,
    /// SQLite (`sqlite:`).
    Sqlite,
}

/// A resolved database location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    /// The URL handed to sqlx.
    pub url: String,
    /// Which backend the URL names.
    pub backend: Backend,
}

/// Errors in the database configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL's scheme is neither Postgres nor SQLite.
    #[error("{DATABASE_URL_ENV} must start with postgres://, postgresql:// or sqlite: (got {0:?})")]
    UnsupportedScheme(String),
}

impl DbConfig {
    /// Resolves the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let url = std::env::var(DATABASE_URL_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        let path = std::env::var(DB_PATH_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty());
        Self::resolve(url.as_deref(), path.as_deref())
    }

    /// Resolves the configuration from an optional URL and an optional SQLite path.
    pub fn resolve(url: Option<&str>, path: Option<&str>) -> Result<Self, ConfigError> {
        if let Some(url) = url {
            let url = url.trim();
            let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                Backend::Postgres
            } else if url.starts_with("sqlite:") {
                Backend::Sqlite
            } else {
                return Err(ConfigError::UnsupportedScheme(url.to_owned()));
            };
            let url = if backend == Backend::Sqlite && !url.contains('?') {
                format!("{url}?mode=rwc")
            } else {
                url.to_owned()
            };
            return Ok(Self { url, backend });
        }
        let path = path.unwrap_or(DEFAULT_DB_PATH);
        Ok(Self {
            url: sqlite_url(Path::new(path)),
            backend: Backend::Sqlite,
        })
    }
}

/// Builds a `sqlite://` URL for a file path, created if missing.
fn sqlite_url(path: &Path) -> String {
    let mut encoded = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => encoded.push_str("%25"),
            '?' => encoded.push_str("%3F"),
            '#' => encoded.push_str("%23"),
            c => encoded.push(c),
        }
    }
    format!("sqlite://{encoded}?mode=rwc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_wins_over_path() {
        let cfg = DbConfig::resolve(Some("postgres://u@h/db"), Some("x.db")).unwrap();
        assert_eq!(cfg.backend, Backend::Postgres);
        assert_eq!(cfg.url, "postgres://u@h/db");
    }

    #[test]
    fn path_becomes_a_creating_sqlite_url() {
        let cfg = DbConfig::resolve(None, Some("/tmp/a b?.db")).unwrap();
        assert_eq!(cfg.backend, Backend::Sqlite);
        assert_eq!(cfg.url, "sqlite:///tmp/a b%3F.db?mode=rwc");
        let cfg = DbConfig::resolve(None, None).unwrap();
        assert_eq!(cfg.url, "sqlite://tasks.db?mode=rwc");
    }

    #[test]
    fn sqlite_url_gets_create_mode_and_bad_schemes_fail() {
        let cfg = DbConfig::resolve(Some("sqlite://x.db"), None).unwrap();
        assert_eq!(cfg.url, "sqlite://x.db?mode=rwc");
        assert!(DbConfig::resolve(Some("mysql://x"), None).is_err());
    }
}
