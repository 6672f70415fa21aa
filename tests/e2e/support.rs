//! Test support: start the real `droplet` binary on a free loopback port with
//! real example droplets, and talk to it over real HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use droplet_host::ops::child_env::isolate;

/// How long a host may take to start (it may compile every droplet).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Where `cargo xtask test` put the example droplets.
fn examples_dir() -> PathBuf {
    std::env::var_os("DROPLET_EXAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        })
}

/// The bytes of example droplet `name`.
pub fn example(name: &str) -> Vec<u8> {
    let path = examples_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|err| {
        panic!(
            "example droplet {} is missing ({err}): run the tests with `cargo xtask test`, \
             or build the examples first with `cargo xtask examples`",
            path.display()
        )
    })
}

/// Example `name` with a custom section appended: the same droplet, but
/// different bytes (a distinct version and cache entry) for each `variant`.
pub fn example_variant(name: &str, variant: u32) -> Vec<u8> {
    use wasm_encoder::{ComponentSection, CustomSection, Encode};
    let section = CustomSection {
        name: "droplet-test-variant".into(),
        data: variant.to_le_bytes().to_vec().into(),
    };
    let mut bytes = example(name);
    bytes.push(section.id());
    section.encode(&mut bytes);
    bytes
}

/// A manifest with a budget no load on a shared 2-core machine can
/// overrun, for droplets in tests that are not about budgets.
pub const GENEROUS: &str = "budget_ms = 60000\n";

/// A host to start.
#[derive(Default)]
pub struct HostBuilder {
    files: Vec<(String, Vec<u8>)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    data: Option<PathBuf>,
    cache: Option<PathBuf>,
    start_timeout: Option<Duration>,
}

impl HostBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves example `example` as droplet `name`, with a budget no load
    /// can overrun ([`GENEROUS`]).
    pub fn droplet(self, name: &str, example_name: &str) -> Self {
        self.droplet_with(name, example_name, "")
    }

    /// Serves example `example` as droplet `name` with a manifest. Unless
    /// the manifest sets `budget_ms` (a test about budgets), it gets
    /// [`GENEROUS`]: on a loaded machine the default 1000 ms is overrun by
    /// calls that are not slow, only waiting for a core.
    pub fn droplet_with(self, name: &str, example_name: &str, manifest: &str) -> Self {
        let manifest = if manifest.contains("budget_ms") {
            manifest.to_string()
        } else {
            format!("{GENEROUS}{manifest}")
        };
        self.file(&format!("{name}.wasm"), example(example_name))
            .file(&format!("{name}.toml"), manifest.into_bytes())
    }

    /// Puts a file in the droplets directory.
    pub fn file(mut self, name: &str, bytes: Vec<u8>) -> Self {
        self.files.push((name.to_string(), bytes));
        self
    }

    /// Passes a flag to `droplet serve`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Sets an environment variable for the host.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Keeps the host's data in `dir` (to restart a host on the same data).
    pub fn data(mut self, dir: &std::path::Path) -> Self {
        self.data = Some(dir.to_path_buf());
        self
    }

    /// Uses `dir` as the compiled-code cache instead of the shared one.
    /// Allows the host `timeout` to start and compile its droplets (a
    /// large component, compiled cold, on a loaded machine).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = Some(timeout);
        self
    }

    pub fn cache(mut self, dir: &std::path::Path) -> Self {
        self.cache = Some(dir.to_path_buf());
        self
    }

    /// Starts the host and waits until it listens.
    pub async fn start(self) -> Host {
        let lazy = self.args.iter().any(|arg| arg == "--lazy");
        let dir = tempfile::tempdir().expect("temp dir");
        let droplets = dir.path().join("droplets");
        std::fs::create_dir_all(&droplets).expect("droplets dir");
        for (name, bytes) in &self.files {
            std::fs::write(droplets.join(name), bytes).expect("write droplet file");
        }
        // One compiled-code cache for the whole test run: each example is
        // compiled once, whichever test starts first.
        let cache = self.cache.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("droplet-e2e-cache")
        });
        let mut command = Command::new(env!("CARGO_BIN_EXE_droplet"));
        isolate(&mut command)
            .current_dir(dir.path())
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--droplets")
            .arg(&droplets)
            .arg("--data")
            .arg(self.data.clone().unwrap_or_else(|| dir.path().join("data")))
            .arg("--cache")
            .arg(&cache)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start the droplet binary");
        let stdout = child.stdout.take().expect("stdout");
        let logs = Arc::new(Mutex::new(Vec::<String>::new()));
        std::thread::spawn({
            let logs = Arc::clone(&logs);
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    logs.lock().unwrap().push(line);
                }
            }
        });
        let mut host = Host {
            child,
            addr: None,
            admin_addr: None,
            logs,
            droplets,
            _dir: dir,
        };
        // Waits for the listening line, or the process's exit: a host that
        // refuses to start is known at once, not after the timeout.
        let deadline = Instant::now() + self.start_timeout.unwrap_or(START_TIMEOUT);
        let listening = loop {
            let listening = host.log_lines().into_iter().find(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("listening on"))
            });
            let exited = host.child.try_wait().ok().flatten();
            if listening.is_some() || exited.is_some() || Instant::now() >= deadline {
                break listening.ok_or(exited);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let listening = listening.unwrap_or_else(|status| {
            panic!(
                "host did not start (exit: {status:?}); its log:\n{}",
                host.logs.lock().unwrap().join("\n")
            )
        });
        host.addr = Some(
            listening["addr"]
                .as_str()
                .and_then(|addr| addr.parse().ok())
                .expect("listening line names the address"),
        );
        host.admin_addr = listening["admin_addr"]
            .as_str()
            .and_then(|addr| addr.parse().ok());
        // It listens at once and compiles after (unless lazy): the tests
        // start from every droplet compiled.
        if !lazy {
            host.wait_for_log(
                |line| line["message"] == "droplets loaded",
                deadline.saturating_duration_since(Instant::now()),
            )
            .await
            .unwrap_or_else(|| {
                panic!(
                    "host did not finish compiling its droplets; its log:\n{}",
                    host.logs.lock().unwrap().join("\n")
                )
            });
        }
        host
    }
}

