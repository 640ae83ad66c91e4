//! Signed assertions a client presents (RFC 7523): as its credentials (`private_key_jwt`) or as
//! the grant itself (the jwt-bearer grant). Each is verified against the client's registered
//! keys for this tenant (audience: its issuer or token endpoint) and works once: its `jti` is
//! kept in the store until the assertion expires, so a replay on any replica is refused.

use crate::{Error, ServedTenant, Services};
use gatehouse_core::assertion::{self, AssertionClaims};
use gatehouse_core::config::WorkloadIdentity;
use gatehouse_core::token::opaque_token_id;
use gatehouse_core::workload;
use gatehouse_core::{ClientConfig, OAuthError, endpoints};
use gatehouse_store::RecordKind;

/// Said of an assertion whose `jti` was spent already.
pub const REPLAYED: &str = "the assertion was already used (jti replay)";

/// Verifies an assertion and spends its `jti`. Problems are `invalid_grant`; client
/// authentication turns them into `invalid_client`.
///
/// # Errors
/// As above, or the store failing.
pub async fn verify_once(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    token: &str,
) -> Result<AssertionClaims, Error> {
    let token_endpoint = tenant.endpoint(endpoints::TOKEN);
    let audiences = [tenant.issuer.as_str(), token_endpoint.as_str()];
    let claims = assertion::verify(token, client.jwks.as_ref(), &audiences, services.now())
        .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
    let jti = claims
        .jti
        .as_deref()
        .ok_or_else(|| OAuthError::invalid_grant("the assertion has no jti"))?;
    let id = opaque_token_id(&format!("{}\0{jti}", client.client_id));
    let keep = claims.exp + assertion::CLOCK_SKEW_SECS;
    if !services
        .store
        .claim_once(tenant.name(), RecordKind::AssertionJti, &id, keep)
        .await?
    {
        return Err(OAuthError::invalid_grant(REPLAYED).into());
    }
    Ok(claims)
}

/// A verified workload token: whom it is for and when it ends (a token exchange bounds its
/// result by them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadToken {
    /// Its `aud`.
    pub aud: Vec<String>,
    /// Its real end (`exp`, or an extended ServiceAccount token's `warnafter`).
    pub ends_at: u64,
}

/// Whether `client` authenticates with workload tokens: a Kubernetes ServiceAccount's or a
/// trusted issuer's, instead of a key of its own.
pub fn has_workload_identity(client: &ClientConfig) -> bool {
    client.workload.is_some() || client.federated.is_some()
}

/// Why a workload token does not authenticate its client.
#[derive(Debug)]
pub enum WorkloadRefusal {
    /// The token is not good for this client: why, for the log only.
    Refused(String),
    /// It could not be told (the API server did not answer a TokenReview).
    Unavailable(Error),
}

/// Verifies a workload token presented as the credentials of `client`: a ServiceAccount token
/// of the account it is bound to, or a trusted issuer's token of a subject mapped to it
/// (audience: the tenant's issuer or token endpoint). No `jti` is spent: a pod or a CI job
/// reuses its token until it is replaced; its age is bounded instead. Where the tenant says so
/// a ServiceAccount token is also reviewed by the API server (TokenReview): one bound to a
/// deleted pod is refused at once.
///
/// # Errors
/// Why the token does not authenticate the client.
pub async fn verify_workload_token(
    services: &Services,
    tenant: &ServedTenant,
    client: &ClientConfig,
    token: &str,
) -> Result<WorkloadToken, WorkloadRefusal> {
    let token_endpoint = tenant.endpoint(endpoints::TOKEN);
    let audiences = [tenant.issuer.as_str(), token_endpoint.as_str()];
    let now = services.now();
    if let Some(identity) = &client.workload {
        let claims = workload::verify_service_account_token(token, identity, &audiences, now)
            .map_err(|e| WorkloadRefusal::Refused(format!("ServiceAccount token refused: {e}")))?;
        if tenant.config.review_service_account_tokens {
            review(services, identity, token, &claims.aud.0).await?;
        }
        return Ok(WorkloadToken {
            ends_at: claims.ends_at(),
            aud: claims.aud.0,
        });
    }
    if let Some(identity) = &client.federated {
        return workload::verify_federated_token(token, identity, &audiences, now)
            .map(|c| WorkloadToken {
                // Authentication stops at the age limit; so does what an exchange makes of it.
                ends_at: c.iat.map_or(c.exp, |iat| {
                    c.exp.min(iat.saturating_add(workload::MAX_AGE_SECS))
                }),
                aud: c.aud.0,
            })
            .map_err(|e| {
                WorkloadRefusal::Refused(format!(
                    "token of trusted issuer {} refused: {e}",
                    identity.issuer
                ))
            });
    }
    Err(WorkloadRefusal::Refused(
        "the client has no workload identity".to_string(),
    ))
}

