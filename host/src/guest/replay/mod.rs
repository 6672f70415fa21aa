//! Replay: a recorded call run again, its imports answered from the
//! recording (`state`, converted by `answers`) in a second generation of
//! the world whose imports can trap (`bindings`), by a [`run::Replayer`]
//! that reports the outcome next to the recorded one (`run`); a `wasi:http`
//! component's call goes through its own handler (`http`), a call to another
//! droplet through `fp:droplet/calls` is answered whole (`calls`); `outcome` is how a
//! replayed call ended, as the live host would answer it. Used by
//! `droplet replay`; the serving host never replays.

pub mod answers;
pub mod bindings;
pub mod calls;
pub mod http;
pub mod outcome;
pub mod run;
pub mod state;

pub use self::run::{Prepared, ReplayError, Replayed, Replayer};
