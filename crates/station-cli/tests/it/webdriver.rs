//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium through
//! `chromedriver` on a free loopback port. Every wait has a deadline.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use station_core::process::{ChildProcess, CommandSpec};

/// The longest any one wait for the page takes.
pub(crate) const PAGE_DEADLINE: Duration = Duration::from_secs(60);

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One Chromium session; the browser and its driver die with it.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: ChildProcess,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn installed(program: &str) -> PathBuf {
    which::which(program).unwrap_or_else(|_| {
        panic!("`{program}` is not installed; the browser tests need Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/run installs them)")
    })
}

/// Where screenshots go: `target/ui-screenshots/` of the workspace.
pub(crate) fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Start chromedriver and a headless Chromium with a fresh profile.
    pub(crate) async fn start() -> Browser {
        let driver_bin = installed("chromedriver");
        let chromium = installed("chromium");
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let driver = CommandSpec::new(driver_bin, profile.path())
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .spawn()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(PAGE_DEADLINE)
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PAGE_DEADLINE;
        loop {
            let ready = http.get(format!("{base}/status")).send().await.ok();
            let ready = match ready {
                Some(res) => res.json::<Value>().await.ok(),
                None => None,
            };
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not get ready: {}",
                driver.stderr_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!(
            "--user-data-dir={}",
            profile.path().join("chromium").display()
        )])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created:#}"))
            .to_string();
        Browser {
            http,
            session: format!("{base}/session/{id}"),
            _driver: driver,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Run `script` in the page (`arguments[0]` = `arg`) and return its value.
    pub(crate) async fn eval(&self, script: &str, arg: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": [arg]})),
        )
        .await
    }

    /// The text of every element matching `css`, one per line.
    pub(crate) async fn texts(&self, css: &str) -> String {
        let script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent).join('\\n')";
        self.eval(script, json!(css))
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Wait until the elements matching `css` show `needle`; their text.
    pub(crate) async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + PAGE_DEADLINE;
        loop {
            let text = self.texts(css).await;
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never showed `{needle}`; it shows:\n{text}\nstatus line: {}",
                self.texts("#status").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_DEADLINE;
        loop {
            let found = self
                .eval(
                    "return document.querySelector(arguments[0]) !== null",
                    json!(css),
                )
                .await;
            if found == true {
                break;
            }
            assert!(Instant::now() < deadline, "no element `{css}` on the page");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    /// Click the (first) element matching `css`, as a user would.
    pub(crate) async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Type `text` into the field matching `css`.
    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Resize the window (the viewport is a little smaller).
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Save a PNG of the page as `target/ui-screenshots/<name>.png`.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// End the session (the browser quits; the driver is killed on drop).
    pub(crate) async fn quit(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}
