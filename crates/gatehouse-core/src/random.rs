//! The one source of randomness for the identifiers and secrets Gatehouse hands out: token
//! values, codes, `jti`s, grant families, user codes, client secrets, registration
//! incarnations. Every caller treats its failure the same way, as [`NoRandomness`], which
//! becomes a `server_error` on the wire and is never mistaken for a signing or storage error.
//! (Key generation and sealing draw from the same system generator inside the crypto library.)

use crate::error::OAuthError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

/// The system generator could not deliver; nothing random may be invented instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no randomness available")]
pub struct NoRandomness;

impl From<NoRandomness> for OAuthError {
    fn from(_: NoRandomness) -> Self {
        OAuthError::server_error("no randomness available")
    }
}

/// Where random bytes come from.
pub trait Randomness: Send + Sync {
    /// Fills `dest` with unpredictable bytes.
    ///
    /// # Errors
    /// [`NoRandomness`] when the generator cannot deliver.
    fn fill(&self, dest: &mut [u8]) -> Result<(), NoRandomness>;
}

impl dyn Randomness + '_ {
    /// 128 random bits, base64url: `jti`s, grant families, request ids.
    ///
    /// # Errors
    /// [`NoRandomness`].
    pub fn id(&self) -> Result<String, NoRandomness> {
        let mut bytes = [0u8; 16];
        self.fill(&mut bytes)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// 256 random bits, base64url: opaque tokens, codes, cookies, CSRF tokens.
    ///
    /// # Errors
    /// [`NoRandomness`].
    pub fn token(&self) -> Result<String, NoRandomness> {
        let mut bytes = [0u8; 32];
        self.fill(&mut bytes)?;
        Ok(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// `N` random bytes.
    ///
    /// # Errors
    /// [`NoRandomness`].
    pub fn bytes<const N: usize>(&self) -> Result<[u8; N], NoRandomness> {
        let mut bytes = [0u8; N];
        self.fill(&mut bytes)?;
        Ok(bytes)
    }
}

/// The operating system's cryptographic generator (through the crypto library).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRandom;

impl Randomness for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), NoRandomness> {
        aws_lc_rs::rand::fill(dest).map_err(|_| NoRandomness)
    }
}

/// The system generator, shared.
#[must_use]
pub fn system() -> Arc<dyn Randomness> {
    Arc::new(SystemRandom)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Broken;
    impl Randomness for Broken {
        fn fill(&self, _: &mut [u8]) -> Result<(), NoRandomness> {
            Err(NoRandomness)
        }
    }

    #[test]
    fn ids_and_tokens_have_their_lengths_and_failure_is_one_error() {
        let random = system();
        assert_eq!(random.id().unwrap().len(), 22);
        assert_eq!(random.token().unwrap().len(), 43);
        assert_ne!(random.token().unwrap(), random.token().unwrap());
        let broken: &dyn Randomness = &Broken;
        assert_eq!(broken.token(), Err(NoRandomness));
        let wire: OAuthError = NoRandomness.into();
        assert_eq!(wire.code, crate::ErrorCode::ServerError);
    }
}
