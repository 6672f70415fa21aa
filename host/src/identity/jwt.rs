//! JWT verification with `jsonwebtoken`: RS256 and ES256 with PEM public keys
//! or a JWKS file (keys picked by `kid`), HS256 with a shared secret for
//! development.
//!
//! Only the algorithms of configured keys are accepted: `alg: none` does not
//! parse, an HS256 token is checked only against `JWT_SECRET` (never against
//! a public key used as a secret), and tokens must carry `exp`. Audience
//! (default `fullpotential.droplets`) and, when set, issuer are required to
//! match; `exp` and `nbf` are checked with a small leeway.

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde_json::Value;

use super::keys::{Key, KeyError, jwks_keys, pem_key};

/// The audience tokens must name unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "fullpotential.droplets";
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_S: u64 = 30;

/// Where verification keys come from.
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// `REGISTRY_PUBLIC_KEY`: a PEM public key (RSA or P-256), or a path to one.
    pub public_key: Option<String>,
    /// `JWKS_PATH`: a JSON Web Key Set file.
    pub jwks_path: Option<PathBuf>,
    /// `JWT_SECRET`: an HS256 secret, for development.
    pub secret: Option<String>,
    /// `JWT_AUDIENCE`.
    pub audience: String,
    /// `JWT_ISSUER`.
    pub issuer: Option<String>,
    /// Leeway on time claims, in seconds.
    pub leeway_s: u64,
}

/// Verifies bearer tokens under the configured keys and rules.
pub struct Verifier {
    keys: Vec<Key>,
    audience: String,
    issuer: Option<String>,
    leeway_s: u64,
}

/// The verified claims of a token.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedClaims {
    /// `sub`.
    pub subject: Option<String>,
    /// `iss`.
    pub issuer: Option<String>,
    /// `aud`, always as a list.
    pub audience: Vec<String>,
    /// `exp`.
    pub expires_at: Option<u64>,
    /// From `scope` (space separated), `scp` or `scopes`.
    pub scopes: Vec<String>,
    /// Every claim.
    pub json: Value,
}

impl VerifiedClaims {
    /// The required scopes this token lacks.
    pub fn missing_scopes<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .filter(|scope| !self.scopes.contains(scope))
            .map(String::as_str)
            .collect()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or an algorithm this host never accepts.
    #[error("the token is malformed")]
    Malformed,
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Wrong signature, algorithm, audience or issuer.
    #[error("{0}")]
    Invalid(String),
}

