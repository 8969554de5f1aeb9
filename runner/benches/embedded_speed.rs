//! Embedded generation speed: Chimera's llama.cpp backend on the default GGUF,
//! greedy, a fixed prompt and thread count, as tokens/s of generation
//! (`eval_count / eval_duration`). `scripts/bench-embedded` runs this next to
//! llama-cpp-python on the same file, prompt and threads.
//!
//! `cargo bench -p chimera --bench embedded_speed -- <threads> <tokens> <runs>`

use chimera::llm::{Backend, EmbeddedBackend, Message, ModelSpec};
use chimera::workflow::BackendKind;
use serde_json::json;

/// The prompt both sides use (scripts/bench-embedded passes the same text to Python).
const PROMPT: &str = "Write a detailed technical report about benchmarking small language models on CPUs: throughput, latency, memory, and how to measure them.";

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (threads, tokens, runs) = (
        args.first().copied().unwrap_or(2),
        args.get(1).copied().unwrap_or(128),
        args.get(2).copied().unwrap_or(5),
    );
    let mut options = indexmap::IndexMap::new();
    options.insert("num_thread".to_owned(), json!(threads));
    options.insert("num_predict".to_owned(), json!(tokens));
    options.insert("temperature".to_owned(), json!(0));
    options.insert("num_ctx".to_owned(), json!(2048));
    let model = ModelSpec {
        hosts: Vec::new(),
        backend: BackendKind::Embedded,
        name: "smollm2-135m".into(),
        host: None,
        api_key_env: None,
        keep_alive: None,
        options,
    };
    let messages = vec![Message::new("user", PROMPT)];
    let backend = EmbeddedBackend::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut speeds = Vec::new();
    for run in 0..=runs {
        let record = runtime
            .block_on(backend.chat(&model, &messages, &|_| {}))
            .expect("generation");
        if run == 0 {
            continue; // warm-up: the model load
        }
        let tps = record.tokens_per_second.expect("tokens/s");
        println!(
            "chimera run {run}: {} tokens, {tps:.1} tok/s, ttft {:.1} ms",
            record.eval_count.unwrap_or(0),
            record.ttft_ms.unwrap_or(0.0)
        );
        speeds.push(tps);
    }
    speeds.sort_by(f64::total_cmp);
    println!(
        "chimera median: {:.1} tok/s (threads {threads}, {tokens} tokens, {runs} runs)",
        speeds[speeds.len() / 2]
    );
}
