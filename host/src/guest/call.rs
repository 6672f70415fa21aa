//! One call into a component: a fresh store, instantiation, the handler,
//! the instance dropped — all under one deadline — and what the client may
//! know when it fails.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::Instrument;
use wasmtime::{CallHook, PoolConcurrencyLimitError, Trap};

use super::guest_priority;
use super::host_memory::{CallMemory, OverLimit};
use super::proxy::{HeadSender, ProxyBody, serve_http};
use super::records::Answer;
use super::runtime::{Linked, Runtime};
use super::stream::CallEnd;
use crate::bindings;
use crate::capabilities::Imports;
use crate::capabilities::recording::Tape;

/// The request a call hands to the component, in its world's terms.
pub enum CallRequest {
    /// For a droplet's `handle`.
    Droplet(bindings::GuestRequest),
    /// For a `wasi:http/proxy` component's `incoming-handler.handle`: its
    /// response head goes to `head` as soon as it is set.
    Http {
        /// The request, its body streamed.
        request: http::Request<ProxyBody>,
        /// Where the response head goes.
        head: HeadSender,
    },
}

/// One call into a droplet (the droplet itself, linked, is passed beside
/// it).
pub struct Call {
    /// The droplet's linear-memory cap in bytes.
    pub memory_bytes: usize,
    /// When the call must be over.
    pub deadline: Instant,
    /// The imports' state for this call.
    pub imports: Imports,
    /// The request to hand to `handle`.
    pub request: CallRequest,
    /// The droplet's recent calls mostly trapped or overran: schedule this
    /// call as long-running from its start.
    pub suspect: bool,
    /// The droplet may call out (its manifest allows outbound HTTP) or
    /// streams, so the call may wait on the host for long.
    pub calls_out: bool,
    /// For a call whose body streams: how it ended, said before its
    /// instance (and so its body's channel) is dropped.
    pub end: Option<Arc<CallEnd>>,
    /// Where the call is recorded, when it is: its clocks and random
    /// sources are read through it.
    pub tape: Option<Tape>,
}

/// Why a call produced no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The deadline passed.
    #[error("budget exceeded")]
    BudgetExceeded,
    /// The guest trapped; the message names the trap (and the panic, if any).
    #[error("{0}")]
    Trap(String),
    /// The pooling allocator had no free slot.
    #[error("no free instance slot")]
    PoolExhausted,
    /// The host-wide budget of memory held for running calls was spent.
    #[error("{0}")]
    HostBusy(String),
    /// The request was built for the other world than the component's:
    /// a host bug.
    #[error("the request does not match the component's world")]
    WorldMismatch,
}

/// The marker [`Runtime::call`] fails with when the request does not fit
/// the component's world, so that [`classify`] can tell it from a trap.
#[derive(Debug, thiserror::Error)]
#[error("the request does not match the component's world")]
struct WorldMismatch;

