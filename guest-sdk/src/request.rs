//! The request a droplet receives and the response it returns.

use std::cell::RefCell;

use crate::bindings::fp::droplet::{response_body, types};

/// The largest piece of a response body handed to the host in one call.
const BODY_CHUNK: usize = 1 << 20;

thread_local! {
    /// The trace id of the request being handled (an instance serves one
    /// request), for [`Response::error`].
    static TRACE_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// One HTTP request routed to this droplet.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    pub(crate) fn from_wit(req: types::Request) -> Self {
        let request = Self {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
        };
        let trace_id = request.trace_id().map(str::to_string);
        TRACE_ID.with(|current| *current.borrow_mut() = trace_id);
        request
    }

    /// The host's trace id for this request (its `x-trace-id`, also on the
    /// response and in every log line of the request).
    pub fn trace_id(&self) -> Option<&str> {
        self.header("x-trace-id")
    }

    /// The method in upper case, e.g. `"GET"`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path inside the droplet, starting with `/`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query string without `?` (empty when there is none).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key) == name).then(|| percent_decode(value))
        })
    }

    /// Every value of query parameter `name`, percent-decoded, in order.
    pub fn query_params(&self, name: &str) -> Vec<String> {
        self.query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == name).then(|| percent_decode(value))
            })
            .collect()
    }

    /// All headers, names in lower case, in arrival order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.body)
    }

    /// The body parsed as JSON.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Decodes `%XX` escapes and `+` (as space) in a query component.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first value of header `name` in `headers` (case-insensitive).
fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// The droplet's answer to a request.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Default for Response {
    fn default() -> Self {
        Self::new(200)
    }
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// 200 with a `text/plain; charset=utf-8` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// 200 with `value` serialized as a JSON body.
    ///
    /// A value that cannot be serialized gives a 500 with a JSON error body.
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(200)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(err) => Self::error(500, "serialize_failed", &err.to_string()),
        }
    }

    /// A JSON error in the host's own shape:
    /// `{"error": {"code": ..., "message": ..., "trace_id": ...}}`, with the
    /// trace id of the request being handled.
    #[cfg(feature = "json")]
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let trace_id = TRACE_ID.with(|current| current.borrow().clone());
        let body = serde_json::json!({
            "error": { "code": code, "message": message, "trace_id": trace_id }
        });
        Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body.to_string().into_bytes())
    }

    /// Sets the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in order (for a fetched response: as received, names in
    /// lower case).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Hands the body to the host in pieces of at most [`BODY_CHUNK`]
    /// bytes, then gives the status and headers. A refused piece ends the
    /// hand-over: the host answers for the droplet then.
    pub(crate) fn into_wit(self) -> types::Response {
        for chunk in self.body.chunks(BODY_CHUNK) {
            if response_body::write(chunk).is_err() {
                break;
            }
        }
        types::Response {
            status: self.status,
            headers: self.headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            query: "a=1&name=hello%20world&plus=a+b&bad=%zz".into(),
            headers: vec![],
            body: vec![],
        };
        assert_eq!(req.query_param("name").as_deref(), Some("hello world"));
        assert_eq!(req.query_param("plus").as_deref(), Some("a b"));
        assert_eq!(req.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("missing"), None);
    }
}
