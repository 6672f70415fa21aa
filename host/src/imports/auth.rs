//! `fp:droplet/auth`: the request's verified caller, and verification of
//! other tokens under the host's keys and rules.
//!
//! The caller's token was verified by the host before the instance was made
//! (the droplet's policy); the droplet only reads the result.

use super::Imports;
use crate::jwt::{TokenError, VerifiedClaims};
use crate::runtime::bindings::fp::droplet::auth::{Claims, Error, Host};

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

impl Host for Imports {
    async fn caller(&mut self) -> Option<Claims> {
        self.auth.caller.as_deref().map(to_wit)
    }

    async fn verify(&mut self, token: String) -> Result<Claims, Error> {
        let Some(verifier) = &self.auth.verifier else {
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
