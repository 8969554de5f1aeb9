//! Where the Ollama server is: the model's `host:`, `OLLAMA_HOST`, or the default.

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 11434;

/// The base URL of the Ollama server: `host` (the model's `host:`), else `env`
/// (`OLLAMA_HOST`), else `http://127.0.0.1:11434`.
///
/// Both take `host:port` or a URL, as Ollama's own client does: without a
/// scheme, `http` and port 11434 are assumed; a missing host is 127.0.0.1.
pub fn resolve_ollama_host(host: Option<&str>, env: Option<&str>) -> String {
    let raw = [host, env]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or("");
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, raw),
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (name, port) = split_host_port(authority);
    let name = if name.is_empty() { DEFAULT_HOST } else { &name };
    let port = port.and_then(|p| p.parse::<u16>().ok());
    let mut url = match (scheme, port) {
        (Some(scheme), Some(port)) => format!("{scheme}://{name}:{port}"),
        // An explicit scheme without a port means that scheme's default port.
        (Some(scheme), None) => format!("{scheme}://{name}"),
        (None, port) => format!("http://{name}:{}", port.unwrap_or(DEFAULT_PORT)),
    };
    let path = path.trim_end_matches('/');
    if !path.is_empty() {
        url.push('/');
        url.push_str(path);
    }
    url
}

/// `name:port`, `[v6]:port`, `[v6]`, a bare v6 address or a bare name.
fn split_host_port(authority: &str) -> (String, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        let (addr, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').filter(|p| !p.is_empty());
        return (format!("[{addr}]"), port);
    }
    match authority.matches(':').count() {
        0 => (authority.to_owned(), None),
        1 => {
            let (name, port) = authority.split_once(':').unwrap_or((authority, ""));
            (name.to_owned(), Some(port).filter(|p| !p.is_empty()))
        }
        _ => (format!("[{authority}]"), None),
    }
}
