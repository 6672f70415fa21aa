//! A small JSON-over-HTTP client: one request, answered as JSON. Behind
//! `droplet list/deploy/rollback/rm` (a host's admin API) and the registry
//! registration. Built on `reqwest` (rustls with the webpki roots), so both
//! `http://` and `https://` URLs work.

use http::Method;
use serde_json::Value;

/// Why a request could not be made or answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL does not parse.
    #[error("`{base}` is not a URL: {why}")]
    NotAUrl {
        /// The base given.
        base: String,
        /// The parser's reason.
        why: String,
    },
    /// The base URL is not http(s) with a host.
    #[error("`{0}` is not an http:// or https:// URL with a host")]
    NotHttp(String),
    /// The client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// The request could not be sent.
    #[error("cannot reach {url}: {why}")]
    Unreachable {
        /// Where to.
        url: String,
        /// Why not, with its causes.
        why: String,
    },
    /// The answer broke off.
    #[error("the answer of {url} broke off: {why}")]
    BrokeOff {
        /// From where.
        url: String,
        /// Why, with its causes.
        why: String,
    },
}

/// An error and its causes, on one line (reqwest's own message leaves the
/// cause out: "error sending request").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A JSON API at a base URL.
pub struct JsonClient {
    http: reqwest::Client,
    /// The base URL without a trailing `/` (`http://host/api`).
    base: String,
    token: Option<String>,
}

impl JsonClient {
    /// A client for the API at `base` (`http[s]://HOST[:PORT][/PATH]`; a
    /// bare `HOST:PORT` means `http://`) with an optional bearer token.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        let url = reqwest::Url::parse(&base).map_err(|err| ClientError::NotAUrl {
            base: base.clone(),
            why: err.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ClientError::NotHttp(base));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|err| ClientError::Setup(err.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Sends `method path` with an optional JSON body; returns the status
    /// and the JSON answer (a body that is not JSON comes back as a string).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ClientError> {
        let (status, bytes) = self.send_raw(method, path, body).await?;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }

    /// Sends `method path` with an optional JSON body; returns the status
    /// and the answer's bytes as they came (a module, a recording).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, bytes::Bytes), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|err| ClientError::Unreachable {
                url: url.clone(),
                why: error_chain(&err),
            })?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| ClientError::BrokeOff {
                url: url.clone(),
                why: error_chain(&err),
            })?;
        Ok((status, bytes))
    }
}

/// The host's error message from a JSON error body, or the body itself.
pub fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}
