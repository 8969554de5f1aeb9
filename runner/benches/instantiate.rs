//! Warm instantiation of a built-in stage: a fresh `Store` plus
//! `InstancePre::instantiate` per stage, as every stage run pays it.
//!
//! `cargo bench -p chimera --bench instantiate` prints the median, p10 and p90
//! of 2000 instantiations of the `ingest` component after one warm-up load.

use chimera::plugin::{ComponentCache, PluginHost, Resolver};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let cache = tempfile::tempdir().expect("temp dir");
        let host = PluginHost::new(ComponentCache::new(Some(cache.path().to_path_buf()))).expect("host");
        let source = Resolver::default().resolve("ingest", std::path::Path::new(".")).expect("built-in ingest");
        let cold = Instant::now();
        let loaded = host.load(&source).await.expect("load");
        println!("compile (cold cache): {:.2} ms", cold.elapsed().as_secs_f64() * 1e3);
        drop(host);

        let start = Instant::now();
        let host = PluginHost::new(ComponentCache::new(Some(cache.path().to_path_buf()))).expect("host");
        println!("PluginHost::new (engine, linker, epoch ticker): {:.2} ms", start.elapsed().as_secs_f64() * 1e3);
        let warm = Instant::now();
        let loaded2 = host.load(&source).await.expect("load");
        println!("load from disk cache: {:.2} ms ({:?})", warm.elapsed().as_secs_f64() * 1e3, loaded2.kind);
        drop(loaded);

        let mut samples = Vec::with_capacity(2000);
        for _ in 0..2000 {
            let t = Instant::now();
            host.instantiate_only(&loaded2.prepared).await.expect("instantiate");
            samples.push(t.elapsed());
        }
        samples.sort();
        println!(
            "warm instantiate (Store::new + instantiate_pre), n=2000: median {:.1} µs, p10 {:.1} µs, p90 {:.1} µs",
            percentile(&samples, 0.5).as_secs_f64() * 1e6,
            percentile(&samples, 0.1).as_secs_f64() * 1e6,
            percentile(&samples, 0.9).as_secs_f64() * 1e6
        );
    });
}
