use super::*;
use crate::workflow::BackendKind;

fn spec(options: &[(&str, Value)], keep_alive: Option<Value>) -> ModelSpec {
    ModelSpec {
        hosts: Vec::new(),
        backend: BackendKind::Ollama,
        name: "gemma3:latest".into(),
        host: None,
        api_key_env: None,
        keep_alive,
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

#[test]
fn the_host_defaults_to_local_ollama_and_takes_host_port_or_url() {
    let r = |host: Option<&str>, env: Option<&str>| resolve_ollama_host(host, env);
    assert_eq!(r(None, None), "http://127.0.0.1:11434");
    assert_eq!(r(Some("  "), None), "http://127.0.0.1:11434");
    assert_eq!(r(None, Some("10.0.0.5:8080")), "http://10.0.0.5:8080");
    assert_eq!(r(None, Some("gpu-box")), "http://gpu-box:11434");
    assert_eq!(r(None, Some(":9999")), "http://127.0.0.1:9999");
    assert_eq!(r(None, Some("http://gpu-box")), "http://gpu-box");
    assert_eq!(
        r(None, Some("https://ollama.example.com/")),
        "https://ollama.example.com"
    );
    assert_eq!(
        r(None, Some("HTTPS://h:8443/proxy/ollama/")),
        "https://h:8443/proxy/ollama"
    );
    assert_eq!(r(None, Some("[::1]:11435")), "http://[::1]:11435");
    assert_eq!(r(None, Some("::1")), "http://[::1]:11434");
    assert_eq!(r(None, Some("gpu-box:notaport")), "http://gpu-box:11434");
}

#[test]
fn the_models_host_wins_over_ollama_host() {
    assert_eq!(
        resolve_ollama_host(Some("http://127.0.0.1:4000"), Some("elsewhere:1")),
        "http://127.0.0.1:4000"
    );
    assert_eq!(
        resolve_ollama_host(Some(""), Some("elsewhere:1")),
        "http://elsewhere:1"
    );
}

#[test]
fn the_request_carries_options_exactly_as_declared_and_keep_alive() {
    let model = spec(
        &[
            ("num_gpu", json!(80)),
            ("num_ctx", json!(512)),
            ("temperature", json!(0.8)),
        ],
        Some(json!("5m")),
    );
    let body = request_body(&model, &[Message::new("user", "hi")]);
    assert_eq!(
        body.to_string(),
        r#"{"model":"gemma3:latest","messages":[{"role":"user","content":"hi"}],"stream":true,"options":{"num_gpu":80,"num_ctx":512,"temperature":0.8},"keep_alive":"5m"}"#
    );
}

#[test]
fn the_request_omits_empty_options_and_unset_keep_alive() {
    let body = request_body(&spec(&[], None), &[]);
    assert_eq!(
        body,
        json!({"model": "gemma3:latest", "messages": [], "stream": true})
    );
}
