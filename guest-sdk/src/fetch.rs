//! Outbound HTTP: call an API from a droplet.
//!
//! A small buffered client over the standard `wasi:http/outgoing-handler`:
//! the request is sent whole and the response read whole (at most 16 MiB).
//! [`fetch`] waits for one response; [`all`] sends several at once, and
//! [`send`] is the same call as a future for async handlers (see [`rt`](crate::rt)).
//! The host lets a request out only to the destinations the droplet's
//! manifest lists in `allowed_outbound_hosts`, and only within the call's
//! budget; every refusal is a [`FetchError`] naming why.
//!
//! ```no_run
//! use droplet_sdk::{Request, Response, fetch};
//!
//! fn handle(_req: Request) -> Response {
//!     // Manifest: allowed_outbound_hosts = ["https://api.example.com"]
//!     match fetch::get("https://api.example.com/status") {
//!         Ok(upstream) => upstream,
//!         Err(err) => Response::error(502, "upstream_failed", &err.to_string()),
//!     }
//! }
//! ```
//!
//! A request to another droplet on the same host,
//! `http://{name}.droplet.internal/…`, goes through the host's
//! `fp:droplet/calls` instead (request and response handed over whole, one
//! host call each way): the same rules, at the cost of a function call.
//!
//! Crates that speak `wasi:http` themselves (such as `wstd`) work inside a
//! droplet too, under the same rules.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

use crate::Response;

/// The largest response body read.
const MAX_BODY: usize = 16 << 20;

