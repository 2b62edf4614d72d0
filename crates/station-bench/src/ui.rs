//! `stn ui` page load: the HTML plus the first `/api/sessions` answer, with many sessions in the
//! index, against a plain axum server sending the same page and the index file as it is.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use station_core::{Session, SessionIndex, SessionService};
use station_ui::{ServiceSource, UiOptions, UiServer};

use crate::report::{BenchResult, Target};
use crate::stats::{Case, compare};

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UiPlan {
    pub(crate) sessions: usize,
    pub(crate) warmup: usize,
    pub(crate) iterations: usize,
}

/// The page loads in under this (the target).
const TARGET_MS: f64 = 200.0;

/// The benchmark starts no tasks.
#[derive(Debug)]
struct NoServices;

#[async_trait::async_trait]
impl ServiceSource for NoServices {
    fn default_backend(&self) -> String {
        "none".into()
    }
    async fn service(&self, backend: &str) -> station_core::Result<SessionService> {
        Err(station_core::Error::not_supported(
            backend,
            "tasks in the benchmark",
        ))
    }
}

/// An index of `n` sessions over several backends, as real ones look.
fn fill_index(index: &SessionIndex, n: usize) -> anyhow::Result<()> {
    let backends = ["opencode-cli", "claudecode", "codex", "gemini", "acp"];
    for i in 0..n {
        let mut s = Session::new(backends[i % backends.len()]);
        s.title = Some(format!(
            "Task {i}: fix the parser and add tests for module {i}"
        ));
        s.workspace = Some(format!("/home/dev/projects/repo-{}", i % 40).into());
        s.backend_session_id = Some(format!("ses_{i:08}"));
        s.usage_total.input_tokens = 1000 + i as u64;
        s.usage_total.output_tokens = 100 + i as u64;
        s.cost_total_usd = i as f64 * 0.001;
        index.upsert(&s)?;
    }
    Ok(())
}

/// One page load: GET / then GET the list, both read to the end, on a new connection.
struct PageLoad {
    client: reqwest::Client,
    page: String,
    list: String,
    expect_sessions: Option<usize>,
}

impl Case for PageLoad {
    async fn run(&mut self) -> anyhow::Result<()> {
        let html = self
            .client
            .get(&self.page)
            .send()
            .await?
            .error_for_status()?;
        let html = html.bytes().await?;
        anyhow::ensure!(html.starts_with(b"<!doctype html>"), "not the page");
        let list = self
            .client
            .get(&self.list)
            .send()
            .await?
            .error_for_status()?;
        let list = list.bytes().await?;
        if let Some(n) = self.expect_sessions {
            let page: serde_json::Value = serde_json::from_slice(&list)?;
            let got = page["sessions"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(got == n, "the list has {got} sessions, not {n}");
        }
        Ok(())
    }
}

/// The baseline server: the same HTML and the index file's bytes, nothing computed.
async fn raw_server(html: bytes::Bytes, index_file: std::path::PathBuf) -> anyhow::Result<String> {
    use axum::routing::get;
    let router = axum::Router::new()
        .route("/", get(move || async move { html.clone() }))
        .route(
            "/api/sessions",
            get(move || {
                let file = index_file.clone();
                async move { tokio::fs::read(file).await.unwrap_or_default() }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

pub(crate) async fn run(plan: UiPlan) -> anyhow::Result<Vec<BenchResult>> {
    let dir = tempfile::tempdir()?;
    let index = SessionIndex::open(dir.path())?;
    fill_index(&index, plan.sessions).context("filling the session index")?;
    let bound = UiServer::new(index.clone(), Arc::new(NoServices))
        .bind("127.0.0.1:0".parse()?, UiOptions::default())
        .await?;
    let ui = format!("http://{}", bound.local_addr());
    tokio::spawn(bound.run(std::future::pending()));
    // A fresh connection per request, as a browser opening the page has.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()?;
    let html = client.get(format!("{ui}/")).send().await?.bytes().await?;
    let raw = raw_server(html, index.path()).await?;
    let mut subject = PageLoad {
        client: client.clone(),
        page: format!("{ui}/"),
        list: format!("{ui}/api/sessions"),
        expect_sessions: Some(plan.sessions),
    };
    let mut baseline = PageLoad {
        client,
        page: format!("{raw}/"),
        list: format!("{raw}/api/sessions"),
        expect_sessions: None,
    };
    let paired = compare(plan.warmup, plan.iterations, &mut baseline, &mut subject).await?;
    let mut row = BenchResult::timed(
        &format!("ui.page_load.{}", plan.sessions),
        "stn ui",
        &format!(
            "page load (HTML + first /api/sessions), {} sessions",
            plan.sessions
        ),
        &paired,
        "axum sending the same HTML and the raw index file",
    );
    row.target = Some(Target {
        text: format!("< {TARGET_MS} ms"),
        met: row.suite.is_some_and(|s| s.median < TARGET_MS),
    });
    Ok(vec![row.note(
        "Both over loopback on new connections; the suite reads the index (file lock, JSON), \
         filters, sorts and serialises the list each time.",
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_page_load_is_measured_against_its_target() {
        let rows = run(UiPlan {
            sessions: 30,
            warmup: 1,
            iterations: 3,
        })
        .await
        .unwrap();
        let row = &rows[0];
        assert_eq!(row.group, "stn ui");
        assert_eq!(row.suite.unwrap().n, 3);
        assert!(row.baseline.is_some());
        assert_eq!(row.target.as_ref().unwrap().text, "< 200 ms");
    }
}
