//! Run handlers natively in `cargo test`, against an in-memory world.
//!
//! With the `testing` feature (a dev-dependency feature: the droplet's
//! wasm build never has it), every SDK call made off `wasm32` answers from
//! a [`TestWorld`]: an in-memory kv with the host's key and value rules,
//! the config the test gives, the caller's claims, canned responses for
//! outbound requests, and the log lines and streamed pieces the handler
//! wrote.
//!
//! ```
//! use droplet_sdk::testing::{TestWorld, claims};
//! use droplet_sdk::{auth, config, kv, Request, Result};
//!
//! fn handle(_req: Request) -> Result<String> {
//!     auth::require_scope("visits:write")?;
//!     let visits = kv::increment("visits", 1)?;
//!     Ok(format!("{} #{visits}", config::get_or("greeting", "hi")))
//! }
//!
//! let mut world = TestWorld::new().with_config("greeting", "hello");
//! assert_eq!(world.call(handle, Request::get("/")).status(), 401);
//! world.set_caller(Some(claims("alice", &["visits:write"])));
//! assert_eq!(world.call(handle, Request::get("/")).body_text(), Some("hello #1"));
//! assert_eq!(world.kv_get("visits").as_deref(), Some(&b"1"[..]));
//! ```
//!
//! SDK calls made outside [`TestWorld::call`] use a default world of the
//! test's thread.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::auth::{Claims, TokenError};
use crate::fetch::{FetchError, FetchRequest};
use crate::log::Level;
use crate::{IntoResponse, Request, Response};

/// The host's limits the test world keeps too.
const MAX_KEY: usize = 512;
const MAX_VALUE: usize = 1 << 20;
const MAX_LIST: u32 = 1000;
const MAX_STREAMED: usize = 16 << 20;

/// What a handler's SDK calls see and change.
#[derive(Debug, Default)]
pub struct TestWorld {
    kv: BTreeMap<String, (Vec<u8>, Option<Instant>)>,
    config: HashMap<String, String>,
    caller: Option<Claims>,
    caller_error: Option<TokenError>,
    tokens: Vec<(String, Claims)>,
    responses: Vec<(String, String, Response)>,
    fetched: Vec<FetchRequest>,
    logs: Vec<LogLine>,
    sent: Vec<SentJob>,
    calls: u64,
    call: Call,
}

/// One call's own state.
#[derive(Debug, Default)]
struct Call {
    body: Vec<u8>,
    read: usize,
    head: Option<Response>,
    streamed: Vec<u8>,
}

/// One job the handler sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentJob {
    /// Its id in the test world (1, 2, …).
    pub id: u64,
    /// The queue.
    pub queue: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The delay asked for, in milliseconds.
    pub delay_ms: Option<u64>,
    /// The dedup key given.
    pub dedup_key: Option<String>,
}

/// One line the handler logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its structured fields, in order.
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// The value of field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

thread_local! {
    static WORLD: RefCell<TestWorld> = RefCell::new(TestWorld::default());
}

fn with<T>(f: impl FnOnce(&mut TestWorld) -> T) -> T {
    WORLD.with(|world| f(&mut world.borrow_mut()))
}

/// Claims with `subject` and `scopes`, as the host gives a verified token's.
pub fn claims(subject: &str, scopes: &[&str]) -> Claims {
    let json = serde_json::json!({ "sub": subject, "scope": scopes.join(" ") });
    Claims {
        subject: Some(subject.to_string()),
        issuer: None,
        audience: Vec::new(),
        expires_at: None,
        scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
        json: json.to_string(),
    }
}

