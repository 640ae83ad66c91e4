//! A tenant's signing-key lifecycle, as a pure function of its keys, its policy and the time.
//!
//! There is always a `next` key beside the `active` one, published in JWKS for a whole rotation
//! interval before it signs anything, so relying parties that cache JWKS never meet an unknown
//! `kid`. At rotation the next key becomes active, the active one retires, and a new next key is
//! made. A retired key stays published until every token it signed has expired, then leaves.
//! An algorithm change (or a key this process cannot open) retires the old keys at once.

use crate::keys::{KeyError, KeyState, SigningKeyRecord};
use crate::model::SigningAlgorithm;

/// Slack on top of the longest token lifetime before a retired key leaves JWKS, for clocks
/// that disagree and verifiers that cache.
pub const RETIREMENT_SLACK_SECS: u64 = 300;

/// How a tenant's keys rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// What new keys sign with.
    pub algorithm: SigningAlgorithm,
    /// How long a key signs before its successor takes over.
    pub interval_secs: u64,
    /// How long a retired key stays published: the longest lifetime of anything it signed, plus
    /// [`RETIREMENT_SLACK_SECS`].
    pub retire_after_secs: u64,
}

impl RotationPolicy {
    /// A policy rotating every `interval_secs`, keeping retired keys published for
    /// `longest_token_secs` (plus some slack) so every token they signed still verifies.
    pub fn new(algorithm: SigningAlgorithm, interval_secs: u64, longest_token_secs: u64) -> Self {
        RotationPolicy {
            algorithm,
            interval_secs: interval_secs.max(1),
            retire_after_secs: longest_token_secs.saturating_add(RETIREMENT_SLACK_SECS),
        }
    }
}

/// The keys after [`plan_keys`], and what changed.
#[derive(Debug)]
pub struct KeyPlan {
    /// Active first, then next, then retired keys newest first.
    pub keys: Vec<SigningKeyRecord>,
    /// A different key signs from now on (first key, rotation or algorithm change).
    pub rotated: bool,
    /// Keys dropped because everything they signed has expired.
    pub expired: Vec<String>,
    /// When the keys must be looked at again (the next rotation or expiry), unix seconds.
    pub next_change_at: u64,
}

impl KeyPlan {
    /// The key that signs now.
    pub fn active(&self) -> Option<&SigningKeyRecord> {
        self.keys.iter().find(|k| k.state == KeyState::Active)
    }
}

/// Moves `keys` forward to `now` under `policy`. `usable` says whether this process can open a
/// key (a key sealed under another key-encryption key cannot sign here); `generate` makes a
/// fresh key in the given state. Idempotent: planning the result again at the same time
/// changes nothing.
pub fn plan_keys(
    keys: Vec<SigningKeyRecord>,
    policy: &RotationPolicy,
    now: u64,
    usable: impl Fn(&SigningKeyRecord) -> bool,
    mut generate: impl FnMut(KeyState) -> Result<SigningKeyRecord, KeyError>,
) -> Result<KeyPlan, KeyError> {
    let fits = |k: &SigningKeyRecord| k.algorithm == policy.algorithm && usable(k);
    let mut active = None;
    let mut next = None;
    let mut retired = Vec::new();
    let mut expired = Vec::new();
    let mut rotated = false;
    let retire = |mut k: SigningKeyRecord| {
        k.state = KeyState::Retired;
        k.retired_at.get_or_insert(now);
        k
    };
    for k in keys {
        match k.state {
            KeyState::Active if active.is_none() && fits(&k) => active = Some(k),
            KeyState::Active => retired.push(retire(k)),
            // A next key never signed anything: one that cannot serve is simply dropped.
            KeyState::Next if next.is_none() && fits(&k) => next = Some(k),
            KeyState::Next => {}
            KeyState::Retired => retired.push(k),
        }
    }
    let due = |k: &SigningKeyRecord| {
        k.activated_at
            .unwrap_or(k.created_at)
            .saturating_add(policy.interval_secs)
            <= now
    };
    if active.as_ref().is_none_or(due) {
        if let Some(old) = active.take() {
            retired.push(retire(old));
        }
        let mut successor = match next.take() {
            Some(n) => n,
            None => generate(KeyState::Active)?,
        };
        successor.state = KeyState::Active;
        successor.activated_at = Some(now);
        active = Some(successor);
        rotated = true;
    }
    let next = match next {
        Some(n) => n,
        None => generate(KeyState::Next)?,
    };
    retired.retain(|k| {
        let gone = k.retired_at.unwrap_or(k.created_at) + policy.retire_after_secs <= now;
        if gone {
            expired.push(k.kid.clone());
        }
        !gone
    });
    retired.sort_by_key(|k| std::cmp::Reverse((k.retired_at, k.created_at)));
    let mut next_change_at = u64::MAX;
    if let Some(a) = &active {
        next_change_at = a
            .activated_at
            .unwrap_or(a.created_at)
            .saturating_add(policy.interval_secs);
    }
    for k in &retired {
        let leaves = k.retired_at.unwrap_or(k.created_at) + policy.retire_after_secs;
        next_change_at = next_change_at.min(leaves);
    }
    let keys = active.into_iter().chain([next]).chain(retired).collect();
    Ok(KeyPlan {
        keys,
        rotated,
        expired,
        next_change_at,
    })
}

