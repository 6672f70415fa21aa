//! One import call as a recording keeps it: what the guest asked
//! ([`Call`]) and what the host answered ([`Reply`]), in types of their own
//! (not the generated bindings'), so that the recording's format is
//! written down here and both the live host and the replaying one convert
//! to and from it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes, kept as base64 in the recording's JSON.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map(Blob)
            .map_err(serde::de::Error::custom)
    }
}

/// What the guest asked of the host: an import and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "import")]
pub enum Call {
    /// `kv.get`.
    #[serde(rename = "kv.get")]
    KvGet { key: String },
    /// `kv.set`.
    #[serde(rename = "kv.set")]
    KvSet {
        key: String,
        value: Blob,
        ttl_ms: Option<u64>,
    },
    /// `kv.delete`.
    #[serde(rename = "kv.delete")]
    KvDelete { key: String },
    /// `kv.exists`.
    #[serde(rename = "kv.exists")]
    KvExists { key: String },
    /// `kv.list-keys`.
    #[serde(rename = "kv.list-keys")]
    KvListKeys {
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    },
    /// `kv.compare-and-swap`.
    #[serde(rename = "kv.compare-and-swap")]
    KvCompareAndSwap {
        key: String,
        expected: Option<Blob>,
        new: Option<Blob>,
    },
    /// `kv.increment`.
    #[serde(rename = "kv.increment")]
    KvIncrement { key: String, delta: i64 },
    /// `auth.caller`.
    #[serde(rename = "auth.caller")]
    AuthCaller,
    /// `auth.caller-error`.
    #[serde(rename = "auth.caller-error")]
    AuthCallerError,
    /// `auth.verify`: the token itself is never kept, only its SHA-256.
    #[serde(rename = "auth.verify")]
    AuthVerify { token_sha256: String },
    /// `config.get`.
    #[serde(rename = "config.get")]
    ConfigGet { key: String },
    /// An outbound request (`wasi:http/outgoing-handler`, or another
    /// droplet through `*.droplet.internal`): its method and URL.
    #[serde(rename = "http.send")]
    HttpSend { method: String, url: String },
    /// `queue.send`.
    #[serde(rename = "queue.send")]
    QueueSend {
        queue: String,
        payload: Blob,
        delay_ms: Option<u64>,
        dedup_key: Option<String>,
    },
}

/// `"a"`, quoted and cut for a one-line description.
fn quoted(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    let more = if cut.len() < text.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

impl fmt::Display for Call {
    /// `kv.get("a")`: the call as an author would write it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::KvGet { key } => write!(f, "kv.get({})", quoted(key)),
            Call::KvSet { key, value, .. } => {
                write!(f, "kv.set({}, {} bytes)", quoted(key), value.0.len())
            }
            Call::KvDelete { key } => write!(f, "kv.delete({})", quoted(key)),
            Call::KvExists { key } => write!(f, "kv.exists({})", quoted(key)),
            Call::KvListKeys { prefix, .. } => write!(f, "kv.list-keys({})", quoted(prefix)),
            Call::KvCompareAndSwap { key, .. } => {
                write!(f, "kv.compare-and-swap({})", quoted(key))
            }
            Call::KvIncrement { key, delta } => {
                write!(f, "kv.increment({}, {delta})", quoted(key))
            }
            Call::AuthCaller => write!(f, "auth.caller()"),
            Call::AuthCallerError => write!(f, "auth.caller-error()"),
            Call::AuthVerify { .. } => write!(f, "auth.verify(<token>)"),
            Call::ConfigGet { key } => write!(f, "config.get({})", quoted(key)),
            Call::HttpSend { method, url } => write!(f, "http {method} {url}"),
            Call::QueueSend { queue, payload, .. } => {
                write!(
                    f,
                    "queue.send({}, {} bytes)",
                    quoted(queue),
                    payload.0.len()
                )
            }
        }
    }
}

/// Why a kv call failed, as `fp:droplet/kv`'s `error` says it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvFailure {
    InvalidKey(String),
    KeyTooLarge,
    ValueTooLarge,
    QuotaExceeded,
    NotANumber,
    Unavailable(String),
}

/// A page of `kv.list-keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub keys: Vec<String>,
    pub next_cursor: Option<String>,
}

/// Verified claims, as `fp:droplet/auth`'s `claims` record holds them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimsRecord {
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub expires_at: Option<u64>,
    pub scopes: Vec<String>,
    pub json: String,
}

/// Why a token was refused, as `fp:droplet/auth`'s `error` says it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenFailure {
    Malformed,
    Expired,
    Invalid(String),
    Unavailable(String),
}

/// A config value. One the host expanded from an environment variable
/// (`${VAR}`) is the operator's secret: it is never kept, and a replay
/// hands the guest `<redacted>` in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigValue {
    Plain(String),
    Redacted,
}

/// The text a replay hands the guest for a redacted config value.
pub const REDACTED: &str = "<redacted>";

/// An outbound response as the guest received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as far as the guest read it.
    pub body: Blob,
    /// How the body ended early, when it did (`wasi:http`'s error code).
    pub body_error: Option<String>,
}

/// What the host answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// `kv.get`.
    Value(Result<Option<Blob>, KvFailure>),
    /// `kv.set`.
    Done(Result<(), KvFailure>),
    /// `kv.delete`, `kv.exists`, `kv.compare-and-swap`.
    Flag(Result<bool, KvFailure>),
    /// `kv.list-keys`.
    Page(Result<Page, KvFailure>),
    /// `kv.increment`.
    Number(Result<i64, KvFailure>),
    /// `auth.caller`.
    Caller(Option<ClaimsRecord>),
    /// `auth.caller-error`.
    Refusal(Option<TokenFailure>),
    /// `auth.verify`.
    Verified(Result<ClaimsRecord, TokenFailure>),
    /// `config.get`.
    Config(Option<ConfigValue>),
    /// An outbound request: the response, or the `wasi:http` error code
    /// it failed with.
    Http(Result<HttpReply, String>),
    /// `queue.send`: the job's id, or why it was not sent.
    Queued(Result<u64, QueueFailure>),
}

/// Why a job was not sent, as `fp:droplet/queue`'s `error` says it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueFailure {
    NotAllowed(String),
    TooLarge,
    Full,
    Invalid(String),
    Unavailable(String),
}

/// One import call and its answer; `reply` is `None` for an outbound
/// request still unanswered when the call ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub call: Call,
    pub reply: Option<Reply>,
}

/// A line the guest logged (through `log` or by printing), as it was
/// written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// `trace` … `error`.
    pub level: String,
    /// `log`, `stdout` or `stderr`.
    pub source: String,
    pub message: String,
    /// The fields' JSON object, when it had fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<String>,
}
