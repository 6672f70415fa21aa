//! Record and replay at the import boundary: every droplet call is a pure
//! function of its request and what the host answers its imports, so a
//! call whose answers were recorded can be run again, anywhere.
//!
//! `entry` (one import call and its answer, in the recording's own types; `live`
//! converts the live host's answers into them),
//! `tape` (what a call records as it runs, bounded), `player` (a recording
//! played back, and the first divergence), `sources` (the WASI clocks and
//! random sources, recorded or replayed), `tee` (a body kept on the tape as
//! it passes), `format` (the versioned
//! document a recording is kept as). A leaf of `capabilities`: the
//! capabilities keep onto a tape; `guest` installs the sources and
//! replays; `dispatch` decides what is kept.

pub mod entry;
pub mod format;
pub mod live;
pub mod player;
pub mod sources;
pub mod tape;
pub mod tee;

pub use self::entry::{Blob, Call, Reply};
pub use self::format::{Outcome, RecordedRequest, Recording};
pub use self::player::{Divergence, Player};
pub use self::tape::{Reel, Tape};
