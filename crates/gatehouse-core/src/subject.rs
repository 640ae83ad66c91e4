//! Who a token is about: the `sub` of access tokens, ID tokens and introspection.
//!
//! A token issued for a person carries the person's username; a token a client obtained on its
//! own behalf (client credentials, a client asserting itself) carries `client:<client_id>`.
//! Usernames may not contain `:` (the users Secret refuses them), so the two can never meet:
//! an OAuthClient author picks a client id, but no client id turns into a user's subject, now
//! or after a user is added later. Both forms depend only on names the platform and application
//! teams wrote, so they survive restarts, key rotation and re-reconciles.

/// The prefix of every subject that is a client, not a person.
pub const CLIENT_SUBJECT_PREFIX: &str = "client:";

/// The character no username may contain: it marks the subjects that are not users.
pub const RESERVED_IN_USERNAMES: char = ':';

/// The subject of a token a client holds on its own behalf.
#[must_use]
pub fn client_subject(client_id: &str) -> String {
    format!("{CLIENT_SUBJECT_PREFIX}{client_id}")
}

/// The client a subject names, if it names one.
#[must_use]
pub fn subject_client(sub: &str) -> Option<&str> {
    sub.strip_prefix(CLIENT_SUBJECT_PREFIX)
}

/// Whether `sub` can be a user's subject at all (no reserved character).
#[must_use]
pub fn is_user_subject(sub: &str) -> bool {
    !sub.is_empty() && !sub.contains(RESERVED_IN_USERNAMES)
}

/// Why `username` cannot be a user's name, if it cannot.
#[must_use]
pub fn username_problem(username: &str) -> Option<&'static str> {
    if username.trim().is_empty() || username.len() > 256 {
        Some("must be 1 to 256 characters")
    } else if username.contains(RESERVED_IN_USERNAMES) {
        Some(
            "must not contain ':' (subjects with ':' are reserved for clients, e.g. client:<client_id>)",
        )
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_user_subjects_never_meet() {
        for id in ["alice", "acme-billing", "a.b~c"] {
            let sub = client_subject(id);
            assert!(!is_user_subject(&sub), "{sub}");
            assert_eq!(subject_client(&sub), Some(id));
            assert!(username_problem(&sub).is_some());
        }
        assert!(is_user_subject("alice"));
        assert!(is_user_subject("alice@example.com"));
        assert_eq!(subject_client("alice"), None);
        assert!(username_problem("alice").is_none());
        assert!(username_problem("").is_some());
        assert!(username_problem("client:x").is_some());
    }
}
