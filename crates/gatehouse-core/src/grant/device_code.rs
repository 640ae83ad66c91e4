//! Device authorization (RFC 8628): codes for devices without a browser, the user code a
//! person types on another device, and the polling rules (`authorization_pending`,
//! `slow_down`, `expired_token`, `access_denied`).

use super::{GrantContext, check_grant_allowed, resolve_audience};
use crate::error::{ErrorCode, OAuthError};
use crate::model::GrantType;
use crate::random::{NoRandomness, Randomness};
use crate::scope::{granted_scopes, scope_string};
use crate::token::AccessTokenClaims;
use serde::{Deserialize, Serialize};

/// How long a device code lives.
pub const DEVICE_CODE_TTL_SECS: u64 = 600;
/// The polling interval handed out, and the step `slow_down` adds (RFC 8628 section 3.5).
pub const INTERVAL_SECS: u64 = 5;

/// Letters without vowels (no words) and without look-alikes, as RFC 8628 section 6.1 advises.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A fresh user code, `XXXX-XXXX` (20^8 ≈ 2^34.6 combinations; guessing is throttled by
/// expiry and the store's attempt limits).
pub fn new_user_code(random: &dyn Randomness) -> Result<String, NoRandomness> {
    let bytes: [u8; 8] = random.bytes()?;
    let chars: String = bytes
        .iter()
        .map(|b| USER_CODE_ALPHABET[*b as usize % USER_CODE_ALPHABET.len()] as char)
        .collect();
    Ok(format!("{}-{}", &chars[..4], &chars[4..]))
}

/// What people type varies: case, dashes, spaces. The canonical form is upper case letters only.
pub fn normalize_user_code(input: &str) -> String {
    input
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// A typed code as the device shows it (`XXXX-XXXX`), whatever case and separators were typed.
pub fn shown_user_code(input: &str) -> String {
    let code = normalize_user_code(input);
    if code.len() == 8 {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code
    }
}

/// Where a device authorization stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeviceState {
    /// Waiting for a person to enter the code.
    Pending,
    /// Allowed: the next poll gets tokens for `sub`.
    Approved {
        /// The person who allowed it.
        sub: String,
        /// When they signed in (unix seconds).
        auth_time: u64,
    },
    /// Denied: the next poll gets `access_denied`.
    Denied,
}

/// What the store keeps for a device code (under its digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device's client.
    pub client_id: String,
    /// The scope the device asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What the person types (`XXXX-XXXX`).
    pub user_code: String,
    /// Waiting, allowed or denied.
    pub state: DeviceState,
    /// Unix seconds after which polls get `expired_token`.
    pub expires_at: u64,
    /// Seconds the device must wait between polls (grows with each `slow_down`).
    pub interval: u64,
    /// Unix seconds of the last poll, for `slow_down`.
    #[serde(default)]
    pub last_poll: u64,
}

/// Starts a device authorization for an authenticated client.
pub fn start(
    ctx: &GrantContext<'_>,
    scope: Option<&str>,
    user_code: String,
) -> Result<DeviceRecord, OAuthError> {
    check_grant_allowed(ctx.tenant, ctx.client, GrantType::DeviceCode)?;
    let scopes = granted_scopes(scope, ctx.client, ctx.tenant)?;
    Ok(DeviceRecord {
        client_id: ctx.client.client_id.clone(),
        scope: scope_string(&scopes),
        user_code,
        state: DeviceState::Pending,
        expires_at: ctx.now + DEVICE_CODE_TTL_SECS,
        interval: INTERVAL_SECS,
        last_poll: 0,
    })
}

/// What a poll gets: an error to answer with (and the record to store back), or the claims of
/// the access token for an approved device.
pub enum Poll {
    /// Answer with this error; store `record` back (it carries the new `last_poll`/interval).
    Wait(OAuthError, DeviceRecord),
    /// Answer with this error; nothing to store.
    Refuse(OAuthError),
    /// The claims of the access token, and when the person signed in.
    Approved(AccessTokenClaims, u64),
}

