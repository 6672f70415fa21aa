//! The bridge between HTTP and the WIT records a droplet sees: a request
//! copied into a guest request, and a guest response checked before it is
//! forwarded (a droplet can return anything; the client only gets a valid
//! HTTP response, or a 502 saying why not).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::sync::Semaphore;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::request_headers::{CALLER_HEADER, background, forwarded};
use super::stream::{CallBody, CallEnd, StreamedBody};

use crate::bindings::fp::droplet::response_body::BodyError;
use crate::bindings::{GuestRequest, GuestResponse};
use crate::capabilities::response_body::MAX_RESPONSE_BYTES;
use crate::error::HostError;
use crate::ops::trace_id::TRACE_ID_HEADER;

/// What a call answered: the status and headers, and the body handed over
/// (counted against the host's response-byte budget like any other).
pub struct Answer {
    /// Status and headers.
    pub response: GuestResponse,
    /// The body, or why it was refused.
    pub body: crate::capabilities::response_body::ResponseBody,
}

/// Most response headers a droplet may return.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// Most bytes of response header names and values a droplet may return.
pub const MAX_RESPONSE_HEADER_BYTES: usize = 64 * 1024;

/// Response headers the host sets itself; a droplet's values are ignored.
const HOST_FRAMED_HEADERS: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// The guest's view of a request: `path` is the path inside the droplet,
/// and `x-trace-id` is the host's trace id for it; `x-droplet-caller` names
/// the calling droplet of an in-process call (`caller`), and is never
/// taken from outside. The caller's `Authorization` header is left out
/// unless `forward_authorization`: the droplet gets the verified claims
/// instead (`auth::caller()`). Our world carries header values as strings:
/// a value that is not UTF-8 is refused (400), never rewritten.
pub fn guest_request(
    parts: &http::request::Parts,
    path: String,
    body: Bytes,
    trace_id: &str,
    forward_authorization: bool,
    caller: Option<&str>,
) -> Result<GuestRequest, HostError> {
    let mut headers = Vec::with_capacity(parts.headers.len() + 2);
    for (name, value) in forwarded(&parts.headers, forward_authorization) {
        let value = value.to_str().map_err(|_| {
            HostError::BadRequest(format!(
                "the value of header `{name}` is not UTF-8 (droplets get header values as strings)"
            ))
        })?;
        headers.push((name.as_str().to_string(), value.to_string()));
    }
    headers.push((TRACE_ID_HEADER.to_string(), trace_id.to_string()));
    if let Some(caller) = caller {
        headers.push((CALLER_HEADER.to_string(), caller.to_string()));
    }
    for (name, value) in background(parts) {
        headers.push((name.to_string(), value.clone()));
    }
    Ok(GuestRequest {
        method: parts.method.as_str().to_string(),
        path,
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: Vec::from(body),
    })
}

/// A `wasi:http/proxy` component's view of a request: the same headers a
/// droplet gets (trace id, caller, no `Authorization` unless forwarded),
/// their values as the client sent them (bytes, not strings), the path
/// inside the droplet, the original `Host` as authority, and the body as
/// it arrives.
pub fn http_request<B>(
    parts: &http::request::Parts,
    path: &str,
    body: B,
    trace_id: &str,
    forward_authorization: bool,
    caller: Option<&str>,
) -> http::Request<B> {
    let authority = parts
        .uri
        .authority()
        .map(|authority| authority.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "localhost".to_string());
    let query = parts
        .uri
        .query()
        .map(|query| format!("?{query}"))
        .unwrap_or_default();
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(format!("{path}{query}"))
        .build()
        .unwrap_or_else(|_| http::Uri::from_static("http://localhost/"));
    let mut request = http::Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for (name, value) in forwarded(&parts.headers, forward_authorization) {
        headers.append(name.clone(), value.clone());
    }
    if let Ok(value) = HeaderValue::from_str(trace_id) {
        headers.append(TRACE_ID_HEADER, value);
    }
    if let Some(value) = caller.and_then(|caller| HeaderValue::from_str(caller).ok()) {
        headers.append(CALLER_HEADER, value);
    }
    for (name, value) in background(parts) {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(*name, value);
        }
    }
    request
}

