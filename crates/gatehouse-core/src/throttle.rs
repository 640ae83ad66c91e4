//! Brute-force protection for password sign-in: failed attempts are counted per user and per
//! client address in fixed windows kept in the store (so every replica sees the same counts),
//! and sign-in is refused while either count is at its limit.

/// Failed attempts for one username before it is locked for the rest of the window.
pub const MAX_FAILURES_PER_USER: u64 = 5;
/// Failed attempts from one client address (any usernames) before it is locked.
pub const MAX_FAILURES_PER_ADDRESS: u64 = 20;
/// The counting window, which is also how long a lockout lasts at most.
pub const WINDOW_SECS: u64 = 15 * 60;

/// Store key of a username's failure counter (the name is hex-encoded: usernames may hold
/// anything, keys should not).
pub fn user_key(username: &str) -> String {
    format!("user:{}", crate::hex::encode(username.as_bytes()))
}

/// Store key of a client address's failure counter.
pub fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

/// Whether the counts lock sign-in.
pub fn locked(user_failures: u64, address_failures: u64) -> bool {
    user_failures >= MAX_FAILURES_PER_USER || address_failures >= MAX_FAILURES_PER_ADDRESS
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_and_limits() {
        assert_eq!(super::user_key("a:b"), "user:613a62");
        assert!(!super::locked(4, 19));
        assert!(super::locked(5, 0));
        assert!(super::locked(0, 20));
    }
}
