//! `stn ui` in real headless Chromium (WebDriver): a session made by `stn code` on a real
//! agent is listed and its diff shown; a task started from the page streams live and is
//! cancelled from the page. Screenshots of each page go to `target/ui-screenshots/`.

use std::time::{Duration, Instant};

use serde_json::Value;
use station_core::process::{ChildProcess, CommandSpec};
use station_testkit::model_server::{Script, ScriptedModel, Step};
use station_testkit::peers;
use station_testkit::process::{live_children_of, live_group_members};

use crate::e2e::{Env, bin};
use crate::webdriver::{Browser, PAGE_DEADLINE};

fn env_for(model: &ScriptedModel) -> Env {
    Env::new(
        model,
        &format!(
            "  backend: opencode-cli\n  cli:\n    binary: {}\n    model: {}\n",
            bin(peers::opencode_bin()),
            peers::OPENCODE_MODEL
        ),
    )
}

/// `stn ui --listen 127.0.0.1:0` with the test's environment; the child and the page's URL.
async fn start_ui(env: &Env) -> (ChildProcess, String) {
    let home = env.home.path();
    let mut spec = CommandSpec::new(assert_cmd::cargo::cargo_bin("stn"), home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["ui", "--listen", "127.0.0.1:0"]);
    for (k, v) in &env.vars {
        spec = spec.env(k, v);
    }
    let child = spec.spawn().unwrap();
    let deadline = Instant::now() + PAGE_DEADLINE;
    loop {
        let stderr = child.stderr_tail();
        if let Some((_, url)) = stderr.lines().find_map(|l| l.split_once("serving on ")) {
            return (child, url.trim().to_string());
        }
        assert!(Instant::now() < deadline, "stn ui did not start: {stderr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get_json(url: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .timeout(PAGE_DEADLINE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PAGE_DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_a_session_made_by_stn_code_and_shows_its_diff() {
    let script = Script::new().on(
        "greet station",
        vec![
            Step::edit(
                "hello.py",
                "def greet():\n    return 'Hello World'\n",
                "def greet():\n    return 'Hello Station'\n",
            ),
            Step::text("Greeted Station."),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let env = env_for(&model);
    let ws = env.home.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join("hello.py"),
        "def greet():\n    return 'Hello World'\n",
    )
    .unwrap();
    let out = env
        .stn()
        .args(["code", "--workspace", &ws.display().to_string(), "--json"])
        .arg("Greet Station in hello.py")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_ui, url) = start_ui(&env).await;
    let browser = Browser::start().await;
    browser.goto(&url).await;
    browser
        .wait_text("#sessions tbody", "Greet Station in hello.py")
        .await;
    assert!(
        browser
            .texts("#sessions tbody")
            .await
            .contains("opencode-cli")
    );
    browser.screenshot("sessions").await;

    browser.click("#sessions tbody a").await;
    let tasks = browser.wait_text("#tasks tbody", "hello.py").await;
    assert!(tasks.contains("ok (completed)"), "{tasks}");
    browser.wait_text("#chart-figure", "tokens").await;
    browser.screenshot("session").await;

    browser.click("#tasks a.view-diff").await;
    let added = browser
        .wait_text("#diff tr.add", "return 'Hello Station'")
        .await;
    let removed = browser.texts("#diff tr.del").await;
    assert!(removed.contains("return 'Hello World'"), "{removed}");
    assert!(!added.contains("Hello World"), "{added}");
    // Python keywords are coloured, inside and outside changed lines.
    assert!(browser.texts("#diff .kw").await.contains("return"));
    browser.screenshot("diff-unified").await;

    browser.click("input[name=layout][value=split]").await;
    let right = browser
        .wait_text("#diff td.code.add", "Hello Station")
        .await;
    assert!(
        browser
            .texts("#diff td.code.del")
            .await
            .contains("Hello World"),
        "{right}"
    );
    browser.screenshot("diff-side-by-side").await;

    // Narrow screens: the list fits 375 px without sideways scrolling.
    browser.resize(375, 800).await;
    browser.goto(&url).await;
    browser
        .wait_text("#sessions tbody", "Greet Station in hello.py")
        .await;
    let overflow = browser
        .eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            Value::Null,
        )
        .await;
    assert_eq!(overflow, 0, "the page scrolls sideways at 375 px");
    browser.screenshot("sessions-375px").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_started_from_the_page_streams_live_and_cancel_stops_it() {
    let words = (1..=300)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    // opencode prints a text part when it ends: the first one ends before the slow answer.
    let script = Script::new().on(
        "endless story",
        vec![
            Step::bash("true").with_text_before("Looking at the project first."),
            Step::slow_text(words, Duration::from_millis(500)),
        ],
    );
    let model = ScriptedModel::start(script).await.unwrap();
    let env = env_for(&model);
    let ws = env.home.path().join("story");
    std::fs::create_dir_all(&ws).unwrap();
    let (ui, url) = start_ui(&env).await;
    let browser = Browser::start().await;
    browser.goto(&url).await;

    browser.click("#new-session summary").await;
    browser
        .type_into("#new-workspace", &ws.display().to_string())
        .await;
    browser
        .type_into("#new-instruction", "Write an endless story")
        .await;
    browser.click("#new-form button[type=submit]").await;

    browser
        .wait_text("#live-text", "Looking at the project first.")
        .await;
    browser.wait_text("#live-log", "→ bash").await;
    // The agent still works: opencode runs under `stn ui`, the model still streams.
    let mut agents = Vec::new();
    poll_until("opencode streaming from the model", || {
        agents = live_children_of(ui.pid());
        !agents.is_empty() && model.open_streams() > 0
    })
    .await;
    browser.screenshot("live-task").await;

    browser.click("#cancel").await;
    browser.wait_text("#live-state", "cancelled").await;
    poll_until("the agent's process group to be gone", || {
        agents.iter().all(|g| live_group_members(*g).is_empty())
    })
    .await;
    poll_until("the model stream to close", || model.open_streams() == 0).await;
    browser
        .wait_text("#tasks tbody", "failed (cancelled)")
        .await;
    browser.screenshot("cancelled-task").await;

    let sessions = get_json(&format!("{url}api/sessions")).await;
    let id = sessions["sessions"][0]["id"].as_str().unwrap();
    let shown = get_json(&format!("{url}api/sessions/{id}")).await;
    assert_eq!(shown["tasks"][0]["stop_reason"], "cancelled", "{shown:#}");
    assert_eq!(shown["state"], "idle", "{shown:#}");
    browser.quit().await;
}
