//! The response a droplet answers with, and what a handler may return.

use crate::Error;
use crate::bindings::fp::droplet::types;
use crate::host::response_body;
use crate::request::{TRACE_ID, first_header};

/// The largest piece of a response body handed to the host in one call.
const BODY_CHUNK: usize = 1 << 20;

/// The droplet's answer to a request.
///
/// ```
/// use droplet_sdk::Response;
///
/// let response = Response::new(201)
///     .with_header("location", "/todos/7")
///     .with_body("created");
/// assert_eq!(response.status(), 201);
/// assert_eq!(response.header("Location"), Some("/todos/7"));
/// assert_eq!(response.body_text(), Some("created"));
/// ```
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
    ///
    /// ```
    /// let response = droplet_sdk::Response::text("hi");
    /// assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
    /// ```
    pub fn text(body: impl Into<String>) -> Self {
        Self::new(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    /// 200 with `value` serialized as a JSON body.
    ///
    /// A value that cannot be serialized gives a 500 with a JSON error body.
    ///
    /// ```
    /// let response = droplet_sdk::Response::json(&serde_json::json!({"ok": true}));
    /// assert_eq!(response.body_text(), Some(r#"{"ok":true}"#));
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(200)
                .with_header("content-type", "application/json")
                .with_body(body),
            Err(err) => {
                Error::internal(format!("the response is not serializable: {err}")).respond()
            }
        }
    }

    /// A JSON error in the host's own shape:
    /// `{"error": {"code": ..., "message": ..., "trace_id": ...}}`, with the
    /// trace id of the request being handled. Returning an [`Error`] does
    /// the same.
    ///
    /// ```
    /// let response = droplet_sdk::Response::error(404, "not_found", "no todo 7");
    /// let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    /// assert_eq!(body["error"]["code"], "not_found");
    /// ```
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        let trace_id = TRACE_ID.with(|current| current.borrow().clone());
        let trace_id = trace_id.as_deref().map_or("null".to_string(), json_string);
        let body = format!(
            r#"{{"error":{{"code":{},"message":{},"trace_id":{trace_id}}}}}"#,
            json_string(code),
            json_string(message),
        );
        Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body.into_bytes())
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

    /// The body as text, when it is UTF-8.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The body parsed as JSON.
    #[cfg(feature = "json")]
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// Takes the body out of the response.
    pub fn into_body(self) -> Vec<u8> {
        self.body
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

/// `text` as a JSON string (without serde, so that errors need no feature).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What a handler may return: anything that becomes a [`Response`].
///
/// ```
/// use droplet_sdk::{IntoResponse, Json};
///
/// assert_eq!("hi".into_response().status(), 200);
/// assert_eq!((201, "made").into_response().status(), 201);
/// assert_eq!(().into_response().status(), 204);
/// assert_eq!(Json(vec![1, 2]).into_response().body_text(), Some("[1,2]"));
/// let failed: Result<&str, droplet_sdk::Error> = Err(droplet_sdk::Error::not_found("gone"));
/// assert_eq!(failed.into_response().status(), 404);
/// ```
pub trait IntoResponse {
    /// The response this value is answered with.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

/// 200, `text/plain`.
impl IntoResponse for &str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

/// 200, `text/plain`.
impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

/// 200, `application/octet-stream`.
impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        Response::new(200)
            .with_header("content-type", "application/octet-stream")
            .with_body(self)
    }
}

/// 204 No Content.
impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(204)
    }
}

/// The body's response with another status.
impl<B: IntoResponse> IntoResponse for (u16, B) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.respond()
    }
}

/// Either side's response.
impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

/// Any other error: a 500 `internal_error`, its text logged, not shown.
impl IntoResponse for Box<dyn std::error::Error> {
    fn into_response(self) -> Response {
        Error::internal(self).respond()
    }
}

/// Any other error: a 500 `internal_error`, its text logged, not shown.
impl IntoResponse for Box<dyn std::error::Error + Send + Sync> {
    fn into_response(self) -> Response {
        Error::internal(self).respond()
    }
}

/// An `anyhow` error: a 500 `internal_error`, its chain logged, not shown.
#[cfg(feature = "anyhow")]
impl IntoResponse for anyhow::Error {
    fn into_response(self) -> Response {
        Error::internal(format!("{self:#}")).respond()
    }
}

/// A value answered as JSON (200, `application/json`).
///
/// ```
/// use droplet_sdk::{IntoResponse, Json};
///
/// #[derive(serde::Serialize)]
/// struct Todo { id: u64 }
///
/// let response = (201, Json(Todo { id: 7 })).into_response();
/// assert_eq!(response.status(), 201);
/// assert_eq!(response.body_text(), Some(r#"{"id":7}"#));
/// ```
#[cfg(feature = "json")]
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        Response::json(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_valid_json_whatever_the_message_holds() {
        let message = "a \"quoted\" \\ path\nwith\ttabs and \u{1} and é";
        let response = Response::error(400, "bad_request", message);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"]["message"], message);
        assert_eq!(body["error"]["code"], "bad_request");
    }
}
