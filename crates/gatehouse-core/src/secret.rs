//! Client secrets and user passwords: argon2id hashing, and the cache that keeps argon2 off the
//! token endpoint's hot path.
//!
//! An argon2id verification with the crate's defaults (m=19456 KiB, t=2, p=1) costs ~20 ms of
//! CPU. Paying it on every token request caps a core at ~50 tokens/s, so after one successful
//! verification we remember a keyed MAC of (tenant, client, stored hash, presented secret). The
//! MAC key is random per process and never leaves memory, so the cache holds nothing from which
//! the secret could be recovered offline, and a secret change (a new stored hash) misses it.

use crate::random::{NoRandomness, Randomness, SystemRandom};
use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::RwLock;

/// Why a secret could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The argon2 library refused (bad parameters).
    #[error("could not hash secret: {0}")]
    Hash(String),
    /// The stored hash is of another kind: only argon2id is accepted.
    #[error("stored hash is not an argon2id PHC string")]
    NotArgon2id,
    /// No randomness for the salt.
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
}

thread_local! {
    /// Argon2's working memory (~19 MiB with the default parameters), kept by the thread
    /// between uses. Allocated afresh for every check, it ends up held by the allocator of
    /// every thread that ever ran one anyway; kept and reused, it is bounded by the number of
    /// threads that run argon2 (see [`crate::argon2_workers`]) and costs no page faults
    /// during a burst. The workers release it when they run out of work.
    static WORKING_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Frees this thread's argon2 working memory (the next hash allocates it again).
pub fn release_working_memory() {
    WORKING_MEMORY.with(|memory| *memory.borrow_mut() = Vec::new());
}

/// Argon2id over `secret` and `salt` into `out`, in this thread's reusable working memory.
fn argon2id_into(
    params: Params,
    version: Version,
    secret: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), SecretError> {
    let blocks = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, version, params);
    WORKING_MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon
            .hash_password_into_with_memory(secret, salt, out, &mut memory[..blocks])
            .map_err(|e| SecretError::Hash(e.to_string()))
    })
}

/// How much work an argon2id hash asks of whoever computes it.
///
/// Slow hashing protects guessable secrets: a password, or a client secret a person chose.
/// A 256-bit random value cannot be guessed however cheap each guess is, so stretching it only
/// costs the server (20 ms per client; minutes to register 10,000). Both kinds stay argon2id
/// PHC strings, verified by the same code, which reads the parameters from the string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashCost {
    /// OWASP's argon2id parameters (m=19456 KiB, t=2, p=1): ~20 ms of a core.
    Guessable,
    /// Minimal argon2id (m=64 KiB, t=1, p=1): for secrets Gatehouse drew itself from 256
    /// random bits.
    RandomKey,
}

impl HashCost {
    /// Whether `phc` was made at this cost (a hash at another cost is made again, so a secret
    /// that stops being Gatehouse's own gets the full cost).
    pub fn made(self, phc: &str) -> bool {
        let Ok(params) = self.params() else {
            return false;
        };
        let prefix = format!(
            "$argon2id$v=19$m={},t={},p={}$",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        );
        phc.starts_with(&prefix)
    }

    fn params(self) -> Result<Params, SecretError> {
        match self {
            HashCost::Guessable => Ok(Params::default()),
            HashCost::RandomKey => {
                Params::new(64, 1, 1, None).map_err(|e| SecretError::Hash(e.to_string()))
            }
        }
    }
}

/// Hashes `secret` as an argon2id PHC string with the crate's default (OWASP) parameters.
pub fn hash_secret(secret: &str) -> Result<String, SecretError> {
    hash_secret_with(secret, HashCost::Guessable)
}

/// Hashes `secret` as an argon2id PHC string at the given cost.
pub fn hash_secret_with(secret: &str, cost: HashCost) -> Result<String, SecretError> {
    let mut salt = [0u8; 16];
    SystemRandom.fill(&mut salt)?;
    let params = cost.params()?;
    let mut out = [0u8; 32];
    argon2id_into(
        params.clone(),
        Version::V0x13,
        secret.as_bytes(),
        &salt,
        &mut out,
    )?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    ))
}

/// Checks that `phc` is an argon2id PHC string (the only form DESIGN.md accepts for stored
/// passwords and secrets).
pub fn validate_phc(phc: &str) -> Result<(), SecretError> {
    let parsed = PasswordHash::new(phc).map_err(|_| SecretError::NotArgon2id)?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(SecretError::NotArgon2id);
    }
    Ok(())
}

/// Full argon2 verification (slow by design). A malformed stored hash verifies nothing.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let expected = expected.as_bytes();
    let Ok(stated) = Params::try_from(&parsed) else {
        return false;
    };
    let Ok(params) = Params::new(
        stated.m_cost(),
        stated.t_cost(),
        stated.p_cost(),
        Some(expected.len()),
    ) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| Version::try_from(v).ok())
        .unwrap_or(Version::V0x13);
    let mut out = vec![0u8; expected.len()];
    argon2id_into(params, version, secret.as_bytes(), salt, &mut out).is_ok()
        && constant_time::verify_slices_are_equal(&out, expected).is_ok()
}

/// A hash of nothing anyone knows, verified against when a username does not exist, so an
/// unknown user costs the same time as a wrong password (no user enumeration by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let mut random = [0u8; 32];
        let _ = SystemRandom.fill(&mut random);
        let text = crate::hex::encode(&random);
        hash_secret(&text).unwrap_or_else(|_| "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lkZWNveQ$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into())
    })
}

