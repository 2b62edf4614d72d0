//! OpenTelemetry: `stn` exports a span per coding task (with tool-call children), agent step
//! spans and task metrics over OTLP/HTTP to a receiver on 127.0.0.1; over NATS the client's and
//! the worker's spans share one trace. No attribute carries a secret.

use std::time::Duration;

use serde_json::json;
use station_testkit::git_server::fake_token;
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::otlp::{OtlpReceiver, ReceivedPoint, ReceivedSpan};
use station_testkit::peers;

use super::e2e::{Env, bin};

const WAIT: Duration = Duration::from_secs(60);
const INSTRUCTION: &str = "Write the file traced.py that prints traced";

fn script() -> Script {
    Script::new()
        .on(
            INSTRUCTION,
            vec![
                Step::write("traced.py", "print('traced')\n"),
                Step::text("Created traced.py."),
            ],
        )
        .on(
            "trace the agent",
            vec![
                Step::tool("coding_open", json!({})),
                Step::tool("code", json!({"instruction": INSTRUCTION})),
                Step::text("traced.py is there."),
            ],
        )
}

fn opencode_cli_yaml() -> String {
    format!(
        "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: {}\n",
        bin(peers::opencode_bin()),
        peers::OPENCODE_MODEL
    )
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn has_point(points: &[ReceivedPoint], metric: &str, backend: &str, outcome: &str) -> bool {
    points.iter().any(|p| {
        p.metric == metric
            && p.attributes.get("station.backend").map(String::as_str) == Some(backend)
            && p.attributes.get("station.outcome").map(String::as_str) == Some(outcome)
    })
}

fn assert_no_secret(receiver: &OtlpReceiver, token: &str) {
    let dump = receiver.dump();
    assert!(!dump.is_empty(), "something was received");
    assert!(
        !dump.contains(token) && !dump.contains(&token[4..]),
        "the token reached the collector:\n{dump}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stn_code_and_agent_run_export_task_tool_and_step_spans_with_metrics() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let model = ScriptedModel::start(script()).await.unwrap();
    let token = fake_token();
    // A token in the config (git) and in the instruction: neither may reach an attribute.
    let yaml = format!("{}  git:\n    token: {token}\n", opencode_cli_yaml());
    let mut env = Env::new(&model, &yaml);
    env.vars
        .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint()));
    let instruction = format!("{INSTRUCTION}; the deploy key is {token}");

    let out = env
        .stn()
        .args(["code", "--json", &instruction])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The exit flushed: spans and metrics are there once `stn` has exited.
    receiver
        .wait_until(WAIT, |spans, points| {
            !named(spans, "coding.task").is_empty()
                && has_point(points, "station.tasks", "opencode-cli", "success")
        })
        .await
        .unwrap();
    let spans = receiver.spans();
    let task = named(&spans, "coding.task")[0].clone();
    assert_eq!(task.service_name, "stn");
    assert_eq!(task.attr("station.backend"), Some("opencode-cli"));
    assert_eq!(task.attr("station.agent"), Some("opencode"));
    assert_eq!(
        task.attr("station.session_id"),
        outcome["session"]["id"].as_str()
    );
    assert_eq!(task.attr("station.outcome"), Some("success"));
    assert_eq!(task.attr("station.success"), Some("true"));
    assert_eq!(task.attr("station.stop_reason"), Some("completed"));
    let files_changed = outcome["files_changed"].as_array().unwrap().len();
    assert!(files_changed >= 1, "{outcome:#}");
    assert_eq!(
        task.attr("station.files_changed"),
        Some(files_changed.to_string().as_str())
    );
    assert_eq!(
        task.attr("station.tokens.input"),
        Some(outcome["usage"]["input_tokens"].to_string().as_str())
    );
    assert_eq!(
        task.attr("station.tokens.output"),
        Some(outcome["usage"]["output_tokens"].to_string().as_str())
    );
    assert_eq!(task.attr("station.model"), outcome["model"].as_str());
    if let Some(cost) = outcome["cost_usd"].as_f64() {
        assert_eq!(
            task.attr("station.cost_usd"),
            Some(cost.to_string().as_str())
        );
    }
    assert_eq!(task.attr("station.error_kind"), None, "{task:#?}");
    let tools: Vec<_> = named(&spans, "coding.tool")
        .into_iter()
        .filter(|t| t.parent_span_id == task.span_id)
        .collect();
    assert!(
        tools
            .iter()
            .any(|t| t.attr("station.tool.name") == Some("write")),
        "the write tool call is a child span of the task: {spans:#?}"
    );
    let points = receiver.points();
    assert!(has_point(
        &points,
        "station.task.duration",
        "opencode-cli",
        "success"
    ));
    assert!(
        points.iter().any(|p| p.metric == "station.tokens"
            && p.attributes.get("station.token.type").map(String::as_str) == Some("input")),
        "{points:#?}"
    );

    // `stn agent run`: a span per model step; the coding task is a child of its step.
    env.stn()
        .args([
            "agent",
            "create",
            "coder",
            "-d",
            "Coder",
            "-p",
            "Use the coding tools.",
            "--coding",
            r#"{"enabled":true}"#,
        ])
        .assert()
        .success();
    let out = env
        .stn()
        .args([
            "agent",
            "run",
            "coder",
            &format!("trace the agent, key {token}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    receiver
        .wait_until(WAIT, |spans, _| named(spans, "agent.run").len() == 1)
        .await
        .unwrap();
    let spans = receiver.spans();
    let run = named(&spans, "agent.run")[0];
    assert_eq!(run.attr("station.agent"), Some("coder"));
    let steps: Vec<_> = named(&spans, "agent.step")
        .into_iter()
        .filter(|s| s.parent_span_id == run.span_id)
        .collect();
    assert_eq!(steps.len(), 3, "one span per model step: {spans:#?}");
    let agent_task = named(&spans, "coding.task")
        .into_iter()
        .find(|t| t.trace_id == run.trace_id)
        .expect("the coding task joined the agent's trace");
    assert!(
        steps.iter().any(|s| s.span_id == agent_task.parent_span_id),
        "the coding task is a child of the step that called `code`"
    );
    assert_no_secret(&receiver, &token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_cannot_run_has_an_error_kind_and_a_dead_collector_does_not_hang_stn() {
    // Accepts connections and never answers: the exit's flush must give up on its own.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let receiver = OtlpReceiver::start().await.unwrap();
    let model = ScriptedModel::start(Script::new()).await.unwrap();
    let yaml = "  backend: opencode-cli\n  cli:\n    binary: /nonexistent/opencode\n";
    // The endpoint from the config's `telemetry` section this time.
    let env = Env::new(
        &model,
        &format!(
            "{yaml}telemetry:\n  otlp_endpoint: {}\n",
            receiver.endpoint()
        ),
    );
    let out = env.stn().args(["code", "hello"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "a backend that is not installed is unavailable"
    );
    receiver
        .wait_until(WAIT, |spans, _| !named(spans, "coding.task").is_empty())
        .await
        .unwrap();
    let spans = receiver.spans();
    let task = named(&spans, "coding.task")[0];
    assert!(task.attr("station.error_kind").is_some(), "{task:#?}");
    assert_eq!(task.status_code, 2, "an error status: {task:#?}");
    assert!(has_point(
        &receiver.points(),
        "station.tasks",
        "opencode-cli",
        task.attr("station.outcome").unwrap()
    ));

    let mut env = Env::new(&model, yaml);
    env.vars
        .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint));
    // `Env::stn` gives the command a deadline; stn must exit well within it.
    let out = env.stn().args(["code", "hello"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(black_hole);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_worker_spans_join_one_trace_over_nats() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let nats = peers::NatsServer::start().await;
    let model = ScriptedModel::start(script()).await.unwrap();
    let mut env = Env::new(
        &model,
        &format!(
            "  backend: opencode-nats\n  nats:\n    url: {}\n  opencode:\n    managed: always\n    binary: {}\n    model: {}\n",
            nats.url,
            bin(peers::opencode_bin()),
            peers::OPENCODE_MODEL
        ),
    );
    env.vars
        .push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint()));
    let stn = assert_cmd::cargo::cargo_bin("stn");
    let mut spec = station_core::process::CommandSpec::new(stn, env.home.path())
        .arg("worker")
        .env_clear()
        .env("OTEL_SERVICE_NAME", "stn-worker");
    for (k, v) in &env.vars {
        spec = spec.env(k, v);
    }
    let mut worker = spec.spawn().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while !worker.stderr_tail().contains("serving") {
        assert!(
            std::time::Instant::now() < deadline,
            "stn worker did not start: {}",
            worker.stderr_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = tokio::task::spawn_blocking(move || {
        let out = env.stn().args(["code", INSTRUCTION]).output().unwrap();
        (env, out)
    });
    let (env, out) = client.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SIGTERM: the worker exits cleanly and flushes its spans.
    worker.signal_group(nix::sys::signal::Signal::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(40), worker.wait())
        .await
        .expect("the worker stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{}", worker.stderr_tail());
    receiver
        .wait_until(WAIT, |spans, _| {
            spans.iter().any(|s| s.name == "nats.worker.task")
                && named(spans, "coding.task").len() >= 2
        })
        .await
        .unwrap();
    let spans = receiver.spans();
    let client_task = named(&spans, "coding.task")
        .into_iter()
        .find(|s| s.attr("station.backend") == Some("opencode-nats"))
        .expect("the client's task span");
    assert_eq!(client_task.service_name, "stn");
    let worker_span = named(&spans, "nats.worker.task")[0];
    assert_eq!(worker_span.service_name, "stn-worker");
    assert_eq!(worker_span.trace_id, client_task.trace_id, "one trace");
    assert_eq!(worker_span.parent_span_id, client_task.span_id);
    let worker_task = named(&spans, "coding.task")
        .into_iter()
        .find(|s| s.attr("station.backend") == Some("opencode"))
        .expect("the worker's task span");
    assert_eq!(worker_task.trace_id, client_task.trace_id);
    assert_eq!(worker_task.parent_span_id, worker_span.span_id);
    assert!(
        spans
            .iter()
            .any(|s| s.name == "coding.tool" && s.parent_span_id == worker_task.span_id),
        "the worker's tool calls are in the trace too: {spans:#?}"
    );
    drop(env);
}
