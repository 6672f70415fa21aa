//! Outbound HTTP (`wasi:http/outgoing-handler`): the one client and the
//! send hook's checks ([`client`]), its connections ([`transport`]), the
//! bounded bodies ([`bodies`]), the manifest's allowlist ([`allow`]) and
//! each version's outbound metrics ([`series`]),
//! the SSRF-guarding resolver ([`guard`]), the per-call half ([`access`]),
//! `fp:droplet/calls`, the same in-process call without `wasi:http`'s
//! resources ([`calls`], its calls on their way in [`pending`]), and the seam through which in-process calls to other droplets are
//! answered by the host ([`in_process`]).

pub mod access;
pub mod allow;
pub mod bodies;
pub mod calls;
pub mod client;
pub mod guard;
pub mod in_process;
pub mod pending;
pub mod series;
pub mod transport;

pub use self::bodies::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
pub use self::client::{CallLimits, Outbound, OutboundReport, traceparent};
pub use self::in_process::{Chain, Fanout, INTERNAL_SUFFIX, InternalCall, InternalCalls, MAX_HOPS};
