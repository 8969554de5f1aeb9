//! Endpoint pools: a model with `hosts:` spreads its calls over them. A
//! call goes to the host with the fewest calls in flight (below its
//! `max_concurrency`), waiting when every host is full (the wait is the
//! call's `queue_ms`); a host that fails to connect or answers 5xx before
//! any token is benched for [`COOL_DOWN`] and the call moves on to another
//! host. A call that streamed tokens is never moved: its answer is partly
//! given. One pool state per process, shared by every run and stage.

use crate::workflow::PoolHost;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failing host gets no calls.
pub const COOL_DOWN: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct HostState {
    in_flight: u32,
    benched_until: Option<Instant>,
    usage: HostUsage,
}

/// One host's share of a run, as the record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostUsage {
    pub host: String,
    /// Calls sent to it (moved-on calls count on each host they tried).
    pub calls: u64,
    /// Calls that failed there before any token (and benched it).
    pub failures: u64,
    /// Time with at least one call in flight, ms.
    pub busy_ms: f64,
    /// Time calls waited for a free slot on any host of the pool, ms.
    pub queue_ms: f64,
    /// `busy_ms` over the run's wall time (filled in by the record).
    pub utilisation: Option<f64>,
}

/// Every pooled host's state.
#[derive(Debug, Default)]
pub struct HostPools {
    hosts: Mutex<HashMap<String, HostState>>,
    freed: tokio::sync::Notify,
    /// When each host last went from idle to busy.
    busy_since: Mutex<HashMap<String, Instant>>,
}

/// A slot on a host. It goes back to the pool when dropped (a call
/// cancelled by its stage's timeout frees its slot too); [`Lease::release`]
/// says whether the host is to be benched.
#[derive(Debug)]
pub struct Lease {
    pub host: String,
    /// How long the call waited for it.
    pub queued: Duration,
    pools: std::sync::Arc<HostPools>,
    bench: bool,
}

impl Lease {
    /// Gives the slot back; `bench` when the call failed before any token
    /// in a way that says the host is down.
    pub fn release(mut self, bench: bool) {
        self.bench = bench;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pools.give_back(&self.host, self.bench);
    }
}

impl HostPools {
    /// A slot on the least busy host of `pool` not in `tried` and not
    /// benched; waits while every such host is full, or benched (until its
    /// cool-down ends). `None` when every host has been tried.
    pub async fn acquire(
        self: &std::sync::Arc<Self>,
        pool: &[PoolHost],
        tried: &[String],
    ) -> Option<Lease> {
        let start = Instant::now();
        loop {
            let notified = self.freed.notified();
            let mut wake_at = None;
            {
                let mut hosts = self.hosts.lock().expect("pool lock");
                let now = Instant::now();
                let untried: Vec<&PoolHost> =
                    pool.iter().filter(|h| !tried.contains(&h.url)).collect();
                if untried.is_empty() {
                    return None;
                }
                let benched = |h: &PoolHost| {
                    hosts
                        .get(&h.url)
                        .and_then(|s| s.benched_until)
                        .filter(|until| *until > now)
                };
                let open: Vec<&PoolHost> = untried
                    .iter()
                    .copied()
                    .filter(|h| benched(h).is_none())
                    .collect();
                if open.is_empty() {
                    wake_at = untried.iter().filter_map(|h| benched(h)).min();
                }
                let free = open
                    .iter()
                    .filter(|h| {
                        let in_flight = hosts.get(&h.url).map_or(0, |s| s.in_flight);
                        h.max_concurrency.is_none_or(|m| in_flight < m)
                    })
                    .min_by_key(|h| hosts.get(&h.url).map_or(0, |s| s.in_flight));
                if let Some(h) = free {
                    let state = hosts.entry(h.url.clone()).or_default();
                    state.usage.host.clone_from(&h.url);
                    if state.in_flight == 0 {
                        self.busy_since
                            .lock()
                            .expect("pool lock")
                            .insert(h.url.clone(), now);
                    }
                    state.in_flight += 1;
                    state.usage.calls += 1;
                    let queued = start.elapsed();
                    state.usage.queue_ms += queued.as_secs_f64() * 1000.0;
                    return Some(Lease {
                        host: h.url.clone(),
                        queued,
                        pools: self.clone(),
                        bench: false,
                    });
                }
            }
            match wake_at {
                // Every host left is cooling down: wait for the first back.
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => notified.await,
            }
        }
    }

