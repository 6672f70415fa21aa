//! Which of a request's headers a guest sees: the client's, less those
//! only the host sets ([`HOST_ONLY_HEADERS`]) and, unless the manifest
//! forwards it, `Authorization`; and the host's own for a background call
//! ([`BackgroundHeaders`]).

use http::header::{self, HeaderName, HeaderValue};

use crate::ops::trace_id::TRACE_ID_HEADER;

/// The header naming the droplet that made an in-process call. Set only
/// by the host: one arriving from outside is dropped.
pub const CALLER_HEADER: &str = "x-droplet-caller";

/// Headers only the host sets: the trace id, the in-process caller, and
/// a background call's schedule or job ([`BackgroundHeaders`]). One
/// arriving from outside is dropped, so a droplet can trust them.
pub const HOST_ONLY_HEADERS: [&str; 7] = [
    TRACE_ID_HEADER,
    CALLER_HEADER,
    "x-droplet-schedule",
    "x-droplet-scheduled-at",
    "x-droplet-queue",
    "x-droplet-job-id",
    "x-droplet-attempt",
];

/// A background call's own headers (which schedule and instant, or which
/// queue, job and attempt), carried in the request's extensions, where
/// only the host can put them.
#[derive(Debug, Clone, Default)]
pub struct BackgroundHeaders(pub Vec<(&'static str, String)>);

/// The host-set headers of `parts`' background call, if it is one.
pub(super) fn background(
    parts: &http::request::Parts,
) -> impl Iterator<Item = &(&'static str, String)> {
    parts
        .extensions
        .get::<BackgroundHeaders>()
        .into_iter()
        .flat_map(|headers| headers.0.iter())
}

/// The client's headers a component sees: all but those only the host
/// sets ([`HOST_ONLY_HEADERS`]) and (unless `forward_authorization`)
/// `Authorization`.
pub(super) fn forwarded(
    headers: &http::HeaderMap,
    forward_authorization: bool,
) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| !HOST_ONLY_HEADERS.contains(&name.as_str()))
        .filter(move |(name, _)| {
            forward_authorization
                || (*name != header::AUTHORIZATION && *name != header::PROXY_AUTHORIZATION)
        })
}