impl Verifier {
    /// Builds a verifier from the settings; `None` when no key is configured.
    pub fn from_settings(settings: &JwtSettings) -> Result<Option<Self>, KeyError> {
        let mut keys = Vec::new();
        if let Some(public_key) = &settings.public_key {
            keys.push(pem_key(public_key)?);
        }
        if let Some(path) = &settings.jwks_path {
            keys.extend(jwks_keys(path)?);
        }
        if let Some(secret) = &settings.secret {
            if secret.is_empty() {
                return Err(KeyError::EmptySecret);
            }
            keys.push(Key {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            keys,
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
            leeway_s: settings.leeway_s,
        }))
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        if has_critical_extensions(token) {
            // RFC 7515 §4.1.11: a `crit` header names extensions that must be
            // understood; this host understands none.
            return Err(TokenError::Invalid(
                "the token has a `crit` header with extensions this host does not understand"
                    .to_string(),
            ));
        }
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|key| key.algorithm == header.alg)
            .filter(|key| match (&header.kid, &key.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(TokenError::Invalid(format!(
                "tokens signed with {:?} are not accepted here",
                header.alg
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.audience]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.leeway = self.leeway_s;
        validation.validate_nbf = true;
        // With an issuer configured, a token without `iss` is refused too.
        if self.issuer.is_some() {
            validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        } else {
            validation.set_required_spec_claims(&["exp", "aud"]);
        }

        let mut last = TokenError::Invalid("the signature does not verify".to_string());
        for key in candidates {
            match decode::<Value>(token, &key.key, &validation) {
                Ok(data) => return Ok(claims_of(data.claims)),
                Err(err) => {
                    last = match err.kind() {
                        ErrorKind::ExpiredSignature => return Err(TokenError::Expired),
                        ErrorKind::ImmatureSignature => return Err(TokenError::NotYetValid),
                        ErrorKind::InvalidAudience => {
                            return Err(TokenError::Invalid(
                                "the token is for another audience".to_string(),
                            ));
                        }
                        ErrorKind::InvalidIssuer => {
                            return Err(TokenError::Invalid(
                                "the token is from another issuer".to_string(),
                            ));
                        }
                        ErrorKind::MissingRequiredClaim(claim) => {
                            return Err(TokenError::Invalid(format!(
                                "the token has no `{claim}` claim"
                            )));
                        }
                        ErrorKind::InvalidToken
                        | ErrorKind::Base64(_)
                        | ErrorKind::Json(_)
                        | ErrorKind::Utf8(_) => {
                            return Err(TokenError::Malformed);
                        }
                        _ => TokenError::Invalid("the signature does not verify".to_string()),
                    };
                }
            }
        }
        Err(last)
    }
}

/// Whether the token's protected header has a `crit` member.
fn has_critical_extensions(token: &str) -> bool {
    use base64::Engine;
    let Some(encoded) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        .is_some_and(|header| header.get("crit").is_some())
}

fn claims_of(json: Value) -> VerifiedClaims {
    let text = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_string);
    let list = |value: Option<&Value>| -> Vec<String> {
        match value {
            Some(Value::String(text)) => text.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut scopes = list(json.get("scope"));
    for extra in [list(json.get("scp")), list(json.get("scopes"))] {
        for scope in extra {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    VerifiedClaims {
        subject: text("sub"),
        issuer: text("iss"),
        audience: list(json.get("aud")),
        expires_at: json.get("exp").and_then(Value::as_u64),
        scopes,
        json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn hs_verifier() -> Verifier {
        Verifier::from_settings(&JwtSettings {
            secret: Some("dev-secret-dev-secret-dev-secret".into()),
            audience: DEFAULT_AUDIENCE.into(),
            leeway_s: 0,
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs_token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"dev-secret-dev-secret-dev-secret"),
        )
        .unwrap()
    }

    #[test]
    fn valid_token_gives_its_claims_and_scopes() {
        let token = hs_token(json!({
            "sub": "alice", "aud": DEFAULT_AUDIENCE, "exp": now() + 60,
            "scope": "todo:read todo:write", "scp": ["extra"]
        }));
        let claims = hs_verifier().verify(&token).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("alice"));
        assert_eq!(claims.audience, vec![DEFAULT_AUDIENCE.to_string()]);
        assert_eq!(claims.scopes, vec!["todo:read", "todo:write", "extra"]);
        assert!(claims.missing_scopes(&["todo:write".into()]).is_empty());
        assert_eq!(claims.missing_scopes(&["admin".into()]), vec!["admin"]);
    }

    #[test]
    fn bad_tokens_are_refused() {
        let verifier = hs_verifier();
        let expired = hs_token(json!({"aud": DEFAULT_AUDIENCE, "exp": now() - 120}));
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));
        let early =
            hs_token(json!({"aud": DEFAULT_AUDIENCE, "exp": now() + 600, "nbf": now() + 300}));
        assert_eq!(verifier.verify(&early), Err(TokenError::NotYetValid));
        let other_aud = hs_token(json!({"aud": "someone.else", "exp": now() + 60}));
        assert!(matches!(
            verifier.verify(&other_aud),
            Err(TokenError::Invalid(_))
        ));
        let no_exp = hs_token(json!({"aud": DEFAULT_AUDIENCE}));
        assert!(matches!(
            verifier.verify(&no_exp),
            Err(TokenError::Invalid(_))
        ));
        assert_eq!(verifier.verify("not.a.token"), Err(TokenError::Malformed));
        // alg: none
        let none =
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhdWQiOiJmdWxscG90ZW50aWFsLmRyb3BsZXRzIn0.";
        assert!(verifier.verify(none).is_err());
        // Wrong secret.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &json!({"aud": DEFAULT_AUDIENCE, "exp": now() + 60}),
            &EncodingKey::from_secret(b"another-secret"),
        )
        .unwrap();
        assert!(matches!(
            verifier.verify(&forged),
            Err(TokenError::Invalid(_))
        ));
    }

    #[test]
    fn a_configured_issuer_is_required_not_just_checked() {
        let verifier = Verifier::from_settings(&JwtSettings {
            secret: Some("dev-secret-dev-secret-dev-secret".into()),
            audience: DEFAULT_AUDIENCE.into(),
            issuer: Some("https://issuer.test".into()),
            leeway_s: 0,
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        let base = json!({"aud": DEFAULT_AUDIENCE, "exp": now() + 60});
        let mut with_issuer = base.clone();
        with_issuer["iss"] = "https://issuer.test".into();
        assert!(verifier.verify(&hs_token(with_issuer)).is_ok());
        assert_eq!(
            verifier.verify(&hs_token(base)),
            Err(TokenError::Invalid("the token has no `iss` claim".into()))
        );
    }

    #[test]
    fn tokens_with_critical_extensions_are_refused() {
        use base64::Engine;
        let verifier = hs_verifier();
        let valid = hs_token(json!({"aud": DEFAULT_AUDIENCE, "exp": now() + 60}));
        assert!(verifier.verify(&valid).is_ok());
        // Same claims and signature scheme, with `crit` in the header
        // (re-signed, so only the header's `crit` can make it fail).
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"HS256","typ":"JWT","crit":["exp-ext"],"exp-ext":1}"#);
        let payload = valid.split('.').nth(1).unwrap();
        let signing_input = format!("{header}.{payload}");
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_secret(b"dev-secret-dev-secret-dev-secret"),
            Algorithm::HS256,
        )
        .unwrap();
        let critical = format!("{signing_input}.{signature}");
        let refused = verifier.verify(&critical).unwrap_err();
        assert!(refused.to_string().contains("crit"), "{refused}");
    }

    proptest::proptest! {
        #[test]
        fn any_token_text_is_refused_without_panicking(token in ".{0,300}") {
            proptest::prop_assert!(hs_verifier().verify(&token).is_err());
        }

        #[test]
        fn any_three_part_token_is_refused_without_panicking(
            parts in proptest::collection::vec("[A-Za-z0-9_-]{0,60}", 3),
        ) {
            proptest::prop_assert!(hs_verifier().verify(&parts.join(".")).is_err());
        }
    }
}
