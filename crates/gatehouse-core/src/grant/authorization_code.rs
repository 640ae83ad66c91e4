//! The authorization code grant (RFC 6749 section 4.1) with PKCE (RFC 7636), and the
//! authorization request it starts from, which implicit (section 4.2) shares.
//!
//! Validation follows RFC 6749 section 4.1.2.1: problems with the client or its redirect URI
//! are shown to the user (never redirected, so Gatehouse is no open redirector); everything
//! else is sent back to the registered redirect URI.

use super::{GrantContext, check_grant_allowed, resolve_audience};
use crate::compact::{Malformed, Reader, Writer};
use crate::config::{ClientConfig, TenantConfig};
use crate::error::{ErrorCode, OAuthError};
use crate::model::GrantType;
use crate::pkce;
use crate::scope::{granted_scopes, scope_string};
use crate::token::AccessTokenClaims;
use serde::{Deserialize, Serialize};

/// `response_type` values served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseType {
    /// Authorization code, returned in the query.
    Code,
    /// Implicit access token, returned in the fragment.
    Token,
}

/// The raw parameters of an authorization request.
#[derive(Debug, Default)]
pub struct AuthorizeParams<'a> {
    /// The `client_id` parameter.
    pub client_id: Option<&'a str>,
    /// The `redirect_uri` parameter.
    pub redirect_uri: Option<&'a str>,
    /// The `response_type` parameter.
    pub response_type: Option<&'a str>,
    /// The `scope` parameter.
    pub scope: Option<&'a str>,
    /// The `state` parameter.
    pub state: Option<&'a str>,
    /// The `nonce` parameter.
    pub nonce: Option<&'a str>,
    /// The `code_challenge` parameter.
    pub code_challenge: Option<&'a str>,
    /// The `code_challenge_method` parameter.
    pub code_challenge_method: Option<&'a str>,
    /// The `prompt` parameter.
    pub prompt: Option<&'a str>,
    /// The `max_age` parameter.
    pub max_age: Option<&'a str>,
    /// The `response_mode` parameter.
    pub response_mode: Option<&'a str>,
    /// Parameters RFC 6749 says the server must refuse (`request`, `request_uri` are not
    /// supported: JAR is not implemented).
    pub request_object: bool,
}

/// An authorization request that passed validation, kept while the user signs in.
// Its flags are independent facts of the request (which prompt values, whether redirect_uri was
// named), not states of one thing.
#[allow(clippy::struct_excessive_bools)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    /// The requesting client.
    pub client_id: String,
    /// Where the answer goes: registered for the client.
    pub redirect_uri: String,
    /// Whether the request named `redirect_uri` (or it was the client's only one): the token
    /// request must then name it again (RFC 6749 section 4.1.3).
    #[serde(default = "named")]
    pub redirect_uri_named: bool,
    /// A code, or (implicit) a token.
    pub response_type: ResponseType,
    /// The scopes asked for (all allowed for the client).
    pub scopes: Vec<String>,
    /// Echoed back to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Echoed in the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// `prompt=none`: answer without showing any page, or fail.
    pub prompt_none: bool,
    /// `prompt=login`: the person must sign in again.
    pub prompt_login: bool,
    /// `prompt=consent`: the person must be asked again.
    pub prompt_consent: bool,
    /// `max_age`: the sign-in may be at most this many seconds old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// Unix seconds.
    pub created_at: u64,
}

impl AuthorizationRequest {
    /// The scopes as a `scope` value (absent when empty).
    pub fn scope_string(&self) -> Option<String> {
        scope_string(&self.scopes)
    }
}

/// Where an authorization error goes.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Shown on an error page: the redirect URI cannot be trusted.
    Page(OAuthError),
    /// Sent to the (registered) redirect URI.
    Redirect {
        /// The registered redirect URI.
        redirect_uri: String,
        /// Decides query or fragment.
        response_type: ResponseType,
        /// The request's `state`, echoed.
        state: Option<String>,
        /// What went wrong.
        error: OAuthError,
    },
}

