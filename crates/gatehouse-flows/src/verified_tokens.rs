//! JWTs this tenant has already verified, so that introspecting the same token again does
//! not pay for a signature check (an ES256 verification costs more than the rest of the
//! request). Keyed by the token's SHA-256; an entry is used only until the token's `exp`,
//! revocation is still checked on every request, and the whole cache belongs to one
//! [`crate::ServedTenant`], so any change of the tenant's keys or settings starts
//! an empty one. Bounded: when full it is emptied (a cheap, predictable bound on memory).

use gatehouse_core::token::AccessTokenClaims;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// About 350 bytes an entry: at most a few MiB per tenant.
const CAPACITY: usize = 16_384;

#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Arc<AccessTokenClaims>>>,
}

impl VerifiedTokens {
    /// The claims of a token verified earlier, if it has not expired at `now`.
    pub fn get(&self, digest: &[u8; 32], now: u64) -> Option<Arc<AccessTokenClaims>> {
        let entries = self.entries.lock().ok()?;
        entries.get(digest).filter(|c| c.exp > now).cloned()
    }

    pub fn insert(&self, digest: [u8; 32], claims: Arc<AccessTokenClaims>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(digest, claims);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::token::Audience;

    fn claims(exp: u64) -> Arc<AccessTokenClaims> {
        Arc::new(AccessTokenClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: Audience(vec!["a".into()]),
            exp,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            client_id: "c".into(),
            scope: None,
            act: None,
            fam: None,
        })
    }

    #[test]
    fn entries_end_at_exp_and_the_cache_stays_bounded() {
        let cache = VerifiedTokens::default();
        cache.insert([1; 32], claims(100));
        assert!(cache.get(&[1; 32], 99).is_some());
        assert!(cache.get(&[1; 32], 100).is_none(), "expired");
        for i in 0..CAPACITY + 10 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            cache.insert(key, claims(100));
        }
        assert!(cache.entries.lock().unwrap().len() <= CAPACITY);
    }
}