/// How long a streaming test waits for what comes at once on an idle
/// machine: generous for a loaded one.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The next piece of `body`'s data, within [`PATIENCE`]; `None` at its end.
pub async fn next_data(body: &mut hyper::body::Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("the next piece of the body within the patience")?
            .expect("the body continues");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

/// How a response body came to an end.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Whole.
    Ended,
    /// Cut off: the client can tell it is incomplete.
    Cut,
    /// Nothing more within [`PATIENCE`].
    StillOpen,
}

/// Reads `body` to its end, or until it is cut off or stalls.
pub async fn drain(body: &mut hyper::body::Incoming) -> (Vec<u8>, Ending) {
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, body.frame()).await {
            Ok(Some(Ok(frame))) => received.extend(frame.into_data().unwrap_or_default()),
            Ok(Some(Err(_))) => return (received, Ending::Cut),
            Ok(None) => return (received, Ending::Ended),
            Err(_) => return (received, Ending::StillOpen),
        }
    }
}

/// A request body the test writes piece by piece, while the response is
/// already being read.
pub fn channel_body() -> (
    tokio::sync::mpsc::Sender<Bytes>,
    http_body_util::StreamBody<
        impl futures::Stream<Item = Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>
        + Send
        + 'static,
    >,
) {
    let (pieces, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|piece| piece.map(|data| Ok(hyper::body::Frame::data(data))))
    }));
    (pieces, body)
}

/// Shows that `path` echoes a request body while it is still arriving:
/// the head and the first echo come before the rest is sent (a host that
/// read the body whole first would wait here until the patience ends).
pub async fn assert_duplex_echo(host: &Host, path: &str) {
    let (pieces, body) = channel_body();
    pieces.send(Bytes::from_static(b"first ")).await.unwrap();
    let response =
        tokio::time::timeout(PATIENCE, host.open(Request::post(path).body(body).unwrap()))
            .await
            .expect("the response head before the request body ends");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "first ");
    pieces.send(Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(next_data(&mut body).await.unwrap(), "second");
    drop(pieces);
    assert_eq!(
        next_data(&mut body).await,
        None,
        "ends when the request does"
    );
}

