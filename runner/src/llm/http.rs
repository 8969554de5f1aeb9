//! What the HTTP backends share: clients that keep loopback traffic off
//! proxies, telling a refused connection from other failures, and the small
//! text helpers their messages use.

use std::error::Error as _;
use std::sync::OnceLock;
use std::time::Duration;

/// How much of a server's text a message quotes.
pub(super) const MAX_QUOTE: usize = 400;

/// The HTTP clients of one backend: a local server must not be reached through
/// a proxy from the environment, a remote one may need it. Each is built on
/// first use (building a TLS client costs milliseconds; most runs use one
/// backend, or none).
pub(super) struct Clients {
    connect: Duration,
    /// For loopback hosts: ignores `HTTP_PROXY` and friends.
    direct: OnceLock<Result<reqwest::Client, String>>,
    /// For other hosts: honours `HTTP_PROXY` and friends.
    proxied: OnceLock<Result<reqwest::Client, String>>,
}

impl Clients {
    /// Clients that give up connecting after `connect`.
    pub(super) fn new(connect: Duration) -> Self {
        Self {
            connect,
            direct: OnceLock::new(),
            proxied: OnceLock::new(),
        }
    }

    /// The client for the server at `base`, or why it could not be built.
    pub(super) fn pick(&self, base: &str) -> Result<&reqwest::Client, &str> {
        let direct = is_loopback(base);
        let slot = if direct { &self.direct } else { &self.proxied };
        slot.get_or_init(|| {
            let mut builder = reqwest::Client::builder()
                .connect_timeout(self.connect)
                .tcp_nodelay(true);
            if direct {
                builder = builder.no_proxy();
            }
            builder.build().map_err(|e| source_text(&e))
        })
        .as_ref()
        .map_err(String::as_str)
    }
}

/// Whether the URL `base` names this machine.
pub(super) fn is_loopback(base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base) else {
        return false;
    };
    match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Whether a request failed because nothing listens at the address.
pub(super) fn connection_refused(e: &reqwest::Error) -> bool {
    std::iter::successors(e.source(), |&s| s.source()).any(|s| {
        s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

/// The innermost cause of an error: reqwest's outer layers only say "error
/// sending request".
pub(super) fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |&e| e.source())
        .last()
        .map_or_else(String::new, ToString::to_string)
}

/// A server's text in backticks, cut to a readable length.
pub(super) fn quote(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTE) {
        Some((cut, _)) => format!("`{}…`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `120s`, `1.5s`, `200ms`.
pub(super) fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("http://127.0.0.1:11434"));
        assert!(is_loopback("http://localhost:11434"));
        assert!(is_loopback("http://[::1]:11434"));
        assert!(!is_loopback("http://10.1.2.3:11434"));
        assert!(!is_loopback("https://ollama.example.com"));
        assert!(!is_loopback("not a url"));
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::from_secs(120)), "120s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
        assert_eq!(human(Duration::from_millis(200)), "200ms");
    }

    #[test]
    fn quotes_are_cut_on_a_character_boundary() {
        assert_eq!(quote(" out of memory \n"), "`out of memory`");
        let long = "é".repeat(MAX_QUOTE + 10);
        let q = quote(&long);
        assert!(q.ends_with("…`"));
        assert_eq!(q.chars().count(), MAX_QUOTE + 3);
    }
}
