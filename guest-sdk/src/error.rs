//! One error type for handlers: a status, a code and a message, answered in
//! the host's own JSON error shape. The SDK's own failures convert into it,
//! so a handler returning [`Result`](crate::Result) uses `?` on them.
//!
//! ```no_run
//! use droplet_sdk::{Error, Request, Result, Response, kv};
//!
//! fn handle(req: Request) -> Result<Response> {
//!     let id: u64 = req.param_as("id")?; // 400 when it is not a number
//!     let todo = kv::get(&format!("todo:{id}"))? // 503 kv_unavailable, …
//!         .ok_or_else(|| Error::not_found(format!("no todo {id}")))?;
//!     Ok(Response::new(200).with_body(todo))
//! }
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::Response;
use crate::fetch::FetchError;
use crate::{kv, queue};

/// A failure a handler answers with: its status, a machine-readable code,
/// a message for the caller, and extra headers. An internal error's detail
/// goes to the droplet's log, never to the caller.
#[derive(Debug, Clone)]
pub struct Error {
    status: u16,
    code: Cow<'static, str>,
    message: String,
    headers: Vec<(String, String)>,
    detail: Option<String>,
}

impl Error {
    /// An error answered with `status`, `code` and `message`.
    ///
    /// ```
    /// let err = droplet_sdk::Error::new(409, "conflict", "the title is taken");
    /// assert_eq!((err.status(), err.code()), (409, "conflict"));
    /// ```
    pub fn new(
        status: u16,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
            detail: None,
        }
    }

    /// 400 `bad_request`.
    ///
    /// ```
    /// assert_eq!(droplet_sdk::Error::bad_request("no title").status(), 400);
    /// ```
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    /// 404 `not_found`.
    ///
    /// ```
    /// assert_eq!(droplet_sdk::Error::not_found("no todo 7").code(), "not_found");
    /// ```
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    /// 500 `internal_error`: `detail` goes to the host's log (through
    /// stderr, a warn line with the request's trace id); the caller reads
    /// only that the droplet failed.
    ///
    /// ```
    /// let err = droplet_sdk::Error::internal("the cache index is corrupt");
    /// assert_eq!(err.status(), 500);
    /// assert!(!err.message().contains("corrupt"));
    /// ```
    pub fn internal(detail: impl fmt::Display) -> Self {
        let mut err = Self::new(
            500,
            "internal_error",
            "the droplet failed; its log has the details under this trace id",
        );
        err.detail = Some(detail.to_string());
        err
    }

    /// Adds a header to the error's response.
    ///
    /// ```
    /// let err = droplet_sdk::Error::new(429, "slow_down", "too many").with_header("retry-after", "1");
    /// assert_eq!(err.headers()[0].0, "retry-after");
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status answered.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The machine-readable code (`error.code` in the JSON body).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message the caller reads.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The extra headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The response: the host's error shape, its detail (if any) logged.
    pub(crate) fn respond(self) -> Response {
        if let Some(detail) = &self.detail {
            crate::host::internal_error(&self.code, detail);
        }
        let mut response = Response::error(self.status, &self.code, &self.message);
        for (name, value) in self.headers {
            response = response.with_header(name, value);
        }
        response
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// kv failures: 400 `invalid_key`, 413 `value_too_large`, 507
/// `quota_exceeded`, 409 `not_a_number`, 503 `kv_unavailable`.
impl From<kv::Error> for Error {
    fn from(err: kv::Error) -> Self {
        let (status, code) = match &err {
            kv::Error::InvalidKey(_) | kv::Error::KeyTooLarge => (400, "invalid_key"),
            kv::Error::ValueTooLarge => (413, "value_too_large"),
            kv::Error::QuotaExceeded => (507, "quota_exceeded"),
            kv::Error::NotANumber => (409, "not_a_number"),
            kv::Error::Unavailable(_) => (503, "kv_unavailable"),
        };
        let message = match err {
            kv::Error::InvalidKey(why) => format!("invalid key: {why}"),
            kv::Error::KeyTooLarge => "the key is over 512 bytes".to_string(),
            kv::Error::ValueTooLarge => "the value is over the host's limit".to_string(),
            kv::Error::QuotaExceeded => "the droplet's kv quota is full".to_string(),
            kv::Error::NotANumber => "the value is not a decimal integer".to_string(),
            kv::Error::Unavailable(why) => format!("kv is unavailable: {why}"),
        };
        Self::new(status, code, message)
    }
}

/// A job that was not sent: 403 `queue_not_allowed`, 413
/// `payload_too_large`, 507 `queue_full`, 400 `invalid_job`, 503
/// `queue_unavailable`.
impl From<queue::Error> for Error {
    fn from(err: queue::Error) -> Self {
        match err {
            queue::Error::NotAllowed(why) => Self::new(403, "queue_not_allowed", why),
            queue::Error::TooLarge => Self::new(
                413,
                "payload_too_large",
                "the job's payload is over the host's limit",
            ),
            queue::Error::Full => Self::new(507, "queue_full", "the queue holds its limit of jobs"),
            queue::Error::Invalid(why) => Self::new(400, "invalid_job", why),
            queue::Error::Unavailable(why) => Self::new(
                503,
                "queue_unavailable",
                format!("the queue is unavailable: {why}"),
            ),
        }
    }
}

/// A stored value that is not the JSON expected is the droplet's own
/// fault: 500, detail logged.
#[cfg(feature = "json")]
impl From<kv::JsonError> for Error {
    fn from(err: kv::JsonError) -> Self {
        match err {
            kv::JsonError::Kv(err) => err.into(),
            kv::JsonError::Json(err) => {
                Self::internal(format!("a kv value is not valid JSON: {err}"))
            }
        }
    }
}

/// Outbound failures: 504 `upstream_timeout` when the budget ran out, 502
/// `upstream_failed` otherwise (a denied destination says so).
impl From<FetchError> for Error {
    fn from(err: FetchError) -> Self {
        match err {
            FetchError::Timeout => Self::new(504, "upstream_timeout", err.to_string()),
            FetchError::Denied(_) => Self::new(502, "outbound_denied", err.to_string()),
            other => Self::new(502, "upstream_failed", other.to_string()),
        }
    }
}

/// A body that is not UTF-8: 400 `invalid_utf8`.
impl From<std::str::Utf8Error> for Error {
    fn from(err: std::str::Utf8Error) -> Self {
        Self::new(400, "invalid_utf8", format!("the body is not UTF-8: {err}"))
    }
}
