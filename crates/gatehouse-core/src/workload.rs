//! Kubernetes ServiceAccount tokens as client credentials (workload identity): a pod presents
//! the token the kubelet projects into it as its `client_assertion`, and the token service
//! verifies it against the cluster issuer's keys that the operator resolved into the client's
//! registration ([`WorkloadIdentity`]), with no call out.
//!
//! A ServiceAccount token is reused until the kubelet replaces it, so the single-use `jti`
//! rule of `private_key_jwt` does not apply; instead a token is accepted only within
//! [`MAX_AGE_SECS`] of its `iat`. Projected tokens may carry an `exp` a year away (the API
//! server extends them for old clients and marks the real end in `warnafter`): the earlier of
//! the two ends the token here.

use crate::assertion::{AssertionError, CLOCK_SKEW_SECS, verify_signature};
use crate::config::{FederatedIdentity, WorkloadIdentity};
use crate::token::Audience;
use serde::Deserialize;

/// How long after its `iat` a ServiceAccount token is accepted. The kubelet refreshes a
/// projected token at 80 % of its life (one hour by default), so a pod always holds a younger
/// one; `kubectl create token` makes one-hour tokens.
pub const MAX_AGE_SECS: u64 = 24 * 3600;

/// The subject a ServiceAccount's tokens carry.
#[must_use]
pub fn service_account_subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// The claims of a ServiceAccount token Gatehouse reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceAccountClaims {
    /// The cluster's ServiceAccount issuer.
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Whom the token is for (`kubectl create token --audience`, or the projected volume's).
    pub aud: Audience,
    /// Unix seconds; for extended tokens see `warnafter`.
    pub exp: u64,
    /// Unix seconds, if given.
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Unix seconds; required (the age limit counts from it).
    pub iat: u64,
    /// What the API server says of the account (and the pod or secret the token is bound to).
    #[serde(default, rename = "kubernetes.io")]
    pub kubernetes: Option<KubernetesClaims>,
}

impl ServiceAccountClaims {
    /// When the token's life really ends: its `exp`, or the earlier `warnafter` of a token
    /// the API server extended.
    #[must_use]
    pub fn ends_at(&self) -> u64 {
        self.kubernetes
            .as_ref()
            .and_then(|k| k.warnafter)
            .map_or(self.exp, |w| w.min(self.exp))
    }
}

/// The `kubernetes.io` claim of a bound ServiceAccount token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct KubernetesClaims {
    /// The account's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The account, with the uid that tells a re-created one apart.
    #[serde(default)]
    pub serviceaccount: Option<BoundObject>,
    /// The pod the token is bound to, if any.
    #[serde(default)]
    pub pod: Option<BoundObject>,
    /// Where an extended token's real life ends.
    #[serde(default)]
    pub warnafter: Option<u64>,
}

/// An object a token names: its name and uid.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BoundObject {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

/// Why a ServiceAccount token does not authenticate its client.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadTokenError {
    /// Malformed, unknown key, bad signature: see the inner error.
    #[error("{0}")]
    Signature(AssertionError),
    /// `iss` is not the issuer the client is bound to.
    #[error("the token's issuer is not the one this client is bound to")]
    WrongIssuer,
    /// `aud` names neither the tenant's issuer nor its token endpoint.
    #[error("the token's audience is not this server (use the tenant's issuer or token endpoint)")]
    WrongAudience,
    /// `sub` is another account (or a subject not mapped to the client).
    #[error("the token's subject is not one this client is bound to")]
    WrongSubject,
    /// The account's uid differs from the one resolved.
    #[error("the token belongs to an earlier ServiceAccount of the same name")]
    WrongServiceAccount,
    /// Past `exp` (or `warnafter`).
    #[error("the token has expired")]
    Expired,
    /// `iat` or `nbf` in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Older than [`MAX_AGE_SECS`].
    #[error("the token was issued more than {MAX_AGE_SECS} seconds ago")]
    TooOld,
}

