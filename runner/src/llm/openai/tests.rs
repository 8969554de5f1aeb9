use super::base::{KeyProblem, bearer};
use super::request::{map_options, request_body};
use super::*;
use crate::workflow::BackendKind;
use indexmap::IndexMap;
use serde_json::json;
use std::ffi::OsString;

fn options(pairs: &[(&str, Value)]) -> IndexMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn spec(pairs: &[(&str, Value)]) -> ModelSpec {
    ModelSpec {
        hosts: Vec::new(),
        backend: BackendKind::Openai,
        name: "qwen2.5-7b-instruct".into(),
        host: None,
        api_key_env: None,
        keep_alive: None,
        options: options(pairs),
    }
}

#[test]
fn the_base_defaults_to_llama_cpp_servers_address() {
    assert_eq!(resolve_openai_base(None, None), "http://127.0.0.1:8080");
    assert_eq!(
        resolve_openai_base(Some(" "), Some("")),
        "http://127.0.0.1:8080"
    );
}

#[test]
fn the_base_is_the_same_with_or_without_a_trailing_v1() {
    let r = |s: &str| resolve_openai_base(Some(s), None);
    assert_eq!(r("http://127.0.0.1:8000/v1"), "http://127.0.0.1:8000");
    assert_eq!(r("http://127.0.0.1:8000/v1/"), "http://127.0.0.1:8000");
    assert_eq!(r("http://127.0.0.1:8000/"), "http://127.0.0.1:8000");
    assert_eq!(r("http://127.0.0.1:8000"), "http://127.0.0.1:8000");
    assert_eq!(r("HTTPS://gpu.example.com/V1"), "https://gpu.example.com");
    assert_eq!(
        r("https://gpu.example.com/proxy/llm/v1"),
        "https://gpu.example.com/proxy/llm"
    );
    // Only one `/v1` is the API version; a path that merely ends in `v1` stays.
    assert_eq!(r("http://h/api-v1"), "http://h/api-v1");
    assert_eq!(r("http://h/v1/v1"), "http://h/v1");
}

#[test]
fn a_base_without_a_scheme_is_http() {
    let r = |s: &str| resolve_openai_base(Some(s), None);
    assert_eq!(r("localhost:1234/v1"), "http://localhost:1234");
    assert_eq!(r("10.0.0.5:8000"), "http://10.0.0.5:8000");
}

#[test]
fn the_models_host_wins_over_openai_base_url() {
    assert_eq!(
        resolve_openai_base(Some("http://127.0.0.1:4000"), Some("http://elsewhere/v1")),
        "http://127.0.0.1:4000"
    );
    assert_eq!(
        resolve_openai_base(None, Some("http://elsewhere:1234/v1")),
        "http://elsewhere:1234"
    );
}

#[test]
fn the_api_key_becomes_a_sensitive_bearer_header() {
    let header = bearer(Some(OsString::from("sk-test-123\n"))).expect("a header");
    assert_eq!(header.to_str().expect("ascii"), "Bearer sk-test-123");
    assert!(header.is_sensitive());
    assert!(!format!("{header:?}").contains("sk-test"));
}

#[test]
fn an_unusable_api_key_is_refused_before_any_request() {
    assert_eq!(bearer(None), Err(KeyProblem::Unset));
    assert_eq!(bearer(Some(OsString::from("  "))), Err(KeyProblem::Empty));
    assert_eq!(
        bearer(Some(OsString::from("sk-1\nsk-2"))),
        Err(KeyProblem::NotAHeader)
    );
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt as _;
        assert_eq!(
            bearer(Some(OsString::from_vec(vec![0xff, 0xfe]))),
            Err(KeyProblem::NotUnicode)
        );
    }
}

#[test]
fn options_are_mapped_onto_openai_names_and_server_settings_are_dropped() {
    let declared = options(&[
        ("num_ctx", json!(8192)),
        ("temperature", json!(0.2)),
        ("num_predict", json!(256)),
        ("top_k", json!(40)),
        ("num_gpu", json!(99)),
        ("stop", json!(["</answer>", "\n\n"])),
        ("repeat_penalty", json!(1.1)),
        ("seed", json!(42)),
        ("typical_p", json!(0.9)),
    ]);
    let mapped = map_options(&declared);
    assert_eq!(
        serde_json::to_string(&mapped.sent).expect("JSON"),
        r#"{"temperature":0.2,"max_tokens":256,"top_k":40,"stop":["</answer>","\n\n"],"repeat_penalty":1.1,"seed":42}"#
    );
    let dropped: Vec<&str> = mapped.dropped.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(dropped, ["num_ctx", "num_gpu", "typical_p"]);
}

