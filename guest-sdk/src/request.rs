//! The request a droplet receives.

use std::cell::RefCell;
use std::str::FromStr;

use crate::Error;
use crate::bindings::fp::droplet::types;

thread_local! {
    /// The trace id of the request being handled (an instance serves one
    /// request), for [`Response::error`](crate::Response::error).
    pub(crate) static TRACE_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// One HTTP request routed to this droplet.
///
/// The host builds it; tests build their own:
///
/// ```
/// use droplet_sdk::Request;
///
/// let req = Request::new("POST", "/todos?draft=1")
///     .with_header("Content-Type", "application/json")
///     .with_body(r#"{"title": "write docs"}"#);
/// assert_eq!(req.path(), "/todos");
/// assert_eq!(req.query_param("draft").as_deref(), Some("1"));
/// assert_eq!(req.header("content-type"), Some("application/json"));
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    params: Vec<(String, String)>,
}

impl Request {
    pub(crate) fn from_wit(req: types::Request) -> Self {
        let request = Self {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
            params: Vec::new(),
        };
        request.make_current();
        request
    }

    /// Makes this the request being handled (its trace id goes on error
    /// responses).
    pub(crate) fn make_current(&self) {
        let trace_id = self.trace_id().map(str::to_string);
        TRACE_ID.with(|current| *current.borrow_mut() = trace_id);
    }

    /// A request with `method` (upper-cased) to `target`: a path, with a
    /// query after `?` if it has one. For tests and for
    /// [`http`](https://docs.rs/http) interop; the host builds the ones a
    /// droplet is called with.
    pub fn new(method: &str, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Self {
            method: method.to_ascii_uppercase(),
            path,
            query: query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            params: Vec::new(),
        }
    }

    /// `GET target`.
    ///
    /// ```
    /// assert_eq!(droplet_sdk::Request::get("/a?b=c").query(), "b=c");
    /// ```
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// `POST target` with `body`.
    ///
    /// ```
    /// assert_eq!(droplet_sdk::Request::post("/a", "hi").body(), b"hi");
    /// ```
    pub fn post(target: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", target).with_body(body)
    }