/// Verifies a ServiceAccount token for the client bound by `identity`, expecting one of
/// `audiences`, at `now`.
///
/// # Errors
/// The first check that fails, as [`WorkloadTokenError`].
pub fn verify_service_account_token(
    token: &str,
    identity: &WorkloadIdentity,
    audiences: &[&str],
    now: u64,
) -> Result<ServiceAccountClaims, WorkloadTokenError> {
    let claims: ServiceAccountClaims =
        verify_signature(token, Some(&identity.jwks)).map_err(WorkloadTokenError::Signature)?;
    if claims.iss != identity.issuer {
        return Err(WorkloadTokenError::WrongIssuer);
    }
    if !claims.aud.0.iter().any(|a| audiences.contains(&a.as_str())) {
        return Err(WorkloadTokenError::WrongAudience);
    }
    if claims.sub != identity.subject {
        return Err(WorkloadTokenError::WrongSubject);
    }
    let bound = claims
        .kubernetes
        .as_ref()
        .and_then(|k| k.serviceaccount.as_ref());
    if bound.is_none_or(|sa| sa.uid != identity.service_account_uid) {
        return Err(WorkloadTokenError::WrongServiceAccount);
    }
    check_window(claims.ends_at(), Some(claims.iat), claims.nbf, now)?;
    Ok(claims)
}

/// The claims of a trusted issuer's token Gatehouse reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FederatedClaims {
    /// The trusted issuer.
    pub iss: String,
    /// One of the subjects mapped to the client.
    pub sub: String,
    /// The tenant's issuer or token endpoint.
    pub aud: Audience,
    /// Unix seconds; required.
    pub exp: u64,
    /// Unix seconds, if given.
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Unix seconds; without it the token may live at most [`MAX_AGE_SECS`] from now.
    #[serde(default)]
    pub iat: Option<u64>,
}

/// Verifies a trusted issuer's token for the client `identity` binds, expecting one of
/// `audiences`, at `now`. Like a ServiceAccount token it is not single-use (a CI job reuses
/// its token), so its age is bounded instead: [`MAX_AGE_SECS`] since `iat`, or until `exp`
/// for a token without `iat`.
///
/// # Errors
/// The first check that fails, as [`WorkloadTokenError`].
pub fn verify_federated_token(
    token: &str,
    identity: &FederatedIdentity,
    audiences: &[&str],
    now: u64,
) -> Result<FederatedClaims, WorkloadTokenError> {
    let claims: FederatedClaims =
        verify_signature(token, Some(&identity.jwks)).map_err(WorkloadTokenError::Signature)?;
    if claims.iss != identity.issuer {
        return Err(WorkloadTokenError::WrongIssuer);
    }
    if !claims.aud.0.iter().any(|a| audiences.contains(&a.as_str())) {
        return Err(WorkloadTokenError::WrongAudience);
    }
    if !identity.subjects.contains(&claims.sub) {
        return Err(WorkloadTokenError::WrongSubject);
    }
    check_window(claims.exp, claims.iat, claims.nbf, now)?;
    Ok(claims)
}

