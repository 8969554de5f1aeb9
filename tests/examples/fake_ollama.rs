//! A zero-latency fake Ollama on 127.0.0.1 for trying or profiling `chimera`
//! without a model server: `cargo run -p chimera-tests --example fake_ollama
//! [TOKENS]` prints its URL, then serves until killed. Point a run at it with
//! `--set model.host=<url>`.

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};

fn main() {
    let tokens = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("TOKENS must be a number"))
        .unwrap_or(64);
    let server = FakeOllama::start(FakeConfig::token_count(tokens));
    println!("{}", server.url());
    loop {
        std::thread::park();
    }
}
