//! The tenant's users Secret (key `users.yaml`): a list of users with argon2id password hashes.
//! Plain-text passwords are refused, so a Secret can never be the place a password leaks from.

use gatehouse_core::config::UserConfig;
use gatehouse_core::secret::validate_phc;
use gatehouse_core::subject::username_problem;
use serde::Deserialize;

/// The Secret key holding the users.
pub const USERS_KEY: &str = "users.yaml";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserEntry {
    username: String,
    password_hash: Option<String>,
    /// Present only to refuse it with a precise message.
    password: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// Parses and validates `users.yaml`; the error says which entry and what is wrong.
pub fn parse_users(text: &str) -> Result<Vec<UserConfig>, String> {
    let entries: Vec<UserEntry> = serde_saphyr::from_str(text)
        .map_err(|e| format!("{USERS_KEY} is not a list of users: {e}"))?;
    let mut users: Vec<UserConfig> = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("{USERS_KEY}[{i}]");
        if let Some(problem) = username_problem(&e.username) {
            return Err(format!("{at}.username {problem}"));
        }
        if e.password.is_some() {
            return Err(format!(
                "{at} ({}) has a plain-text password; store passwordHash (an argon2id hash from `gatehouse hash-password`) instead",
                e.username
            ));
        }
        let Some(hash) = e.password_hash else {
            return Err(format!("{at} ({}) has no passwordHash", e.username));
        };
        validate_phc(&hash).map_err(|_| {
            format!(
                "{at}.passwordHash ({}) is not an argon2id PHC string",
                e.username
            )
        })?;
        if users.iter().any(|u| u.username == e.username) {
            return Err(format!("{at}: username {} appears twice", e.username));
        }
        users.push(UserConfig {
            username: e.username,
            password_hash: hash,
            email: e.email,
            name: e.name,
            groups: e.groups,
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$0QtWKs7HkpgDG3bVmbmpSkDUpHL5TRmt1Vr4HsFxBO4";

    #[test]
    fn parses_users() {
        let users = parse_users(&format!(
            "- username: alice\n  passwordHash: \"{HASH}\"\n  email: alice@example.com\n  name: Alice Liddell\n  groups: [finance]\n- username: bob\n  passwordHash: \"{HASH}\"\n"
        ))
        .unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].groups, vec!["finance"]);
        assert_eq!(users[1].email, None);
    }

    #[test]
    fn refuses_plain_text_and_bad_hashes_with_the_entry() {
        let e = parse_users("- username: alice\n  password: hunter2\n").unwrap_err();
        assert!(
            e.contains("users.yaml[0] (alice) has a plain-text password"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
        let e = parse_users("- username: bob\n  passwordHash: \"$2b$12$abc\"\n").unwrap_err();
        assert!(
            e.contains("users.yaml[0].passwordHash (bob) is not an argon2id"),
            "{e}"
        );
        let e = parse_users(&format!("- {{username: a, passwordHash: \"{HASH}\"}}\n- {{username: a, passwordHash: \"{HASH}\"}}\n")).unwrap_err();
        assert!(e.contains("appears twice"), "{e}");
        assert!(parse_users("username: a").is_err());
        let e = parse_users(&format!(
            "- {{username: \"client:acme-billing\", passwordHash: \"{HASH}\"}}"
        ))
        .unwrap_err();
        assert!(
            e.contains("users.yaml[0].username must not contain ':'"),
            "{e}"
        );
        let e = parse_users(&format!(
            "- {{username: a, passwordHash: \"{HASH}\", role: admin}}"
        ))
        .unwrap_err();
        assert!(e.contains("role"), "{e}");
    }
}
