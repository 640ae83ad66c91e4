//! Refresh tokens (RFC 6749 section 6): issued alongside access tokens, rotated on every use,
//! and grouped in families so that a used token presented again revokes everything the
//! family issued (OAuth 2.0 Security BCP, section 4.14).

use super::{GrantContext, check_grant_allowed, resolve_audience};
use crate::compact::{Malformed, Reader, Writer};
use crate::error::OAuthError;
use crate::model::GrantType;
use crate::scope::{issued_scopes, parse_scope, scope_string};
use crate::token::{AccessTokenClaims, Audience};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// Signs and verifies a tenant's refresh tokens (see
/// [`crate::keys::KeyEncryptionKey::refresh_token_key`]).
///
/// A refresh token carries its own record, signed: `base64url(payload) "."
/// base64url(HMAC-SHA256)`, the payload the nonce and the record in the
/// [compact layout](crate::compact) (tokens signed before it hold `JSON [nonce, record]`, still
/// read). Rotating one then reads nothing and writes no record; what the
/// store keeps per grant is its family (whose absence refuses every token of it, so a store
/// that lost its data resurrects nothing) and the used marks. The record is signed, not
/// encrypted: it holds what the access tokens of the grant already show the client. One dot,
/// so it never looks like a JWT; tokens issued before this format (random handles whose record
/// the store holds) have none.
pub struct RefreshTokenKey(hmac::Key);

impl std::fmt::Debug for RefreshTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshTokenKey(..)")
    }
}

impl RefreshTokenKey {
    pub(crate) fn from_material(material: &[u8]) -> Self {
        RefreshTokenKey(hmac::Key::new(hmac::HMAC_SHA256, material))
    }

    /// The token for `record`; `nonce` (random, used once: the jti of the access token issued
    /// with it) makes every token distinct.
    #[must_use]
    pub fn seal(&self, nonce: &str, record: &RefreshTokenRecord) -> String {
        self.sign(&record.to_compact(nonce))
    }

    /// `payload` and its tag, in the token's format.
    fn sign(&self, payload: &[u8]) -> String {
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let tag = hmac::sign(&self.0, payload.as_bytes());
        let mut token = payload;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut token);
        token
    }

    /// The record of a token this key signed; `None` for anything else (altered, another
    /// tenant's or another KEK's, not this format).
    #[must_use]
    pub fn open(&self, token: &str) -> Option<RefreshTokenRecord> {
        let (payload, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(&self.0, payload.as_bytes(), &tag).ok()?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        if payload.first() == Some(&b'[') {
            let (_nonce, record): (String, RefreshTokenRecord) =
                serde_json::from_slice(&payload).ok()?;
            return Some(record);
        }
        RefreshTokenRecord::from_compact(&payload).ok()
    }

    /// Whether `token` is in the signed format (else: a handle from before it, looked up in
    /// the store).
    #[must_use]
    pub fn is_signed_format(token: &str) -> bool {
        token.contains('.')
    }
}

/// What the store keeps for a refresh token (under the digest of the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRecord {
    /// All tokens descended from one grant share a family.
    pub family: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The client registration it was issued to (see `ClientConfig::incarnation`).
    #[serde(default)]
    pub client_incarnation: String,
    /// Who the grant is about.
    pub sub: String,
    /// The scope granted; a refresh may only narrow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The audience of the access tokens it refreshes.
    pub aud: Audience,
    /// When the user authenticated (unix seconds), carried through rotations.
    pub auth_time: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The format byte of a refresh token's compact payload.
const COMPACT_FORMAT: u8 = 1;

impl RefreshTokenRecord {
    /// The payload of a token: `nonce`, then the fields in their declared order.
    fn to_compact(&self, nonce: &str) -> Vec<u8> {
        let mut w = Writer::new(COMPACT_FORMAT);
        w.text(nonce)
            .text(&self.family)
            .text(&self.client_id)
            .text(&self.client_incarnation)
            .text(&self.sub)
            .optional(self.scope.as_deref())
            .texts(&self.aud.0)
            .number(self.auth_time)
            .number(self.expires_at);
        w.into_bytes()
    }

    fn from_compact(payload: &[u8]) -> Result<RefreshTokenRecord, Malformed> {
        let mut r = Reader::new(payload, COMPACT_FORMAT)?;
        let _nonce = r.text()?;
        let record = RefreshTokenRecord {
            family: r.text()?,
            client_id: r.text()?,
            client_incarnation: r.text()?,
            sub: r.text()?,
            scope: r.optional()?,
            aud: Audience(r.texts()?),
            auth_time: r.number()?,
            expires_at: r.number()?,
        };
        r.end()?;
        Ok(record)
    }
}

