//! Where the server is, and the API key to show it.

use reqwest::header::HeaderValue;
use std::ffi::OsString;

/// llama.cpp server's default address.
const DEFAULT_BASE: &str = "http://127.0.0.1:8080";

/// The server's base URL, without the API version: `host` (the model's
/// `host:`), else `env` (`OPENAI_BASE_URL`), else llama.cpp server's default,
/// `http://127.0.0.1:8080`.
///
/// Requests go to `<base>/v1/…`, so one trailing `/v1` is taken off
/// (`OPENAI_BASE_URL` usually ends with it): written with or without it, the
/// request path holds `/v1` exactly once. Without a scheme, `http://` is
/// assumed.
pub fn resolve_openai_base(host: Option<&str>, env: Option<&str>) -> String {
    let raw = [host, env]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_BASE);
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), raw),
    };
    let mut rest = rest.trim_end_matches('/');
    let cut = rest.len().saturating_sub(3);
    if rest.is_char_boundary(cut) && rest[cut..].eq_ignore_ascii_case("/v1") {
        rest = rest[..cut].trim_end_matches('/');
    }
    format!("{scheme}://{rest}")
}

/// Why the API key could not be had; the message completes "`$VAR` …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeyProblem {
    Unset,
    Empty,
    NotUnicode,
    NotAHeader,
}

impl KeyProblem {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Self::Unset => "is not set",
            Self::Empty => "is empty",
            Self::NotUnicode => "is not valid UTF-8",
            Self::NotAHeader => {
                "holds characters an HTTP header cannot carry (a line break or a control character?)"
            }
        }
    }
}

/// The `Authorization` header for the key `value` of the environment
/// variable (surrounding whitespace, such as a newline from a file, is
/// dropped); marked sensitive, so it is never printed.
pub(super) fn bearer(value: Option<OsString>) -> Result<HeaderValue, KeyProblem> {
    let value = value.ok_or(KeyProblem::Unset)?;
    let key = value.to_str().ok_or(KeyProblem::NotUnicode)?.trim();
    if key.is_empty() {
        return Err(KeyProblem::Empty);
    }
    let mut header =
        HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| KeyProblem::NotAHeader)?;
    header.set_sensitive(true);
    Ok(header)
}