/// Decides one poll of a device code (already checked unused) at `ctx.now`.
pub fn poll(ctx: &GrantContext<'_>, mut record: DeviceRecord, jti: String) -> Poll {
    if record.client_id != ctx.client.client_id {
        return Poll::Refuse(OAuthError::invalid_grant(
            "the device code was issued to another client",
        ));
    }
    if record.expires_at <= ctx.now {
        return Poll::Refuse(OAuthError::new(
            ErrorCode::ExpiredToken,
            "the device code has expired; start again",
        ));
    }
    let too_fast = record.last_poll != 0 && ctx.now < record.last_poll + record.interval;
    record.last_poll = ctx.now;
    match &record.state {
        DeviceState::Denied => Poll::Refuse(OAuthError::new(
            ErrorCode::AccessDenied,
            "the user denied the request",
        )),
        DeviceState::Pending if too_fast => {
            record.interval += INTERVAL_SECS;
            let message = format!(
                "polling too fast; wait {} seconds between requests",
                record.interval
            );
            Poll::Wait(OAuthError::new(ErrorCode::SlowDown, message), record)
        }
        DeviceState::Pending => Poll::Wait(
            OAuthError::new(
                ErrorCode::AuthorizationPending,
                "the user has not finished yet",
            ),
            record,
        ),
        DeviceState::Approved { sub, auth_time } => match resolve_audience(ctx.client, &[]) {
            Ok(aud) => Poll::Approved(
                ctx.access_token_claims(sub.clone(), aud, record.scope.clone(), jti),
                *auth_time,
            ),
            Err(e) => Poll::Refuse(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{client, tenant};

    fn setup() -> (crate::TenantConfig, crate::ClientConfig) {
        let (mut t, mut c) = (tenant(), client());
        t.grant_types.push(GrantType::DeviceCode);
        c.grant_types = vec![GrantType::DeviceCode];
        (t, c)
    }

    #[test]
    fn user_codes_are_readable_and_normalised() {
        let code = new_user_code(&crate::random::SystemRandom).unwrap();
        assert_eq!(code.len(), 9);
        assert!(
            code.chars()
                .all(|c| c == '-' || USER_CODE_ALPHABET.contains(&(c as u8)))
        );
        assert_eq!(normalize_user_code(" bcdf-ghjk "), "BCDFGHJK");
    }

    #[test]
    fn polling_states() {
        let (t, c) = setup();
        let ctx = |now| GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now,
        };
        let rec = start(&ctx(100), None, "BCDF-GHJK".into()).unwrap();
        let Poll::Wait(e, rec) = poll(&ctx(100), rec, "j".into()) else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::AuthorizationPending);
        let Poll::Wait(e, rec) = poll(&ctx(101), rec, "j".into()) else {
            panic!()
        };
        assert_eq!((e.code, rec.interval), (ErrorCode::SlowDown, 10));
        let Poll::Wait(e, mut rec) = poll(&ctx(120), rec, "j".into()) else {
            panic!()
        };
        assert_eq!(e.code, ErrorCode::AuthorizationPending);
        rec.state = DeviceState::Approved {
            sub: "alice".into(),
            auth_time: 110,
        };
        let Poll::Approved(claims, _) = poll(&ctx(140), rec.clone(), "j".into()) else {
            panic!()
        };
        assert_eq!(claims.sub, "alice");
        rec.state = DeviceState::Denied;
        assert!(
            matches!(poll(&ctx(160), rec.clone(), "j".into()), Poll::Refuse(e) if e.code == ErrorCode::AccessDenied)
        );
        assert!(
            matches!(poll(&ctx(800), rec, "j".into()), Poll::Refuse(e) if e.code == ErrorCode::ExpiredToken)
        );
    }
}
