//! Conversions to and from the `http` crate's types (feature `http`), so
//! that crates built on them work in a droplet.
//!
//! ```
//! use droplet_sdk::{IntoResponse, Request, Response};
//!
//! let req: http::Request<Vec<u8>> = Request::get("/a?b=1").with_header("x-k", "v").into();
//! assert_eq!(req.uri(), "/a?b=1");
//! assert_eq!(req.headers()["x-k"], "v");
//!
//! let response = http::Response::builder().status(201).body("made").unwrap();
//! assert_eq!(response.into_response().status(), 201);
//! ```

use crate::{Error, IntoResponse, Request, Response};

/// The request as an `http::Request` (headers that are not valid HTTP are
/// left out, and a hand-made method or target that is not valid becomes
/// `GET /`; the host lets none of these through).
impl From<Request> for http::Request<Vec<u8>> {
    fn from(req: Request) -> Self {
        let method = http::Method::from_bytes(req.method().as_bytes()).unwrap_or_default();
        let target = if req.query().is_empty() {
            req.path().parse()
        } else {
            format!("{}?{}", req.path(), req.query()).parse()
        };
        let headers = header_map(req.headers());
        let mut out = http::Request::new(req.into_body());
        *out.method_mut() = method;
        *out.uri_mut() = target.unwrap_or_else(|_| http::Uri::from_static("/"));
        *out.headers_mut() = headers;
        out
    }
}

/// `headers` as an `http::HeaderMap`, leaving out any that is not valid HTTP.
fn header_map(headers: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(name.as_str()),
            http::HeaderValue::try_from(value.as_str()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// An `http::Request` as a droplet request: for tests, and for handing a
/// request built with `http` to a handler. Header values must be UTF-8.
impl<B: Into<Vec<u8>>> TryFrom<http::Request<B>> for Request {
    type Error = Error;

    fn try_from(req: http::Request<B>) -> Result<Self, Error> {
        let (parts, body) = req.into_parts();
        let target = parts
            .uri
            .path_and_query()
            .map(|target| target.as_str())
            .unwrap_or("/");
        let mut request = Request::new(parts.method.as_str(), target);
        for (name, value) in &parts.headers {
            let value = value
                .to_str()
                .map_err(|_| Error::bad_request(format!("header `{name}` is not UTF-8")))?;
            request = request.with_header(name.as_str(), value);
        }
        Ok(request.with_body(body))
    }
}

/// The response as an `http::Response` (invalid headers left out).
impl From<Response> for http::Response<Vec<u8>> {
    fn from(response: Response) -> Self {
        let status =
            http::StatusCode::from_u16(response.status()).unwrap_or(http::StatusCode::BAD_GATEWAY);
        let headers = header_map(response.headers());
        let mut out = http::Response::new(response.into_body());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }
}

/// An `http::Response` answered as is (header values that are not UTF-8
/// are carried lossily; the host refuses none of them).
impl<B: Into<Vec<u8>>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        let (parts, body) = self.into_parts();
        let mut response = Response::new(parts.status.as_u16());
        for (name, value) in &parts.headers {
            response =
                response.with_header(name.as_str(), String::from_utf8_lossy(value.as_bytes()));
        }
        response.with_body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip_through_http_types() {
        let original = Request::post("/todos?x=1", "body")
            .with_header("Accept", "a")
            .with_header("accept", "b");
        let converted: http::Request<Vec<u8>> = original.into();
        assert_eq!(converted.method(), http::Method::POST);
        assert_eq!(converted.headers().get_all("accept").iter().count(), 2);
        let back = Request::try_from(converted).unwrap();
        assert_eq!(
            (back.path(), back.query(), back.body()),
            ("/todos", "x=1", &b"body"[..])
        );
        assert_eq!(back.header_values("accept").collect::<Vec<_>>(), ["a", "b"]);

        let response = Response::new(418).with_header("x-a", "1").with_body("tea");
        let converted: http::Response<Vec<u8>> = response.into();
        assert_eq!(converted.status(), 418);
        let back = converted.into_response();
        assert_eq!(
            (back.status(), back.header("x-a"), back.body_text()),
            (418, Some("1"), Some("tea"))
        );
    }
}