fn field(value: Option<&str>) -> Option<String> {
    value.filter(|v| !v.is_empty()).map(str::to_string)
}

/// Validates an authorization request against the tenant and the client's registration.
pub fn validate_request(
    tenant: &TenantConfig,
    client: Option<&ClientConfig>,
    p: &AuthorizeParams<'_>,
    now: u64,
) -> Result<AuthorizationRequest, AuthorizeError> {
    let page = |e: OAuthError| AuthorizeError::Page(e);
    let client_id = p
        .client_id
        .ok_or_else(|| page(OAuthError::invalid_request("missing parameter client_id")))?;
    let client = client.ok_or_else(|| {
        page(OAuthError::invalid_client(format!(
            "unknown client {client_id}"
        )))
    })?;
    let redirect_uri_named = p.redirect_uri.is_some();
    let redirect_uri = match p.redirect_uri {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => uri.to_string(),
        Some(_) => {
            return Err(page(OAuthError::invalid_request(format!(
                "redirect_uri is not registered for client {client_id} (matching is exact)"
            ))));
        }
        None => match client.redirect_uris.as_slice() {
            [only] => only.clone(),
            _ => {
                return Err(page(OAuthError::invalid_request(
                    "missing parameter redirect_uri",
                )));
            }
        },
    };
    let state = field(p.state);
    // Where an error goes depends on the response type; an unknown one is refused below,
    // in the query.
    let response_type = if p.response_type == Some("token") {
        ResponseType::Token
    } else {
        ResponseType::Code
    };
    let redirect = |error: OAuthError| AuthorizeError::Redirect {
        redirect_uri: redirect_uri.clone(),
        response_type,
        state: state.clone(),
        error,
    };
    match p.response_type {
        Some("code" | "token") => {}
        None => {
            return Err(redirect(OAuthError::invalid_request(
                "missing parameter response_type",
            )));
        }
        Some(other) => {
            return Err(redirect(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                format!("response_type {other} is not supported; use code"),
            )));
        }
    }
    if p.request_object {
        return Err(redirect(OAuthError::new(
            ErrorCode::RequestNotSupported,
            "request objects are not supported",
        )));
    }
    let grant = match response_type {
        ResponseType::Code => GrantType::AuthorizationCode,
        ResponseType::Token => GrantType::Implicit,
    };
    check_grant_allowed(tenant, client, grant).map_err(|e| {
        // At the authorization endpoint a grant the tenant does not enable is a response type
        // it does not support.
        if e.code == ErrorCode::UnsupportedGrantType {
            redirect(OAuthError::new(
                ErrorCode::UnsupportedResponseType,
                e.description,
            ))
        } else {
            redirect(e)
        }
    })?;
    match p.response_mode {
        None => {}
        Some("query") if response_type == ResponseType::Code => {}
        Some("fragment") if response_type == ResponseType::Token => {}
        // A code in the fragment would need the answer's every path (errors included) to
        // follow the request; one way per response type keeps them all in one place.
        Some("fragment") => {
            return Err(redirect(OAuthError::invalid_request(
                "response_mode=fragment is not supported with response_type=code; codes are returned in the query",
            )));
        }
        Some(other) => {
            return Err(redirect(OAuthError::invalid_request(format!(
                "response_mode {other} is not supported"
            ))));
        }
    }
    let scopes = granted_scopes(p.scope, client, tenant).map_err(redirect)?;
    let code_challenge = match (p.code_challenge, p.code_challenge_method) {
        (Some(c), Some("S256")) if pkce::valid_challenge(c) => Some(c.to_string()),
        (Some(_), Some("S256")) => {
            return Err(redirect(OAuthError::invalid_request(
                "code_challenge is not an S256 challenge",
            )));
        }
        (Some(_), Some("plain") | None) => {
            return Err(redirect(OAuthError::invalid_request(
                "code_challenge_method must be S256; plain is not accepted",
            )));
        }
        (Some(_), Some(other)) => {
            return Err(redirect(OAuthError::invalid_request(format!(
                "unsupported code_challenge_method {other}"
            ))));
        }
        (None, Some(_)) => {
            return Err(redirect(OAuthError::invalid_request(
                "code_challenge_method without code_challenge",
            )));
        }
        (None, None) => None,
    };
    if response_type == ResponseType::Code
        && code_challenge.is_none()
        && (client.public || tenant.pkce_required)
    {
        return Err(redirect(OAuthError::invalid_request(
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        )));
    }
    let prompts: Vec<&str> = p
        .prompt
        .map(|s| s.split(' ').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    for value in &prompts {
        if !["none", "login", "consent", "select_account"].contains(value) {
            return Err(redirect(OAuthError::invalid_request(format!(
                "unknown prompt value {value}"
            ))));
        }
    }
    if prompts.contains(&"none") && prompts.len() > 1 {
        return Err(redirect(OAuthError::invalid_request(
            "prompt=none cannot be combined with other values",
        )));
    }
    let max_age = match p.max_age {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            redirect(OAuthError::invalid_request(
                "max_age must be a number of seconds",
            ))
        })?),
    };
    let nonce = field(p.nonce);
    if response_type == ResponseType::Token
        && scopes.iter().any(|s| s == "openid")
        && nonce.is_none()
    {
        return Err(redirect(OAuthError::invalid_request(
            "nonce is required for implicit OpenID Connect requests",
        )));
    }
    Ok(AuthorizationRequest {
        client_id: client.client_id.clone(),
        redirect_uri,
        redirect_uri_named,
        response_type,
        scopes,
        state,
        nonce,
        code_challenge,
        prompt_none: prompts.contains(&"none"),
        prompt_login: prompts.contains(&"login"),
        prompt_consent: prompts.contains(&"consent"),
        max_age,
        created_at: now,
    })
}

