//! [`Replayer`]: runs a recorded call again, in a fresh instance whose
//! imports answer from the recording, and reports what it answered next
//! to what was recorded ([`Replayed`]). The same recording replayed twice
//! gives the same bytes: nothing the guest reads comes from outside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::bindings::DropletPre;
use super::bindings::fp::droplet::types::{Request, Response};
use super::bindings::fp::droplet::{
    auth, calls, config, kv, log, queue, response_body, streaming, types,
};
use super::http;
use super::outcome::{Answered, invalid, invalid_status};
use super::state::{Building, Hooks, ReplayState};
use crate::capabilities::guest_stdio::GuestStdio;
use crate::capabilities::log::GuestLog;
use crate::capabilities::recording::entry::LogLine;
use crate::capabilities::recording::player::Progress;
use crate::capabilities::recording::sources::{self, Source};
use crate::capabilities::recording::{Blob, Divergence, Outcome, Player, Recording, Tape};
use crate::capabilities::response_body::MAX_RESPONSE_BYTES;
use crate::error::HostError;
use crate::guest::call::{CallError, classify};

/// What a replay gave, beside what was recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replayed {
    /// How the replayed call ended.
    pub outcome: Outcome,
    /// Where its import calls first differed from the recording's.
    pub divergence: Option<Divergence>,
    /// How far it went through the recording.
    pub progress: Progress,
    /// What it logged and printed.
    pub logs: Vec<LogLine>,
}

/// Why a module cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The engine could not be built.
    #[error("cannot build the WebAssembly engine: {0}")]
    Engine(String),
    /// The module does not compile or does not serve our world.
    #[error("the module cannot be replayed: {0}")]
    Module(String),
}

/// A module ready to replay, in its world.
pub enum Prepared {
    /// Exports `fp:droplet/handler`.
    Droplet(DropletPre<ReplayState>),
    /// Exports `wasi:http/incoming-handler`.
    Http(ProxyPre<ReplayState>),
}

/// An engine and linker for replays, with its epoch ticker.
pub struct Replayer {
    engine: Engine,
    linker: Linker<ReplayState>,
    stop: Arc<AtomicBool>,
}

impl Drop for Replayer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The longest a replay waits between checks of its budget and of a
/// divergence.
const TICK: Duration = Duration::from_millis(1);