/// Shows that `path` sends three server-sent events (300 ms apart) as they
/// are written: had the host waited for the whole body, all three would
/// come as one piece.
pub async fn assert_events_as_written(host: &Host, path: &str) {
    let response = host.open_get(path).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    assert_eq!(next_data(&mut body).await.unwrap(), "data: event 0\n\n");
    let mut rest = Vec::new();
    while let Some(piece) = next_data(&mut body).await {
        rest.extend_from_slice(&piece);
    }
    assert_eq!(rest, b"data: event 1\n\ndata: event 2\n\n");
}

/// A running `droplet serve`; killed when dropped.
pub struct Host {
    child: Child,
    addr: Option<SocketAddr>,
    /// The admin listener's address, with `--admin-listen`.
    pub admin_addr: Option<SocketAddr>,
    logs: Arc<Mutex<Vec<String>>>,
    droplets: PathBuf,
    _dir: tempfile::TempDir,
}

/// A response as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Asserts this is the host's JSON error with `status` and `code`, and
    /// returns its message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "body: {body}");
        assert_eq!(
            body["error"]["trace_id"].as_str(),
            self.header("x-trace-id"),
            "the error names the response's trace id"
        );
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl Host {
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("host started")
    }

    /// The droplets directory the host watches.
    pub fn droplets_dir(&self) -> &std::path::Path {
        &self.droplets
    }

    /// `http://ADDR`, for the CLI's `--host`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Bytes::new()).unwrap())
            .await
    }

    /// Sends one request on a new connection.
    pub async fn send(&self, req: Request<Bytes>) -> Reply {
        self.try_send(req).await.expect("request failed")
    }

    /// Sends one request on a new connection, reporting transport errors.
    pub async fn try_send(&self, req: Request<Bytes>) -> Result<Reply, String> {
        self.try_send_to(self.addr(), req).await
    }

    /// Sends one request to another of the host's listeners.
    pub async fn send_to(&self, addr: SocketAddr, req: Request<Bytes>) -> Reply {
        self.try_send_to(addr, req).await.expect("request failed")
    }

    async fn try_send_to(&self, addr: SocketAddr, req: Request<Bytes>) -> Result<Reply, String> {
        let (mut parts, body) = req.into_parts();
        if !parts.headers.contains_key(http::header::HOST) {
            parts
                .headers
                .insert(http::header::HOST, addr.to_string().parse().unwrap());
        }
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// Sends one request on a new connection and returns the response as
    /// it arrives: its body is read by the caller, piece by piece.
    pub async fn open<B>(&self, req: Request<B>) -> hyper::Response<hyper::body::Incoming>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = req.into_parts();
        parts
            .headers
            .insert(http::header::HOST, self.addr().to_string().parse().unwrap());
        let stream = TcpStream::connect(self.addr()).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .expect("a response head")
    }

    /// A GET on a new connection, its response read as it arrives.
    pub async fn open_get(&self, path: &str) -> hyper::Response<hyper::body::Incoming> {
        self.open(
            Request::get(path)
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
    }

    /// Writes raw bytes on a new connection and returns the raw response.
    pub async fn raw(&self, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(self.addr()).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Log lines so far, parsed as JSON (lines that are not JSON skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Polls the log (written in batches, a few milliseconds apart under
    /// load) until `found` finds what it looks for in the lines so far, or
    /// `timeout` passes; then its last answer.
    async fn poll_log<T>(&self, timeout: Duration, found: impl Fn(Vec<Value>) -> (bool, T)) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let (done, answer) = found(self.log_lines());
            if done || Instant::now() >= deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls the log until `count` lines match, or `timeout` passes, and
    /// says how many match then.
    pub async fn wait_for_log_count(
        &self,
        matches: impl Fn(&Value) -> bool,
        count: usize,
        timeout: Duration,
    ) -> usize {
        self.poll_log(timeout, |lines| {
            let found = lines.iter().filter(|line| matches(line)).count();
            (found >= count, found)
        })
        .await
    }

    /// Polls the log until a line matches, or `timeout` passes.
    pub async fn wait_for_log(
        &self,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Option<Value> {
        self.poll_log(timeout, |lines| {
            let line = lines.into_iter().find(&matches);
            (line.is_some(), line)
        })
        .await
    }

    /// A line of the host process's `/proc/PID/status`, in KiB (`VmRSS`,
    /// `VmHWM`: the peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the host's /proc status")
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .expect("the field in /proc status")
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`) to the host process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the host to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a test fixture in `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Runs the `droplet` CLI with `args` (and `env`) in a hermetic
/// environment, returning its exit status success, stdout and stderr.
pub fn cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_droplet"));
    isolate(&mut command).envs(env.iter().copied());
    run_cli(&mut command, args)
}

/// Runs `command` (the `droplet` CLI) with `args`. A `serve` that starts
/// listening is stopped at once and counts as a success, so a host that
/// should have refused to start fails its test in seconds; any command still
/// running after five minutes is killed and fails the test.
pub fn run_cli(command: &mut Command, args: &[&str]) -> (bool, String, String) {
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the droplet CLI");
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        let text = Arc::new(Mutex::new(String::new()));
        let reader = std::thread::spawn({
            let text = Arc::clone(&text);
            move || {
                let Some(pipe) = pipe else { return };
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut text = text.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            }
        });
        (text, reader)
    };
    let (stdout, stdout_reader) = read(
        child
            .stdout
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>),
    );
    let (stderr, stderr_reader) = read(
        child
            .stderr
            .take()
            .map(|pipe| Box::new(pipe) as Box<dyn std::io::Read + Send>),
    );
    let serving = args.first() == Some(&"serve");
    let deadline = Instant::now() + Duration::from_secs(300);
    let success = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.success();
        }
        if serving && stdout.lock().unwrap().contains("listening on") {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`droplet {}` did not finish in time", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = (stdout_reader.join(), stderr_reader.join());
    let (stdout, stderr) = (
        stdout.lock().unwrap().clone(),
        stderr.lock().unwrap().clone(),
    );
    (success, stdout, stderr)
}

/// The HS256 secret the auth tests configure.
pub const TEST_SECRET: &str = "e2e-secret-that-is-long-enough-for-hs256";

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Signs `claims` as an HS256 token with [`TEST_SECRET`].
pub fn hs256_token(claims: &Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
    )
    .expect("sign HS256")
}

/// Standard valid claims: audience, an hour of validity, and `scope`.
pub fn claims_with_scope(scope: &str) -> Value {
    serde_json::json!({
        "sub": "tester",
        "aud": "fullpotential.droplets",
        "exp": now_s() + 3600,
        "scope": scope,
    })
}

/// Sends an admin API request with a `droplets:admin` token and an optional
/// JSON body.
pub async fn admin_request(host: &Host, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let token = hs256_token(&claims_with_scope("droplets:admin"));
    let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
    host.send(
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(body)
            .unwrap(),
    )
    .await
}

/// A minimal pooled HTTP/1.1 client over hyper for load loops in spawned
/// tasks (which cannot borrow a [`Host`]): panics on a failed or hung request.
pub mod reqwest_like {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as Pool;
    use hyper_util::rt::TokioExecutor;

    pub struct Client {
        base: String,
        pool: Pool<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    }

    impl Client {
        pub fn new(base: &str) -> Self {
            Self {
                base: base.to_string(),
                pool: Pool::builder(TokioExecutor::new()).build_http(),
            }
        }

        pub async fn get(&self, path: &str) -> (u16, String) {
            self.send("GET", path, "").await
        }

        pub async fn put(&self, path: &str, body: &str) -> (u16, String) {
            self.send("PUT", path, body).await
        }

        async fn send(&self, method: &str, path: &str, body: &str) -> (u16, String) {
            let request = http::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.base))
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            let response = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.pool.request(request),
            )
            .await
            .expect("a request hung")
            .expect("the request failed");
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    }
}