/// Replaces every key at once: a fresh active key and a fresh next key, and every earlier
/// key leaves JWKS now (listed in `expired`), so the tokens they signed stop verifying. For a
/// key that may have leaked, when waiting for its tokens to expire is the greater risk: the
/// next key is replaced too, since it was kept beside the active one.
pub fn replace_keys(
    keys: Vec<SigningKeyRecord>,
    policy: &RotationPolicy,
    now: u64,
    mut generate: impl FnMut(KeyState) -> Result<SigningKeyRecord, KeyError>,
) -> Result<KeyPlan, KeyError> {
    let mut active = generate(KeyState::Active)?;
    active.activated_at = Some(now);
    let next = generate(KeyState::Next)?;
    Ok(KeyPlan {
        keys: vec![active, next],
        rotated: true,
        expired: keys.into_iter().map(|k| k.kid).collect(),
        next_change_at: now.saturating_add(policy.interval_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyEncryptionKey, generate_signing_key};

    const HOUR: u64 = 3600;

    fn policy() -> RotationPolicy {
        RotationPolicy::new(SigningAlgorithm::ES256, 24 * HOUR, 15 * 60)
    }

    fn step(
        keys: Vec<SigningKeyRecord>,
        policy: &RotationPolicy,
        now: u64,
        kek: &KeyEncryptionKey,
    ) -> KeyPlan {
        plan_keys(
            keys,
            policy,
            now,
            |_| true,
            |state| generate_signing_key("acme", policy.algorithm, state, kek, now),
        )
        .unwrap()
    }

    fn states(plan: &KeyPlan) -> Vec<KeyState> {
        plan.keys.iter().map(|k| k.state).collect()
    }

    #[test]
    fn replacing_keys_withdraws_every_earlier_key_at_once() {
        let kek = KeyEncryptionKey::generate().unwrap().0;
        let p = policy();
        let first = step(Vec::new(), &p, 1000, &kek);
        let rotated = step(first.keys.clone(), &p, 1000 + 24 * HOUR, &kek);
        let before: Vec<String> = rotated.keys.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(before.len(), 3, "active, next and one retired key");
        let now = 1000 + 25 * HOUR;
        let replaced = replace_keys(rotated.keys, &p, now, |state| {
            generate_signing_key("acme", p.algorithm, state, &kek, now)
        })
        .unwrap();
        assert!(replaced.rotated);
        assert_eq!(states(&replaced), [KeyState::Active, KeyState::Next]);
        assert!(
            replaced.keys.iter().all(|k| !before.contains(&k.kid)),
            "no earlier key survives, not even the published next one"
        );
        assert_eq!(replaced.expired, before);
        assert_eq!(replaced.keys[0].activated_at, Some(now));
        assert_eq!(replaced.next_change_at, now + 24 * HOUR);
        let settled = step(replaced.keys.clone(), &p, now + 60, &kek);
        assert!(!settled.rotated, "the normal schedule carries on from here");
        assert_eq!(settled.keys, replaced.keys);
    }

    #[test]
    fn the_next_key_is_published_a_full_interval_before_it_signs() {
        let kek = KeyEncryptionKey::generate().unwrap().0;
        let p = policy();
        let first = step(Vec::new(), &p, 1000, &kek);
        assert!(first.rotated);
        assert_eq!(states(&first), [KeyState::Active, KeyState::Next]);
        assert_eq!(first.next_change_at, 1000 + 24 * HOUR);
        let next_kid = first.keys[1].kid.clone();

        let quiet = step(first.keys.clone(), &p, 2000, &kek);
        assert!(!quiet.rotated);
        assert_eq!(quiet.keys, first.keys, "nothing due, nothing changes");

        let rotated = step(first.keys.clone(), &p, 1000 + 24 * HOUR, &kek);
        assert!(rotated.rotated);
        assert_eq!(
            states(&rotated),
            [KeyState::Active, KeyState::Next, KeyState::Retired]
        );
        assert_eq!(
            rotated.keys[0].kid, next_kid,
            "the published next key signs now"
        );
        assert_eq!(rotated.keys[2].kid, first.keys[0].kid);
        let retired_at = 1000 + 24 * HOUR;
        assert_eq!(rotated.keys[2].retired_at, Some(retired_at));
        assert_eq!(
            rotated.next_change_at,
            retired_at + 15 * 60 + RETIREMENT_SLACK_SECS,
            "wakes up to drop the retired key"
        );

        let still = step(rotated.keys.clone(), &p, retired_at + 15 * 60, &kek);
        assert_eq!(still.keys.len(), 3, "kept while its tokens may be live");
        let dropped = step(
            rotated.keys.clone(),
            &p,
            retired_at + 15 * 60 + RETIREMENT_SLACK_SECS,
            &kek,
        );
        assert_eq!(dropped.expired, vec![first.keys[0].kid.clone()]);
        assert_eq!(states(&dropped), [KeyState::Active, KeyState::Next]);
    }

    #[test]
    fn an_algorithm_change_retires_at_once_and_unopenable_keys_are_replaced() {
        let kek = KeyEncryptionKey::generate().unwrap().0;
        let first = step(Vec::new(), &policy(), 10, &kek);
        let eddsa = RotationPolicy {
            algorithm: SigningAlgorithm::EdDSA,
            ..policy()
        };
        let changed = step(first.keys.clone(), &eddsa, 20, &kek);
        assert!(changed.rotated);
        assert_eq!(
            changed
                .keys
                .iter()
                .map(|k| (k.state, k.algorithm))
                .collect::<Vec<_>>(),
            [
                (KeyState::Active, SigningAlgorithm::EdDSA),
                (KeyState::Next, SigningAlgorithm::EdDSA),
                (KeyState::Retired, SigningAlgorithm::ES256),
            ],
            "the old next key never signed, so it is simply dropped"
        );

        let foreign = first.keys[0].kid.clone();
        let replaced = plan_keys(
            first.keys.clone(),
            &policy(),
            30,
            |k| k.kid != foreign,
            |state| generate_signing_key("acme", SigningAlgorithm::ES256, state, &kek, 30),
        )
        .unwrap();
        assert!(replaced.rotated);
        assert_eq!(replaced.keys[0].kid, first.keys[1].kid, "next promoted");
        assert_eq!(replaced.keys[2].kid, foreign, "retired, still verifying");
    }

    #[test]
    fn planning_is_idempotent() {
        let kek = KeyEncryptionKey::generate().unwrap().0;
        let p = policy();
        let mut keys = step(Vec::new(), &p, 0, &kek).keys;
        for now in [24 * HOUR, 48 * HOUR, 48 * HOUR + 1] {
            keys = step(keys, &p, now, &kek).keys;
            let again = step(keys.clone(), &p, now, &kek);
            assert!(!again.rotated);
            assert_eq!(again.keys, keys);
        }
    }
}
