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
use crate::capabilities::recording::{Blob, Outcome, RecordedRequest, Recording, Tape};
use crate::droplets::Droplet;
use crate::droplets::recorder::Reason;
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
    let (tape, reason) = app
        .recorder
        .tape(&droplet.manifest, requested(app, headers))?;
    let request = RecordedRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request
            .headers
            .iter()
            .filter(|(name, _)| !UNRECORDED_HEADERS.contains(&name.as_str()))
            .cloned()
            .collect(),
        body: Blob(request.body.clone()),
    };
    Some(Taping {
        tape,
        reason,
        request,
        claims: caller.claims.as_ref().map(|claims| claims.json.clone()),
        caller: hop.map(|hop| hop.caller.to_string()),
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
        let (outcome, kept) = match outcome {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                // A whole body: ready at once.
                let body = body
                    .collect()
                    .now_or_never()
                    .and_then(Result::ok)
                    .map(|collected| collected.to_bytes())
                    .unwrap_or_default();
                let kept = Outcome::Response {
                    status: parts.status.as_u16(),
                    headers: guest_headers.unwrap_or_default(),
                    body: Blob(body.to_vec()),
                };
                (Ok(Response::from_parts(parts, Full::new(body))), kept)
            }
            Err(err) => {
                let kept = Outcome::Failure {
                    status: err.status().as_u16(),
                    code: err.code().to_string(),
                    message: err.to_string(),
                };
                (Err(err), kept)
            }
        };
        let failed = failed(&outcome);
        let Taping {
            tape,
            reason,
            request,
            claims,
            caller,
        } = self;
        app.recorder.keep(reason, failed, |reason| Recording {
            format: FORMAT.to_string(),
            trace_id: trace_id.to_string(),
            droplet: droplet.name.to_string(),
            version: droplet.version.to_string(),
            recorded_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64),
            host: app.host_id.clone(),
            reason: reason.to_string(),
            budget_ms: droplet.manifest.budget_ms,
            caller,
            request,
            claims,
            reel: tape.take(),
            outcome: kept,
        });
        outcome
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
