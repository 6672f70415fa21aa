//! A small JSON-over-HTTP client: one request, answered as JSON. Behind
//! `droplet list/deploy/rollback/rm` (a host's admin API) and the registry
//! registration. Built on `reqwest` (rustls with the webpki roots), so both
//! `http://` and `https://` URLs work.

use anyhow::{Context, bail};
use http::Method;
use serde_json::Value;

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
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let base = if base.contains("://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        let url = reqwest::Url::parse(&base).with_context(|| format!("`{base}` is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!("`{base}` is not an http:// or https:// URL with a host");
        }
        let http = reqwest::Client::builder()
            .build()
            .context("cannot set up the HTTP client")?;
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
    ) -> anyhow::Result<(u16, Value)> {
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
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("the answer of {url} broke off"))?;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, value))
    }
}

/// The host's error message from a JSON error body, or the body itself.
pub fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string())
}