/// Remembers which (tenant, client, stored hash, secret) combinations verified, as keyed MACs.
pub struct VerifiedSecretCache {
    key: hmac::Key,
    verified: RwLock<HashSet<[u8; 32]>>,
    capacity: usize,
}

impl VerifiedSecretCache {
    /// A cache remembering at most `capacity` verified secrets (emptied when full).
    pub fn new(capacity: usize) -> Self {
        let mut k = [0u8; 32];
        // Without randomness the cache would be predictable; a fixed fallback is never used
        // because aws-lc's system RNG does not fail on supported platforms, but if it did the
        // cache simply stays empty (see `enabled`).
        let ok = SystemRandom.fill(&mut k).is_ok();
        VerifiedSecretCache {
            key: hmac::Key::new(hmac::HMAC_SHA256, &k),
            verified: RwLock::new(HashSet::new()),
            capacity: if ok { capacity } else { 0 },
        }
    }

    fn mac(&self, tenant: &str, client_id: &str, phc: &str, secret: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [tenant, client_id, phc, secret] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Fast path: true if this exact secret was verified against this exact stored hash before.
    pub fn is_verified(&self, tenant: &str, client_id: &str, phc: &str, secret: &str) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let mac = self.mac(tenant, client_id, phc, secret);
        let set = match self.verified.read() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The set lookup hashes the MAC, which is keyed and unpredictable to an attacker, so a
        // timing difference reveals nothing about the secret; compare again in constant time
        // for good measure.
        set.get(&mac)
            .is_some_and(|found| constant_time::verify_slices_are_equal(found, &mac).is_ok())
    }

    /// Records a successful full verification.
    pub fn remember(&self, tenant: &str, client_id: &str, phc: &str, secret: &str) {
        if self.capacity == 0 {
            return;
        }
        let mac = self.mac(tenant, client_id, phc, secret);
        let mut set = match self.verified.write() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        if set.len() >= self.capacity {
            // Entries of changed secrets are dead weight we cannot tell apart; starting over
            // costs one argon2 verification per active client.
            set.clear();
        }
        set.insert(mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_interoperate_with_the_phc_standard_in_both_directions() {
        use argon2::password_hash::PasswordVerifier;
        // Made by the argon2 crate's own PHC API (the examples' alice / wonderland).
        let theirs = "$argon2id$v=19$m=19456,t=2,p=1$yxZgyeenk6eyB64gIdCApQ$jkr4ytvV4HHADYPN5XK51q7e8fubRml7/6Zo0FGD0WM";
        assert!(verify_secret("wonderland", theirs));
        assert!(!verify_secret("wonderlanD", theirs));
        // Ours, checked by the crate's verifier.
        let ours = hash_secret("s3cret").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"s3cret", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"other", &parsed)
                .is_err()
        );
        // Other argon2 variants and malformed strings verify nothing.
        assert!(!verify_secret(
            "wonderland",
            &theirs.replace("argon2id", "argon2i")
        ));
        assert!(!verify_secret(
            "x",
            "$argon2id$v=19$m=19456,t=2,p=1$bm9zYWx0$"
        ));
    }

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let phc = hash_secret("s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        validate_phc(&phc).unwrap();
        assert!(verify_secret("s3cret", &phc));
        assert!(!verify_secret("s3cret ", &phc));
        assert!(!verify_secret("s3cret", "not a hash"));
        assert!(validate_phc("$2b$12$abcdefghijklmnopqrstuv").is_err());
    }

    #[test]
    fn random_keys_get_cheap_argon2id_that_standard_verifiers_accept() {
        use argon2::password_hash::PasswordVerifier;
        let phc = hash_secret_with("k3y", HashCost::RandomKey).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_secret("k3y", &phc));
        assert!(!verify_secret("k3Y", &phc));
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default().verify_password(b"k3y", &parsed).is_ok());
        let guessable = hash_secret("k3y").unwrap();
        assert!(
            guessable.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{guessable}"
        );
        assert!(HashCost::RandomKey.made(&phc) && !HashCost::Guessable.made(&phc));
        assert!(HashCost::Guessable.made(&guessable) && !HashCost::RandomKey.made(&guessable));
    }

    #[test]
    fn cache_is_bound_to_client_hash_and_secret() {
        let cache = VerifiedSecretCache::new(10);
        assert!(!cache.is_verified("t", "c", "$h1", "s"));
        cache.remember("t", "c", "$h1", "s");
        assert!(cache.is_verified("t", "c", "$h1", "s"));
        assert!(!cache.is_verified("t", "c", "$h1", "other"));
        assert!(
            !cache.is_verified("t", "c", "$h2", "s"),
            "a new stored hash must miss"
        );
        assert!(!cache.is_verified("t", "d", "$h1", "s"));
        assert!(!cache.is_verified("u", "c", "$h1", "s"));
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        cache.remember("ab", "c", "$h", "s");
        assert!(!cache.is_verified("a", "bc", "$h", "s"));
    }

    #[test]
    fn cache_stays_bounded() {
        let cache = VerifiedSecretCache::new(3);
        for i in 0..10 {
            cache.remember("t", &format!("c{i}"), "$h", "s");
        }
        assert!(cache.verified.read().unwrap().len() <= 3);
        assert!(cache.is_verified("t", "c9", "$h", "s"));
    }
}