/// The API server's word on a ServiceAccount token already verified here: it must still
/// accept it, for the same account (name and uid).
async fn review(
    services: &Services,
    identity: &WorkloadIdentity,
    token: &str,
    audiences: &[String],
) -> Result<(), WorkloadRefusal> {
    let Some(reviewer) = &services.token_review else {
        return Err(WorkloadRefusal::Unavailable(Error::ReviewUnavailable(
            "the tenant reviews ServiceAccount tokens, but this token service has no Kubernetes access (--token-review; the chart's server.tokenReview.enabled)".to_string(),
        )));
    };
    let review = reviewer
        .review(token, audiences)
        .await
        .map_err(|e| WorkloadRefusal::Unavailable(Error::ReviewUnavailable(e)))?;
    if !review.authenticated {
        return Err(WorkloadRefusal::Refused(
            "the API server no longer accepts the ServiceAccount token (the pod or Secret it is bound to is gone)".to_string(),
        ));
    }
    if review.username != identity.subject || review.uid != identity.service_account_uid {
        return Err(WorkloadRefusal::Refused(format!(
            "the API server says the token is {}'s",
            review.username
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ISSUER_BASE, memory_world};
    use crate::token_review::{Review, Reviewing, TokenReviewer};
    use std::sync::{Arc, Mutex};

    const SUBJECT: &str = "system:serviceaccount:acme:invoicer";
    const UID: &str = "uid-1";

    /// Answers as told and records what it was asked.
    struct Answering {
        answer: Result<Review, String>,
        asked: Mutex<Vec<Vec<String>>>,
    }

    impl TokenReviewer for Answering {
        fn review<'a>(&'a self, _token: &'a str, audiences: &'a [String]) -> Reviewing<'a> {
            self.asked.lock().unwrap().push(audiences.to_vec());
            let answer = self.answer.clone();
            Box::pin(async move { answer })
        }
    }

    fn answering(answer: Result<Review, String>) -> Arc<Answering> {
        Arc::new(Answering {
            answer,
            asked: Mutex::new(Vec::new()),
        })
    }

    fn review(authenticated: bool, username: &str, uid: &str) -> Review {
        Review {
            authenticated,
            username: username.into(),
            uid: uid.into(),
        }
    }

    /// A ServiceAccount-shaped token signed with the reporter's test key, and a client bound
    /// to that account whose cluster keys are the reporter's.
    fn invoicer(now: u64) -> (ClientConfig, String) {
        let mut client = crate::testing::bundle().0.clients[2].clone();
        client.client_id = "invoicer".into();
        let jwks = client.jwks.take().unwrap();
        client.workload = Some(WorkloadIdentity {
            subject: SUBJECT.into(),
            service_account_uid: UID.into(),
            issuer: "https://kubernetes.default.svc".into(),
            jwks,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("reporter-2026".into());
        let claims = serde_json::json!({
            "iss": "https://kubernetes.default.svc", "sub": SUBJECT,
            "aud": [format!("{ISSUER_BASE}/acme")], "iat": now, "exp": now + 600,
            "kubernetes.io": {"namespace": "acme", "serviceaccount": {"name": "invoicer", "uid": UID},
                              "pod": {"name": "invoicer-1", "uid": "pod-1"}}
        });
        let token =
            jsonwebtoken::encode(&header, &claims, &crate::testing::reporter_key()).unwrap();
        (client, token)
    }

    #[tokio::test]
    async fn a_reviewing_tenant_asks_the_api_server_and_believes_only_a_yes_for_the_same_account() {
        let mut w = memory_world();
        let (client, token) = invoicer(w.now());
        // Not reviewing: verified here alone.
        assert!(
            verify_workload_token(&w.services, &w.tenant, &client, &token)
                .await
                .is_ok()
        );
        w.tenant.config.review_service_account_tokens = true;
        // Reviewing without a way to ask: unavailable (503), never let through.
        match verify_workload_token(&w.services, &w.tenant, &client, &token).await {
            Err(WorkloadRefusal::Unavailable(e)) => {
                assert_eq!(
                    e.to_oauth().code,
                    gatehouse_core::ErrorCode::TemporarilyUnavailable
                );
            }
            other => panic!("{other:?}"),
        }
        let cases = [
            (Ok(review(true, SUBJECT, UID)), "ok"),
            (Ok(review(false, "", "")), "refused"),
            (
                Ok(review(true, "system:serviceaccount:acme:other", UID)),
                "refused",
            ),
            (
                Ok(review(true, SUBJECT, "uid-of-an-earlier-account")),
                "refused",
            ),
            (Err("connection refused".to_string()), "unavailable"),
        ];
        for (answer, want) in cases {
            let reviewer = answering(answer.clone());
            w.services.token_review = Some(reviewer.clone());
            let got = match verify_workload_token(&w.services, &w.tenant, &client, &token).await {
                Ok(_) => "ok",
                Err(WorkloadRefusal::Refused(_)) => "refused",
                Err(WorkloadRefusal::Unavailable(_)) => "unavailable",
            };
            assert_eq!(got, want, "{answer:?}");
            assert_eq!(
                *reviewer.asked.lock().unwrap(),
                [vec![format!("{ISSUER_BASE}/acme")]],
                "asked once, for the token's audience"
            );
        }
        // A token that fails here is never sent to the API server.
        let reviewer = answering(Ok(review(true, SUBJECT, UID)));
        w.services.token_review = Some(reviewer.clone());
        let (_, other_token) = invoicer(w.now() - 2 * 86_400);
        assert!(matches!(
            verify_workload_token(&w.services, &w.tenant, &client, &other_token).await,
            Err(WorkloadRefusal::Refused(_))
        ));
        assert!(reviewer.asked.lock().unwrap().is_empty());
    }
}