    fn give_back(&self, host: &str, bench: bool) {
        let mut hosts = self.hosts.lock().expect("pool lock");
        let state = hosts.entry(host.to_owned()).or_default();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0
            && let Some(since) = self.busy_since.lock().expect("pool lock").remove(host)
        {
            state.usage.busy_ms += since.elapsed().as_secs_f64() * 1000.0;
        }
        if bench {
            state.usage.failures += 1;
            state.benched_until = Some(Instant::now() + COOL_DOWN);
            tracing::warn!(host = %host, "host failed before any token; benched for {}s", COOL_DOWN.as_secs());
        }
        drop(hosts);
        self.freed.notify_waiters();
    }

    /// Every pooled host's usage so far (hosts in `names` only).
    pub fn usage(&self, names: &[String]) -> Vec<HostUsage> {
        let hosts = self.hosts.lock().expect("pool lock");
        names
            .iter()
            .filter_map(|n| hosts.get(n).map(|s| s.usage.clone()))
            .collect()
    }
}

/// This run's share of `now`: what each host did since `before`, with its
/// utilisation over `wall_ms`.
pub fn since(before: &[HostUsage], now: Vec<HostUsage>, wall_ms: f64) -> Vec<HostUsage> {
    now.into_iter()
        .map(|mut u| {
            if let Some(b) = before.iter().find(|b| b.host == u.host) {
                u.calls -= b.calls;
                u.failures -= b.failures;
                u.busy_ms -= b.busy_ms;
                u.queue_ms -= b.queue_ms;
            }
            u.utilisation = (wall_ms > 0.0).then(|| (u.busy_ms / wall_ms).min(1.0));
            u
        })
        .filter(|u| u.calls > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(max: Option<u32>) -> Vec<PoolHost> {
        ["http://a", "http://b"]
            .map(|url| PoolHost {
                url: url.into(),
                max_concurrency: max,
            })
            .to_vec()
    }

    #[tokio::test]
    async fn calls_go_to_the_least_busy_host_and_wait_when_all_are_full() {
        let pools = std::sync::Arc::new(HostPools::default());
        let hosts = pool(Some(1));
        let first = pools.acquire(&hosts, &[]).await.unwrap();
        let second = pools.acquire(&hosts, &[]).await.unwrap();
        assert_ne!(first.host, second.host, "the idle host");
        let waiting = {
            let (pools, hosts) = (pools.clone(), hosts.clone());
            tokio::spawn(async move { pools.acquire(&hosts, &[]).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "both hosts are full");
        let freed = second.host.clone();
        drop(second);
        let third = waiting.await.unwrap();
        assert_eq!(third.host, freed, "a dropped lease frees its slot");
        assert!(third.queued >= Duration::from_millis(25));
    }

    #[tokio::test]
    async fn a_benched_host_gets_no_calls_and_a_tried_one_is_skipped() {
        let pools = std::sync::Arc::new(HostPools::default());
        let hosts = pool(None);
        let a = pools.acquire(&hosts, &[]).await.unwrap();
        assert_eq!(a.host, "http://a");
        a.release(true);
        for _ in 0..3 {
            let next = pools.acquire(&hosts, &[]).await.unwrap();
            assert_eq!(next.host, "http://b");
            next.release(false);
        }
        let all: Vec<String> = vec!["http://a".into(), "http://b".into()];
        assert!(
            pools.acquire(&hosts, &all).await.is_none(),
            "every host tried"
        );
        // Only the benched host left: the call waits for its cool-down.
        let waits = tokio::time::timeout(
            Duration::from_millis(50),
            pools.acquire(&hosts, &["http://b".into()]),
        )
        .await;
        assert!(waits.is_err(), "waits while `a` cools down");
        let usage = pools.usage(&["http://a".into(), "http://b".into()]);
        assert_eq!((usage[0].calls, usage[0].failures), (1, 1));
        assert_eq!((usage[1].calls, usage[1].failures), (3, 0));
    }
}
