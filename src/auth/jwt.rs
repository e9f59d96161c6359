//! JWT tokens (etcd `auth/jwt.go`), with the `jsonwebtoken` crate (real
//! build only). A token carries the user, the auth revision at its login
//! and an expiry: `{"username", "revision", "exp"}`. Nothing is kept on
//! the members, so a token is good on every member; one minted before an
//! auth change carries the older revision and is refused with "revision of
//! auth store is old", and clients log in again.
//!
//! Expiry is checked here against the member's wall clock (the Clock
//! seam), not by the crate, which would read the OS clock. As in etcd, a
//! token without `exp` is accepted.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::tokens::JwtOptions;
use super::AuthInfo;
use crate::error::Error;
use crate::storage::Disk;

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// The keys of `--auth-token jwt`.
pub struct JwtProvider {
    algorithm: Algorithm,
    /// `None`: verify-only (no private key given).
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtProvider")
            .field("algorithm", &self.algorithm)
            .field("verify_only", &self.encoding.is_none())
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn read(disk: &dyn Disk, path: &str) -> Result<Vec<u8>, String> {
    disk.read(Path::new(path))
        .map_err(|error| format!("cannot read {path}: {error}"))
}

impl JwtProvider {
    /// Loads the keys the options name, through the Disk seam. HS* use
    /// the private key file's bytes as the secret (as etcd does).
    pub fn load(options: &JwtOptions, disk: &dyn Disk) -> Result<JwtProvider, String> {
        let algorithm: Algorithm = options
            .sign_method
            .parse()
            .map_err(|_| "auth: invalid auth signature method".to_string())?;
        let bad = |error: jsonwebtoken::errors::Error| format!("auth: invalid key: {error}");
        let (encoding, decoding) = match options.sign_method.get(..2) {
            Some("HS") => {
                if options.priv_key.is_empty() {
                    return Err("auth: missing key data (priv-key)".into());
                }
                let secret = read(disk, &options.priv_key)?;
                (
                    Some(EncodingKey::from_secret(&secret)),
                    DecodingKey::from_secret(&secret),
                )
            }
            Some(family) => {
                if options.pub_key.is_empty() {
                    return Err("auth: missing key data (pub-key)".into());
                }
                let public = read(disk, &options.pub_key)?;
                let private = if options.priv_key.is_empty() {
                    None
                } else {
                    Some(read(disk, &options.priv_key)?)
                };
                if family == "ES" {
                    (
                        private
                            .map(|pem| EncodingKey::from_ec_pem(&pem))
                            .transpose()
                            .map_err(bad)?,
                        DecodingKey::from_ec_pem(&public).map_err(bad)?,
                    )
                } else {
                    (
                        private
                            .map(|pem| EncodingKey::from_rsa_pem(&pem))
                            .transpose()
                            .map_err(bad)?,
                        DecodingKey::from_rsa_pem(&public).map_err(bad)?,
                    )
                }
            }
            None => return Err("auth: invalid auth signature method".into()),
        };
        Ok(JwtProvider {
            algorithm,
            encoding,
            decoding,
            ttl: options.ttl,
        })
    }

    /// A token for `username` at auth `revision`, expiring `ttl` after
    /// `now_unix_secs`.
    pub fn sign(&self, username: &str, revision: u64, now_unix_secs: i64) -> Result<String, Error> {
        let key = self.encoding.as_ref().ok_or(Error::JwtVerifyOnly)?;
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp: Some(now_unix_secs + self.ttl.as_secs() as i64),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key).map_err(|error| {
            tracing::warn!(%error, "cannot sign a token");
            Error::AuthFailed
        })
    }

    /// Who a token names, if its signature, algorithm and expiry hold.
    pub fn verify(&self, token: &str, now_unix_secs: i64) -> Option<AuthInfo> {
        let mut validation = Validation::new(self.algorithm);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        if claims.exp.is_some_and(|exp| exp < now_unix_secs) {
            return None;
        }
        Some(AuthInfo {
            username: claims.username,
            revision: claims.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(secret: &[u8]) -> JwtProvider {
        JwtProvider {
            algorithm: Algorithm::HS256,
            encoding: Some(EncodingKey::from_secret(secret)),
            decoding: DecodingKey::from_secret(secret),
            ttl: Duration::from_secs(300),
        }
    }

    #[test]
    fn a_token_names_its_user_and_revision_until_it_expires() {
        let jwt = provider(b"secret");
        let token = jwt.sign("alice", 7, 1000).unwrap();
        let info = jwt.verify(&token, 1200).unwrap();
        assert_eq!(info.username, "alice");
        assert_eq!(info.revision, 7);
        assert!(jwt.verify(&token, 1301).is_none(), "expired");
        assert!(
            provider(b"other").verify(&token, 1000).is_none(),
            "another key"
        );
        assert!(jwt.verify("not.a.token", 1000).is_none());
    }
}