fn named() -> bool {
    true
}

/// Seals and opens a tenant's authorization codes (see
/// [`crate::keys::KeyEncryptionKey::code_key`]).
///
/// A code carries its own record, encrypted and authenticated with AES-256-GCM:
/// `base64url(salt) "." base64url(ciphertext and tag)`. Redeeming one then reads nothing
/// from the store: what the store keeps is the code's grant family (started when the code is
/// issued; its absence refuses the code, so a store that lost its data resurrects no spent
/// code) and the used mark. Encrypted, not only signed: a code travels through the browser,
/// its history and the logs of whatever serves the redirect URI, and must not show who signed
/// in, their session or the nonce; the record is padded to a multiple of
/// [`CODE_PADDING`] bytes so that the code's length shows little of it either.
///
/// Every code is sealed under its own key, HMAC-SHA256 of the tenant's code key over 128
/// random bits (the salt, carried in the code), with a fixed nonce: a random 96-bit GCM nonce
/// under one long-lived key would risk a repeat (and with it forged codes) after some 2^32
/// codes, which a busy tenant reaches; 128-bit salts do not collide. Codes issued before this
/// format (random handles whose record the store holds) have no dot.
pub struct CodeKey(aws_lc_rs::hmac::Key);

impl std::fmt::Debug for CodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeKey(..)")
    }
}

/// The associated data every sealed code is bound to: a code never opens as anything else
/// sealed under a key derived the same way.
const CODE_AAD: &[u8] = b"gatehouse authorization code v1";

/// Records are padded with zero bytes to a multiple of this many bytes before sealing.
pub const CODE_PADDING: usize = 64;

/// The format byte of a code's compact record (see [`crate::compact`]); a record sealed
/// before it is JSON, which starts with `{`.
const COMPACT_FORMAT: u8 = 1;

/// The random bytes that make each code's key.
pub const CODE_SALT_LEN: usize = 16;