impl Replayer {
    /// An engine with epoch interruption, WASI, `wasi:http` and the droplet
    /// world linked to the replay's imports.
    pub fn new() -> Result<Self, ReplayError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|err| ReplayError::Engine(format!("{err:#}")))?;
        let mut linker = Linker::new(&engine);
        let link = |linker: &mut Linker<ReplayState>| -> wasmtime::Result<()> {
            wasmtime_wasi::p2::add_to_linker_async(linker)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
            // Interface by interface: the world's own `add_to_linker` would
            // link `wasi:io/poll` a second time.
            fn this(state: &mut ReplayState) -> &mut ReplayState {
                state
            }
            types::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            response_body::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            streaming::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            kv::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            log::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            auth::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            config::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            queue::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)?;
            calls::add_to_linker::<_, HasSelf<ReplayState>>(linker, this)
        };
        link(&mut linker).map_err(|err| ReplayError::Engine(format!("{err:#}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ticking, stopped) = (engine.clone(), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("replay-epoch".to_string())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticking.increment_epoch();
                }
            })
            .map_err(|err| ReplayError::Engine(err.to_string()))?;
        Ok(Self {
            engine,
            linker,
            stop,
        })
    }

    /// Compiles and links `wasm`: a component of the droplet world or a
    /// `wasi:http/proxy` one.
    pub fn prepare(&self, wasm: &[u8]) -> Result<Prepared, ReplayError> {
        let component = Component::new(&self.engine, wasm)
            .map_err(|err| ReplayError::Module(format!("{err:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|err| ReplayError::Module(format!("{err:#}")))?;
        match DropletPre::new(pre.clone()) {
            Ok(droplet) => Ok(Prepared::Droplet(droplet)),
            Err(_) => ProxyPre::new(pre).map(Prepared::Http).map_err(|_| {
                ReplayError::Module(
                    "it exports neither the droplet world's handler nor wasi:http/incoming-handler"
                        .to_string(),
                )
            }),
        }
    }

    /// Runs `recording`'s call again in `pre`, within `budget` of guest time.
    pub async fn replay(
        &self,
        pre: &Prepared,
        recording: &Recording,
        budget: Duration,
    ) -> Replayed {
        let player = Player::new(recording.reel.clone());
        let lines = Tape::new(usize::MAX);
        let log = Arc::new(
            GuestLog::new(
                recording.droplet.as_str().into(),
                recording.version.as_str().into(),
                recording.trace_id.as_str().into(),
            )
            .with_tape(lines.clone()),
        );
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestStdio::stdout(&log))
            .stderr(GuestStdio::stderr(&log))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        sources::install(&mut wasi, || Source::Replayed(player.clone()));
        let request = &recording.request;
        let mut store = Store::new(
            &self.engine,
            ReplayState {
                wasi: wasi.build(),
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                hooks: Hooks::new(player.clone()),
                player: player.clone(),
                log: Arc::clone(&log),
                building: Building::default(),
                request_body: Bytes::from(request.body.0.clone()),
            },
        );
        let started = Instant::now();
        let watched = player.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if let Some(divergence) = watched.divergence() {
                return Err(wasmtime::Error::new(divergence));
            }
            if started.elapsed() > budget {
                return Err(wasmtime::Error::new(Trap::Interrupt));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let result = match pre {
            Prepared::Droplet(pre) => {
                let guest_request = Request {
                    method: request.method.clone(),
                    path: request.path.clone(),
                    query: request.query.clone(),
                    headers: request.headers.clone(),
                    body: request.body.0.clone(),
                };
                async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    instance
                        .fp_droplet_handler()
                        .call_handle(&mut store, &guest_request)
                        .await
                }
                .await
                .map(|response| {
                    let building = std::mem::take(&mut store.data_mut().building);
                    answered(response, building)
                })
            }
            Prepared::Http(pre) => http::serve(&mut store, pre, request).await,
        };
        // Stdio flushes when the store goes; a component's unfinished
        // response body ends.
        drop(store);
        let divergence = player.divergence();
        let outcome = match (result, &divergence) {
            (_, Some(divergence)) => Outcome::Failure {
                status: 500,
                code: "replay_diverged".to_string(),
                message: divergence.message.clone(),
            },
            (Ok(outcome), None) => outcome.await,
            (Err(err), None) => failed(recording, classify(&err, log.failure_hint())),
        };
        Replayed {
            outcome,
            divergence,
            progress: player.progress(),
            logs: lines.take().logs,
        }
    }
}

/// The outcome of a call the guest answered, checked as the live host
/// checks it (ready at once).
fn answered(returned: Response, building: Building) -> Answered {
    Box::pin(std::future::ready(answer(returned, building)))
}

fn answer(returned: Response, building: Building) -> Outcome {
    let head = building.head.unwrap_or(returned);
    if let Some(invalid) = invalid_status(head.status) {
        return invalid;
    }
    if building.too_large {
        return invalid(format!(
            "the body is over the limit of {MAX_RESPONSE_BYTES} bytes"
        ));
    }
    Outcome::Response {
        status: head.status,
        headers: head.headers,
        body: Blob(building.body),
    }
}

/// The outcome of a call that produced no response, as the live host tells
/// the client.
fn failed(recording: &Recording, err: CallError) -> Outcome {
    let err = match err {
        CallError::BudgetExceeded => HostError::BudgetExceeded {
            name: recording.droplet.clone(),
            budget_ms: recording.budget_ms,
        },
        CallError::Trap(message) => {
            HostError::DropletTrap(format!("droplet `{}` {message}", recording.droplet))
        }
        other => HostError::DropletTrap(format!("droplet `{}` {other}", recording.droplet)),
    };
    Outcome::Failure {
        status: err.status().as_u16(),
        code: err.code().to_string(),
        message: err.to_string(),
    }
}