/// At most how many headers the host adds to a droplet's response
/// (`service.rs`: three security headers, `x-trace-id`, `x-droplet-version`,
/// `server-timing`).
const HOST_ADDED_HEADERS: usize = 6;

/// Checks a guest's response and turns it into an HTTP response. The
/// response bytes it holds against the host's budget travel in the
/// response's extensions ([`HeldBytes`]) until it has been sent.
pub fn into_http(answer: Answer) -> Result<Response<Full<Bytes>>, HostError> {
    let Answer { response, body } = answer;
    let status = StatusCode::from_u16(response.status)
        .ok()
        .filter(|status| (200..=599).contains(&status.as_u16()))
        .ok_or_else(|| {
            HostError::InvalidResponse(format!("status {} is not in 200..=599", response.status))
        })?;
    let (body, held) = body.finish().map_err(|refused| match refused {
        BodyError::TooLarge => HostError::InvalidResponse(format!(
            "the body is over the limit of {MAX_RESPONSE_BYTES} bytes"
        )),
        BodyError::HostBusy => HostError::HostBusy(
            "the host holds as many response bytes as it allows; retry shortly".to_string(),
        ),
    })?;
    check_header_sizes(
        response.headers.len(),
        response
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum(),
    )?;
    let mut http_response = Response::new(Full::new(body));
    *http_response.status_mut() = status;
    if let Some(held) = held {
        http_response.extensions_mut().insert(held);
    }
    let headers = http_response.headers_mut();
    // Room for the guest's headers and the few the host adds (security
    // headers, trace id, version, timing) at once, not grown and rehashed
    // as they come (at most 106: far below the map's limit, and only a hint).
    let _ = headers.try_reserve(response.headers.len() + HOST_ADDED_HEADERS);
    for (name, value) in response.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            HostError::InvalidResponse(format!("`{name}` is not a valid header name"))
        })?;
        let value = HeaderValue::from_str(&value).map_err(|_| {
            HostError::InvalidResponse(format!("the value of header `{name}` is not valid"))
        })?;
        if !HOST_FRAMED_HEADERS.contains(&name) {
            headers.append(name, value);
        }
    }
    Ok(http_response)
}

/// Checks a `wasi:http` component's response head as [`into_http`] checks
/// a droplet's (status, header count and size; the host frames the body)
/// and passes it on, header values as the bytes the component set, its
/// body streamed ([`StreamedBody`]) while the call runs to `end`.
pub fn proxy_response(
    response: Response<HyperOutgoingBody>,
    end: Arc<CallEnd>,
    budget: Arc<Semaphore>,
) -> Result<Response<CallBody>, HostError> {
    let (mut parts, body) = response.into_parts();
    if !(200..=599).contains(&parts.status.as_u16()) {
        return Err(HostError::InvalidResponse(format!(
            "status {} is not in 200..=599",
            parts.status.as_u16()
        )));
    }
    check_header_sizes(
        parts.headers.len(),
        parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum(),
    )?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_RESPONSE_BYTES as u64) {
        return Err(HostError::InvalidResponse(format!(
            "the body is over the limit of {MAX_RESPONSE_BYTES} bytes"
        )));
    }
    // Its own `content-length` stays: wasi:http holds the body to it.
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.remove(header::CONNECTION);
    let body = CallBody::Streamed(StreamedBody::new(body, end, budget));
    Ok(Response::from_parts(parts, body))
}

