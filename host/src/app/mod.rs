//! The state of a running host, shared by every connection: the runtime,
//! the droplet table, the capabilities and the settings requests need —
//! and where they are built, once, from [`ServeSettings`].

pub mod settings;
pub mod start_error;
pub mod state;

pub use self::settings::ServeSettings;
pub use self::start_error::StartError;
pub use self::state::App;
