//! A streamed call, recorded — a `wasi:http` component's, or a streaming
//! droplet's: its request body kept as the guest reads it and its
//! response body as the guest writes it.
//! Such a call ends twice — the call itself (its instance gone) and its
//! response body (sent to the client, or dropped) — and is kept once both
//! have, whichever comes last.

use std::sync::{Arc, Mutex};

use http_body_util::BodyExt as _;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::recording::Taping;
use crate::app::App;
use crate::capabilities::recording::tee::{Stream, Tee, header_pairs};
use crate::capabilities::recording::{Blob, Outcome, Tape};
use crate::droplets::Droplet;
use crate::droplets::recorder::Recorder;
use crate::error::HostError;
use crate::guest::proxy::ProxyBody;

/// A streamed call being recorded.
pub struct StreamedTaping {
    tape: Tape,
    ending: Mutex<Ending>,
    recorder: Arc<Recorder>,
    host: String,
    droplet: Arc<Droplet>,
    trace_id: Arc<str>,
}

struct Ending {
    taping: Option<Taping>,
    head: Option<(u16, Vec<(String, String)>)>,
    failure: Option<HostError>,
    /// Ends still to come: the call's and its response body's.
    left: u8,
}

/// One of a streamed call's two ends, said when dropped.
pub struct End(Arc<StreamedTaping>);

impl Drop for End {
    fn drop(&mut self) {
        self.0.end();
    }
}

impl StreamedTaping {
    /// Records a streamed call of `droplet` on `taping`.
    pub fn new(
        app: &App,
        droplet: &Arc<Droplet>,
        trace_id: &Arc<str>,
        taping: Taping,
    ) -> Arc<Self> {
        Arc::new(Self {
            tape: taping.tape.clone(),
            ending: Mutex::new(Ending {
                taping: Some(taping),
                head: None,
                failure: None,
                left: 2,
            }),
            recorder: Arc::clone(&app.recorder),
            host: app.host_id.clone(),
            droplet: Arc::clone(droplet),
            trace_id: Arc::clone(trace_id),
        })
    }

    /// The call's tape.
    pub fn tape(&self) -> &Tape {
        &self.tape
    }

    fn ending(&self) -> std::sync::MutexGuard<'_, Ending> {
        self.ending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The call's two ends: the call's own, and its response body's.
    pub fn ends(self: &Arc<Self>) -> (End, End) {
        (End(Arc::clone(self)), End(Arc::clone(self)))
    }

    /// The request body, kept as the component reads it.
    pub fn reading(&self, body: ProxyBody) -> ProxyBody {
        Tee::new(body, self.tape.clone(), Stream::Read).boxed_unsync()
    }

    /// The response as the component set it: its head kept, its body kept
    /// as it is written; `body_end` is said when the body is done.
    pub fn writing(
        &self,
        response: http::Response<HyperOutgoingBody>,
        body_end: End,
    ) -> http::Response<HyperOutgoingBody> {
        self.head(response.status().as_u16(), header_pairs(response.headers()));
        response.map(|body| self.written(body, body_end))
    }

    /// The response head the call set (a streaming droplet's, from
    /// `start-response`).
    pub fn head(&self, status: u16, headers: Vec<(String, String)>) {
        self.ending().head = Some((status, headers));
    }

    /// The response body, kept as it is written; `body_end` is said when
    /// it is done.
    pub fn written(&self, body: HyperOutgoingBody, body_end: End) -> HyperOutgoingBody {
        Tee::new(body, self.tape.clone(), Stream::Written)
            .with_guard(body_end)
            .boxed_unsync()
    }

    /// A streaming droplet that returned its response whole instead:
    /// said before its call's end.
    pub fn answered(&self, status: u16, headers: Vec<(String, String)>, body: &[u8]) {
        self.head(status, headers);
        self.tape.body_piece(false, body);
    }

    /// The call failed with `failure`.
    pub fn failed(&self, failure: HostError) {
        self.ending().failure = Some(failure);
    }

    fn end(&self) {
        let mut ending = self.ending();
        ending.left = ending.left.saturating_sub(1);
        if ending.left > 0 {
            return;
        }
        let Some(taping) = ending.taping.take() else {
            return;
        };
        let (outcome, failed) = match (ending.failure.take(), ending.head.take()) {
            (Some(err), _) => (failure(&err), true),
            (None, Some((status, headers))) => (
                Outcome::Response {
                    status,
                    headers,
                    body: Blob(self.tape.take_body(false)),
                },
                status >= 500,
            ),
            (None, None) => (
                failure(&HostError::DropletTrap(format!(
                    "droplet `{}` returned without setting a response",
                    self.droplet.name
                ))),
                true,
            ),
        };
        drop(ending);
        taping.keep(
            &self.recorder,
            &self.host,
            &self.droplet,
            &self.trace_id,
            || outcome,
            failed,
        );
    }
}

fn failure(err: &HostError) -> Outcome {
    Outcome::Failure {
        status: err.status().as_u16(),
        code: err.code().to_string(),
        message: err.to_string(),
    }
}