impl Runtime {
    /// Runs one request in a fresh instance and drops the instance, on
    /// this thread ([`Runtime::call`] decides where). A droplet's answer is
    /// returned; a `wasi:http` component's response went to its request's
    /// head sender (`Ok(None)`).
    pub(super) async fn run(
        &self,
        droplet: &Linked,
        call: Call,
    ) -> Result<Option<Answer>, CallError> {
        let log = Arc::clone(&call.imports.log);
        let tape = call.tape.clone();
        let end = call.end.clone();
        let memory = Arc::new(CallMemory::new(
            Arc::clone(&self.host_memory),
            call.memory_bytes,
        ));
        let mut store = self.new_store(call.imports, call.memory_bytes, call.tape.as_ref());
        let mut scheduler = self.long_running.scheduler(call.deadline, call.suspect);
        store.set_epoch_deadline(scheduler.first_epoch_deadline());
        // Time in host imports is not guest time: a call that waited on a
        // slow import is not long-running for it. A call that may wait long
        // on the host (outbound HTTP, another droplet) also gives its gate
        // permit back whenever it calls the host.
        let (gate, clock) = (call.calls_out.then(|| scheduler.gate()), scheduler.clock());
        store.call_hook(move |_, hook| {
            match hook {
                CallHook::CallingHost => {
                    if let Some(gate) = &gate {
                        gate.release();
                    }
                    clock.entering_host();
                }
                CallHook::ReturningFromHost => clock.left_host(),
                CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
            }
            Ok(())
        });
        // What the call makes the host hold is checked at every tick.
        let held = Arc::clone(&memory);
        store.epoch_deadline_callback(move |_| match held.over() {
            Some(over) => Err(wasmtime::Error::new(over)),
            None => Ok(scheduler.on_tick()),
        });

        let run = async {
            let instantiating = std::time::Instant::now();
            match (droplet, call.request) {
                (Linked::Droplet(pre), CallRequest::Droplet(request)) => {
                    // Kept inside the call, so that the copy counts against
                    // what the call may make the host hold.
                    if let Some(tape) = &tape {
                        tape.body_piece(true, &request.body);
                    }
                    let instance = pre
                        .instantiate_async(&mut store)
                        .instrument(crate::step_span!("instantiate"))
                        .await?;
                    self.instantiation
                        .record(instantiating.elapsed().as_secs_f64());
                    let response = instance
                        .fp_droplet_handler()
                        .call_handle(&mut store, &request)
                        .instrument(crate::step_span!("guest"))
                        .await?;
                    let body = store.data_mut().imports.body.take();
                    Ok(Some(Answer { response, body }))
                }
                (Linked::Proxy(pre), CallRequest::Http { request, head, .. }) => {
                    let instance = pre
                        .instantiate_async(&mut store)
                        .instrument(crate::step_span!("instantiate"))
                        .await?;
                    self.instantiation
                        .record(instantiating.elapsed().as_secs_f64());
                    serve_http(&mut store, &instance, request, head)
                        .instrument(crate::step_span!("guest"))
                        .await?;
                    Ok(None)
                }
                // The dispatcher built the request for the other world: a
                // host bug, not the guest's doing.
                _ => Err(wasmtime::Error::new(WorldMismatch)),
            }
        };
        // A poll that ran a long-running guest may have lowered the
        // thread's priority; it is back before the thread runs anything else.
        let outcome = {
            let mut run = std::pin::pin!(run);
            let run = std::future::poll_fn(|cx| {
                let _restore = guest_priority::Restore;
                let _counted = memory.enter();
                run.as_mut().poll(cx)
            });
            tokio::select! {
                biased;
                outcome = run => Some(outcome),
                () = self.deadlines.at(call.deadline.into_std()) => None,
            }
        };
        // Said before the instance goes: dropping it ends a streamed body.
        if let Some(end) = end {
            end.finish(matches!(outcome, Some(Ok(_))));
        }
        // Drop the instance before logging: its stdio streams flush on drop.
        drop(store);
        let result = match outcome {
            None => Err(CallError::BudgetExceeded),
            Some(Ok(answer)) => Ok(answer),
            Some(Err(err)) => Err(classify(&err, log.failure_hint())),
        };
        log.finish();
        result
    }
}