/// Whether a refresh token is issued with an access token: the tenant enables the grant, the
/// client may use it, and, for OpenID Connect requests, `offline_access` was granted.
pub fn issues_refresh_token(ctx: &GrantContext<'_>, scope: Option<&str>) -> bool {
    if check_grant_allowed(ctx.tenant, ctx.client, GrantType::RefreshToken).is_err() {
        return false;
    }
    let scopes = issued_scopes(scope);
    !scopes.contains(&"openid") || scopes.contains(&"offline_access")
}

/// A new record for a fresh grant.
pub fn new_family(
    ctx: &GrantContext<'_>,
    claims: &AccessTokenClaims,
    family: String,
) -> RefreshTokenRecord {
    RefreshTokenRecord {
        family,
        client_id: claims.client_id.clone(),
        client_incarnation: ctx.client.incarnation.clone(),
        sub: claims.sub.clone(),
        scope: claims.scope.clone(),
        aud: claims.aud.clone(),
        auth_time: ctx.now,
        expires_at: ctx.now + ctx.tenant.refresh_token_ttl_secs,
    }
}

/// Checks a presented (and not yet used) refresh token and decides the new access token and
/// the record of its successor. Scope may only narrow (RFC 6749 section 6).
pub fn refresh(
    ctx: &GrantContext<'_>,
    record: &RefreshTokenRecord,
    requested_scope: Option<&str>,
    jti: String,
) -> Result<(AccessTokenClaims, RefreshTokenRecord), OAuthError> {
    if record.client_id != ctx.client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if record.client_incarnation != ctx.client.incarnation {
        return Err(OAuthError::invalid_grant(
            "the refresh token was revoked when its client was deleted",
        ));
    }
    if record.expires_at <= ctx.now {
        return Err(OAuthError::invalid_grant("the refresh token has expired"));
    }
    // What the grant allowed, narrowed to what the client may hold today: a Tenant that takes a
    // scope or an audience away from a namespace takes it from refresh tokens issued before.
    let original: Vec<String> = record
        .scope
        .as_deref()
        .map(parse_scope)
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .filter(|s| ctx.client.scopes.contains(s) && ctx.tenant.knows_scope(s))
        .collect();
    let scope = match requested_scope {
        None => scope_string(&original),
        Some(raw) => {
            let asked = parse_scope(raw)?;
            if let Some(extra) = asked.iter().find(|s| !original.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope {extra} is not part of this grant (a refresh may only narrow scope), or the client may no longer hold it"
                )));
            }
            if asked.is_empty() {
                scope_string(&original)
            } else {
                scope_string(&asked)
            }
        }
    };
    let allowed_audience = resolve_audience(ctx.client, &[])?;
    let aud: Vec<String> = record
        .aud
        .0
        .iter()
        .filter(|a| allowed_audience.0.contains(a))
        .cloned()
        .collect();
    if aud.is_empty() {
        return Err(OAuthError::invalid_grant(
            "the client may no longer hold the audience this grant was for",
        ));
    }
    let aud = Audience(aud);
    let claims = ctx.access_token_claims(record.sub.clone(), aud.clone(), scope.clone(), jti);
    let successor = RefreshTokenRecord {
        scope,
        aud,
        // Rotation keeps the family's lifetime: a stolen chain cannot be extended forever.
        expires_at: record.expires_at,
        ..record.clone()
    };
    Ok((claims, successor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::testing::{client, tenant};

    #[test]
    fn signed_tokens_open_only_with_their_tenants_key_and_unaltered() {
        let kek = crate::keys::KeyEncryptionKey::generate().unwrap().0;
        let acme = kek.refresh_token_key("acme");
        let token = acme.seal("n1", &record("a b"));
        assert!(RefreshTokenKey::is_signed_format(&token));
        assert!(!crate::token::looks_like_jwt(&token));
        assert_eq!(acme.open(&token), Some(record("a b")));
        // Distinct tokens for the same record.
        assert_ne!(acme.seal("n2", &record("a b")), token);
        // Another tenant, another KEK: no.
        assert_eq!(kek.refresh_token_key("other").open(&token), None);
        let other_kek = crate::keys::KeyEncryptionKey::generate().unwrap().0;
        assert_eq!(other_kek.refresh_token_key("acme").open(&token), None);
        // A payload altered (a wider scope), a tag cut, or garbage: no.
        let (payload, tag) = token.split_once('.').unwrap();
        let wider =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&("n1", record("a b admin"))).unwrap());
        assert_eq!(acme.open(&format!("{wider}.{tag}")), None);
        assert_eq!(acme.open(&format!("{payload}.{}", &tag[..10])), None);
        assert_eq!(acme.open(payload), None);
        assert_eq!(acme.open("."), None);
        assert!(!RefreshTokenKey::is_signed_format("legacyHandle_-"));
    }

    #[test]
    fn tokens_signed_before_the_compact_layout_still_open() {
        let kek = crate::keys::KeyEncryptionKey::generate().unwrap().0;
        let acme = kek.refresh_token_key("acme");
        let sign = |payload: &[u8]| acme.sign(payload);
        let legacy = sign(&serde_json::to_vec(&("n1", record("a b"))).unwrap());
        assert_eq!(acme.open(&legacy), Some(record("a b")));
        // The compact token is the shorter, and one extra byte after its record, or a format
        // byte it does not know, is refused even when signed.
        let compact = acme.seal("n1", &record("a b"));
        assert!(compact.len() * 3 < legacy.len() * 2, "{compact} {legacy}");
        let mut payload = record("a b").to_compact("n1");
        assert_eq!(acme.open(&sign(&payload)), Some(record("a b")));
        payload.push(0);
        assert_eq!(acme.open(&sign(&payload)), None);
        payload.pop();
        payload[0] = 2;
        assert_eq!(acme.open(&sign(&payload)), None);
    }

    fn record(scope: &str) -> RefreshTokenRecord {
        RefreshTokenRecord {
            family: "f".into(),
            client_id: "acme-billing".into(),
            client_incarnation: String::new(),
            sub: "alice".into(),
            scope: Some(scope.into()),
            aud: Audience(vec!["acme-billing".into()]),
            auth_time: 10,
            expires_at: 1000,
        }
    }

    #[test]
    fn scope_may_only_narrow() {
        let (t, mut c) = (tenant(), client());
        c.grant_types.push(GrantType::RefreshToken);
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 100,
        };
        let both = "billing.read billing.write";
        let (claims, next) =
            refresh(&ctx, &record(both), Some("billing.read"), "j".into()).unwrap();
        assert_eq!(claims.scope.as_deref(), Some("billing.read"));
        assert_eq!(next.scope.as_deref(), Some("billing.read"));
        assert_eq!(next.expires_at, 1000, "rotation does not extend the family");
        assert_eq!(
            refresh(
                &ctx,
                &record("billing.read"),
                Some("billing.read billing.write"),
                "j".into()
            )
            .unwrap_err()
            .code,
            ErrorCode::InvalidScope
        );
        let (claims, _) = refresh(&ctx, &record(both), None, "j".into()).unwrap();
        assert_eq!(claims.scope.as_deref(), Some(both));
    }

    #[test]
    fn what_the_client_may_no_longer_hold_is_taken_from_its_grants() {
        let (t, mut c) = (tenant(), client());
        c.grant_types.push(GrantType::RefreshToken);
        // The Tenant took billing.write away from the client's namespace after the grant.
        c.scopes = vec!["billing.read".into()];
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 100,
        };
        let (claims, next) = refresh(
            &ctx,
            &record("billing.read billing.write"),
            None,
            "j".into(),
        )
        .unwrap();
        assert_eq!(claims.scope.as_deref(), Some("billing.read"));
        assert_eq!(next.scope.as_deref(), Some("billing.read"));
        let e = refresh(
            &ctx,
            &record("billing.read billing.write"),
            Some("billing.write"),
            "j".into(),
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        // And an audience it no longer holds.
        let mut elsewhere = record("billing.read");
        elsewhere.aud = Audience(vec!["https://billing.example.com".into()]);
        let e = refresh(&ctx, &elsewhere, None, "j".into()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn other_clients_and_expired_tokens_are_invalid_grant() {
        let (t, mut c) = (tenant(), client());
        c.grant_types.push(GrantType::RefreshToken);
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 2000,
        };
        assert_eq!(
            refresh(&ctx, &record("billing.read"), None, "j".into())
                .unwrap_err()
                .code,
            ErrorCode::InvalidGrant
        );
        let mut other = record("billing.read");
        other.client_id = "someone-else".into();
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 100,
        };
        assert_eq!(
            refresh(&ctx, &other, None, "j".into()).unwrap_err().code,
            ErrorCode::InvalidGrant
        );
    }

    #[test]
    fn a_token_of_a_deleted_and_recreated_client_is_invalid_grant() {
        let (t, mut c) = (tenant(), client());
        c.grant_types.push(GrantType::RefreshToken);
        c.incarnation = "second".into();
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 100,
        };
        let mut old = record("billing.read");
        old.client_incarnation = "first".into();
        let err = refresh(&ctx, &old, None, "j".into()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        old.client_incarnation = "second".into();
        assert!(refresh(&ctx, &old, None, "j".into()).is_ok());
    }

    #[test]
    fn openid_requests_need_offline_access() {
        let (t, mut c) = (tenant(), client());
        c.grant_types.push(GrantType::RefreshToken);
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 0,
        };
        assert!(issues_refresh_token(&ctx, Some("billing.read")));
        assert!(!issues_refresh_token(&ctx, Some("openid billing.read")));
        assert!(issues_refresh_token(&ctx, Some("openid offline_access")));
        c.grant_types = vec![GrantType::ClientCredentials];
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 0,
        };
        assert!(!issues_refresh_token(&ctx, None));
    }
}
