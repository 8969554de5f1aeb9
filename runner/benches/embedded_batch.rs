//! Concurrent calls to the embedded model: aggregate tokens/s at 1, 2, 4 and
//! 8 calls at once, decoded together (`CHIMERA_EMBEDDED_PARALLEL=8`) and
//! one after another (`CHIMERA_EMBEDDED_PARALLEL=1`, what the backend did
//! before it batched), side by side in one run.
//!
//! Each measurement is a child process (the variable is read from its
//! environment): one warm-up call loads the model, then `runs` rounds of N
//! calls started together, each with its own prompt, `num_predict` tokens at
//! temperature 0.8 with a fixed seed. Aggregate tok/s = the round's
//! generated tokens / the round's wall time.
//!
//! `cargo bench -p chimera --bench embedded_batch -- [tokens] [runs]`; set
//! `CHIMERA_BENCH_MODEL` to measure another GGUF (a path or catalogue name).

use chimera::llm::{Backend, EmbeddedBackend, Message, ModelSpec};
use chimera::workflow::BackendKind;
use serde_json::json;
use std::process::Command;
use std::time::Instant;

const TOPICS: [&str; 8] = [
    "CPU caches",
    "memory bandwidth",
    "thread pools",
    "batch sizes",
    "KV caches",
    "quantization",
    "tokenizers",
    "sampling",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--raw") {
        raw();
        return;
    }
    if args.first().map(String::as_str) == Some("--child") {
        let n = args[1].parse().expect("calls");
        let tokens = args[2].parse().expect("tokens");
        let runs = args[3].parse().expect("runs");
        child(n, tokens, runs);
        return;
    }
    // The ceiling first: llama.cpp's own decode of k tokens a step.
    let exe = std::env::current_exe().expect("the bench's own path");
    let out = Command::new(&exe)
        .arg("--raw")
        .output()
        .expect("run the raw child");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let tokens = numbers.first().copied().unwrap_or(128);
    let runs = numbers.get(1).copied().unwrap_or(5);
    println!("calls  mode        aggregate tok/s (median)  per-call tok/s  ttft p50 ms  rounds");
    let mut table = Vec::new();
    for n in [1, 2, 4, 8] {
        for (mode, slots) in [("one by one", 1), ("batched", 8)] {
            let out = Command::new(&exe)
                .args([
                    "--child",
                    &n.to_string(),
                    &tokens.to_string(),
                    &runs.to_string(),
                ])
                .env("CHIMERA_EMBEDDED_PARALLEL", slots.to_string())
                .output()
                .expect("run the child");
            assert!(
                out.status.success(),
                "child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = String::from_utf8_lossy(&out.stdout);
            let v: serde_json::Value = serde_json::from_str(line.trim()).expect("child output");
            let agg = v["aggregate"].as_f64().unwrap();
            println!(
                "{n:>5}  {mode:<10}  {agg:>24.1}  {:>14.1}  {:>11.1}  {}",
                v["per_call"].as_f64().unwrap(),
                v["ttft"].as_f64().unwrap(),
                v["rounds"]
            );
            table.push((n, slots, agg));
        }
    }
    let single = table
        .iter()
        .find(|(n, s, _)| *n == 1 && *s == 8)
        .map(|t| t.2)
        .unwrap();
    for (n, slots, agg) in &table {
        if *slots == 8 {
            println!(
                "batched, {n} calls: {:.2}× the single-call aggregate",
                agg / single
            );
        }
    }
}