impl CodeKey {
    pub(crate) fn from_material(material: &[u8]) -> Self {
        CodeKey(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            material,
        ))
    }

    /// The one-code key for `salt`.
    fn sealing_key(&self, salt: &[u8; CODE_SALT_LEN]) -> Option<aws_lc_rs::aead::LessSafeKey> {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        let material = aws_lc_rs::hmac::sign(&self.0, salt);
        // HMAC-SHA256 gives exactly the 32 bytes AES-256 takes.
        let unbound = UnboundKey::new(&AES_256_GCM, material.as_ref()).ok()?;
        Some(LessSafeKey::new(unbound))
    }

    /// The code for `record`; `salt` must be random.
    ///
    /// # Errors
    /// The cipher refusing (which does not happen for a key this crate derived).
    pub fn seal(
        &self,
        salt: [u8; CODE_SALT_LEN],
        record: &CodeRecord,
    ) -> Result<String, CodeSealError> {
        self.seal_plain(salt, record.to_compact())
    }

    /// A record's bytes, sealed in place under the key for `salt`, in the code's format.
    fn seal_plain(
        &self,
        salt: [u8; CODE_SALT_LEN],
        mut sealed: Vec<u8>,
    ) -> Result<String, CodeSealError> {
        use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        self.sealing_key(&salt)
            .ok_or(CodeSealError)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(CODE_AAD),
                &mut sealed,
            )
            .map_err(|_| CodeSealError)?;
        let mut code = URL_SAFE_NO_PAD.encode(salt);
        code.push('.');
        URL_SAFE_NO_PAD.encode_string(&sealed, &mut code);
        Ok(code)
    }

    /// The record of a code this key sealed; `None` for anything else (altered, another
    /// tenant's or another KEK's, not this format).
    #[must_use]
    pub fn open(&self, code: &str) -> Option<CodeRecord> {
        use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (salt, sealed) = code.split_once('.')?;
        let salt: [u8; CODE_SALT_LEN] = URL_SAFE_NO_PAD.decode(salt).ok()?.try_into().ok()?;
        let mut sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let plain = self
            .sealing_key(&salt)?
            .open_in_place(
                Nonce::assume_unique_for_key([0; NONCE_LEN]),
                Aad::from(CODE_AAD),
                &mut sealed,
            )
            .ok()?;
        if plain.first() == Some(&b'{') {
            return serde_json::from_slice(plain).ok();
        }
        CodeRecord::from_compact(plain).ok()
    }

    /// Whether `code` is in the sealed format (else: a handle from before it, looked up in
    /// the store).
    #[must_use]
    pub fn is_sealed_format(code: &str) -> bool {
        code.contains('.')
    }
}

/// A code could not be sealed.
#[derive(Debug, thiserror::Error)]
#[error("the authorization code could not be sealed")]
pub struct CodeSealError;

/// What an authorization code carries (sealed in it, see [`CodeKey`]; for a code from before
/// sealed codes, what the store keeps under the code's digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The client the code was issued to.
    pub client_id: String,
    /// The client registration it was issued to (see `ClientConfig::incarnation`): a client
    /// deleted and registered again under the same id does not redeem its predecessor's
    /// codes. Absent in records stored before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_incarnation: Option<String>,
    /// The redirect URI the code was sent to.
    pub redirect_uri: String,
    /// Whether the authorization request named it, so the token request must name it again
    /// (RFC 6749 section 4.1.3); codes stored before this was kept say yes.
    #[serde(default = "named")]
    pub redirect_uri_named: bool,
    /// The scope the person consented to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The person who signed in.
    pub sub: String,
    /// When they signed in (unix seconds), for the ID token.
    pub auth_time: u64,
    /// The request's `nonce`, echoed in the ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The PKCE S256 challenge the verifier must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    /// The sign-in session, the ID token's `sid`.
    pub sid: String,
    /// Tokens issued for this code join this family, so a replayed code revokes them.
    pub family: String,
    /// Unix seconds after which the code is refused.
    pub expires_at: u64,
}

impl CodeRecord {
    /// The record's fields in their declared order, padded to whole [`CODE_PADDING`] blocks.
    fn to_compact(&self) -> Vec<u8> {
        let mut w = Writer::new(COMPACT_FORMAT);
        w.text(&self.client_id)
            .optional(self.client_incarnation.as_deref())
            .text(&self.redirect_uri)
            .flag(self.redirect_uri_named)
            .optional(self.scope.as_deref())
            .text(&self.sub)
            .number(self.auth_time)
            .optional(self.nonce.as_deref())
            .optional(self.code_challenge.as_deref())
            .text(&self.sid)
            .text(&self.family)
            .number(self.expires_at);
        w.into_padded(CODE_PADDING)
    }