impl TestWorld {
    /// An empty world: no kv keys, no config, an anonymous caller, no
    /// outbound responses.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `[config] key = value`.
    pub fn with_config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_string(), value.to_string());
        self
    }

    /// Stores `value` at `key`.
    pub fn with_kv(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.kv.insert(key.to_string(), (value.into(), None));
        self
    }

    /// Calls come with a verified token carrying `claims`.
    pub fn with_caller(mut self, claims: Claims) -> Self {
        self.set_caller(Some(claims));
        self
    }

    /// Calls come with a token that did not verify, for `why`.
    pub fn with_token_error(mut self, why: TokenError) -> Self {
        self.caller = None;
        self.caller_error = Some(why);
        self
    }

    /// [`auth::verify`](crate::auth::verify) accepts `token` as `claims`
    /// (any other token is `invalid`).
    pub fn with_token(mut self, token: &str, claims: Claims) -> Self {
        self.tokens.push((token.to_string(), claims));
        self
    }

    /// An outbound `method url` (exactly that URL) answers `response`.
    /// Requests with no response given fail as denied.
    pub fn with_response(mut self, method: &str, url: &str, response: Response) -> Self {
        self.responses
            .push((method.to_ascii_uppercase(), url.to_string(), response));
        self
    }

    /// The caller of the following calls (`None`: anonymous).
    pub fn set_caller(&mut self, caller: Option<Claims>) {
        self.caller = caller;
        self.caller_error = None;
    }

    /// Runs `handler` on `req` in this world, as the host would: the
    /// request gets an `x-trace-id` when it has none, and a response the
    /// handler streamed comes back whole.
    pub fn call<R: IntoResponse>(
        &mut self,
        handler: impl FnOnce(Request) -> R,
        req: Request,
    ) -> Response {
        self.calls += 1;
        let req = if req.trace_id().is_some() {
            req
        } else {
            req.with_header("x-trace-id", &format!("test-{:016x}", self.calls))
        };
        req.make_current();
        self.call = Call {
            body: req.body().to_vec(),
            ..Call::default()
        };
        WORLD.with(|world| std::mem::swap(self, &mut world.borrow_mut()));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            handler(req).into_response()
        }));
        WORLD.with(|world| std::mem::swap(self, &mut world.borrow_mut()));
        let call = std::mem::take(&mut self.call);
        match outcome {
            Ok(returned) => match call.head {
                Some(head) => head.with_body(call.streamed),
                None => returned,
            },
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Runs an async handler on `req`, as [`call`](Self::call) does.
    ///
    /// ```
    /// use droplet_sdk::{testing::TestWorld, Request};
    ///
    /// async fn handle(req: Request) -> String {
    ///     format!("async {}", req.path())
    /// }
    /// let answer = TestWorld::new().call_async(handle, Request::get("/x"));
    /// assert_eq!(answer.body_text(), Some("async /x"));
    /// ```
    pub fn call_async<R: IntoResponse, F: std::future::Future<Output = R>>(
        &mut self,
        handler: impl FnOnce(Request) -> F,
        req: Request,
    ) -> Response {
        self.call(|req| crate::rt::block_on(handler(req)), req)
    }

    /// The value at `key` now.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.kv
            .get(key)
            .filter(|(_, expires)| live(*expires))
            .map(|(value, _)| value.clone())
    }

    /// Every live key, in order.
    pub fn kv_keys(&self) -> Vec<String> {
        self.kv
            .iter()
            .filter(|(_, (_, expires))| live(*expires))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// The lines logged so far.
    ///
    /// ```
    /// use droplet_sdk::{testing::TestWorld, Request};
    ///
    /// let mut world = TestWorld::new();
    /// world.call(|_req: Request| droplet_sdk::log::info!("saved {id}", id = 7), Request::get("/"));
    /// assert_eq!(world.logs()[0].message, "saved 7");
    /// assert_eq!(world.logs()[0].field("id"), Some("7"));
    /// ```
    pub fn logs(&self) -> &[LogLine] {
        &self.logs
    }

    /// The outbound requests sent so far.
    ///
    /// ```
    /// use droplet_sdk::{fetch, testing::TestWorld, Request, Response};
    ///
    /// let mut world = TestWorld::new().with_response("GET", "https://api.example.com/", Response::text("up"));
    /// world.call(|_req: Request| fetch::get("https://api.example.com/").map(|r| r.status()).unwrap_or(0).to_string(), Request::get("/"));
    /// assert_eq!(world.fetched()[0].url(), "https://api.example.com/");
    /// ```
    pub fn fetched(&self) -> &[FetchRequest] {
        &self.fetched
    }

    /// The jobs sent so far (a duplicate by dedup key is not sent again).
    ///
    /// ```
    /// use droplet_sdk::{queue, testing::TestWorld, Request};
    ///
    /// let mut world = TestWorld::new();
    /// world.call(|_req: Request| queue::send("emails", b"hi").map(|id| id.to_string()).unwrap_or_default(), Request::get("/"));
    /// assert_eq!((world.sent()[0].queue.as_str(), &world.sent()[0].payload[..]), ("emails", &b"hi"[..]));
    /// ```
    pub fn sent(&self) -> &[SentJob] {
        &self.sent
    }

    fn prune(&mut self) {
        self.kv.retain(|_, (_, expires)| live(*expires));
    }
}

