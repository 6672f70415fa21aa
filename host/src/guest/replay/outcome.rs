//! How a replayed call ended, as the live host would have answered it:
//! what `run` and `http` share.

use crate::capabilities::recording::Outcome;
use crate::error::HostError;

/// An outcome still being written: a `wasi:http` component's body ends
/// once its store is gone.
pub type Answered = std::pin::Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The outcome the live host gives a response it refuses.
pub fn invalid(why: String) -> Outcome {
    let err = HostError::InvalidResponse(why);
    Outcome::Failure {
        status: err.status().as_u16(),
        code: err.code().to_string(),
        message: err.to_string(),
    }
}

/// A status the live host refuses, refused.
pub fn invalid_status(status: u16) -> Option<Outcome> {
    (!(200..=599).contains(&status))
        .then(|| invalid(format!("status {status} is not in 200..=599")))
}
