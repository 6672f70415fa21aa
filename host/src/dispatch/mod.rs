//! A droplet call, from a routed request to an HTTP response: who may
//! call, the body, the slots, the capabilities, the guest runtime, the
//! counters. The per-droplet endpoints the host answers itself
//! (`/{name}/health`, `/capabilities`, `/state`) and in-process calls
//! between droplets (`*.droplet.internal`) live here too: both are a
//! droplet call answered without the network.
//!
//! Uses [`crate::droplets`], [`crate::guest`], [`crate::capabilities`],
//! [`crate::identity`] and [`crate::ops`]; used by [`crate::http`].

pub mod call_parts;
pub mod droplet_call;
pub mod droplet_endpoints;
pub mod in_process;
pub mod recording;
pub mod recording_streamed;
mod streamed;

pub use self::call_parts::{CallReport, Hop};
pub use self::droplet_call::{ROLLOUT_KEY_HEADER, call, choose_version};