/// Whether a value that expires at `expires` (`None`: never) is still there.
fn live(expires: Option<Instant>) -> bool {
    expires.is_none_or(|at| at > Instant::now())
}

/// The SDK's imports, answered by the thread's world.
pub(crate) mod imports {
    use super::*;

    pub(crate) fn fetch(request: FetchRequest) -> Result<Response, FetchError> {
        crate::fetch::check_url(request.url())?;
        with(|world| {
            let canned = world.responses.iter().find(|(method, url, _)| {
                method.eq_ignore_ascii_case(request.method()) && url == request.url()
            });
            let answer = canned.map(|(_, _, response)| response.clone()).ok_or_else(|| {
                FetchError::Denied(format!(
                    "{} {} has no response in the test world: give one with TestWorld::with_response",
                    request.method(),
                    request.url()
                ))
            });
            world.fetched.push(request);
            answer
        })
    }

    /// An internal error's detail, kept as an error line (the host logs it
    /// from stderr).
    pub(crate) fn internal_error(code: &str, detail: &str) {
        log::log(
            Level::Error,
            "the handler failed",
            &[
                ("code".to_string(), code.to_string()),
                ("error".to_string(), detail.to_string()),
            ],
        );
    }

    pub(crate) mod kv {
        use super::*;
        pub(crate) use crate::kv::{Error, KeyPage};

        fn check_key(key: &str) -> Result<(), Error> {
            if key.is_empty() {
                return Err(Error::InvalidKey("the key is empty".to_string()));
            }
            if key.len() > MAX_KEY {
                return Err(Error::KeyTooLarge);
            }
            Ok(())
        }

        fn check_value(value: &[u8]) -> Result<(), Error> {
            if value.len() > MAX_VALUE {
                return Err(Error::ValueTooLarge);
            }
            Ok(())
        }

        pub(crate) fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
            check_key(key)?;
            Ok(with(|world| world.kv_get(key)))
        }

