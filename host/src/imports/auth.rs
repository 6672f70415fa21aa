//! `fp:droplet/auth`: the request's verified caller, and verification of
//! other tokens under the host's keys and rules.
//!
//! The caller's token was verified by the host before the instance was made
//! (the droplet's policy); the droplet only reads the result.

use std::sync::Arc;

use crate::bindings::fp::droplet::auth::{Claims, Error, Host};
use crate::jwt::{TokenError, VerifiedClaims, Verifier};

/// The host-wide half: the keys tokens are verified with.
pub struct AuthCapability {
    /// The host's verifier; `None` when no keys are configured.
    pub verifier: Option<Arc<Verifier>>,
}

/// What the `auth` import knows for one call.
pub struct AuthAccess {
    /// The verified claims of the request's bearer token, if valid.
    pub caller: Option<Arc<VerifiedClaims>>,
    /// The host's verifier, if keys are configured.
    pub verifier: Option<Arc<Verifier>>,
}

impl AuthCapability {
    /// One call's view: its caller (verified by the droplet's policy before
    /// the instance was made) and the host's keys.
    pub fn for_call(&self, caller: Option<Arc<VerifiedClaims>>) -> AuthAccess {
        AuthAccess {
            caller,
            verifier: self.verifier.clone(),
        }
    }
}

fn to_wit(claims: &VerifiedClaims) -> Claims {
    Claims {
        subject: claims.subject.clone(),
        issuer: claims.issuer.clone(),
        audience: claims.audience.clone(),
        expires_at: claims.expires_at,
        scopes: claims.scopes.clone(),
        json: claims.json.to_string(),
    }
}

impl Host for AuthAccess {
    async fn caller(&mut self) -> Option<Claims> {
        self.caller.as_deref().map(to_wit)
    }

    async fn verify(&mut self, token: String) -> Result<Claims, Error> {
        let Some(verifier) = &self.verifier else {
            return Err(Error::Unavailable(
                "this host has no keys configured to verify tokens".to_string(),
            ));
        };
        verifier
            .verify(&token)
            .map(|claims| to_wit(&claims))
            .map_err(|err| match err {
                TokenError::Malformed => Error::Malformed,
                TokenError::Expired | TokenError::NotYetValid => Error::Expired,
                TokenError::Invalid(why) => Error::Invalid(why),
            })
    }
}
