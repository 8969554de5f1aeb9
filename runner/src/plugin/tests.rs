//! The plugin host's own tests.
use super::*;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefetched_plugin_is_prepared_before_any_stage_asks_for_it() {
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(ComponentCache::new(Some(cache.path().to_path_buf()))).unwrap();
    let source = Resolver::for_workflow(None)
        .resolve("report", std::path::Path::new("."))
        .unwrap();
    assert!(!host.is_prepared(&source));
    host.prefetch(&source);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !host.is_prepared(&source) {
        assert!(Instant::now() < deadline, "the prefetch never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = host.load(&source).await.unwrap();
    assert_eq!(
        first.kind,
        LoadKind::Compiled,
        "the first stage reports the compile"
    );
    let second = host.load(&source).await.unwrap();
    assert_eq!(second.kind, LoadKind::Memory);
}

#[tokio::test(flavor = "current_thread")]
async fn a_prefetch_reads_the_cache_on_its_own_thread_for_the_load_to_use() {
    let cache = tempfile::tempdir().unwrap();
    let host = || PluginHost::new(ComponentCache::new(Some(cache.path().to_path_buf()))).unwrap();
    let source = Resolver::for_workflow(None)
        .resolve("report", std::path::Path::new("."))
        .unwrap();
    assert_eq!(host().load(&source).await.unwrap().kind, LoadKind::Compiled);

    let host = host();
    host.prefetch(&source);
    let slot = host.slot(host.key_of(&source).unwrap().0);
    // This runtime has one thread and the test blocks it: no tokio task
    // runs, so only the prefetch's own thread can read the cache.
    let deadline = Instant::now() + Duration::from_secs(60);
    while slot
        .early
        .lock()
        .unwrap()
        .as_ref()
        .expect("the prefetch leaves its read in the slot")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the cache read never finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    let loaded = host.load(&source).await.unwrap();
    assert_eq!(loaded.kind, LoadKind::Cache);
    assert!(
        slot.early.lock().unwrap().is_none(),
        "the load used the prefetch's read"
    );
}
