//! Test support: a git smart-HTTP server that demands basic auth (axum in front of the system
//! `git http-backend` CGI), a server that accepts connections and never answers, and fixtures
//! built with the `git` CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use station_core::process::CommandSpec;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const GIT_HINT: &str = "apt-get install -y git";

/// A fresh token-looking secret for one test (built at run time, unique per call).
pub fn fake_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "stntest{}{nanos:09}x{n:04}{}",
        "Qz7".repeat(4),
        std::process::id()
    )
}

/// `Basic base64(user:token)`: the header value a client sends.
pub fn basic_header(user: &str, token: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
    )
}

/// `git <args>` in `cwd`, isolated from the machine's git config; panics with stderr on failure.
pub async fn git(cwd: &Path, args: &[&str]) -> String {
    git_spec(cwd, args)
        .output(Duration::from_secs(60), None)
        .await
        .unwrap_or_else(|e| panic!("git {args:?} in {} failed: {e}", cwd.display()))
}

fn git_spec(cwd: &Path, args: &[&str]) -> CommandSpec {
    CommandSpec::new("git", cwd)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .install_hint(GIT_HINT)
}

/// A bare repository `root/<name>.git` on branch `main`, writable over HTTP.
pub async fn bare_repo(root: &Path, name: &str) -> PathBuf {
    let path = root.join(format!("{name}.git"));
    git(
        root,
        &[
            "init",
            "--quiet",
            "--bare",
            "-b",
            "main",
            path.to_str().unwrap(),
        ],
    )
    .await;
    git(&path, &["config", "http.receivepack", "true"]).await;
    path
}

/// A work tree used to put content into bare repositories with the `git` CLI.
#[derive(Debug)]
pub struct Seed {
    /// The working directory of the seed repository.
    pub dir: PathBuf,
}

impl Seed {
    /// A fresh repository in `dir` (created), on branch `main`.
    pub async fn new(dir: PathBuf) -> Seed {
        std::fs::create_dir_all(&dir).unwrap();
        git(&dir, &["init", "--quiet", "-b", "main"]).await;
        Seed { dir }
    }
    /// Write `content` to `path` (relative to the repository).
    pub fn write(&self, path: &str, content: &str) -> &Self {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
        self
    }
    /// Stage everything and commit; the new commit's id.
    pub async fn commit(&self, message: &str) -> String {
        git(&self.dir, &["add", "-A"]).await;
        git(
            &self.dir,
            &[
                "-c",
                "user.name=Seed",
                "-c",
                "user.email=seed@example.com",
                "commit",
                "--quiet",
                "-m",
                message,
            ],
        )
        .await;
        self.head().await
    }
    /// Create and check out `branch`.
    pub async fn checkout_new(&self, branch: &str) {
        git(&self.dir, &["checkout", "--quiet", "-b", branch]).await;
    }
    /// Push `branch` to the bare repository `bare`.
    pub async fn push_to(&self, bare: &Path, branch: &str) {
        git(
            &self.dir,
            &[
                "push",
                "--quiet",
                bare.to_str().unwrap(),
                &format!("{branch}:{branch}"),
            ],
        )
        .await;
    }
    /// The id of HEAD.
    pub async fn head(&self) -> String {
        git(&self.dir, &["rev-parse", "HEAD"])
            .await
            .trim()
            .to_string()
    }
}

/// A bare repo `name` under `root` with `README.md` and `src/lib.rs` on `main` (two commits)
/// and `feature.txt` on `feature`. Returns the bare path and main's head.
pub async fn seeded_repo(root: &Path, name: &str) -> (PathBuf, String) {
    let bare = bare_repo(root, name).await;
    let seed = Seed::new(root.join(format!("seed-{name}"))).await;
    seed.write("README.md", "# demo\n");
    seed.commit("first commit").await;
    seed.write("src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n");
    let main_head = seed.commit("add lib").await;
    seed.push_to(&bare, "main").await;
    seed.checkout_new("feature").await;
    seed.write("feature.txt", "feature work\n");
    seed.commit("feature commit").await;
    seed.push_to(&bare, "feature").await;
    (bare, main_head)
}

/// The commit a branch of a bare repository points at.
pub async fn bare_head(bare: &Path, branch: &str) -> String {
    git(bare, &["rev-parse", &format!("refs/heads/{branch}")])
        .await
        .trim()
        .to_string()
}

#[derive(Debug)]
struct ServerState {
    root: PathBuf,
    user: String,
    expected: String,
    requests: AtomicUsize,
    unauthorized: AtomicUsize,
    /// User names of every `Authorization: Basic` header received (never the password).
    users_seen: Mutex<Vec<String>>,
}