/// One configuration: prints `{aggregate, per_call, ttft, rounds}` as JSON.
fn child(n: usize, tokens: usize, runs: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let backend = EmbeddedBackend::new();
    let mut options = indexmap::IndexMap::new();
    options.insert("num_predict".to_owned(), json!(tokens));
    options.insert("temperature".to_owned(), json!(0.8));
    options.insert("seed".to_owned(), json!(7));
    options.insert("num_ctx".to_owned(), json!(1024));
    let model = ModelSpec {
        hosts: Vec::new(),
        backend: BackendKind::Embedded,
        name: model_name(),
        host: None,
        api_key_env: None,
        keep_alive: None,
        options,
    };
    let prompts: Vec<Vec<Message>> = TOPICS
        .iter()
        .map(|t| {
            vec![Message::new(
                "user",
                format!("Write a long technical explanation of {t} for performance engineers."),
            )]
        })
        .collect();
    runtime
        .block_on(backend.chat(&model, &prompts[0], &|_| {}))
        .expect("warm-up");
    let (mut aggregate, mut per_call, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let started = Instant::now();
        let records = runtime.block_on(futures_util::future::join_all(
            prompts[..n]
                .iter()
                .map(|p| backend.chat(&model, p, &|_| {})),
        ));
        let wall = started.elapsed().as_secs_f64();
        let mut generated = 0;
        for r in records {
            let r = r.expect("generation");
            generated += r.eval_count.unwrap_or(0);
            per_call.push(r.tokens_per_second.unwrap_or(f64::NAN));
            ttft.push(r.ttft_ms.unwrap_or(f64::NAN));
        }
        #[allow(clippy::cast_precision_loss)]
        aggregate.push(generated as f64 / wall);
    }
    println!(
        "{}",
        json!({
            "aggregate": median(aggregate),
            "per_call": median(per_call),
            "ttft": median(ttft),
            "rounds": runs,
        })
    );
}

/// llama.cpp alone, no sampling: after a 32-token prompt in each of k
/// sequences, 96 steps each decoding one token of every sequence (logits
/// for all). The step's median time gives the most tokens/s batching can
/// reach on this machine, whatever drives it.
fn raw() {
    use llama_cpp_2::context::params::LlamaContextParams;
    use llama_cpp_2::llama_backend::LlamaBackend;
    use llama_cpp_2::llama_batch::LlamaBatch;
    use llama_cpp_2::model::LlamaModel;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::token::LlamaToken;

    let path = chimera::llm::models::resolve(&model_name())
        .expect("the model")
        .path;
    let backend = LlamaBackend::init().expect("llama.cpp");
    let model =
        LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default()).expect("load");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as i32);
    let params = LlamaContextParams::default()
        .with_n_ctx(std::num::NonZeroU32::new(8 * 1024))
        .with_n_seq_max(8)
        .with_kv_unified(false)
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(&backend, params).expect("context");
    let mut batch = LlamaBatch::new(512, 1);
    let mut single = 0.0;
    for k in [1i32, 2, 4, 8] {
        let mut steps = Vec::new();
        for _ in 0..3 {
            ctx.clear_kv_cache();
            batch.clear();
            for s in 0..k {
                for p in 0..32 {
                    batch
                        .add(LlamaToken(100 + p), p, &[s], p == 31)
                        .expect("add");
                }
            }
            ctx.decode(&mut batch).expect("prompt");
            for step in 0..96 {
                batch.clear();
                for s in 0..k {
                    batch
                        .add(LlamaToken(200 + step), 32 + step, &[s], true)
                        .expect("add");
                }
                let t = Instant::now();
                ctx.decode(&mut batch).expect("decode");
                steps.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        let step = median(steps);
        let aggregate = f64::from(k) / step * 1000.0;
        if k == 1 {
            single = aggregate;
        }
        println!(
            "llama.cpp alone, {k} sequences: {step:.2} ms a step, {aggregate:.1} tok/s ({:.2}× one sequence)",
            aggregate / single
        );
    }
}

/// The model measured: `CHIMERA_BENCH_MODEL` (a catalogue name or a `.gguf`
/// path), by default the catalogue's `smollm2-135m`.
fn model_name() -> String {
    std::env::var("CHIMERA_BENCH_MODEL").unwrap_or_else(|_| "smollm2-135m".to_owned())
}
