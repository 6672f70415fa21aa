//! The verified caller of this request.
//!
//! The host verifies the request's bearer token before the droplet runs
//! (a manifest with `auth = "jwt"` and `scopes = [...]` makes it required);
//! the droplet reads the result.
//!
//! ```no_run
//! match droplet_sdk::auth::caller() {
//!     Some(claims) => println!("called by {:?}", claims.subject),
//!     None => println!("anonymous"),
//! }
//! ```

use crate::bindings::fp::droplet::auth as wit;

pub use wit::{Claims, Error};

/// The verified claims of this request's bearer token, if it had a valid one.
pub fn caller() -> Option<Claims> {
    wit::caller()
}

/// Why this request's bearer token was refused, when it carried one that
/// did not verify (then [`caller`] is `None`). The raw token never reaches
/// the droplet unless its manifest sets `forward_authorization = true`.
pub fn caller_error() -> Option<Error> {
    wit::caller_error()
}

/// Verifies another token under the host's keys and rules.
pub fn verify(token: &str) -> Result<Claims, Error> {
    wit::verify(token)
}

impl Claims {
    /// Whether the claims grant `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}
