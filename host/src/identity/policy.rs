//! Who may do what: bearer tokens read from requests, each droplet's auth
//! policy and scopes, and the admin scope. The droplet call, the contract
//! endpoints and the admin API all decide here, before any instance is made.

use std::sync::Arc;

use crate::droplets::manifest::{AuthPolicy, Manifest};
use crate::error::HostError;
use crate::identity::jwt::{TokenError, VerifiedClaims, Verifier};

/// The scope every admin request needs.
pub const ADMIN_SCOPE: &str = "droplets:admin";

/// The longest bearer token read; a longer one is malformed, before any
/// decoding or signature work is spent on it.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The token of an `Authorization: Bearer` header: `None` without one,
/// `Some(Err)` for an Authorization header that is not one bearer token of
/// a sane size (two Authorization headers are refused, not guessed between).
pub fn bearer_token(headers: &http::HeaderMap) -> Option<Result<&str, TokenError>> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() || value.len() > MAX_TOKEN_BYTES + "Bearer ".len() {
        return Some(Err(TokenError::Malformed));
    }
    let Ok(value) = value.to_str() else {
        return Some(Err(TokenError::Malformed));
    };
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Some(Ok(token.trim()))
        }
        _ => Some(Err(TokenError::Malformed)),
    }
}

/// Who is calling, as the droplet's policy established it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The verified claims of the request's bearer token, if it had a valid
    /// one.
    pub claims: Option<Arc<VerifiedClaims>>,
    /// Why the request's token was refused, if it had one that was (only a
    /// public droplet is called then).
    pub refused: Option<TokenError>,
}

/// Applies a droplet's auth policy: who is calling.
///
/// `auth = "jwt"` needs a valid token carrying every scope in `scopes` (401
/// without one, 403 without a scope). `auth = "public"` never refuses: an
/// invalid token leaves the request without a caller, with the reason.
pub fn authorize(
    verifier: Option<&Verifier>,
    manifest: &Manifest,
    headers: &http::HeaderMap,
) -> Result<Caller, HostError> {
    match manifest.auth {
        AuthPolicy::Public => {
            let verified = match (bearer_token(headers), verifier) {
                (None, _) => return Ok(Caller::default()),
                (Some(Err(err)), _) => Err(err),
                (Some(Ok(_)), None) => Err(TokenError::Invalid(
                    "this host has no keys configured to verify tokens".to_string(),
                )),
                (Some(Ok(token)), Some(verifier)) => verifier.verify(token),
            };
            Ok(match verified {
                Ok(claims) => Caller {
                    claims: Some(Arc::new(claims)),
                    refused: None,
                },
                Err(err) => Caller {
                    claims: None,
                    refused: Some(err),
                },
            })
        }
        AuthPolicy::Jwt => {
            let claims = require_token(verifier, headers, &manifest.scopes)?;
            Ok(Caller {
                claims: Some(Arc::new(claims)),
                refused: None,
            })
        }
    }
}

/// Lets an admin request through: it needs a token with [`ADMIN_SCOPE`].
/// With no keys configured the admin API is off (403, saying how to turn it
/// on).
pub fn authorize_admin(
    verifier: Option<&Verifier>,
    headers: &http::HeaderMap,
) -> Result<VerifiedClaims, HostError> {
    if verifier.is_none() {
        return Err(HostError::Forbidden(format!(
            "the admin API is disabled: configure REGISTRY_PUBLIC_KEY, JWKS_PATH or (for development) \
             JWT_SECRET, and send a bearer token with scope {ADMIN_SCOPE} (`droplet token --scope {ADMIN_SCOPE}`)"
        )));
    }
    require_token(verifier, headers, &[ADMIN_SCOPE.to_string()])
}

/// The claims of the request's bearer token, which must be present, verify
/// under `verifier` (401 otherwise) and carry every scope in `scopes` (403
/// otherwise).
fn require_token(
    verifier: Option<&Verifier>,
    headers: &http::HeaderMap,
    scopes: &[String],
) -> Result<VerifiedClaims, HostError> {
    let token = match bearer_token(headers) {
        None => {
            return Err(HostError::TokenRequired(
                "a bearer token is required".to_string(),
            ));
        }
        Some(Err(err)) => return Err(HostError::Unauthorized(err.to_string())),
        Some(Ok(token)) => token,
    };
    let verifier = verifier.ok_or_else(|| {
        HostError::Unauthorized("this host has no keys configured to verify tokens".to_string())
    })?;
    let claims = verifier
        .verify(token)
        .map_err(|err| HostError::Unauthorized(err.to_string()))?;
    let missing = claims.missing_scopes(scopes);
    if !missing.is_empty() {
        return Err(HostError::Forbidden(format!(
            "the token lacks the required scope(s): {}",
            missing.join(", ")
        )));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_parsed() {
        let mut headers = http::HeaderMap::new();
        assert!(bearer_token(&headers).is_none());
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some(Ok("abc")));
        headers.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer_token(&headers), Some(Err(TokenError::Malformed)));
    }

    #[test]
    fn two_authorization_headers_or_a_huge_token_are_malformed() {
        let mut two = http::HeaderMap::new();
        two.append("authorization", "Bearer a".parse().unwrap());
        two.append("authorization", "Bearer b".parse().unwrap());
        assert_eq!(bearer_token(&two), Some(Err(TokenError::Malformed)));
        let mut huge = http::HeaderMap::new();
        let token = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        huge.insert("authorization", token.parse().unwrap());
        assert_eq!(bearer_token(&huge), Some(Err(TokenError::Malformed)));
    }

    #[test]
    fn public_droplets_never_refuse_and_jwt_droplets_need_a_token() {
        let headers = http::HeaderMap::new();
        let public = Manifest::default();
        let anonymous = authorize(None, &public, &headers).unwrap();
        assert!(anonymous.claims.is_none() && anonymous.refused.is_none());
        let mut with_token = http::HeaderMap::new();
        with_token.insert("authorization", "Bearer abc".parse().unwrap());
        let refused = authorize(None, &public, &with_token).unwrap();
        assert!(refused.claims.is_none() && refused.refused.is_some());
        let protected = Manifest {
            auth: AuthPolicy::Jwt,
            ..Manifest::default()
        };
        let refused = authorize(None, &protected, &headers).unwrap_err();
        assert_eq!(refused.status(), 401);
        let admin = authorize_admin(None, &headers).unwrap_err();
        assert_eq!(admin.status(), 403);
    }

    proptest::proptest! {
        #[test]
        fn any_authorization_header_is_read_without_panicking(
            value in proptest::collection::vec(32u8..127, 0..200),
        ) {
            let mut headers = http::HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_bytes(&value) {
                headers.insert("authorization", value);
            }
            let _ = bearer_token(&headers);
            let _ = authorize(None, &Manifest::default(), &headers);
        }
    }
}
