//! Brute-force protection for password sign-in. Attempts are counted in fixed windows kept in
//! the store (so every replica sees the same counts), and counted *before* the password is
//! verified, so the limits hold however many attempts race: the count an attempt gets back is
//! its place in line, and only the first few places are verified at all.
//!
//! Who is stopped: a (username, address) pair first (five guesses), an address guessing at
//! many usernames (twenty), and only then, slowly, the username itself: failures from many
//! addresses slow its sign-ins down, and only a spread-out attack past a hundred failures in a
//! window locks it for everyone. Someone who merely knows a username cannot lock its owner out
//! from one address. Operators can unlock a user (`gatehouse unlock-user`).

/// Attempts for one username from one address before that pair is locked for the window.
pub const MAX_FAILURES_PER_USER_AND_ADDRESS: u64 = 5;
/// Attempts from one client address (any usernames) before it is locked.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
/// Failures for one username (all addresses) after which each of its sign-ins is slowed down.
pub const SLOW_DOWN_AFTER_USER_FAILURES: u64 = 10;
/// Failures for one username (all addresses) after which it is locked for everyone: takes at
/// least twenty addresses at five guesses each.
pub const MAX_FAILURES_PER_USER: u64 = 100;
/// The longest a slowed-down sign-in waits before its password is verified.
pub const MAX_SLOW_DOWN_SECS: u64 = 10;
/// The counting window, which is also how long a lockout lasts at most.
pub const WINDOW_SECS: u64 = 15 * 60;

/// Wrong client secrets from one address for one client before that pair is refused for the
/// window (each costs a full argon2 verification).
pub const MAX_CLIENT_FAILURES_PER_CLIENT_AND_ADDRESS: u64 = 10;
/// Wrong client secrets from one address (any clients, unknown ones included).
pub const MAX_CLIENT_FAILURES_PER_ADDRESS: u64 = 50;

/// Store key of how many sign-ins (pending records) an address started.
pub fn started_key(address: &str) -> String {
    format!("started:{address}")
}

/// Store key of a client address's client-authentication failures.
pub fn client_address_key(address: &str) -> String {
    format!("caddr:{address}")
}

/// Store key of one client's authentication failures from one address.
pub fn client_pair_key(client_id: &str, address: &str) -> String {
    format!(
        "cpair:{}:{address}",
        crate::hex::encode(client_id.as_bytes())
    )
}

/// Whether a client authentication may go on to argon2, given its place in each count.
pub fn client_may_try(address_attempts: u64, pair_attempts: u64) -> bool {
    address_attempts <= MAX_CLIENT_FAILURES_PER_ADDRESS
        && pair_attempts <= MAX_CLIENT_FAILURES_PER_CLIENT_AND_ADDRESS
}

/// Store key of a username's failure counter (the name is hex-encoded: usernames may hold
/// anything, keys should not).
pub fn user_key(username: &str) -> String {
    format!("user:{}", crate::hex::encode(username.as_bytes()))
}

/// How an address is counted: an IPv4 address alone, an IPv6 address by its /64 (one host
/// usually holds a whole /64, so counting single addresses would let it pick a new one per
/// guess), an unknown one together.
#[must_use]
pub fn address_bucket(address: Option<std::net::IpAddr>) -> String {
    use std::net::IpAddr;
    match address {
        None => "unknown".to_string(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                v4.to_string()
            } else {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

/// Store key of a client address's failure counter.
pub fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

/// Store key of the failures of one username from one address since the username was last
/// unlocked (`unlocked_at`, unix seconds, 0 if not within the window): an unlock thereby starts
/// every (username, address) count afresh.
pub fn pair_key(username: &str, unlocked_at: u64, address: &str) -> String {
    format!(
        "pair:{}:{unlocked_at}:{address}",
        crate::hex::encode(username.as_bytes())
    )
}

/// What to do with an attempt, given its place in each count (this attempt included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Refuse without verifying.
    Locked,
    /// Verify the password after waiting this many seconds.
    Verify {
        /// Zero unless the username is under attack from many addresses.
        delay_secs: u64,
    },
}

/// The first check: the address and the (username, address) pair, before the username's own
/// count is touched (attempts refused here must not count against the username for everyone).
pub fn judge_address(address_attempts: u64, pair_attempts: u64) -> Verdict {
    if address_attempts > MAX_FAILURES_PER_ADDRESS
        || pair_attempts > MAX_FAILURES_PER_USER_AND_ADDRESS
    {
        Verdict::Locked
    } else {
        Verdict::Verify { delay_secs: 0 }
    }
}

/// The second check: the username's count over every address.
pub fn judge_user(user_attempts: u64) -> Verdict {
    if user_attempts > MAX_FAILURES_PER_USER {
        Verdict::Locked
    } else {
        Verdict::Verify {
            delay_secs: user_attempts
                .saturating_sub(SLOW_DOWN_AFTER_USER_FAILURES)
                .min(MAX_SLOW_DOWN_SECS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let bucket = |a: &str| address_bucket(Some(a.parse().unwrap()));
        assert_eq!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:2:ffff::9"));
        assert_eq!(bucket("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(bucket("2001:db8:1:2::1"), bucket("2001:db8:1:3::1"));
        assert_eq!(bucket("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(bucket("192.0.2.1"), "192.0.2.1");
        assert_eq!(address_bucket(None), "unknown");
    }

    #[test]
    fn keys() {
        assert_eq!(user_key("a:b"), "user:613a62");
        assert_eq!(pair_key("a", 2, "10.0.0.1"), "pair:61:2:10.0.0.1");
    }

    #[test]
    fn a_pair_locks_first_then_an_address_and_a_username_only_slows_down() {
        assert_eq!(judge_address(1, 5), Verdict::Verify { delay_secs: 0 });
        assert_eq!(
            judge_address(6, 6),
            Verdict::Locked,
            "the sixth guess from one address"
        );
        assert_eq!(judge_address(21, 1), Verdict::Locked);
        assert_eq!(judge_user(10), Verdict::Verify { delay_secs: 0 });
        assert_eq!(judge_user(11), Verdict::Verify { delay_secs: 1 });
        assert_eq!(judge_user(50), Verdict::Verify { delay_secs: 10 });
        assert_eq!(judge_user(100), Verdict::Verify { delay_secs: 10 });
        assert_eq!(judge_user(101), Verdict::Locked);
    }
}
