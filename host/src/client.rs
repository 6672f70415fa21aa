//! A small JSON-over-HTTP client: one request, answered as JSON. Behind
//! `droplet list/deploy/rollback/rm` (a host's admin API) and the registry
//! registration.
//!
//! Plain `http://` only: put a TLS-terminating proxy in front of a host
//! that is reached over an untrusted network.

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A JSON API at a base URL.
pub struct JsonClient {
    authority: String,
    /// A path prefix of the base URL (`http://host/api` → `/api`).
    base_path: String,
    token: Option<String>,
}

impl JsonClient {
    /// A client for `host` (`http://HOST:PORT`) with an optional bearer token.
    pub fn new(host: &str, token: Option<String>) -> anyhow::Result<Self> {
        let uri: Uri = host
            .parse()
            .with_context(|| format!("`{host}` is not a URL"))?;
        match uri.scheme_str() {
            Some("http") | None => {}
            Some(other) => {
                bail!("`{other}://` is not supported: use http:// (behind a TLS proxy if needed)")
            }
        }
        let authority = uri
            .authority()
            .with_context(|| format!("`{host}` names no host"))?;
        let authority = match authority.port_u16() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        };
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Self {
            authority,
            base_path,
            token,
        })
    }

    /// Sends `method path` with an optional JSON body; returns the status
    /// and the JSON answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot connect to {}", self.authority))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path))
            .header(http::header::HOST, &self.authority);
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let response = sender.send_request(request.body(Full::new(body))?).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
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
