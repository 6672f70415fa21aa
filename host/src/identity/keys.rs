//! Where verification keys come from: a PEM public key (RS256/ES256) or a
//! JWKS file, read once at start-up.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};

use std::path::PathBuf;

/// A verification key.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

/// A PEM public key, given inline or as a path: RSA → RS256, P-256 → ES256.
pub(crate) fn pem_key(value: &str) -> Result<Key, String> {
    let pem = if value.contains("-----BEGIN") {
        value.to_string()
    } else {
        std::fs::read_to_string(value)
            .map_err(|err| format!("cannot read REGISTRY_PUBLIC_KEY file {value}: {err}"))?
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
    Err("REGISTRY_PUBLIC_KEY is neither an RSA nor a P-256 public key in PEM".to_string())
}

/// The RSA and P-256 keys of a JWKS file.
pub(crate) fn jwks_keys(path: &PathBuf) -> Result<Vec<Key>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read JWKS_PATH {}: {err}", path.display()))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|err| format!("JWKS_PATH {} is not a JWK set: {err}", path.display()))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|err| format!("JWKS_PATH {}: unusable key: {err}", path.display()))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err(format!(
            "JWKS_PATH {} has no RSA or P-256 keys",
            path.display()
        ));
    }
    Ok(keys)
}
