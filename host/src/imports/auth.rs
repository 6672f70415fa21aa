//! `fp:droplet/auth`: no token verification yet.
//!
//! The host verifies no tokens until JWT support lands, so no request has a
//! verified caller (`caller` is `none`) and `verify` answers `unavailable`.

use super::Imports;
use crate::runtime::bindings::fp::droplet::auth::{Claims, Error, Host};

impl Host for Imports {
    async fn caller(&mut self) -> Option<Claims> {
        None
    }

    async fn verify(&mut self, _token: String) -> Result<Claims, Error> {
        Err(Error::Unavailable(
            "token verification is not enabled on this host yet".to_string(),
        ))
    }
}