#[test]
fn every_option_a_workflow_may_declare_is_either_sent_or_dropped_on_purpose() {
    for name in crate::workflow::options::known() {
        let mapped = map_options(&options(&[(name, json!(1))]));
        let why = mapped.dropped.first().map(|(_, why)| *why);
        assert!(
            !mapped.sent.is_empty() || why != Some("not known to OpenAI-compatible servers"),
            "option `{name}` has no mapping"
        );
    }
}

#[test]
fn num_predict_without_a_limit_sends_no_max_tokens() {
    for unlimited in [json!(-1), json!(-2)] {
        let mapped = map_options(&options(&[("num_predict", unlimited)]));
        assert!(mapped.sent.is_empty());
        assert_eq!(mapped.dropped[0].0, "num_predict");
    }
    let mapped = map_options(&options(&[("stop", json!("END"))]));
    assert_eq!(mapped.sent["stop"], "END");
}

#[test]
fn the_request_streams_asks_for_usage_and_carries_the_mapped_options() {
    let model = spec(&[("num_ctx", json!(512)), ("num_predict", json!(64))]);
    let mapped = map_options(&model.options);
    let body = request_body(&model, &[Message::new("user", "hi")], &mapped.sent);
    assert_eq!(
        body.to_string(),
        r#"{"model":"qwen2.5-7b-instruct","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":64}"#
    );
}

fn ctx(model: Option<&'static str>, api_key_env: Option<&'static str>) -> Ctx<'static> {
    Ctx {
        host: "http://127.0.0.1:8080",
        model,
        api_key_env,
        method: "POST",
        endpoint: CHAT,
    }
}

#[test]
fn the_servers_error_text_is_found_in_the_shapes_servers_use() {
    let t = failure::server_error_text;
    assert_eq!(
        t(r#"{"error":{"code":400,"message":"context too long","type":"invalid_request_error"}}"#)
            .as_deref(),
        Some("context too long")
    );
    assert_eq!(
        t(r#"{"error":"Loading model"}"#).as_deref(),
        Some("Loading model")
    );
    assert_eq!(
        t(r#"{"object":"error","message":"The model `x` does not exist.","code":404}"#).as_deref(),
        Some("The model `x` does not exist.")
    );
    assert_eq!(t(r#"{"detail":"Not Found"}"#).as_deref(), Some("Not Found"));
    assert_eq!(t("<html>bad gateway</html>"), None);
}

#[test]
fn statuses_map_to_kinds_a_caller_can_react_to() {
    let kind = |code: u16, key: Option<&'static str>| {
        let status = reqwest::StatusCode::from_u16(code).expect("status");
        failure::status_failed(&ctx(Some("m"), key), status, "", None).0
    };
    assert_eq!(kind(401, None), LlmErrorKind::Unauthorized);
    assert_eq!(kind(403, Some("KEY")), LlmErrorKind::Unauthorized);
    assert_eq!(kind(404, None), LlmErrorKind::ModelNotFound);
    assert_eq!(kind(429, None), LlmErrorKind::RateLimited);
    assert_eq!(kind(400, None), LlmErrorKind::BadRequest);
    assert_eq!(kind(500, None), LlmErrorKind::ServerError);
    assert_eq!(kind(503, None), LlmErrorKind::Http(503));
    assert_eq!(kind(418, None), LlmErrorKind::Http(418));
}

#[test]
fn a_rate_limit_passes_on_the_servers_retry_after() {
    let (_, msg) = failure::status_failed(
        &ctx(Some("m"), None),
        reqwest::StatusCode::TOO_MANY_REQUESTS,
        r#"{"error":{"message":"Rate limit reached"}}"#,
        Some("20"),
    );
    assert!(msg.contains("retry after `20`"), "{msg}");
    assert!(msg.contains("`Rate limit reached`"), "{msg}");
}

#[test]
fn a_missing_key_names_the_variable_and_how_to_fix_it() {
    let (kind, msg) = failure::missing_key(
        &ctx(Some("m"), Some("LLAMA_KEY")),
        "LLAMA_KEY",
        KeyProblem::Unset,
    );
    assert_eq!(kind, LlmErrorKind::MissingApiKey);
    assert_eq!(
        msg,
        "the API key for model `m` on the server at http://127.0.0.1:8080 comes from `$LLAMA_KEY`, which is not set; set `LLAMA_KEY` to the key, or remove `api_key_env:` from the model if the server needs none"
    );
}
