//! Where verification keys come from: a PEM public key (RS256/ES256) or a
//! JWKS file, read once at start-up.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use std::path::PathBuf;

/// Why the configured keys cannot verify tokens.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `REGISTRY_PUBLIC_KEY` names a file that cannot be read.
    #[error("cannot read REGISTRY_PUBLIC_KEY file {path}: {why}")]
    PemFile {
        /// The file.
        path: String,
        /// Why not.
        why: std::io::Error,
    },
    /// `REGISTRY_PUBLIC_KEY` is not a key this host verifies with.
    #[error("REGISTRY_PUBLIC_KEY is neither an RSA nor a P-256 public key in PEM")]
    NotAKey,
    /// `JWKS_PATH` cannot be read.
    #[error("cannot read JWKS_PATH {path}: {why}")]
    JwksFile {
        /// The file.
        path: String,
        /// Why not.
        why: std::io::Error,
    },
    /// `JWKS_PATH` is not a JWK set, or holds a key that cannot be used.
    #[error("JWKS_PATH {path}: {why}")]
    Jwks {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// `JWT_SECRET` is set to nothing.
    #[error("JWT_SECRET is set but empty")]
    EmptySecret,
}

/// A verification key.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

/// A PEM public key, given inline or as a path: RSA → RS256, P-256 → ES256.
pub(crate) fn pem_key(value: &str) -> Result<Key, KeyError> {
    let pem = if value.contains("-----BEGIN") {
        value.to_string()
    } else {
        std::fs::read_to_string(value).map_err(|why| KeyError::PemFile {
            path: value.to_string(),
            why,
        })?
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok(Key {
            kid: None,
            algorithm: Algorithm::RS256,
            key,
        });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok(Key {
            kid: None,
            algorithm: Algorithm::ES256,
            key,
        });
    }
    Err(KeyError::NotAKey)
}

/// The RSA and P-256 keys of a JWKS file.
pub(crate) fn jwks_keys(path: &PathBuf) -> Result<Vec<Key>, KeyError> {
    let jwks = |why: String| KeyError::Jwks {
        path: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|why| KeyError::JwksFile {
        path: path.display().to_string(),
        why,
    })?;
    let set: JwkSet =
        serde_json::from_str(&text).map_err(|err| jwks(format!("not a JWK set: {err}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|err| jwks(format!("unusable key: {err}")))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err(jwks("has no RSA or P-256 keys".to_string()));
    }
    Ok(keys)
}
