//! URLs in the configuration: [`StoreUrl`], the one place that tells a
//! SQLite URL from a PostgreSQL one and resolves a relative SQLite path, and
//! [`redact_url`], which hides passwords from anything printed.
//!
//! Connecting is not here: the store opens what a [`StoreUrl`] names.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// `[store] url`: the database the threads live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH` or `sqlite:PATH`. `path` is `:memory:` for an
    /// in-memory database; a relative path is resolved against the config
    /// file's directory at load.
    Sqlite {
        path: PathBuf,
        /// Connection options after `?`, passed on as written.
        query: Option<String>,
    },
    /// `postgres://…` or `postgresql://…`, passed to the driver as written.
    Postgres(String),
}

/// A store URL of a database chatkitd does not speak.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("must start with sqlite:, postgres:// or postgresql://")]
pub struct StoreUrlError;

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(url: &str) -> Result<StoreUrl, StoreUrlError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or(StoreUrlError)?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query.to_owned())),
            None => (rest, None),
        };
        Ok(StoreUrl::Sqlite {
            path: PathBuf::from(path),
            query,
        })
    }
}

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let url = String::deserialize(deserializer)?;
        url.parse().map_err(serde::de::Error::custom)
    }
}

impl StoreUrl {
    /// The URL with a relative SQLite path taken as relative to `dir`.
    pub fn resolved_against(self, dir: &Path) -> StoreUrl {
        match self {
            StoreUrl::Sqlite { path, query } if !path.is_absolute() && !is_memory(&path) => {
                StoreUrl::Sqlite {
                    path: dir.join(path),
                    query,
                }
            }
            url => url,
        }
    }

    /// The URL to hand to the database driver (it holds the password).
    pub fn connect_url(&self) -> String {
        match self {
            StoreUrl::Sqlite { path, query } => match query {
                Some(query) => format!("sqlite://{}?{query}", path.display()),
                None => format!("sqlite://{}", path.display()),
            },
            StoreUrl::Postgres(url) => url.clone(),
        }
    }

    /// Whether this is a SQLite database (a file or in memory).
    pub fn is_sqlite(&self) -> bool {
        matches!(self, StoreUrl::Sqlite { .. })
    }

    /// The SQLite database file; `None` for PostgreSQL and `:memory:`.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match self {
            StoreUrl::Sqlite { path, .. } if !path.as_os_str().is_empty() && !is_memory(path) => {
                Some(path)
            }
            _ => None,
        }
    }
}

fn is_memory(path: &Path) -> bool {
    path.to_str().is_some_and(|p| p.starts_with(":memory:"))
}

/// Shows the URL with its password hidden, fit for logs and reports.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.connect_url()))
    }
}

/// A URL without its password (in the user-info part or a `password=`
/// query parameter), for messages.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme) = out.find("://") {
        let authority_end = out[scheme + 3..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| scheme + 3 + i);
        if let Some(at) = out[scheme + 3..authority_end].rfind('@') {
            let at = scheme + 3 + at;
            if let Some(colon) = out[scheme + 3..at].find(':') {
                out.replace_range(scheme + 3 + colon + 1..at, "***");
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, params) = out.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> StoreUrl {
        url.parse().expect("a store URL")
    }

    #[test]
    fn urls_are_told_apart_by_scheme() {
        assert_eq!(
            parse("sqlite://data/c.db?mode=ro"),
            StoreUrl::Sqlite {
                path: PathBuf::from("data/c.db"),
                query: Some("mode=ro".to_owned())
            }
        );
        assert_eq!(
            parse("sqlite:c.db"),
            StoreUrl::Sqlite {
                path: PathBuf::from("c.db"),
                query: None
            }
        );
        assert_eq!(
            parse("postgresql://u@db/x"),
            StoreUrl::Postgres("postgresql://u@db/x".to_owned())
        );
        assert!(parse("postgres://db/x").sqlite_file().is_none());
        assert!(!parse("postgres://db/x").is_sqlite());
        assert_eq!("mysql://db/x".parse::<StoreUrl>(), Err(StoreUrlError));
        assert_eq!("chatkitd.db".parse::<StoreUrl>(), Err(StoreUrlError));
    }

    #[test]
    fn relative_sqlite_paths_resolve_against_a_directory() {
        let dir = Path::new("/etc/chatkitd");
        let url = parse("sqlite://chatkitd.db").resolved_against(dir);
        assert_eq!(url.connect_url(), "sqlite:///etc/chatkitd/chatkitd.db");
        assert_eq!(
            url.sqlite_file(),
            Some(Path::new("/etc/chatkitd/chatkitd.db"))
        );
        let url = parse("sqlite:data/c.db?mode=rwc").resolved_against(dir);
        assert_eq!(
            url.connect_url(),
            "sqlite:///etc/chatkitd/data/c.db?mode=rwc"
        );
        for kept in [
            "sqlite:///var/lib/c.db",
            "sqlite::memory:",
            "postgres://u:p@db/x",
        ] {
            assert_eq!(parse(kept).resolved_against(dir), parse(kept), "{kept}");
        }
        assert_eq!(parse("sqlite::memory:").sqlite_file(), None);
        assert!(parse("sqlite::memory:").is_sqlite());
    }

    #[test]
    fn display_hides_the_password() {
        assert_eq!(
            parse("postgres://app:s3cret@db:5432/chat").to_string(),
            "postgres://app:***@db:5432/chat"
        );
        assert_eq!(
            parse("sqlite:///srv/chatkitd.db").to_string(),
            "sqlite:///srv/chatkitd.db"
        );
        assert_eq!(
            parse("postgres://app:s3cret@db:5432/chat").connect_url(),
            "postgres://app:s3cret@db:5432/chat"
        );
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/chat"),
            "postgres://app:***@db:5432/chat"
        );
        assert_eq!(
            redact_url("postgres://app@db/chat?sslmode=require&password=x"),
            "postgres://app@db/chat?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("sqlite:///srv/chatkitd.db"),
            "sqlite:///srv/chatkitd.db"
        );
        assert_eq!(
            redact_url("https://api.example.com/v1"),
            "https://api.example.com/v1"
        );
        // An `@` after the authority is not a password separator.
        assert_eq!(redact_url("http://host/v1/a:b@c"), "http://host/v1/a:b@c");
    }
}
