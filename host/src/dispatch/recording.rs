//! A droplet call recorded for replay: the tape handed to its imports
//! and WASI sources, and, once the call is over, the recording queued to
//! the host's [`Recorder`] if the call is one to keep.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::Response;
use http_body_util::{BodyExt as _, Full};

use super::call_parts::Hop;
use crate::app::App;
use crate::bindings::GuestRequest;
use crate::capabilities::recording::format::{FORMAT, UNRECORDED_HEADERS};
use crate::capabilities::recording::tee::header_pairs;
use crate::capabilities::recording::{Blob, Outcome, RecordedRequest, Recording, Tape};
use crate::droplets::Droplet;
use crate::droplets::recorder::{Reason, Recorder};
use crate::error::HostError;
use crate::identity::policy::{self, Caller};

/// The header with which a request asks to be recorded, whatever the
/// mode; honoured only with an admin token.
pub const RECORD_HEADER: &str = "x-droplet-record";

/// A call being recorded.
pub struct Taping {
    /// The call's tape.
    pub tape: Tape,
    reason: Reason,
    request: RecordedRequest,
    claims: Option<serde_json::Value>,
    caller: Option<String>,
    /// A `wasi:http` component's call.
    http: bool,
}

/// Whether the request asks to be recorded and may: `x-droplet-record: 1`
/// with a token that carries the admin scope.
fn requested(app: &App, headers: &http::HeaderMap) -> bool {
    headers
        .get(RECORD_HEADER)
        .is_some_and(|value| value.as_bytes() == b"1")
        && policy::authorize_admin(app.verifier(), headers).is_ok()
}

/// Starts recording a call of `droplet` with `request`, when its mode (or
/// the request, with an admin token) may keep it.
pub fn begin(
    app: &App,
    droplet: &Droplet,
    headers: &http::HeaderMap,
    request: &GuestRequest,
    caller: &Caller,
    hop: Option<&Hop>,
) -> Option<Taping> {
    let recorded = || RecordedRequest {
        authority: None,
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request
            .headers
            .iter()
            .filter(|(name, _)| !UNRECORDED_HEADERS.contains(&name.as_str()))
            .cloned()
            .collect(),
        // Kept by the runtime, inside the call (`Tape::body_piece`).
        body: Blob::default(),
    };
    taping(app, droplet, headers, caller, hop, recorded)
}

/// Starts recording a `wasi:http` component's call with the request
/// `request` makes (its body is kept as the component reads it).
pub fn begin_http(
    app: &App,
    droplet: &Droplet,
    headers: &http::HeaderMap,
    request: impl FnOnce() -> http::Request<()>,
    caller: &Caller,
    hop: Option<&Hop>,
) -> Option<Taping> {
    let recorded = || {
        let request = request();
        RecordedRequest {
            authority: request
                .uri()
                .authority()
                .map(|authority| authority.to_string()),
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            query: request.uri().query().unwrap_or_default().to_string(),
            headers: header_pairs(request.headers())
                .into_iter()
                .filter(|(name, _)| !UNRECORDED_HEADERS.contains(&name.as_str()))
                .collect(),
            body: Blob::default(),
        }
    };
    let mut taping = taping(app, droplet, headers, caller, hop, recorded)?;
    taping.http = true;
    Some(taping)
}

fn taping(
    app: &App,
    droplet: &Droplet,
    headers: &http::HeaderMap,
    caller: &Caller,
    hop: Option<&Hop>,
    request: impl FnOnce() -> RecordedRequest,
) -> Option<Taping> {
    let (tape, reason) = app
        .recorder
        .tape(&droplet.manifest, requested(app, headers))?;
    Some(Taping {
        tape,
        reason,
        request: request(),
        claims: caller.claims.as_ref().map(|claims| claims.json.clone()),
        caller: hop.map(|hop| hop.caller.to_string()),
        http: false,
    })
}

impl Taping {
    /// Ends the recording with the call's outcome (`guest_headers`: the
    /// headers the droplet set, when it answered) and hands it to the
    /// recorder, which keeps it if the call failed or its mode says so.
    pub fn finish(
        self,
        app: &App,
        droplet: &Droplet,
        trace_id: &str,
        guest_headers: Option<Vec<(String, String)>>,
        outcome: Result<Response<Full<Bytes>>, HostError>,
    ) -> Result<Response<Full<Bytes>>, HostError> {
        let (outcome, answered) = match outcome {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                // A whole body: ready at once.
                let body = body
                    .collect()
                    .now_or_never()
                    .and_then(Result::ok)
                    .map(|collected| collected.to_bytes())
                    .unwrap_or_default();
                let answered = Ok((parts.status.as_u16(), body.clone()));
                (Ok(Response::from_parts(parts, Full::new(body))), answered)
            }
            Err(err) => {
                let failure = Outcome::Failure {
                    status: err.status().as_u16(),
                    code: err.code().to_string(),
                    message: err.to_string(),
                };
                (Err(err), Err(failure))
            }
        };
        let failed = failed(&outcome);
        let tape = self.tape.clone();
        // The body is copied only when the recording is kept.
        let kept = || match answered {
            Ok((status, body)) => Outcome::Response {
                status,
                headers: guest_headers.unwrap_or_default(),
                body: Blob(tape.clip(&body)),
            },
            Err(failure) => failure,
        };
        self.keep(&app.recorder, &app.host_id, droplet, trace_id, kept, failed);
        outcome
    }

    /// Hands the recording, ended by `outcome`, to `recorder`, which keeps
    /// it if the call `failed` or its mode says so.
    pub fn keep(
        self,
        recorder: &Recorder,
        host: &str,
        droplet: &Droplet,
        trace_id: &str,
        outcome: impl FnOnce() -> Outcome,
        failed: bool,
    ) {
        let Taping {
            tape,
            reason,
            mut request,
            claims,
            caller,
            http,
        } = self;
        recorder.keep(reason, failed, |reason| {
            let outcome = outcome();
            // Its body, as far as it read it (a droplet of our world is
            // handed it whole).
            request.body = Blob(tape.take_body(true));
            let world = if http {
                "wasi:http/proxy"
            } else {
                "fp:droplet/droplet"
            };
            Recording {
                format: FORMAT.to_string(),
                trace_id: trace_id.to_string(),
                droplet: droplet.name.to_string(),
                version: droplet.version.to_string(),
                recorded_at_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis() as u64),
                host: host.to_string(),
                world: world.to_string(),
                reason: reason.to_string(),
                budget_ms: droplet.manifest.budget_ms,
                caller,
                request,
                claims,
                reel: tape.take(),
                outcome,
            }
        });
    }
}

/// Whether a call's outcome counts as the droplet failing: a 5xx it
/// answered, a trap, an overrun, an invalid response.
pub fn failed<B>(outcome: &Result<Response<B>, HostError>) -> bool {
    match outcome {
        Ok(response) => response.status().is_server_error(),
        Err(err) => matches!(
            err,
            HostError::DropletTrap(_)
                | HostError::BudgetExceeded { .. }
                | HostError::InvalidResponse(_)
        ),
    }
}