/// An outbound request.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl FetchRequest {
    /// A request with `method` (upper case, e.g. `GET`) to `url`
    /// (`http://` or `https://`).
    pub fn new(method: &str, url: &str) -> Self {
        Self {
            method: method.to_string(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// `POST url` with `body`.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", url).with_body(body)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in the order added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL is not `http(s)://host[:port]/...`.
    InvalidUrl(String),
    /// A header name or value is not valid (for example, it holds a line
    /// break), or the host does not let droplets set it.
    InvalidHeader(String),
    /// The host refused the destination: it is not in the manifest's
    /// `allowed_outbound_hosts`, or it resolves to an address that is not
    /// public.
    Denied(String),
    /// The call's budget ran out before the response did.
    Timeout,
    /// The response body is larger than 16 MiB.
    TooLarge,
    /// Anything else: the string says what.
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::InvalidUrl(why) => write!(f, "invalid URL: {why}"),
            FetchError::InvalidHeader(name) => write!(f, "invalid header `{name}`"),
            FetchError::Denied(why) => write!(f, "denied: {why}"),
            FetchError::Timeout => write!(f, "timed out within the call's budget"),
            FetchError::TooLarge => write!(f, "the response body is over {MAX_BODY} bytes"),
            FetchError::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// `GET url`.
///
/// ```no_run
/// let status = droplet_sdk::fetch::get("https://api.example.com/status")?.status();
/// # let _ = status;
/// # Ok::<(), droplet_sdk::fetch::FetchError>(())
/// ```
pub fn get(url: &str) -> Result<Response, FetchError> {
    fetch(FetchRequest::get(url))
}

/// `POST url` with `value` as JSON.
///
/// ```no_run
/// let created = droplet_sdk::fetch::post_json(
///     "https://api.example.com/items",
///     &serde_json::json!({ "name": "x" }),
/// )?;
/// # let _ = created;
/// # Ok::<(), droplet_sdk::fetch::FetchError>(())
/// ```
#[cfg(feature = "json")]
pub fn post_json<T: serde::Serialize>(url: &str, value: &T) -> Result<Response, FetchError> {
    let body = serde_json::to_vec(value).map_err(|err| FetchError::Failed(err.to_string()))?;
    fetch(FetchRequest::post(url, body).with_header("content-type", "application/json"))
}

/// Sends `request` and reads the whole response. Redirects are not
/// followed: a 3xx is the response. (In the test world, answers from the
/// responses the test gave.)
///
/// ```no_run
/// use droplet_sdk::fetch::{fetch, FetchRequest};
///
/// let request = FetchRequest::new("PUT", "https://api.example.com/items/7")
///     .with_header("content-type", "application/json")
///     .with_body(r#"{"name": "y"}"#);
/// let answer = fetch(request)?;
/// # let _ = answer;
/// # Ok::<(), droplet_sdk::fetch::FetchError>(())
/// ```
pub fn fetch(request: FetchRequest) -> Result<Response, FetchError> {
    crate::rt::block_on(send(request))
}

/// Sends every request at once and reads their responses: the whole takes
/// about as long as the slowest. Results come in the requests' order.
///
/// ```no_run
/// use droplet_sdk::fetch::{self, FetchRequest};
///
/// let [a, b, c]: [_; 3] = fetch::all(
///     ["https://a.example.com/", "https://b.example.com/", "https://c.example.com/"]
///         .map(FetchRequest::get),
/// )
/// .try_into()
/// .unwrap();
/// # let _ = (a, b, c);
/// ```
pub fn all(requests: impl IntoIterator<Item = FetchRequest>) -> Vec<Result<Response, FetchError>> {
    crate::rt::block_on(crate::rt::join_all(requests.into_iter().map(send)))
}

/// [`fetch`] as a future: several run at once under
/// [`rt::join`](crate::rt::join) or [`rt::join_all`](crate::rt::join_all)
/// in an async handler or [`rt::block_on`](crate::rt::block_on).
///
/// ```
/// use droplet_sdk::fetch::{send, FetchRequest};
///
/// async fn both() -> droplet_sdk::Result<String> {
///     let (a, b) = droplet_sdk::rt::join(
///         send(FetchRequest::get("https://a.example.com/")),
///         send(FetchRequest::get("https://b.example.com/")),
///     )
///     .await;
///     Ok(format!("{} {}", a?.status(), b?.status()))
/// }
/// ```
pub async fn send(request: FetchRequest) -> Result<Response, FetchError> {
    #[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
    return crate::testing::imports::fetch(request);
    #[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
    {
        let url = Url::parse(&request.url)?;
        match url.droplet() {
            Some(droplet) => {
                let path_with_query = url.path.to_string();
                send_internal(request, droplet, path_with_query).await
            }
            None => send_wasi(&request, url).await,
        }
    }
}

/// [`send`] to another droplet on this host, through `fp:droplet/calls`.
#[cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
async fn send_internal(
    request: FetchRequest,
    droplet: String,
    path_with_query: String,
) -> Result<Response, FetchError> {
    use crate::bindings::fp::droplet::calls::{self, CallError, CallRequest};

    let pending = calls::call(&CallRequest {
        droplet,
        method: request.method,
        path_with_query,
        headers: request.headers,
        body: request.body,
    });
    // A callee that waits on nothing has answered before `call` returns:
    // look first, and wait (a pollable made, polled and dropped) only if
    // the answer has not come.
    let answer = match pending.get() {
        Some(answer) => answer,
        None => loop {
            crate::rt::ready(pending.subscribe()).await;
            if let Some(answer) = pending.get() {
                break answer;
            }
        },
    };
    match answer {
        Ok(response) => {
            let mut answer = Response::new(response.status);
            for (name, value) in response.headers {
                answer = answer.with_header(name, value);
            }
            Ok(answer.with_body(response.body))
        }
        Err(CallError::Denied(why)) => Err(FetchError::Denied(why)),
        Err(CallError::InvalidUrl(why)) => Err(FetchError::InvalidUrl(why)),
        Err(CallError::InvalidHeader(name)) => Err(FetchError::InvalidHeader(name)),
        Err(CallError::TimedOut) => Err(FetchError::Timeout),
        Err(CallError::TooLarge) => Err(FetchError::TooLarge),
        Err(CallError::Failed(why)) => Err(FetchError::Failed(why)),
    }
}

/// [`send`] through `wasi:http/outgoing-handler`; `url` is the request's
/// URL, parsed.
#[cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
async fn send_wasi(request: &FetchRequest, url: Url<'_>) -> Result<Response, FetchError> {
    let headers = Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|_| FetchError::InvalidHeader(name.clone()))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    };
    let invalid = |what: &str| FetchError::InvalidUrl(format!("{what} of {}", request.url));
    outgoing
        .set_method(&method)
        .map_err(|()| invalid("the method"))?;
    outgoing
        .set_scheme(Some(&if url.https {
            Scheme::Https
        } else {
            Scheme::Http
        }))
        .map_err(|()| invalid("the scheme"))?;
    outgoing
        .set_authority(Some(url.authority))
        .map_err(|()| invalid("the host"))?;
    outgoing
        .set_path_with_query(Some(url.path))
        .map_err(|()| invalid("the path"))?;
    // Every step below is a call into the host, so a request without a
    // body opens none (the host sends it empty), the wait comes before the
    // first look at the response (which is never ready at once), and a
    // body whose length was announced is not read past its end.
    let body = if request.body.is_empty() {
        None
    } else {
        Some(
            outgoing
                .body()
                .map_err(|()| FetchError::Failed("no request body".to_string()))?,
        )
    };
    let pending =
        outgoing_handler::handle(outgoing, None).map_err(|code| error(code, &request.url))?;
    if let Some(body) = body {
        {
            let stream = body
                .write()
                .map_err(|()| FetchError::Failed("no request body stream".to_string()))?;
            let failed = |err| stream_error(err, &request.url);
            let mut rest = request.body.as_slice();
            while !rest.is_empty() {
                let permitted = stream.check_write().map_err(failed)?;
                if permitted == 0 {
                    crate::rt::ready(stream.subscribe()).await;
                    continue;
                }
                let (now, later) = rest.split_at(rest.len().min(permitted as usize));
                stream.write(now).map_err(failed)?;
                rest = later;
            }
            stream.flush().map_err(failed)?;
            while stream.check_write().map_err(failed)? == 0 {
                crate::rt::ready(stream.subscribe()).await;
            }
        }
        OutgoingBody::finish(body, None).map_err(|code| error(code, &request.url))?;
    }

    let response = loop {
        crate::rt::ready(pending.subscribe()).await;
        match pending.get() {
            Some(Ok(Ok(response))) => break response,
            Some(Ok(Err(code))) => return Err(error(code, &request.url)),
            Some(Err(())) => return Err(FetchError::Failed("the response was taken".into())),
            None => continue,
        }
    };
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
        .collect::<Vec<_>>();
    let announced = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .filter(|length| *length <= MAX_BODY);
    let incoming = response
        .consume()
        .map_err(|()| FetchError::Failed("the response body was taken".into()))?;
    // Reserved up to one read's worth: an announced length is a claim.
    let mut bytes = Vec::with_capacity(announced.unwrap_or(0).min(64 * 1024));
    {
        let stream = incoming
            .stream()
            .map_err(|()| FetchError::Failed("no response body stream".into()))?;
        loop {
            if announced == Some(bytes.len()) {
                break;
            }
            match stream.read(64 * 1024) {
                Ok(chunk) if chunk.is_empty() => crate::rt::ready(stream.subscribe()).await,
                Ok(chunk) => {
                    if bytes.len() + chunk.len() > MAX_BODY {
                        return Err(FetchError::TooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(err) => return Err(stream_error(err, &request.url)),
            }
        }
    }
    drop(incoming);
    let mut answer = Response::new(status);
    for (name, value) in headers {
        answer = answer.with_header(&name, &value);
    }
    Ok(answer.with_body(bytes))
}

/// What the host's error code means to the droplet.
#[cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
fn error(code: ErrorCode, url: &str) -> FetchError {
    match code {
        ErrorCode::HttpRequestDenied => FetchError::Denied(format!(
            "{url} is not allowed: add its origin to allowed_outbound_hosts in the droplet's manifest"
        )),
        ErrorCode::DestinationIpProhibited => FetchError::Denied(format!(
            "{url} resolves to an address that is not public; list that address in allowed_outbound_hosts to reach it"
        )),
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => FetchError::Timeout,
        ErrorCode::HttpResponseBodySize(_) => FetchError::TooLarge,
        ErrorCode::HttpRequestUriInvalid => FetchError::InvalidUrl(url.to_string()),
        ErrorCode::DnsError(_) => FetchError::Failed(format!("{url}: the name does not resolve")),
        ErrorCode::ConnectionRefused => FetchError::Failed(format!("{url}: connection refused")),
        ErrorCode::InternalError(Some(why)) => by_text(why),
        other => FetchError::Failed(format!("{url}: {other:?}")),
    }
}

/// Some hosts give body-stream errors as text only (wasmtime-wasi-http
/// passes a response body's error on as an internal error with its
/// message): the text still says which.
#[cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
fn by_text(text: String) -> FetchError {
    let lower = text.to_ascii_lowercase();
    if lower.contains("body size") {
        FetchError::TooLarge
    } else if lower.contains("timeout") || lower.contains("timed out") {
        FetchError::Timeout
    } else {
        FetchError::Failed(text)
    }
}

#[cfg_attr(
    all(feature = "testing", not(target_arch = "wasm32")),
    allow(dead_code)
)]
fn stream_error(err: StreamError, url: &str) -> FetchError {
    match err {
        StreamError::LastOperationFailed(io) => match wasip2::http::types::http_error_code(&io) {
            Some(code) => error(code, url),
            None => by_text(io.to_debug_string()),
        },
        StreamError::Closed => FetchError::Failed(format!("{url}: the connection closed")),
    }
}

/// Checks that `url` is one [`fetch`] can send to.
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub(crate) fn check_url(url: &str) -> Result<(), FetchError> {
    Url::parse(url).map(|_| ())
}

/// The parts of an `http(s)://` URL a request needs.
struct Url<'a> {
    https: bool,
    authority: &'a str,
    path: &'a str,
}

impl<'a> Url<'a> {
    fn parse(url: &'a str) -> Result<Self, FetchError> {
        let invalid = |why: &str| FetchError::InvalidUrl(format!("{url}: {why}"));
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(invalid("the scheme must be http:// or https://"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.is_empty() || authority.contains(['@', ' ', '\r', '\n']) {
            return Err(invalid("no valid host"));
        }
        let path = if path.is_empty() { "/" } else { path };
        if path.contains(['\r', '\n', ' ']) {
            return Err(invalid("the path holds spaces or line breaks"));
        }
        Ok(Self {
            https,
            authority,
            path,
        })
    }

    /// The droplet an `http://{name}.droplet.internal/…` URL names (no
    /// port, no userinfo): those go through `fp:droplet/calls`.
    #[cfg_attr(
        all(feature = "testing", not(target_arch = "wasm32")),
        allow(dead_code)
    )]
    fn droplet(&self) -> Option<String> {
        let name = self.authority.strip_suffix(".droplet.internal")?;
        let plain = !self.https
            && !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        plain.then(|| name.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let url = Url::parse("https://api.example.com:8443/v1/x?y=1")
            .ok()
            .unwrap();
        assert!(url.https);
        assert_eq!(url.authority, "api.example.com:8443");
        assert_eq!(url.path, "/v1/x?y=1");
        let url = Url::parse("http://127.0.0.1:9000").ok().unwrap();
        assert_eq!(
            (url.https, url.authority, url.path),
            (false, "127.0.0.1:9000", "/")
        );
        let droplet = |url: &str| Url::parse(url).ok().unwrap().droplet();
        assert_eq!(
            droplet("http://hello.droplet.internal/a?b"),
            Some("hello".into())
        );
        assert_eq!(droplet("http://Todo.droplet.internal"), Some("todo".into()));
        for wasi_http in [
            "https://hello.droplet.internal/",
            "http://hello.droplet.internal:8080/",
            "http://a.b.droplet.internal/",
            "http://droplet.internal/",
            "http://hello.droplet.internal.example.com/",
        ] {
            assert_eq!(droplet(wasi_http), None, "{wasi_http}");
        }
        for bad in [
            "ftp://x",
            "x.com/a",
            "http:///a",
            "http://u@x.com/",
            "http://x.com/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }
}
