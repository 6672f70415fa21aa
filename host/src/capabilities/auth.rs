//! `fp:droplet/auth`: the request's verified caller, and verification of
//! other tokens under the host's keys and rules.
//!
//! The caller's token was verified by the host before the instance was made
//! (the droplet's policy); the droplet only reads the result.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::call_context::CallContext;
use super::capability::{Capability, StoreData};
use super::recording::{Call, Reply, Tape, live};
use crate::bindings::fp::droplet::auth::{self as wit, Claims, Error, Host};
use crate::droplets::manifest::{Manifest, ManifestError};
use crate::identity::jwt::{TokenError, VerifiedClaims, Verifier};
use crate::identity::policy::Caller;

/// The host-wide half: the keys tokens are verified with.
pub struct AuthCapability {
    /// The host's verifier; `None` when no keys are configured.
    pub verifier: Option<Arc<Verifier>>,
}

/// What the `auth` import knows for one call.
pub struct AuthAccess {
    /// Who is calling: verified claims, or why the token was refused.
    pub caller: Caller,
    /// The host's verifier, if keys are configured.
    pub verifier: Option<Arc<Verifier>>,
    /// Where the call's auth calls are recorded, when it is recorded.
    pub tape: Option<Tape>,
}

impl Capability for AuthCapability {
    const GRANT: Option<&'static str> = Some("auth");
    const INTERFACES: &'static [&'static str] = &["fp:droplet/auth"];
    type Grant = ();
    type Access = AuthAccess;

    fn link<T: StoreData>(
        linker: &mut Linker<T>,
        access: fn(&mut T) -> &mut AuthAccess,
    ) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, HasSelf<AuthAccess>>(linker, access)
    }

    fn grant(&self, _manifest: &Manifest) -> Result<(), ManifestError> {
        Ok(())
    }

    /// One call's view: its caller (verified by the droplet's policy before
    /// the instance was made) and the host's keys.
    fn for_call(&self, _grant: &(), call: &CallContext<'_>) -> AuthAccess {
        AuthAccess {
            caller: call.caller.clone(),
            verifier: self.verifier.clone(),
            tape: call.tape.clone(),
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

/// Why a token was refused, as the guest's error variant.
fn error_to_wit(err: &TokenError) -> Error {
    match err {
        TokenError::Malformed => Error::Malformed,
        TokenError::Expired | TokenError::NotYetValid => Error::Expired,
        TokenError::Invalid(why) => Error::Invalid(why.clone()),
    }
}

impl Host for AuthAccess {
    async fn caller(&mut self) -> Option<Claims> {
        let claims = self.caller.claims.as_deref().map(to_wit);
        if let Some(tape) = &self.tape {
            tape.keep(
                Call::AuthCaller,
                Reply::Caller(claims.as_ref().map(live::claims)),
            );
        }
        claims
    }

    async fn caller_error(&mut self) -> Option<Error> {
        let refused = self.caller.refused.as_ref().map(error_to_wit);
        if let Some(tape) = &self.tape {
            let reply = Reply::Refusal(refused.as_ref().map(live::token_failure));
            tape.keep(Call::AuthCallerError, reply);
        }
        refused
    }

    async fn verify(&mut self, token: String) -> Result<Claims, Error> {
        let result = match &self.verifier {
            None => Err(Error::Unavailable(
                "this host has no keys configured to verify tokens".to_string(),
            )),
            Some(verifier) => verifier
                .verify(&token)
                .map(|claims| to_wit(&claims))
                .map_err(|err| error_to_wit(&err)),
        };
        if let Some(tape) = &self.tape {
            // The token itself is never kept.
            let call = Call::AuthVerify {
                token_sha256: live::token_digest(&token),
            };
            let reply = result
                .as_ref()
                .map(live::claims)
                .map_err(live::token_failure);
            tape.keep(call, Reply::Verified(reply));
        }
        result
    }
}
