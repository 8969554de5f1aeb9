//! Agent A against a real OpenAI-compatible server: llama-cpp-python's
//! (`python -m llama_cpp.server`) serving the default model. It streams no
//! usage, so the record must not invent counts: tokens are estimated from the
//! streamed chunks and labelled so, the prompt's count is `n/a`, and no
//! truncation is claimed without the server's evidence.
//!
//! `scripts/test` installs the server (`pip install 'llama-cpp-python[server]'`)
//! and sets `CHIMERA_REQUIRE_REAL_SERVERS=1`, so there a missing server fails
//! the test; elsewhere the test says it skipped and passes.

mod common;

use common::{chimera, json, root, run};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts llama-cpp-python's server on a free port and waits until it
    /// answers `GET /v1/models`; `None` when it is not installed.
    fn start(model: &Path, dir: &Path) -> Option<Self> {
        let installed = Command::new("python3")
            .args(["-c", "import llama_cpp.server"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).expect("server log");
        let child = Command::new("python3")
            .args([
                "-m",
                "llama_cpp.server",
                "--host",
                "127.0.0.1",
                "--n_ctx",
                "2048",
            ])
            .arg("--port")
            .arg(port.to_string())
            .arg("--model")
            .arg(model)
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("start llama_cpp.server");
        let server = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if server
                .get("/v1/models")
                .is_some_and(|body| body.contains("\"data\""))
            {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "llama_cpp.server did not answer within 120 s; its log:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP/1.0 GET on loopback; the body when the server answered.
    fn get(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    }
}

#[test]
fn figures_the_server_does_not_give_are_never_printed_as_measured() {
    let model = match chimera::llm::models::resolve("smollm2-135m") {
        Ok(m) if m.path.is_file() => m.path,
        _ => {
            assert!(
                std::env::var_os("CHIMERA_REQUIRE_REAL_SERVERS").is_none(),
                "the default model is missing; run `scripts/fetch-model`"
            );
            eprintln!("skipped: the default model is not downloaded (scripts/fetch-model)");
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let Some(server) = Server::start(&model, tmp.path()) else {
        assert!(
            std::env::var_os("CHIMERA_REQUIRE_REAL_SERVERS").is_none(),
            "llama-cpp-python's server is not installed; `scripts/test` installs it"
        );
        eprintln!(
            "skipped: llama-cpp-python's server is not installed (pip install 'llama-cpp-python[server]')"
        );
        return;
    };
    let out = tmp.path().join("run");
    let (code, _, stderr) = run(chimera(&tmp.path().join("cache"))
        .arg("run")
        .arg(root().join("workflows/chimera-agent-a.yaml"))
        .arg("--input")
        .arg(root().join("sample-data"))
        .arg("--out")
        .arg(&out)
        .args(["--backend", "openai", "--model", "smollm2-135m"])
        .arg("--set")
        .arg(format!("model.host={}", server.url()))
        .args(["--set", "model.options.num_predict=48"])
        .args(["--set", "model.options.temperature=0"]));
    assert_eq!(
        code,
        0,
        "{stderr}\nserver log:\n{}",
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );

    let metrics = json(&out.join("metrics.json"));
    let calls = metrics["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    let mut generated = 0;
    for call in calls {
        let n = call["eval_count"].as_u64().expect("an estimated count");
        assert!(n > 0 && n <= 48, "{call}");
        generated += n;
        assert_eq!(
            call["estimated"],
            serde_json::json!(["eval_count", "tokens_per_second"]),
            "{call}"
        );
        assert!(
            call["prompt_eval_count"].is_null(),
            "the server gave no prompt count: {call}"
        );
        assert_eq!(call["prompt_truncated"], false, "{call}");
    }
    // The plugins are told the backend gave no count, not a made-up one.
    let analyze = json(&out.join("outputs/chimera-agent-a/analyze.json"));
    assert!(analyze["eval_count"].is_null(), "{analyze}");
    assert!(analyze["prompt_eval_count"].is_null(), "{analyze}");

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("- Tokens Generated: {generated} (estimated)\n")),
        "{report}"
    );
    assert!(report.contains(" (estimated) tok/s"), "{report}");
    assert!(!report.contains("0.00 tok/s"), "{report}");
    assert!(
        !report.contains("Warning:"),
        "no truncation without evidence: {report}"
    );
    assert!(
        report.contains("Chimera counted the streamed chunks as tokens"),
        "{report}"
    );

    let identity = metrics["provenance"]["models"][0]["identity"]
        .as_str()
        .unwrap_or_default();
    assert!(
        identity.starts_with("id:") && identity.ends_with(".gguf"),
        "{identity}"
    );
}
