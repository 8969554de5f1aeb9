//! Many agents at once: agents without `needs:` between them run
//! concurrently, `needs:` orders stages across agents and passes their
//! outputs, a cycle is refused with its path, and a failed stage fails only
//! what depends on it.

mod common;

use chimera_tests::fake_ollama::{FakeConfig, FakeOllama};
use common::{chimera, json, run, test_plugin, write};
use std::path::Path;
use std::time::Duration;

fn hostile() -> String {
    test_plugin("hostile.wasm").display().to_string()
}

fn run_flow(dir: &Path, flow: &Path, extra: &[&str]) -> (i32, String, String) {
    std::fs::create_dir_all(dir.join("input")).unwrap();
    run(chimera(&dir.join("cache"))
        .arg("run")
        .arg(flow)
        .arg("--input")
        .arg(dir.join("input"))
        .arg("--out")
        .arg(dir.join("out"))
        .arg("-q")
        .args(extra))
}

/// Two agents, each calling its own server once: a second to first token.
fn two_agents(dir: &Path, hosts: [&str; 2], extra: &str) -> std::path::PathBuf {
    let plugin = hostile();
    write(
        dir,
        "two.yaml",
        &format!(
            "version: 1
name: two
model: {{backend: ollama, name: \"gemma3:latest\"}}
{extra}
agents:
  - id: collector
    model: {{backend: ollama, name: \"gemma3:latest\", host: \"{}\"}}
    stages:
      - id: asks
        plugin: {plugin}
        with: {{mode: llm}}
  - id: insight
    model: {{backend: ollama, name: \"gemma3:latest\", host: \"{}\"}}
    stages:
      - id: asks
        plugin: {plugin}
        with: {{mode: llm}}
",
            hosts[0], hosts[1]
        ),
    )
}

fn slow_server() -> FakeOllama {
    FakeOllama::start(
        FakeConfig::token_count(4).delays(Duration::from_millis(1000), Duration::ZERO),
    )
}

#[test]
fn two_agents_against_two_servers_overlap_and_the_record_says_how_much() {
    let tmp = tempfile::tempdir().unwrap();
    let servers = [slow_server(), slow_server()];
    let flow = two_agents(tmp.path(), [&servers[0].url(), &servers[1].url()], "");
    let (code, _, err) = run_flow(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{err}");
    let metrics = json(&tmp.path().join("out/metrics.json"));
    let c = &metrics["concurrency"];
    let speedup = c["speedup"].as_f64().unwrap();
    assert!(speedup > 1.7, "speedup {speedup}: {c:#}");
    assert!(
        (c["efficiency"].as_f64().unwrap() - speedup / 2.0).abs() < 1e-9,
        "{c:#}"
    );
    assert_eq!(c["agents"].as_array().unwrap().len(), 2);
    let md = std::fs::read_to_string(tmp.path().join("out/concurrency.md")).unwrap();
    assert!(
        md.contains("**speedup ") && md.contains("**efficiency "),
        "{md}"
    );
    assert!(
        md.contains("collector/asks") && md.contains("insight/asks"),
        "{md}"
    );

    // `max_parallel: 1` runs them one after the other: no speedup.
    let tmp = tempfile::tempdir().unwrap();
    let flow = two_agents(
        tmp.path(),
        [&servers[0].url(), &servers[1].url()],
        "max_parallel: 1",
    );
    let (code, _, err) = run_flow(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{err}");
    let metrics = json(&tmp.path().join("out/metrics.json"));
    let speedup = metrics["concurrency"]["speedup"].as_f64().unwrap();
    assert!(speedup < 1.1, "speedup {speedup} with max_parallel 1");
    assert_eq!(metrics["concurrency"]["max_parallel"], 1);

    // So does `--max-parallel 1` on the command line, over a workflow that
    // sets no bound.
    let tmp = tempfile::tempdir().unwrap();
    let flow = two_agents(tmp.path(), [&servers[0].url(), &servers[1].url()], "");
    let (code, _, err) = run_flow(tmp.path(), &flow, &["--max-parallel", "1"]);
    assert_eq!(code, 0, "{err}");
    let metrics = json(&tmp.path().join("out/metrics.json"));
    let speedup = metrics["concurrency"]["speedup"].as_f64().unwrap();
    assert!(speedup < 1.1, "speedup {speedup} with --max-parallel 1");
    assert_eq!(metrics["concurrency"]["max_parallel"], 1);
}

#[test]
fn needs_orders_stages_across_agents_and_passes_their_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = hostile();
    let flow = write(
        tmp.path(),
        "needs.yaml",
        &format!(
            "version: 1
name: needs
agents:
  - id: insight
    needs: [collector]
    stages:
      - id: reads
        plugin: {plugin}
        with: {{mode: inputs}}
  - id: collector
    stages:
      - id: first
        plugin: {plugin}
        with: {{mode: sleep, ms: 300}}
      - id: second
        plugin: {plugin}
        with: {{mode: ok}}
  - id: other
    stages:
      - id: early
        plugin: {plugin}
        with: {{mode: ok}}
      - id: late
        plugin: {plugin}
        needs: [insight/reads]
        with: {{mode: inputs}}
"
        ),
    );
    let (code, _, err) = run_flow(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{err}");
    let out = tmp.path().join("out");
    let reads = json(&out.join("outputs/insight/reads.json"));
    assert_eq!(reads["inputs"]["collector/second"]["ok"], true, "{reads:#}");
    assert!(reads["inputs"]["collector/first"].is_object(), "{reads:#}");
    let late = json(&out.join("outputs/other/late.json"));
    assert!(late["inputs"]["early"]["ok"] == true, "{late:#}");
    assert!(
        late["inputs"]["insight/reads"]["inputs"].is_object(),
        "{late:#}"
    );
    // Started after what they need ended.
    let metrics = json(&out.join("metrics.json"));
    let stage = |a: &str, s: &str| {
        metrics["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["agent"] == a && x["stage"] == s)
            .cloned()
            .unwrap()
    };
    let end =
        |x: &serde_json::Value| x["started_ms"].as_f64().unwrap() + x["wall_ms"].as_f64().unwrap();
    assert!(
        stage("insight", "reads")["started_ms"].as_f64().unwrap()
            >= end(&stage("collector", "second"))
    );
    assert!(
        stage("other", "late")["started_ms"].as_f64().unwrap() >= end(&stage("insight", "reads"))
    );
    // `other/early` needs nothing: it ran while the collector slept.
    assert!(
        stage("other", "early")["started_ms"].as_f64().unwrap() < end(&stage("collector", "first"))
    );
}

#[test]
fn a_cycle_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = hostile();
    let flow = write(
        tmp.path(),
        "cycle.yaml",
        &format!(
            "version: 1
name: cycle
agents:
  - id: a
    needs: [c]
    stages:
      - id: x
        plugin: {plugin}
        with: {{mode: ok}}
  - id: b
    stages:
      - id: y
        plugin: {plugin}
        needs: [a/x]
        with: {{mode: ok}}
  - id: c
    stages:
      - id: z
        plugin: {plugin}
        needs: [b/y]
        with: {{mode: ok}}
"
        ),
    );
    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("validate")
        .arg(&flow));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`needs:` forms a cycle"), "{err}");
    assert!(
        err.contains("`a/x` → `c/z` → `b/y` → `a/x`")
            || err.contains("`c/z` → `b/y` → `a/x` → `c/z`")
            || err.contains("`b/y` → `a/x` → `c/z` → `b/y`"),
        "the cycle as a path: {err}"
    );
    assert!(
        err.contains("cycle.yaml:5:13"),
        "points at a `needs:`: {err}"
    );
}

#[test]
fn a_failed_stage_fails_only_what_depends_on_it() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = hostile();
    let flow = write(
        tmp.path(),
        "fail.yaml",
        &format!(
            "version: 1
name: fail
agents:
  - id: broken
    stages:
      - id: falls
        plugin: {plugin}
        with: {{mode: panic}}
      - id: after
        plugin: {plugin}
        with: {{mode: ok}}
  - id: fine
    report: reports/fine.md.j2
    stages:
      - id: works
        plugin: {plugin}
        with: {{mode: sleep, ms: 200}}
      - id: more
        plugin: {plugin}
        with: {{mode: ok}}
  - id: waits
    needs: [broken]
    stages:
      - id: never
        plugin: {plugin}
        with: {{mode: ok}}
"
        ),
    );
    write(
        tmp.path(),
        "templates/reports/fine.md.j2",
        "# Fine\n\nAgent {{ agent }} finished.\n",
    );
    let (code, _, err) = run_flow(tmp.path(), &flow, &[]);
    assert_eq!(code, 1, "{err}");
    let metrics = json(&tmp.path().join("out/metrics.json"));
    let status = |a: &str, s: &str| {
        metrics["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["agent"] == a && x["stage"] == s)
            .map(|x| x["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status("broken", "falls"), "failed");
    assert_eq!(status("broken", "after"), "skipped");
    assert_eq!(status("waits", "never"), "skipped");
    assert_eq!(status("fine", "works"), "ok");
    assert_eq!(status("fine", "more"), "ok");
    let report = std::fs::read_to_string(tmp.path().join("out/report.md")).unwrap();
    assert!(report.contains("Agent fine finished."), "{report}");
    // Each skipped stage says which failure it follows, in the record and
    // in the progress lines.
    let because = |a: &str, s: &str| {
        metrics["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["agent"] == a && x["stage"] == s)
            .map(|x| x["skipped_because"].clone())
            .unwrap()
    };
    assert_eq!(because("broken", "after"), "`broken/falls` failed");
    assert_eq!(because("waits", "never"), "`broken/falls` failed");
    let (code, _, err) = run(chimera(&tmp.path().join("cache"))
        .arg("run")
        .arg(&flow)
        .arg("--input")
        .arg(tmp.path().join("input"))
        .arg("--out")
        .arg(tmp.path().join("again")));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("· waits/never skipped: `broken/falls` failed"),
        "{err}"
    );
}

#[test]
fn the_multi_agent_study_runs_both_agents_at_once_with_a_combined_report() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeOllama::start(
        FakeConfig::token_count(16).delays(Duration::from_millis(300), Duration::from_millis(2)),
    );
    let study = |out: &str, sets: &[String]| {
        let mut command = chimera(&tmp.path().join("cache"));
        command
            .arg("run")
            .arg(common::root().join("workflows/chimera-multi-agent.yaml"))
            .arg("--input")
            .arg(common::fixtures())
            .arg("--out")
            .arg(tmp.path().join(out));
        for set in sets {
            command.args(["--set", set]);
        }
        run(&mut command)
    };
    let (code, stdout, err) = study("out", &[format!("model.host={}", fake.url())]);
    assert_eq!(code, 0, "{stdout}{err}");
    let out = tmp.path().join("out");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for part in [
        "combined report",
        "Data Collector",
        "Insight Agent",
        "**speedup ",
        "**efficiency ",
    ] {
        assert!(report.contains(part), "{part:?} missing from:\n{report}");
    }
    let combined = json(&out.join("report.json"));
    let speedup = combined["concurrency"]["speedup"].as_f64().unwrap();
    assert!(speedup > 1.3, "speedup {speedup}");
    // Each agent's results as data: its report and the figures of its calls.
    let metrics = json(&out.join("metrics.json"));
    let agents = combined["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2, "{combined:#}");
    for agent in agents {
        let id = agent["agent"].as_str().unwrap();
        assert_eq!(agent["report"], format!("report-{id}.md"));
        let tokens: u64 = metrics["calls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["agent"] == id)
            .map(|c| c["eval_count"].as_u64().unwrap())
            .sum();
        assert_eq!(agent["metrics"]["eval_count"], tokens, "{agent:#}");
    }
    assert!(out.join("report-collector.md").is_file() && out.join("report-insight.md").is_file());
    // Baseline options for the collector, the tuned ones for the insight agent.
    let chats: Vec<serde_json::Value> = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .map(|r| r.body["options"].clone())
        .collect();
    assert_eq!(chats.len(), 4);
    assert_eq!(
        chats
            .iter()
            .filter(|o| o["num_ctx"] == 512 && o["num_gpu"] == 80)
            .count(),
        2,
        "{chats:?}"
    );
    assert_eq!(
        chats.iter().filter(|o| o.get("num_ctx").is_none()).count(),
        2,
        "{chats:?}"
    );

    // One server per agent, as the seed ran it (the command in the
    // workflow's comment): each agent's calls reach its own server only.
    let (first, second) = (
        FakeOllama::start(FakeConfig::token_count(16)),
        FakeOllama::start(FakeConfig::token_count(16)),
    );
    let (code, stdout, err) = study(
        "two-hosts",
        &[
            format!("collector:model.host={}", first.url()),
            format!("insight:model.host={}", second.url()),
        ],
    );
    assert_eq!(code, 0, "{stdout}{err}");
    let options = |fake: &FakeOllama| -> Vec<serde_json::Value> {
        fake.requests()
            .iter()
            .filter(|r| r.path == "/api/chat")
            .map(|r| r.body["options"].clone())
            .collect()
    };
    let (baseline, tuned) = (options(&first), options(&second));
    assert_eq!((baseline.len(), tuned.len()), (2, 2));
    assert!(
        baseline.iter().all(|o| o.get("num_ctx").is_none()),
        "{baseline:?}"
    );
    assert!(tuned.iter().all(|o| o["num_ctx"] == 512), "{tuned:?}");
}

fn chats(fake: &FakeOllama) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.path == "/api/chat")
        .count()
}

/// One agent of `stages` LLM stages per entry of `agents`, on a model
/// with `hosts:` (the agent's own `model:` line may pin it).
fn pooled(dir: &Path, hosts: &str, agents: &[(&str, usize, &str)]) -> std::path::PathBuf {
    let plugin = hostile();
    let mut text = format!(
        "version: 1\nname: pool\nmodel: {{backend: ollama, name: \"gemma3:latest\", hosts: {hosts}}}\nagents:\n"
    );
    for (id, stages, model) in agents {
        text.push_str(&format!("  - id: {id}\n{model}    stages:\n"));
        for s in 0..*stages {
            text.push_str(&format!(
                "      - id: s{s}\n        plugin: {plugin}\n        with: {{mode: llm}}\n"
            ));
        }
    }
    write(dir, "pool.yaml", &text)
}

/// One agent of `stages` LLM stages over a pool of two hosts: the first
/// fails with `fault`, the second is healthy. Runs it; the exit code and
/// stderr come back with the directory and both servers.
fn failing_then_spare(
    fault: chimera_tests::fake_ollama::Fault,
    stages: usize,
) -> (tempfile::TempDir, FakeOllama, FakeOllama, i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let failing = FakeOllama::start(FakeConfig::token_count(6).fault(fault));
    let spare = FakeOllama::start(FakeConfig::token_count(4));
    let flow = pooled(
        tmp.path(),
        &format!("[\"{}\", \"{}\"]", failing.url(), spare.url()),
        &[("a", stages, "")],
    );
    let (code, _, err) = run_flow(tmp.path(), &flow, &[]);
    (tmp, failing, spare, code, err)
}

#[test]
fn a_benched_hosts_calls_go_to_the_other_host_and_a_streamed_call_stays() {
    use chimera_tests::fake_ollama::Fault;
    let (tmp, down, up, code, err) = failing_then_spare(Fault::Status(500), 3);
    assert_eq!(code, 0, "{err}");
    assert_eq!(chats(&down), 1, "tried once, then benched");
    assert_eq!(chats(&up), 3);
    let metrics = json(&tmp.path().join("out/metrics.json"));
    let calls = metrics["calls"].as_array().unwrap();
    assert!(
        calls
            .iter()
            .all(|c| c["host"] == up.url() && c["error"].is_null()),
        "{calls:#?}"
    );
    assert_eq!(calls[0]["hosts_left"][0], down.url());
    let hosts = metrics["hosts"].as_array().unwrap();
    let usage = |url: &str| hosts.iter().find(|h| h["host"] == url).cloned().unwrap();
    assert_eq!(
        (
            usage(&down.url())["calls"].as_u64(),
            usage(&down.url())["failures"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(usage(&up.url())["calls"], 3);
    assert!(usage(&up.url())["utilisation"].as_f64().unwrap() > 0.0);

    // A stream that ends before its first token (the response head sent,
    // then the end, no `done`) benches its host and the call moves on; one
    // that broke after streaming tokens is never moved. Both fail as an
    // incomplete stream, so only the tokens already streamed tell them apart.
    let (tmp, cut, spare, code, err) = failing_then_spare(Fault::CutAfter(0), 1);
    assert_eq!(code, 0, "{err}");
    assert_eq!((chats(&cut), chats(&spare)), (1, 1));
    let metrics = json(&tmp.path().join("out/metrics.json"));
    assert_eq!(metrics["calls"][0]["hosts_left"][0], cut.url());

    let (tmp, breaks, spare, code, err) = failing_then_spare(Fault::ResetAfter(2), 1);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        (chats(&breaks), chats(&spare)),
        (1, 0),
        "the half-answered call stayed on its host"
    );
    let metrics = json(&tmp.path().join("out/metrics.json"));
    let call = &metrics["calls"][0];
    assert!(!call["error"].is_null(), "{call:#}");
    assert_eq!(call["host"], breaks.url());
    assert!(
        call["ttft_ms"].as_f64().is_some(),
        "tokens had streamed: {call:#}"
    );
}

#[test]
fn a_full_pool_queues_calls_and_a_pinned_agent_keeps_its_host() {
    let tmp = tempfile::tempdir().unwrap();
    let slow = || {
        FakeOllama::start(
            FakeConfig::token_count(4).delays(Duration::from_millis(300), Duration::ZERO),
        )
    };
    let (a, b, own) = (slow(), slow(), slow());
    let flow = pooled(
        tmp.path(),
        &format!(
            "[{{url: \"{}\", max_concurrency: 1}}, {{url: \"{}\", max_concurrency: 1}}]",
            a.url(),
            b.url()
        ),
        &[
            ("one", 1, ""),
            ("two", 1, ""),
            ("three", 1, ""),
            (
                "pinned",
                1,
                &format!("    model: {{host: \"{}\"}}\n", own.url()),
            ),
        ],
    );
    let (code, _, err) = run_flow(tmp.path(), &flow, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(chats(&a) + chats(&b), 3);
    assert!(chats(&a) >= 1 && chats(&b) >= 1, "spread over both hosts");
    assert_eq!(
        chats(&own),
        1,
        "the pinned agent's call went to its own host"
    );
    let metrics = json(&tmp.path().join("out/metrics.json"));
    let queued: Vec<f64> = metrics["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["queue_ms"].as_f64())
        .collect();
    assert_eq!(queued.len(), 3, "pooled calls say how long they queued");
    assert!(
        queued.iter().any(|q| *q > 200.0),
        "the third call waited for a free host: {queued:?}"
    );
    let hosts = metrics["hosts"].as_array().unwrap();
    assert_eq!(
        hosts
            .iter()
            .map(|h| h["calls"].as_u64().unwrap())
            .sum::<u64>(),
        3
    );
    // The concurrency analysis gives each host's share as the record has it.
    let md = std::fs::read_to_string(tmp.path().join("out/concurrency.md")).unwrap();
    assert!(
        md.contains("| host | calls | failures | busy ms | queued ms | utilisation |"),
        "{md}"
    );
    for h in hosts {
        let row = format!(
            "| {} | {} | {} | {:.1} | {:.1} | ",
            h["host"].as_str().unwrap(),
            h["calls"],
            h["failures"],
            h["busy_ms"].as_f64().unwrap(),
            h["queue_ms"].as_f64().unwrap()
        );
        assert!(md.contains(&row), "{row} in:\n{md}");
    }
}