/// `git http-backend` behind basic auth on 127.0.0.1.
#[derive(Debug)]
pub struct GitServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    task: JoinHandle<()>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitServer {
    /// Serve the bare repositories under `root`, accepting only `user` with `token`.
    pub async fn start(root: &Path, user: &str, token: &str) -> GitServer {
        let state = Arc::new(ServerState {
            root: root.to_path_buf(),
            user: user.to_string(),
            expected: basic_header(user, token),
            requests: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
            users_seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        GitServer { addr, state, task }
    }

    /// `http://127.0.0.1:PORT/<name>.git`
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests refused for missing or wrong credentials.
    pub fn unauthorized(&self) -> usize {
        self.state.unauthorized.load(Ordering::SeqCst)
    }

    /// The user names that came with credentials, in order.
    pub fn users_seen(&self) -> Vec<String> {
        self.state.users_seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(st): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(encoded) = auth.strip_prefix("Basic ")
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded)
    {
        let user = String::from_utf8_lossy(&decoded)
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        st.users_seen.lock().unwrap().push(user);
    }
    if auth != st.expected {
        st.unauthorized.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"station-test\"")],
            "authentication required\n",
        )
            .into_response();
    }
    match run_backend(&st, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("http-backend: {e}\n"),
        )
            .into_response(),
    }
}

async fn run_backend(
    st: &ServerState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, String> {
    let header_value = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let mut spec = CommandSpec::new("git", &st.root)
        .arg("http-backend")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &st.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or_default())
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header_value(header::CONTENT_TYPE))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &st.user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .install_hint(GIT_HINT)
        .stdin_bytes(body.to_vec());
    let encoding = header_value(header::CONTENT_ENCODING);
    if !encoding.is_empty() {
        spec = spec.env("HTTP_CONTENT_ENCODING", encoding);
    }
    let protocol = headers
        .get("git-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !protocol.is_empty() {
        spec = spec.env("GIT_PROTOCOL", protocol);
    }
    let mut child = spec.spawn().map_err(|e| e.to_string())?;
    let mut stdout = child.take_stdout().ok_or("no stdout")?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_to_end(&mut out))
        .await
        .map_err(|_| "http-backend timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if !status.success() && out.is_empty() {
        return Err(child.failure(status).await.to_string());
    }
    parse_cgi(&out)
}

/// CGI output: header lines, a blank line, the body. `Status:` sets the status code.
fn parse_cgi(out: &[u8]) -> Result<Response, String> {
    let (head_end, body_start) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => {
            let i = out
                .windows(2)
                .position(|w| w == b"\n\n")
                .ok_or("CGI output without a header end")?;
            (i, i + 2)
        }
    };
    let head = std::str::from_utf8(&out[..head_end]).map_err(|e| e.to_string())?;
    let mut response = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or("bad Status")?;
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response
        .body(Body::from(out[body_start..].to_vec()))
        .map_err(|e| e.to_string())
}

/// Accepts connections, reads whatever comes, and never answers. Dropping it closes them all.
#[derive(Debug)]
pub struct StallServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    accepted: Arc<AtomicUsize>,
    first_bytes: Arc<Mutex<Vec<u8>>>,
}

impl Drop for StallServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StallServer {
    /// Listen on 127.0.0.1 and accept connections that never get an answer.
    pub async fn start() -> StallServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let first_bytes = Arc::new(Mutex::new(Vec::new()));
        let (counter, firsts) = (accepted.clone(), first_bytes.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let firsts = firsts.clone();
                conns.spawn(async move {
                    let mut sink = [0u8; 4096];
                    if let Ok(1..) = stream.read(&mut sink).await {
                        firsts.lock().unwrap().push(sink[0]);
                    }
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    // Keep the socket open after the client finished sending.
                    std::future::pending::<()>().await;
                });
            }
        });
        StallServer {
            addr,
            task,
            accepted,
            first_bytes,
        }
    }

    /// An `http://` URL of a repository on this server.
    pub fn http_url(&self) -> String {
        format!("http://{}/stalled.git", self.addr)
    }

    /// An `https://` URL of a repository on this server (the TLS handshake stalls too).
    pub fn https_url(&self) -> String {
        format!("https://{}/stalled.git", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The first byte each connection sent (0x16 starts a TLS handshake, `G` an HTTP GET).
    pub fn first_bytes(&self) -> Vec<u8> {
        self.first_bytes.lock().unwrap().clone()
    }
}

/// Poll `check` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file under `dir`, as (path, lossy text).
pub fn read_tree(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}