/// Turns a wasmtime error into what the client may know about it.
pub(crate) fn classify(err: &wasmtime::Error, hint: Option<String>) -> CallError {
    if let Some(trap) = err.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return CallError::BudgetExceeded;
        }
        // `Trap`'s message starts "wasm trap: "; the client knows it is one.
        let trap = trap.to_string();
        let trap = trap.strip_prefix("wasm trap: ").unwrap_or(&trap);
        return CallError::Trap(match hint {
            Some(hint) if hint.starts_with("panicked at ") => hint,
            Some(hint) => format!("trapped: {trap} ({hint})"),
            None => format!("trapped: {trap}"),
        });
    }
    match err.downcast_ref::<OverLimit>() {
        Some(over @ OverLimit::Call { .. }) => return CallError::Trap(over.to_string()),
        Some(over @ OverLimit::Host) => return CallError::HostBusy(over.to_string()),
        None => {}
    }
    if err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return CallError::PoolExhausted;
    }
    if err.downcast_ref::<WorldMismatch>().is_some() {
        return CallError::WorldMismatch;
    }
    // Not a trap: instantiation refused (for example an initial memory over
    // the droplet's cap) or a host import failed fatally. The root cause is
    // about the droplet, never a host path.
    CallError::Trap(format!("failed: {}", err.root_cause()))
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bindings::GuestRequest;
    use crate::capabilities::CallContext;
    use crate::testing::{self, Parts};

    pub(in crate::guest) fn get(path: &str) -> CallRequest {
        CallRequest::Droplet(GuestRequest {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
        })
    }

    /// Calls example `name` once, as dispatch does; `None` when the example
    /// is not built.
    pub(in crate::guest) async fn call(
        parts: &Parts,
        name: &str,
        request: CallRequest,
        budget: Duration,
        suspect: bool,
    ) -> Option<Result<Option<Answer>, CallError>> {
        let wasm = testing::example(name)?;
        let parsed = parts
            .loader
            .parse(name, None)
            .expect("the default manifest");
        let ready = parts
            .loader
            .compile(name, &wasm, &parsed.manifest)
            .expect("the example compiles");
        let (droplet, version, trace_id): (Arc<str>, Arc<str>, Arc<str>) =
            (name.into(), "1-test".into(), "trace".into());
        let deadline = Instant::now() + budget;
        let context = CallContext {
            droplet: &droplet,
            version: &version,
            trace_id: &trace_id,
            caller: Default::default(),
            deadline,
            chain: Default::default(),
            tape: None,
        };
        let imports = parts.capabilities.for_call(&parsed.grants, &context);
        Some(
            parts
                .runtime
                .call(
                    &ready.pre,
                    Call {
                        memory_bytes: 64 << 20,
                        deadline,
                        imports,
                        request,
                        suspect,
                        calls_out: false,
                        end: None,
                        tape: None,
                    },
                )
                .await,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_droplet_answers_from_a_fresh_instance() {
        let parts = testing::parts();
        let Some(answer) = call(&parts, "hello", get("/x"), Duration::from_secs(10), false).await
        else {
            return;
        };
        let answer = answer.expect("hello answers").expect("a droplet's answer");
        assert_eq!(answer.response.status, 200);
        let (body, _held) = answer.body.finish().expect("a body within the limits");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("hello") && text.contains("/x"), "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runaway_guest_is_stopped_at_its_deadline() {
        let parts = testing::parts();
        let started = std::time::Instant::now();
        let Some(result) = call(&parts, "spin", get("/"), Duration::from_millis(200), false).await
        else {
            return;
        };
        assert!(matches!(result, Err(CallError::BudgetExceeded)));
        // Stopped, not run to completion: well under the loop's own length
        // (it never ends), however loaded the machine.
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_suspect_call_runs_no_guest_code_before_it_holds_a_gate_permit() {
        let parts = testing::parts();
        if testing::example("hello").is_none() {
            return;
        }
        // No ticks: a call waits for a permit only where it checks for one
        // before its first instruction.
        parts.runtime.ticker.stop();
        std::thread::sleep(crate::guest::scheduler::EPOCH_TICK * 20);
        let held = parts.runtime.long_running.hold_every_permit();
        assert!(held.is_some(), "no call holds a permit yet");
        let budget = Duration::from_secs(60);
        let waited = tokio::time::timeout(
            Duration::from_millis(500),
            call(&parts, "hello", get("/"), budget, true),
        )
        .await;
        assert!(waited.is_err(), "a suspect call ran without a permit");
        let healthy = call(&parts, "hello", get("/"), budget, false).await;
        assert!(
            matches!(healthy, Some(Ok(Some(_)))),
            "a healthy call waits for nothing"
        );
        drop(held);
        let admitted = call(&parts, "hello", get("/"), budget, true).await;
        assert!(
            matches!(admitted, Some(Ok(Some(_)))),
            "a permit free: answered"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_is_a_trap_that_names_it() {
        let parts = testing::parts();
        let Some(result) = call(&parts, "panic", get("/"), Duration::from_secs(10), false).await
        else {
            return;
        };
        match result {
            Err(CallError::Trap(message)) => {
                assert!(message.contains("panicked at"), "{message}")
            }
            Err(other) => panic!("not a trap: {other}"),
            Ok(_) => panic!("answered"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_for_the_other_world_is_the_hosts_error_not_a_trap() {
        let parts = testing::parts();
        let Some(result) = call(
            &parts,
            "proxy-hello",
            get("/"),
            Duration::from_secs(10),
            false,
        )
        .await
        else {
            return;
        };
        assert!(matches!(result, Err(CallError::WorldMismatch)));
    }
}
