//! The verified caller of this request.
//!
//! The host verifies the request's bearer token before the droplet runs
//! (a manifest with `auth = "jwt"` and `scopes = [...]` makes it required);
//! the droplet reads the result, or asks for it in one line:
//!
//! ```no_run
//! use droplet_sdk::{auth, Request, Result};
//!
//! fn create(req: Request) -> Result<String> {
//!     // 401 (saying why) without a valid token, 403 without the scope.
//!     let claims = auth::require_scope("todo:write")?;
//!     Ok(format!("created by {:?}", claims.subject))
//! }
//! ```

use crate::Error;
use crate::host::auth as wit;

pub use crate::bindings::fp::droplet::auth::{Claims, Error as TokenError};

/// The verified claims of this request's bearer token, if it had a valid one.
///
/// ```
/// match droplet_sdk::auth::caller() {
///     Some(claims) => println!("called by {:?}", claims.subject),
///     None => println!("anonymous"),
/// }
/// ```
pub fn caller() -> Option<Claims> {
    wit::caller()
}

/// Why this request's bearer token was refused, when it carried one that
/// did not verify (then [`caller`] is `None`). The raw token never reaches
/// the droplet unless its manifest sets `forward_authorization = true`.
///
/// ```
/// if let Some(why) = droplet_sdk::auth::caller_error() {
///     println!("the token was refused: {why:?}");
/// }
/// ```
pub fn caller_error() -> Option<TokenError> {
    wit::caller_error()
}

/// Verifies another token under the host's keys and rules.
///
/// ```
/// // A token handed over in a body, say, checked under the host's rules.
/// let checked = droplet_sdk::auth::verify("eyJ...");
/// # assert!(checked.is_err());
/// ```
pub fn verify(token: &str) -> Result<Claims, TokenError> {
    wit::verify(token)
}

/// The caller's claims, or a 401 `unauthorized` [`Error`] with a
/// `WWW-Authenticate: Bearer` challenge saying whether the token was
/// missing, malformed, expired or refused (RFC 6750).
///
/// ```
/// fn me(_req: droplet_sdk::Request) -> droplet_sdk::Result<String> {
///     let claims = droplet_sdk::auth::require()?; // 401 with a Bearer challenge
///     Ok(format!("{:?}", claims.subject))
/// }
/// # assert_eq!(me(droplet_sdk::Request::get("/")).unwrap_err().status(), 401);
/// ```
pub fn require() -> Result<Claims, Error> {
    if let Some(claims) = caller() {
        return Ok(claims);
    }
    let (message, challenge) = match caller_error() {
        None => (
            "this needs a bearer token".to_string(),
            "Bearer".to_string(),
        ),
        Some(err) => {
            let why = match err {
                TokenError::Malformed => "it is malformed".to_string(),
                TokenError::Expired => "it has expired".to_string(),
                TokenError::Invalid(why) | TokenError::Unavailable(why) => why,
            };
            let message = format!("the bearer token is invalid: {why}");
            let challenge = format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                message.replace(['"', '\\'], "'")
            );
            (message, challenge)
        }
    };
    Err(Error::new(401, "unauthorized", message).with_header("www-authenticate", challenge))
}

/// The caller's claims when they grant `scope`: otherwise [`require`]'s
/// 401, or a 403 `forbidden` [`Error`] naming the scope.
///
/// ```
/// fn remove(_req: droplet_sdk::Request) -> droplet_sdk::Result<()> {
///     droplet_sdk::auth::require_scope("todo:write")?; // 401, or 403 without the scope
///     Ok(())
/// }
/// # assert_eq!(remove(droplet_sdk::Request::get("/")).unwrap_err().status(), 401);
/// ```
pub fn require_scope(scope: &str) -> Result<Claims, Error> {
    let claims = require()?;
    if claims.has_scope(scope) {
        return Ok(claims);
    }
    Err(
        Error::new(403, "forbidden", format!("this needs the `{scope}` scope")).with_header(
            "www-authenticate",
            format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
        ),
    )
}

impl Claims {
    /// Whether the claims grant `scope`.
    ///
    /// ```
    /// let claims = droplet_sdk::testing::claims("ann", &["todo:read"]);
    /// assert!(claims.has_scope("todo:read") && !claims.has_scope("todo:write"));
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// A refused token answered directly: 401 `unauthorized`.
impl From<TokenError> for Error {
    fn from(err: TokenError) -> Self {
        Error::new(
            401,
            "unauthorized",
            format!("the token is invalid: {err:?}"),
        )
        .with_header("www-authenticate", "Bearer error=\"invalid_token\"")
    }
}