/// Refuses a response with more headers, or more header bytes, than the
/// host forwards.
fn check_header_sizes(count: usize, bytes: usize) -> Result<(), HostError> {
    if count > MAX_RESPONSE_HEADERS {
        return Err(HostError::InvalidResponse(format!(
            "{count} headers are over the limit of {MAX_RESPONSE_HEADERS}"
        )));
    }
    if bytes > MAX_RESPONSE_HEADER_BYTES {
        return Err(HostError::InvalidResponse(format!(
            "{bytes} bytes of headers are over the limit of {MAX_RESPONSE_HEADER_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::GuestResponse;
    use crate::capabilities::response_body::BodyCapability;

    #[test]
    fn the_guest_sees_the_hosts_trace_id_not_the_clients() {
        let (parts, ()) = http::Request::get("/x?a=b")
            .header("x-trace-id", "forged")
            .header("accept", "*/*")
            .header("authorization", "Bearer secret")
            .body(())
            .unwrap()
            .into_parts();
        let request = guest_request(&parts, "/x".into(), Bytes::new(), "t-1", false, None).unwrap();
        assert!(
            request
                .headers
                .iter()
                .all(|(name, _)| name != "authorization")
        );
        let forwarded =
            guest_request(&parts, "/x".into(), Bytes::new(), "t-1", true, None).unwrap();
        assert!(
            forwarded
                .headers
                .iter()
                .any(|(name, _)| name == "authorization")
        );
        let traces: Vec<_> = request
            .headers
            .iter()
            .filter(|(name, _)| name == TRACE_ID_HEADER)
            .collect();
        assert_eq!(traces, [&(TRACE_ID_HEADER.to_string(), "t-1".to_string())]);
        assert_eq!(request.query, "a=b");
    }

    fn answer(status: u16, headers: Vec<(String, String)>, body: &[u8]) -> Answer {
        let mut written = BodyCapability::new(1 << 20).empty_body();
        written.write(body).unwrap();
        Answer {
            response: GuestResponse { status, headers },
            body: written,
        }
    }

    #[test]
    fn a_body_refused_while_handed_over_is_a_502_or_a_503() {
        let budget = BodyCapability::new(MAX_RESPONSE_BYTES * 2);
        let mut body = budget.empty_body();
        assert!(body.write(&vec![0; MAX_RESPONSE_BYTES + 1]).is_err());
        let refused = into_http(Answer {
            response: GuestResponse {
                status: 200,
                headers: vec![],
            },
            body,
        });
        assert_eq!(refused.unwrap_err().code(), "invalid_response");
        let tiny = BodyCapability::new(4);
        let mut body = tiny.empty_body();
        assert!(body.write(b"12345").is_err());
        let busy = into_http(Answer {
            response: GuestResponse {
                status: 200,
                headers: vec![],
            },
            body,
        });
        assert_eq!(busy.unwrap_err().code(), "host_busy");
    }

    #[test]
    fn guest_responses_are_validated() {
        let response = |status, headers: Vec<(&str, &str)>| {
            answer(
                status,
                headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                b"x",
            )
        };
        assert!(into_http(response(200, vec![("x-a", "b")])).is_ok());
        assert!(into_http(response(99, vec![])).is_err());
        assert!(into_http(response(700, vec![])).is_err());
        assert!(into_http(response(101, vec![])).is_err());
        assert!(into_http(response(200, vec![("bad name", "b")])).is_err());
        assert!(into_http(response(200, vec![("x-a", "line\nbreak")])).is_err());
        let many = vec![("x-a", "b"); MAX_RESPONSE_HEADERS + 1];
        assert!(into_http(response(200, many)).is_err());
        let big = "v".repeat(MAX_RESPONSE_HEADER_BYTES);
        assert!(into_http(response(200, vec![("x-big", big.as_str())])).is_err());
        let framed = into_http(response(200, vec![("content-length", "999")])).unwrap();
        assert!(framed.headers().get(header::CONTENT_LENGTH).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_guest_response_is_forwarded_valid_or_refused(
            status in proptest::num::u16::ANY,
            headers in proptest::collection::vec((".{0,20}", ".{0,40}"), 0..8),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            if let Ok(http) = into_http(answer(status, headers, &body)) {
                proptest::prop_assert!((200..=599).contains(&http.status().as_u16()));
            }
        }
    }
}