    /// A record and its padding.
    fn from_compact(plain: &[u8]) -> Result<CodeRecord, Malformed> {
        let mut r = Reader::new(plain, COMPACT_FORMAT)?;
        let record = CodeRecord {
            client_id: r.text()?,
            client_incarnation: r.optional()?,
            redirect_uri: r.text()?,
            redirect_uri_named: r.flag()?,
            scope: r.optional()?,
            sub: r.text()?,
            auth_time: r.number()?,
            nonce: r.optional()?,
            code_challenge: r.optional()?,
            sid: r.text()?,
            family: r.text()?,
            expires_at: r.number()?,
        };
        r.end_padded(plain.len(), CODE_PADDING)?;
        Ok(record)
    }
}

/// Redeems a code (already checked unused): client, redirect URI and PKCE verifier must match.
pub fn exchange(
    ctx: &GrantContext<'_>,
    code: &CodeRecord,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    jti: String,
) -> Result<AccessTokenClaims, OAuthError> {
    if code.client_id != ctx.client.client_id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if code
        .client_incarnation
        .as_ref()
        .is_some_and(|issued_to| *issued_to != ctx.client.incarnation)
    {
        return Err(OAuthError::invalid_grant(
            "the code was issued to a client since deleted",
        ));
    }
    if code.expires_at <= ctx.now {
        return Err(OAuthError::invalid_grant(
            "the authorization code has expired",
        ));
    }
    match redirect_uri {
        Some(uri) if uri == code.redirect_uri => {}
        None if !code.redirect_uri_named => {}
        None => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri is required: the authorization request included it",
            ));
        }
        Some(_) => {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
    }
    match (&code.code_challenge, code_verifier) {
        (Some(challenge), Some(verifier)) if pkce::verify(verifier, challenge) => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("missing code_verifier")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier given but no code_challenge was sent",
            ));
        }
        (None, None) => {}
    }
    let aud = resolve_audience(ctx.client, &[])?;
    Ok(ctx.access_token_claims(code.sub.clone(), aud, code.scope.clone(), jti))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{client, tenant};

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn sealed_record() -> CodeRecord {
        CodeRecord {
            client_id: "acme-billing".into(),
            client_incarnation: Some("first".into()),
            redirect_uri: "https://app.example.com/cb".into(),
            redirect_uri_named: true,
            scope: Some("openid".into()),
            sub: "alice".into(),
            auth_time: 10,
            nonce: Some("n-0S6_WzA2Mj".into()),
            code_challenge: Some(CHALLENGE.into()),
            sid: "sid-1".into(),
            family: "fam-1".into(),
            expires_at: 70,
        }
    }

    #[test]
    fn sealed_codes_open_only_with_their_tenants_key_unaltered_and_show_nothing() {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let kek = crate::keys::KeyEncryptionKey::generate().unwrap().0;
        let acme = kek.code_key("acme");
        let code = acme.seal([1; 16], &sealed_record()).unwrap();
        assert!(CodeKey::is_sealed_format(&code));
        assert!(!CodeKey::is_sealed_format("legacyHandle_-"));
        assert_eq!(acme.open(&code), Some(sealed_record()));
        // Encrypted: nothing of the record shows, even decoded.
        let (_, body) = code.split_once('.').unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        let shown = String::from_utf8_lossy(&bytes);
        for secret in ["alice", "sid-1", "n-0S6_WzA2Mj", "fam-1", "app.example.com"] {
            assert!(!shown.contains(secret), "{secret} shows in {code}");
        }
        // Distinct codes for the same record under distinct nonces.
        assert_ne!(acme.seal([2; 16], &sealed_record()).unwrap(), code);
        // Another tenant, another KEK, the refresh-token key's derivation: no.
        assert_eq!(kek.code_key("acme2").open(&code), None);
        let other_kek = crate::keys::KeyEncryptionKey::generate().unwrap().0;
        assert_eq!(other_kek.code_key("acme").open(&code), None);
        // A bit flipped anywhere, a nonce swapped, a tag cut, or garbage: no.
        let (nonce, _) = code.split_once('.').unwrap();
        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        let flipped = format!("{nonce}.{}", URL_SAFE_NO_PAD.encode(&flipped));
        assert_eq!(acme.open(&flipped), None);
        let other_nonce = format!("{}.{body}", URL_SAFE_NO_PAD.encode([9u8; 16]));
        assert_eq!(acme.open(&other_nonce), None);
        let cut = format!(
            "{nonce}.{}",
            URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1])
        );
        assert_eq!(acme.open(&cut), None);
        assert_eq!(acme.open("."), None);
        assert_eq!(acme.open("a.b"), None);
        assert_eq!(acme.open(&format!("{nonce}.")), None);
        // Padded: records a few bytes apart make codes of one length.
        let mut longer = sealed_record();
        longer.sub.push_str("-x");
        assert_eq!(acme.seal([3; 16], &longer).unwrap().len(), code.len());
        assert_eq!((bytes.len() - 16) % CODE_PADDING, 0);
    }

    #[test]
    fn codes_sealed_before_the_compact_layout_still_open() {
        let kek = crate::keys::KeyEncryptionKey::generate().unwrap().0;
        let acme = kek.code_key("acme");
        let seal = |plain: Vec<u8>| acme.seal_plain([4; CODE_SALT_LEN], plain).unwrap();
        // JSON, padded with spaces, as codes were sealed before.
        let mut json = serde_json::to_vec(&sealed_record()).unwrap();
        json.resize(json.len().div_ceil(CODE_PADDING) * CODE_PADDING, b' ');
        let legacy = seal(json);
        assert_eq!(acme.open(&legacy), Some(sealed_record()));
        let compact = acme.seal([4; 16], &sealed_record()).unwrap();
        assert!(compact.len() < legacy.len(), "{compact} {legacy}");
        // Padded to whole blocks with zeros it opens; padding that is not zeros, a record not
        // padded to whole blocks or padded by a block too many, or a format byte it does not
        // know: refused.
        let mut plain = sealed_record().to_compact();
        let padded = plain.len();
        assert_eq!(padded % CODE_PADDING, 0);
        assert_eq!(acme.open(&seal(plain.clone())), Some(sealed_record()));
        plain[padded - 1] = 1;
        assert_eq!(acme.open(&seal(plain.clone())), None);
        plain[padded - 1] = 0;
        assert_eq!(acme.open(&seal(plain[..padded - 1].to_vec())), None);
        let mut overpadded = plain.clone();
        overpadded.resize(padded + CODE_PADDING, 0);
        assert_eq!(acme.open(&seal(overpadded)), None);
        plain[0] = 2;
        assert_eq!(acme.open(&seal(plain)), None);
    }

    #[test]
    fn a_code_is_redeemed_only_by_the_registration_it_was_issued_to() {
        let (t, mut c) = setup();
        c.incarnation = "second".into();
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 50,
        };
        let redeem = |record: &CodeRecord| {
            exchange(
                &ctx,
                record,
                Some("https://app.example.com/cb"),
                Some(VERIFIER),
                "j".into(),
            )
        };
        let mut code = sealed_record();
        code.client_id = c.client_id.clone();
        let e = redeem(&code).unwrap_err();
        assert_eq!(
            (e.code, e.description.as_str()),
            (
                ErrorCode::InvalidGrant,
                "the code was issued to a client since deleted"
            )
        );
        code.client_incarnation = Some("second".into());
        assert!(redeem(&code).is_ok());
        // A record stored before registrations were named is not refused for it.
        code.client_incarnation = None;
        assert!(redeem(&code).is_ok());
    }

    fn setup() -> (TenantConfig, ClientConfig) {
        let (mut t, mut c) = (tenant(), client());
        t.grant_types.push(GrantType::AuthorizationCode);
        c.grant_types = vec![GrantType::AuthorizationCode];
        c.redirect_uris = vec![
            "https://app.example.com/cb".into(),
            "https://app.example.com/cb2".into(),
        ];
        (t, c)
    }

    fn params<'a>() -> AuthorizeParams<'a> {
        AuthorizeParams {
            client_id: Some("acme-billing"),
            redirect_uri: Some("https://app.example.com/cb"),
            response_type: Some("code"),
            scope: Some("billing.read"),
            state: Some("xyz"),
            code_challenge: Some(CHALLENGE),
            code_challenge_method: Some("S256"),
            ..Default::default()
        }
    }

    #[test]
    fn a_good_request_validates() {
        let (t, c) = setup();
        let r = validate_request(&t, Some(&c), &params(), 5).unwrap();
        assert_eq!(
            (
                r.redirect_uri.as_str(),
                r.state.as_deref(),
                r.code_challenge.as_deref()
            ),
            ("https://app.example.com/cb", Some("xyz"), Some(CHALLENGE))
        );
    }

    #[test]
    fn client_and_redirect_problems_are_never_redirected() {
        let (t, c) = setup();
        let p = AuthorizeParams {
            redirect_uri: Some("https://evil.example.com/cb"),
            ..params()
        };
        assert!(matches!(
            validate_request(&t, Some(&c), &p, 0),
            Err(AuthorizeError::Page(_))
        ));
        let p = AuthorizeParams {
            redirect_uri: Some("https://app.example.com/cb/"),
            ..params()
        };
        assert!(
            matches!(
                validate_request(&t, Some(&c), &p, 0),
                Err(AuthorizeError::Page(_))
            ),
            "exact match only"
        );
        assert!(matches!(
            validate_request(&t, None, &params(), 0),
            Err(AuthorizeError::Page(_))
        ));
        let p = AuthorizeParams {
            redirect_uri: None,
            ..params()
        };
        assert!(
            matches!(
                validate_request(&t, Some(&c), &p, 0),
                Err(AuthorizeError::Page(_))
            ),
            "two registered, none given"
        );
    }

    fn redirected(t: &TenantConfig, c: &ClientConfig, p: &AuthorizeParams<'_>) -> ErrorCode {
        match validate_request(t, Some(c), p, 0) {
            Err(AuthorizeError::Redirect { error, state, .. }) => {
                assert_eq!(state.as_deref(), Some("xyz"));
                error.code
            }
            other => panic!("expected a redirect, got {other:?}"),
        }
    }

    #[test]
    fn other_problems_go_back_to_the_client() {
        let (t, c) = setup();
        assert_eq!(
            redirected(
                &t,
                &c,
                &AuthorizeParams {
                    code_challenge_method: Some("plain"),
                    ..params()
                }
            ),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirected(
                &t,
                &c,
                &AuthorizeParams {
                    code_challenge: None,
                    code_challenge_method: None,
                    ..params()
                }
            ),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            redirected(
                &t,
                &c,
                &AuthorizeParams {
                    response_type: Some("id_token"),
                    ..params()
                }
            ),
            ErrorCode::UnsupportedResponseType
        );
        assert_eq!(
            redirected(
                &t,
                &c,
                &AuthorizeParams {
                    response_type: Some("token"),
                    ..params()
                }
            ),
            ErrorCode::UnsupportedResponseType
        );
        assert_eq!(
            redirected(
                &t,
                &c,
                &AuthorizeParams {
                    scope: Some("admin"),
                    ..params()
                }
            ),
            ErrorCode::InvalidScope
        );
        assert_eq!(
            redirected(
                &t,
                &c,
                &AuthorizeParams {
                    prompt: Some("none login"),
                    ..params()
                }
            ),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn pkce_is_optional_only_for_confidential_clients_of_lenient_tenants() {
        let (mut t, mut c) = setup();
        t.pkce_required = false;
        let p = AuthorizeParams {
            code_challenge: None,
            code_challenge_method: None,
            ..params()
        };
        assert!(validate_request(&t, Some(&c), &p, 0).is_ok());
        c.public = true;
        let p = AuthorizeParams {
            code_challenge: None,
            code_challenge_method: None,
            ..params()
        };
        assert!(validate_request(&t, Some(&c), &p, 0).is_err());
    }

    #[test]
    fn a_code_requested_without_redirect_uri_is_redeemed_without_it() {
        let (t, mut c) = setup();
        c.redirect_uris.truncate(1);
        let p = AuthorizeParams {
            redirect_uri: None,
            ..params()
        };
        let r = validate_request(&t, Some(&c), &p, 0).unwrap();
        assert!(!r.redirect_uri_named);
        let code = CodeRecord {
            client_id: c.client_id.clone(),
            client_incarnation: None,
            redirect_uri: r.redirect_uri.clone(),
            redirect_uri_named: r.redirect_uri_named,
            scope: None,
            sub: "alice".into(),
            auth_time: 1,
            nonce: None,
            code_challenge: Some(CHALLENGE.into()),
            sid: "s".into(),
            family: "f".into(),
            expires_at: 100,
        };
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 50,
        };
        // RFC 6749 4.1.3: required only if the authorization request included it; if given
        // anyway, it must be the one the code went to.
        assert!(exchange(&ctx, &code, None, Some(VERIFIER), "j".into()).is_ok());
        assert!(
            exchange(
                &ctx,
                &code,
                Some("https://app.example.com/cb"),
                Some(VERIFIER),
                "j".into()
            )
            .is_ok()
        );
        assert!(
            exchange(
                &ctx,
                &code,
                Some("https://app.example.com/cb2"),
                Some(VERIFIER),
                "j".into()
            )
            .is_err()
        );
    }

    #[test]
    fn response_mode_fragment_is_for_tokens_only() {
        let (t, c) = setup();
        let p = AuthorizeParams {
            response_mode: Some("fragment"),
            ..params()
        };
        let Err(AuthorizeError::Redirect { error, .. }) = validate_request(&t, Some(&c), &p, 0)
        else {
            panic!("a code is not put in the fragment silently");
        };
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert!(error.description.contains("response_mode=fragment"));
    }

    #[test]
    fn exchange_checks_client_redirect_and_verifier() {
        let (t, c) = setup();
        let code = CodeRecord {
            client_id: c.client_id.clone(),
            client_incarnation: None,
            redirect_uri: "https://app.example.com/cb".into(),
            redirect_uri_named: true,
            scope: Some("billing.read".into()),
            sub: "alice".into(),
            auth_time: 1,
            nonce: None,
            code_challenge: Some(CHALLENGE.into()),
            sid: "s".into(),
            family: "f".into(),
            expires_at: 100,
        };
        let ctx = GrantContext {
            tenant: &t,
            issuer: "i",
            client: &c,
            now: 50,
        };
        let claims = exchange(
            &ctx,
            &code,
            Some("https://app.example.com/cb"),
            Some(VERIFIER),
            "j".into(),
        )
        .unwrap();
        assert_eq!(claims.sub, "alice");
        let bad = |r: Result<AccessTokenClaims, OAuthError>| r.unwrap_err().code;
        assert_eq!(
            bad(exchange(
                &ctx,
                &code,
                Some("https://app.example.com/cb2"),
                Some(VERIFIER),
                "j".into()
            )),
            ErrorCode::InvalidGrant
        );
        assert_eq!(
            bad(exchange(&ctx, &code, None, Some(VERIFIER), "j".into())),
            ErrorCode::InvalidGrant
        );
        assert_eq!(
            bad(exchange(
                &ctx,
                &code,
                Some("https://app.example.com/cb"),
                Some(&VERIFIER.replace('d', "e")),
                "j".into()
            )),
            ErrorCode::InvalidGrant
        );
        assert_eq!(
            bad(exchange(
                &ctx,
                &code,
                Some("https://app.example.com/cb"),
                None,
                "j".into()
            )),
            ErrorCode::InvalidGrant
        );
        let late = GrantContext { now: 100, ..ctx };
        assert_eq!(
            bad(exchange(
                &late,
                &code,
                Some("https://app.example.com/cb"),
                Some(VERIFIER),
                "j".into()
            )),
            ErrorCode::InvalidGrant
        );
    }
}