        pub(crate) fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), Error> {
            check_key(key)?;
            check_value(value)?;
            let expires = ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
            with(|world| world.kv.insert(key.to_string(), (value.to_vec(), expires)));
            Ok(())
        }

        pub(crate) fn delete(key: &str) -> Result<bool, Error> {
            check_key(key)?;
            Ok(with(|world| {
                world.prune();
                world.kv.remove(key).is_some()
            }))
        }

        pub(crate) fn exists(key: &str) -> Result<bool, Error> {
            Ok(get(key)?.is_some())
        }

        pub(crate) fn list_keys(
            prefix: &str,
            cursor: Option<&str>,
            limit: u32,
        ) -> Result<KeyPage, Error> {
            let limit = limit.clamp(1, MAX_LIST) as usize;
            Ok(with(|world| {
                world.prune();
                let mut keys: Vec<String> = world
                    .kv
                    .keys()
                    .filter(|key| key.starts_with(prefix))
                    .filter(|key| cursor.is_none_or(|cursor| key.as_str() > cursor))
                    .take(limit + 1)
                    .cloned()
                    .collect();
                let more = keys.len() > limit;
                keys.truncate(limit);
                let next_cursor = if more { keys.last().cloned() } else { None };
                KeyPage { keys, next_cursor }
            }))
        }

        pub(crate) fn compare_and_swap(
            key: &str,
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
        ) -> Result<bool, Error> {
            check_key(key)?;
            if let Some(new) = new {
                check_value(new)?;
            }
            Ok(with(|world| {
                world.prune();
                if world.kv.get(key).map(|(value, _)| value.as_slice()) != expected {
                    return false;
                }
                match new {
                    Some(new) => world.kv.insert(key.to_string(), (new.to_vec(), None)),
                    None => world.kv.remove(key),
                };
                true
            }))
        }

        pub(crate) fn increment(key: &str, delta: i64) -> Result<i64, Error> {
            check_key(key)?;
            with(|world| {
                world.prune();
                let current = match world.kv.get(key) {
                    None => 0,
                    Some((value, _)) => std::str::from_utf8(value)
                        .ok()
                        .and_then(|text| text.trim().parse::<i64>().ok())
                        .ok_or(Error::NotANumber)?,
                };
                let next = current.checked_add(delta).ok_or(Error::NotANumber)?;
                world
                    .kv
                    .insert(key.to_string(), (next.to_string().into_bytes(), None));
                Ok(next)
            })
        }
    }

    pub(crate) mod log {
        use super::*;

        pub(crate) fn log(level: Level, message: &str, fields: &[(String, String)]) {
            eprintln!("[{level:?}] {message} {fields:?}");
            with(|world| {
                world.logs.push(LogLine {
                    level,
                    message: message.to_string(),
                    fields: fields.to_vec(),
                })
            });
        }
    }

    pub(crate) mod auth {
        use super::*;

        pub(crate) fn caller() -> Option<Claims> {
            with(|world| world.caller.clone())
        }

        pub(crate) fn caller_error() -> Option<TokenError> {
            with(|world| world.caller_error.clone())
        }

        pub(crate) fn verify(token: &str) -> Result<Claims, TokenError> {
            with(|world| {
                world
                    .tokens
                    .iter()
                    .find(|(known, _)| known == token)
                    .map(|(_, claims)| claims.clone())
                    .ok_or_else(|| {
                        TokenError::Invalid("the test world knows no such token".to_string())
                    })
            })
        }
    }

    pub(crate) mod queue {
        use super::*;
        pub(crate) use crate::bindings::fp::droplet::queue::{Error, SendOptions};

        /// The host's rules: a payload of at most 256 KiB, a delay of at
        /// most seven days, a dedup key of 1 to 256 bytes.
        pub(crate) fn send(
            queue: &str,
            payload: &[u8],
            options: &SendOptions,
        ) -> Result<u64, Error> {
            if payload.len() > 256 * 1024 {
                return Err(Error::TooLarge);
            }
            if options.delay_ms.is_some_and(|ms| ms > 7 * 24 * 3600 * 1000) {
                return Err(Error::Invalid("delay-ms must be at most seven days".into()));
            }
            if options
                .dedup_key
                .as_ref()
                .is_some_and(|key| key.is_empty() || key.len() > 256)
            {
                return Err(Error::Invalid("dedup-key must be 1 to 256 bytes".into()));
            }
            with(|world| {
                let duplicate = options.dedup_key.as_ref().and_then(|key| {
                    world
                        .sent
                        .iter()
                        .find(|job| job.queue == queue && job.dedup_key.as_ref() == Some(key))
                });
                if let Some(job) = duplicate {
                    return Ok(job.id);
                }
                let id = world.sent.len() as u64 + 1;
                world.sent.push(SentJob {
                    id,
                    queue: queue.to_string(),
                    payload: payload.to_vec(),
                    delay_ms: options.delay_ms,
                    dedup_key: options.dedup_key.clone(),
                });
                Ok(id)
            })
        }
    }

    pub(crate) mod config {
        use super::*;

        pub(crate) fn get(key: &str) -> Option<String> {
            with(|world| world.config.get(key).cloned())
        }
    }

    pub(crate) mod response_body {
        use super::*;
        use crate::bindings::fp::droplet::response_body::BodyError;

        /// Before the response started, the returned response is what
        /// the test sees: only a started response collects pieces.
        pub(crate) fn write(chunk: &[u8]) -> Result<(), BodyError> {
            with(|world| {
                let call = &mut world.call;
                if call.head.is_none() {
                    return Ok(());
                }
                if call.streamed.len() + chunk.len() > MAX_STREAMED {
                    return Err(BodyError::TooLarge);
                }
                call.streamed.extend_from_slice(chunk);
                Ok(())
            })
        }
    }

    pub(crate) mod streaming {
        use super::*;
        use crate::bindings::fp::droplet::streaming::StreamError;
        use crate::bindings::fp::droplet::types;

        pub(crate) fn start_response(head: &types::Response) -> Result<(), StreamError> {
            with(|world| {
                let call = &mut world.call;
                if call.head.is_some() {
                    return Err(StreamError::AlreadyStarted);
                }
                let mut response = Response::new(head.status);
                for (name, value) in &head.headers {
                    response = response.with_header(name, value);
                }
                call.head = Some(response);
                Ok(())
            })
        }

        pub(crate) fn read_body(max: u32) -> Result<Option<Vec<u8>>, StreamError> {
            with(|world| {
                let call = &mut world.call;
                if call.read >= call.body.len() {
                    return Ok(None);
                }
                let end = call.body.len().min(call.read + max.max(1) as usize);
                let piece = call.body[call.read..end].to_vec();
                call.read = end;
                Ok(Some(piece))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Json, Result, auth, fetch, kv, stream};

    #[test]
    fn kv_keeps_the_host_rules() {
        let mut world = TestWorld::new().with_kv("n", "41").with_kv("text", "x");
        let response = world.call(
            |_req: Request| -> Result<Json<Vec<String>>> {
                assert_eq!(kv::increment("n", 1)?, 42);
                assert_eq!(kv::increment("text", 1), Err(kv::Error::NotANumber));
                assert_eq!(
                    kv::get(""),
                    Err(kv::Error::InvalidKey("the key is empty".into()))
                );
                assert_eq!(
                    kv::set(&"k".repeat(513), b"v", None),
                    Err(kv::Error::KeyTooLarge)
                );
                assert!(kv::compare_and_swap("cas", None, Some(b"1"))?);
                assert!(!kv::compare_and_swap("cas", None, Some(b"2"))?);
                for i in 0..5 {
                    kv::set(&format!("item:{i}"), b"v", None)?;
                }
                kv::set("gone", b"v", Some(0))?;
                let first = kv::list_keys("item:", None, 3)?;
                let rest = kv::list_keys("item:", first.next_cursor.as_deref(), 3)?;
                assert_eq!(rest.next_cursor, None);
                assert!(!kv::exists("gone")?);
                Ok(Json([first.keys, rest.keys].concat()))
            },
            Request::get("/"),
        );
        assert_eq!(response.status(), 200, "{:?}", response.body_text());
        assert_eq!(
            response.json_body::<Vec<String>>().unwrap(),
            ["item:0", "item:1", "item:2", "item:3", "item:4"]
        );
        assert_eq!(world.kv_get("n").as_deref(), Some(&b"42"[..]));
    }

    #[test]
    fn errors_answer_in_the_host_shape_with_the_trace_id() {
        let mut world = TestWorld::new();
        let response = world.call(
            |_req: Request| -> Result<String> { Err(kv::Error::Unavailable("down".into()).into()) },
            Request::get("/").with_header("x-trace-id", "abc"),
        );
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json_body().unwrap();
        assert_eq!(body["error"]["code"], "kv_unavailable");
        assert_eq!(body["error"]["trace_id"], "abc");

        let response = world.call(
            |_req: Request| -> std::result::Result<String, Box<dyn std::error::Error>> {
                Err("the secret detail".into())
            },
            Request::get("/"),
        );
        assert_eq!(response.status(), 500);
        assert!(!response.body_text().unwrap().contains("secret"));
        assert_eq!(
            world.logs().last().unwrap().field("error"),
            Some("the secret detail")
        );
    }

    #[test]
    fn auth_helpers_say_why_a_caller_is_refused() {
        let mut world = TestWorld::new();
        let write = |_req: Request| auth::require_scope("todo:write").map(|_| "ok");
        let response = world.call(write, Request::get("/"));
        assert_eq!(
            (response.status(), response.header("www-authenticate")),
            (401, Some("Bearer"))
        );
        let mut world = TestWorld::new().with_token_error(auth::TokenError::Expired);
        let response = world.call(write, Request::get("/"));
        assert!(response.body_text().unwrap().contains("expired"));
        assert!(
            response
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token")
        );
        world.set_caller(Some(claims("bob", &["todo:read"])));
        let response = world.call(write, Request::get("/"));
        assert_eq!(response.status(), 403);
        world.set_caller(Some(claims("bob", &["todo:write"])));
        assert_eq!(world.call(write, Request::get("/")).body_text(), Some("ok"));
    }

    #[test]
    fn log_macros_format_and_keep_fields() {
        let mut world = TestWorld::new();
        world.call(
            |_req: Request| {
                let id = 7;
                crate::log::info!("saved todo {id}", id = id, title = "docs");
                crate::log::warn!("plain");
            },
            Request::get("/"),
        );
        let lines = world.logs();
        assert_eq!(lines[0].message, "saved todo 7");
        assert_eq!(
            lines[0].fields,
            [("id".into(), "7".into()), ("title".into(), "docs".into())]
        );
        assert_eq!(
            (lines[1].level, lines[1].message.as_str()),
            (Level::Warn, "plain")
        );
    }

    #[test]
    fn outbound_requests_answer_from_canned_responses() {
        let mut world = TestWorld::new().with_response(
            "GET",
            "https://api.example.com/a",
            Response::text("upstream"),
        );
        let response = world.call(
            |_req: Request| -> Result<Response> {
                assert!(matches!(
                    fetch::get("https://api.example.com/other"),
                    Err(fetch::FetchError::Denied(_))
                ));
                assert!(matches!(
                    fetch::get("ftp://x"),
                    Err(fetch::FetchError::InvalidUrl(_))
                ));
                Ok(fetch::get("https://api.example.com/a")?)
            },
            Request::get("/"),
        );
        assert_eq!(response.body_text(), Some("upstream"));
        assert_eq!(world.fetched().len(), 2);
    }

    #[test]
    fn a_streamed_response_comes_back_whole() {
        let mut world = TestWorld::new();
        let response = world.call(
            |_req: Request| -> Result<Response> {
                let mut body = Vec::new();
                let mut reader = stream::body();
                while let Some(piece) = reader.next_piece(2).map_err(|_| Error::bad_request("x"))? {
                    body.extend(piece);
                }
                let mut out = stream::start(Response::new(201).with_header("x-a", "1"))
                    .map_err(|_| Error::internal("start"))?;
                out.write(&body).map_err(Error::internal)?;
                out.write(b"!").map_err(Error::internal)?;
                Ok(out.finish())
            },
            Request::post("/", "hello"),
        );
        assert_eq!(
            (response.status(), response.header("x-a")),
            (201, Some("1"))
        );
        assert_eq!(response.body_text(), Some("hello!"));
    }
}