/// The time checks every workload token gets: not past `ends_at`, not before `iat`/`nbf`,
/// and no older than [`MAX_AGE_SECS`] since `iat` (or, without `iat`, not living longer than
/// that from now).
fn check_window(
    ends_at: u64,
    iat: Option<u64>,
    nbf: Option<u64>,
    now: u64,
) -> Result<(), WorkloadTokenError> {
    if ends_at + CLOCK_SKEW_SECS <= now {
        return Err(WorkloadTokenError::Expired);
    }
    if iat.is_some_and(|iat| iat > now + CLOCK_SKEW_SECS)
        || nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS)
    {
        return Err(WorkloadTokenError::NotYetValid);
    }
    let too_old = match iat {
        Some(iat) => now.saturating_sub(iat) > MAX_AGE_SECS,
        None => ends_at.saturating_sub(now) > MAX_AGE_SECS,
    };
    if too_old {
        return Err(WorkloadTokenError::TooOld);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    const NOW: u64 = 1_800_000_000;
    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
    const AUD: &str = "https://auth.example.com/acme";
    const UID: &str = "0b7c8f3e-1111-2222-3333-444455556666";

    struct Signer {
        key: EncodingKey,
        jwk: Value,
    }

    fn signer(kid: &str) -> Signer {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
        Signer {
            key: EncodingKey::from_ec_der(doc.as_ref()),
            jwk,
        }
    }

    fn identity(signers: &[&Signer]) -> WorkloadIdentity {
        WorkloadIdentity {
            subject: service_account_subject("billing", "invoicer"),
            service_account_uid: UID.into(),
            issuer: ISSUER.into(),
            jwks: json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}),
        }
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "sub": "system:serviceaccount:billing:invoicer", "aud": [AUD],
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3540, "jti": "x",
            "kubernetes.io": {"namespace": "billing",
                "serviceaccount": {"name": "invoicer", "uid": UID},
                "pod": {"name": "invoicer-7d9", "uid": "p-1"}}
        })
    }

    fn token(s: &Signer, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &s.key).unwrap()
    }

    fn check(id: &WorkloadIdentity, t: &str) -> Result<ServiceAccountClaims, WorkloadTokenError> {
        verify_service_account_token(
            t,
            id,
            &[AUD, "https://auth.example.com/acme/oauth2/token"],
            NOW,
        )
    }

    fn with(change: impl FnOnce(&mut Value)) -> Value {
        let mut c = claims();
        change(&mut c);
        c
    }

    #[test]
    fn a_bound_token_of_the_account_verifies() {
        let s = signer("k1");
        let id = identity(&[&s]);
        let c = check(&id, &token(&s, "k1", &claims())).unwrap();
        assert_eq!(c.sub, "system:serviceaccount:billing:invoicer");
        // Used again (a pod reuses its token until the kubelet replaces it): still fine.
        check(&id, &token(&s, "k1", &claims())).unwrap();
    }

    #[test]
    fn each_wrong_claim_is_refused_for_what_it_is() {
        let s = signer("k1");
        let id = identity(&[&s]);
        let cases: Vec<(Value, WorkloadTokenError)> = vec![
            (
                with(|c| c["iss"] = json!("https://other.example.com")),
                WorkloadTokenError::WrongIssuer,
            ),
            (
                with(|c| c["aud"] = json!(["https://kubernetes.default.svc"])),
                WorkloadTokenError::WrongAudience,
            ),
            (
                with(|c| c["sub"] = json!("system:serviceaccount:other:invoicer")),
                WorkloadTokenError::WrongSubject,
            ),
            (
                with(|c| c["kubernetes.io"]["serviceaccount"]["uid"] = json!("old")),
                WorkloadTokenError::WrongServiceAccount,
            ),
            (
                with(|c| {
                    c.as_object_mut().unwrap().remove("kubernetes.io");
                }),
                WorkloadTokenError::WrongServiceAccount,
            ),
            (
                with(|c| c["exp"] = json!(NOW - CLOCK_SKEW_SECS)),
                WorkloadTokenError::Expired,
            ),
            (
                with(|c| {
                    c["exp"] = json!(NOW + 365 * 86400);
                    c["kubernetes.io"]["warnafter"] = json!(NOW - 61);
                }),
                WorkloadTokenError::Expired,
            ),
            (
                with(|c| c["iat"] = json!(NOW + 120)),
                WorkloadTokenError::NotYetValid,
            ),
            (
                with(|c| c["nbf"] = json!(NOW + 120)),
                WorkloadTokenError::NotYetValid,
            ),
            (
                with(|c| {
                    c["iat"] = json!(NOW - MAX_AGE_SECS - 1);
                    c["exp"] = json!(NOW + 60);
                }),
                WorkloadTokenError::TooOld,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(check(&id, &token(&s, "k1", &c)).unwrap_err(), want, "{c}");
        }
    }

    #[test]
    fn an_extended_token_lives_until_its_warnafter() {
        let s = signer("k1");
        let id = identity(&[&s]);
        let c = with(|c| {
            c["exp"] = json!(NOW + 365 * 86400);
            c["kubernetes.io"]["warnafter"] = json!(NOW + 3000);
        });
        check(&id, &token(&s, "k1", &c)).unwrap();
    }

    #[test]
    fn only_the_published_keys_verify_and_both_keys_of_a_rotation_do() {
        let (old, new, stranger) = (signer("old"), signer("new"), signer("x"));
        let id = identity(&[&old, &new]);
        check(&id, &token(&old, "old", &claims())).unwrap();
        check(&id, &token(&new, "new", &claims())).unwrap();
        assert_eq!(
            check(&id, &token(&stranger, "x", &claims())).unwrap_err(),
            WorkloadTokenError::Signature(AssertionError::UnknownKey)
        );
        // A stranger's signature under a published kid.
        assert_eq!(
            check(&id, &token(&stranger, "new", &claims())).unwrap_err(),
            WorkloadTokenError::Signature(AssertionError::BadSignature)
        );
        // A legacy Secret-based token has no exp: refused.
        let legacy = with(|c| {
            c.as_object_mut().unwrap().remove("exp");
        });
        assert!(matches!(
            check(&id, &token(&old, "old", &legacy)).unwrap_err(),
            WorkloadTokenError::Signature(AssertionError::Malformed)
        ));
    }

    fn ci_identity(s: &Signer) -> FederatedIdentity {
        FederatedIdentity {
            name: "ci".into(),
            issuer: "https://ci.example.com".into(),
            subjects: vec!["repo:acme/billing:ref:refs/heads/main".into()],
            jwks: json!({"keys": [s.jwk.clone()]}),
        }
    }

    fn ci_claims() -> Value {
        json!({"iss": "https://ci.example.com", "sub": "repo:acme/billing:ref:refs/heads/main",
            "aud": AUD, "iat": NOW - 30, "exp": NOW + 300})
    }

    fn check_ci(id: &FederatedIdentity, t: &str) -> Result<FederatedClaims, WorkloadTokenError> {
        verify_federated_token(t, id, &[AUD], NOW)
    }

    #[test]
    fn a_trusted_issuers_token_of_a_mapped_subject_verifies_and_nothing_else_does() {
        let s = signer("ci-1");
        let id = ci_identity(&s);
        let ok = check_ci(&id, &token(&s, "ci-1", &ci_claims())).unwrap();
        assert_eq!(ok.sub, "repo:acme/billing:ref:refs/heads/main");
        // Reused: fine (not single-use).
        check_ci(&id, &token(&s, "ci-1", &ci_claims())).unwrap();
        let edit = |change: &dyn Fn(&mut Value)| {
            let mut c = ci_claims();
            change(&mut c);
            c
        };
        let cases: Vec<(Value, WorkloadTokenError)> = vec![
            (
                edit(&|c| c["iss"] = json!("https://ci.example.com/")),
                WorkloadTokenError::WrongIssuer,
            ),
            (
                edit(&|c| c["aud"] = json!("https://ci.example.com")),
                WorkloadTokenError::WrongAudience,
            ),
            // Exact subjects only: a prefix or a branch not mapped is someone else.
            (
                edit(&|c| c["sub"] = json!("repo:acme/billing:ref:refs/heads/main-x")),
                WorkloadTokenError::WrongSubject,
            ),
            (
                edit(&|c| c["sub"] = json!("repo:acme/billing:pull_request")),
                WorkloadTokenError::WrongSubject,
            ),
            (
                edit(&|c| c["exp"] = json!(NOW - CLOCK_SKEW_SECS)),
                WorkloadTokenError::Expired,
            ),
            (
                edit(&|c| c["nbf"] = json!(NOW + 120)),
                WorkloadTokenError::NotYetValid,
            ),
            (
                edit(&|c| c["iat"] = json!(NOW - MAX_AGE_SECS - 1)),
                WorkloadTokenError::TooOld,
            ),
            // Without iat, a token may not live longer than the age limit from now.
            (
                edit(&|c| {
                    c.as_object_mut().unwrap().remove("iat");
                    c["exp"] = json!(NOW + MAX_AGE_SECS + 10);
                }),
                WorkloadTokenError::TooOld,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(
                check_ci(&id, &token(&s, "ci-1", &c)).unwrap_err(),
                want,
                "{c}"
            );
        }
        // Another key, or none published any more (keys too old to trust).
        let stranger = signer("ci-1");
        assert!(check_ci(&id, &token(&stranger, "ci-1", &ci_claims())).is_err());
        let emptied = FederatedIdentity {
            name: "ci".into(),
            jwks: json!({"keys": []}),
            ..ci_identity(&s)
        };
        assert_eq!(
            check_ci(&emptied, &token(&s, "ci-1", &ci_claims())).unwrap_err(),
            WorkloadTokenError::Signature(AssertionError::UnknownKey)
        );
    }
}