    /// Adds a header (its name lower-cased, as the host gives them).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
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
        self.query_values(name).next()
    }

    /// Every value of query parameter `name`, percent-decoded, in order.
    ///
    /// ```
    /// let req = droplet_sdk::Request::get("/?tag=a&tag=b%20c");
    /// assert_eq!(req.query_params("tag"), ["a", "b c"]);
    /// ```
    pub fn query_params(&self, name: &str) -> Vec<String> {
        self.query_values(name).collect()
    }

    /// The values of `name`, decoded as they are reached: a key without
    /// escapes is compared in place, without decoding it.
    fn query_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        self.query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter_map(move |pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let matches = if key.contains(['%', '+']) {
                    percent_decode(key, true) == name
                } else {
                    key == name
                };
                matches.then(|| percent_decode(value, true))
            })
    }

    /// Query parameter `name` parsed as `T`: `Ok(None)` when absent, a 400
    /// [`Error`] when it does not parse.
    ///
    /// ```
    /// let req = droplet_sdk::Request::get("/?limit=20&bad=x");
    /// assert_eq!(req.query_as::<u32>("limit").unwrap(), Some(20));
    /// assert_eq!(req.query_as::<u32>("bad").unwrap_err().status(), 400);
    /// ```
    pub fn query_as<T: FromStr>(&self, name: &str) -> Result<Option<T>, Error> {
        self.query_param(name)
            .map(|value| parse_as(&value, "query parameter", name))
            .transpose()
    }

    /// A path parameter captured by the [`Router`](crate::Router): `:name`
    /// or `*name` in the route's pattern, percent-decoded.
    ///
    /// ```
    /// use droplet_sdk::{Request, Router};
    ///
    /// let router = Router::new().get("/users/:id", |req: Request| req.param("id").unwrap_or("").to_string());
    /// assert_eq!(router.handle(Request::get("/users/ann")).body_text(), Some("ann"));
    /// ```
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// A path parameter parsed as `T`; a 400 [`Error`] naming it when it is
    /// absent or does not parse.
    ///
    /// ```
    /// use droplet_sdk::{Request, Result, Router};
    ///
    /// fn read(req: Request) -> Result<String> {
    ///     let id: u64 = req.param_as("id")?; // 400 for /todos/abc
    ///     Ok(format!("todo {id}"))
    /// }
    /// let router = Router::new().get("/todos/:id", read);
    /// assert_eq!(router.handle(Request::get("/todos/abc")).status(), 400);
    /// ```
    pub fn param_as<T: FromStr>(&self, name: &str) -> Result<T, Error> {
        match self.param(name) {
            Some(value) => parse_as(value, "path parameter", name),
            None => Err(Error::bad_request(format!("no path parameter `{name}`"))),
        }
    }

    /// Every path parameter, in pattern order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    pub(crate) fn set_params(&mut self, params: Vec<(String, String)>) {
        self.params = params;
    }

    /// All headers, names in lower case, in arrival order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Every value of header `name` (case-insensitive), in arrival order.
    ///
    /// ```
    /// let req = droplet_sdk::Request::get("/")
    ///     .with_header("Accept", "text/html")
    ///     .with_header("accept", "application/json");
    /// assert_eq!(req.header_values("ACCEPT").collect::<Vec<_>>(), ["text/html", "application/json"]);
    /// ```
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body out of the request.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text (a 400 `invalid_utf8` [`Error`] when it is
    /// not).
    ///
    /// ```
    /// assert_eq!(droplet_sdk::Request::post("/", "hi").text().unwrap(), "hi");
    /// ```
    pub fn text(&self) -> Result<&str, Error> {
        Ok(std::str::from_utf8(&self.body)?)
    }

    /// The body parsed as JSON: a 400 `invalid_json` [`Error`] saying where
    /// it is wrong when it does not parse as `T`.
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct New { title: String }
    ///
    /// let req = droplet_sdk::Request::post("/", r#"{"title": "x"}"#);
    /// assert_eq!(req.json::<New>().unwrap().title, "x");
    /// let bad = droplet_sdk::Request::post("/", "{");
    /// assert_eq!(bad.json::<New>().unwrap_err().code(), "invalid_json");
    /// ```
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|err| Error::new(400, "invalid_json", format!("invalid JSON body: {err}")))
    }
}

fn parse_as<T: FromStr>(value: &str, what: &str, name: &str) -> Result<T, Error> {
    value.parse().map_err(|_| {
        let wanted = short_type_name::<T>();
        Error::bad_request(format!("{what} `{name}` must be a {wanted}, not `{value}`"))
    })
}

/// `T`'s name without its path (`u64`, `Uuid`), for messages saying what
/// a value should have been.
pub(crate) fn short_type_name<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    name.rsplit("::").next().unwrap_or(name)
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (query
/// components; a path keeps its `+`).
pub(crate) fn percent_decode(input: &str, plus_is_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
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
    String::from_utf8(out)
        .unwrap_or_else(|invalid| String::from_utf8_lossy(invalid.as_bytes()).into_owned())
}

/// The first value of header `name` in `headers` (case-insensitive).
pub(crate) fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_percent_decoded() {
        let req = Request::get("/?a=1&name=hello%20world&plus=a+b&bad=%zz&end=%4");
        assert_eq!(req.query_param("name").as_deref(), Some("hello world"));
        assert_eq!(req.query_param("plus").as_deref(), Some("a b"));
        assert_eq!(req.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("end").as_deref(), Some("%4"));
        assert_eq!(req.query_param("missing"), None);
        assert_eq!(percent_decode("a+b%2Fc", false), "a+b/c");
    }
}
