//! The token endpoint (RFC 6749 section 3.2): the request is parsed once into a
//! [`TokenRequest`], the grant is checked once against the tenant and the client, and one
//! module per grant decides the claims; minting, refresh tokens, ID tokens and grant-family
//! membership are shared here.

mod authorization_code;
mod client_credentials;
mod device_code;
mod jwt_bearer;
mod password;
mod refresh_token;
mod token_exchange;

use crate::unanswered::{self, Unanswered};
use crate::{Error, Params, ServedTenant, Services, family, mint};
use gatehouse_core::grant::refresh_token::RefreshTokenRecord;
use gatehouse_core::grant::{GrantContext, TokenResponse, check_grant_allowed};
use gatehouse_core::id_token::{IdTokenClaims, at_hash};
use gatehouse_core::subject::is_user_subject;
use gatehouse_core::token::{AccessTokenClaims, opaque_token_id};
use gatehouse_core::{ClientConfig, GrantType, OAuthError};
use gatehouse_store::{FamilyMember, Issue, Joining, RecordKind, Spend, StoreError};
use std::net::IpAddr;
use zeroize::Zeroizing;

/// A token request, one variant per grant with the parameters that grant reads.
#[derive(Debug)]
pub enum TokenRequest {
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    ClientCredentials {
        scope: Option<String>,
        resources: Vec<String>,
    },
    Password {
        username: String,
        password: Zeroizing<String>,
        scope: Option<String>,
        resources: Vec<String>,
    },
    RefreshToken {
        refresh_token: String,
        scope: Option<String>,
    },
    DeviceCode {
        device_code: String,
    },
    JwtBearer {
        assertion: String,
        scope: Option<String>,
        resources: Vec<String>,
    },
    TokenExchange {
        subject_token: String,
        subject_token_type: String,
        /// The actor token and its type.
        actor: Option<(String, String)>,
        requested_token_type: Option<String>,
        scope: Option<String>,
        /// The `audience` and `resource` parameters together (RFC 8693 section 2.1).
        targets: Vec<String>,
    },
}

impl TokenRequest {
    /// The grant a request names (`implicit` has no `grant_type` value, so it never parses).
    ///
    /// # Errors
    /// `invalid_request` without `grant_type`; `unsupported_grant_type` for an unknown one.
    pub fn grant_type(params: &Params) -> Result<GrantType, OAuthError> {
        let name = params.require("grant_type")?;
        GrantType::from_token_request(name)
            .ok_or_else(|| OAuthError::unsupported_grant_type(format!("unknown grant type {name}")))
    }

    /// The parameters of `grant`, each required one present.
    ///
    /// # Errors
    /// `invalid_request` naming a missing parameter; `unsupported_grant_type` for implicit.
    pub fn parse(grant: GrantType, params: &Params) -> Result<TokenRequest, OAuthError> {
        let required = |name: &str| params.require(name).map(str::to_string);
        Ok(match grant {
            GrantType::AuthorizationCode => TokenRequest::AuthorizationCode {
                code: required("code")?,
                redirect_uri: params.owned("redirect_uri"),
                code_verifier: params.owned("code_verifier"),
            },
            GrantType::ClientCredentials => TokenRequest::ClientCredentials {
                scope: params.owned("scope"),
                resources: params.all("resource"),
            },
            GrantType::Password => TokenRequest::Password {
                username: required("username")?,
                password: Zeroizing::new(required("password")?),
                scope: params.owned("scope"),
                resources: params.all("resource"),
            },
            GrantType::RefreshToken => TokenRequest::RefreshToken {
                refresh_token: required("refresh_token")?,
                scope: params.owned("scope"),
            },
            GrantType::DeviceCode => TokenRequest::DeviceCode {
                device_code: required("device_code")?,
            },
            GrantType::JwtBearer => TokenRequest::JwtBearer {
                assertion: required("assertion")?,
                scope: params.owned("scope"),
                resources: params.all("resource"),
            },
            GrantType::TokenExchange => {
                let actor = match (
                    params.owned("actor_token"),
                    params.owned("actor_token_type"),
                ) {
                    (Some(token), Some(kind)) => Some((token, kind)),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(OAuthError::invalid_request(
                            "actor_token_type is required with actor_token",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(OAuthError::invalid_request(
                            "actor_token_type without actor_token",
                        ));
                    }
                };
                let mut targets = params.all("audience");
                targets.extend(params.all("resource"));
                TokenRequest::TokenExchange {
                    subject_token: required("subject_token")?,
                    subject_token_type: required("subject_token_type")?,
                    actor,
                    requested_token_type: params.owned("requested_token_type"),
                    scope: params.owned("scope"),
                    targets,
                }
            }
            GrantType::Implicit => {
                return Err(OAuthError::unsupported_grant_type(
                    "implicit is not a grant of the token endpoint",
                ));
            }
        })
    }

    #[must_use]
    pub fn grant(&self) -> GrantType {
        match self {
            TokenRequest::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            TokenRequest::ClientCredentials { .. } => GrantType::ClientCredentials,
            TokenRequest::Password { .. } => GrantType::Password,
            TokenRequest::RefreshToken { .. } => GrantType::RefreshToken,
            TokenRequest::DeviceCode { .. } => GrantType::DeviceCode,
            TokenRequest::JwtBearer { .. } => GrantType::JwtBearer,
            TokenRequest::TokenExchange { .. } => GrantType::TokenExchange,
        }
    }
}

/// What the token endpoint answers, and the grant that issued it (for metrics).
#[derive(Debug)]
pub struct Issued {
    pub response: TokenResponse,
    pub grant: GrantType,
}

/// Who is asking: the tenant, the authenticated client, and the client's address (sign-in
/// throttling counts per address).
pub struct Caller<'a> {
    pub tenant: &'a ServedTenant,
    pub client: &'a ClientConfig,
    pub address: Option<IpAddr>,
}

/// The token endpoint: parses, checks the grant once, runs it, and mints what it decided.
///
/// # Errors
/// The RFC 6749 section 5.2 error, or trouble with the store, signing or randomness.
pub async fn token(
    services: &Services,
    caller: &Caller<'_>,
    params: &Params,
) -> Result<Issued, Error> {
    let grant = TokenRequest::grant_type(params)?;
    check_grant_allowed(&caller.tenant.config, caller.client, grant)?;
    let request = TokenRequest::parse(grant, params)?;
    issue(services, caller, request).await
}

/// Runs a parsed request whose grant was checked.
async fn issue(
    services: &Services,
    caller: &Caller<'_>,
    request: TokenRequest,
) -> Result<Issued, Error> {
    let tenant = caller.tenant;
    let ctx = GrantContext {
        tenant: &tenant.config,
        issuer: &tenant.issuer,
        client: caller.client,
        now: services.now(),
    };
    let jti = services.random.id()?;
    let grant = request.grant();
    let outcome = match request {
        TokenRequest::ClientCredentials { scope, resources } => {
            client_credentials::decide(&ctx, scope.as_deref(), &resources, jti)?
        }
        TokenRequest::Password {
            username,
            password,
            scope,
            resources,
        } => {
            let asked = password::Asked {
                username: &username,
                password: &password,
                scope: scope.as_deref(),
                resources: &resources,
            };
            password::decide(services, &ctx, tenant, asked, caller.address, jti).await?
        }
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
        } => {
            let presented = refresh_token::Presented {
                token: &refresh_token,
                scope: scope.as_deref(),
            };
            refresh_token::rotate(services, &ctx, tenant, presented, jti).await?
        }
        TokenRequest::DeviceCode { device_code } => {
            device_code::poll(services, &ctx, &device_code, jti).await?
        }
        TokenRequest::JwtBearer {
            assertion,
            scope,
            resources,
        } => {
            let asked = jwt_bearer::Asked {
                assertion: &assertion,
                scope: scope.as_deref(),
                resources: &resources,
            };
            jwt_bearer::decide(services, &ctx, tenant, asked, jti).await?
        }
        TokenRequest::TokenExchange {
            subject_token,
            subject_token_type,
            actor,
            requested_token_type,
            scope,
            targets,
        } => {
            let asked = token_exchange::Asked {
                subject_token: &subject_token,
                subject_token_type: &subject_token_type,
                actor: actor.as_ref().map(|(t, k)| (t.as_str(), k.as_str())),
                requested_token_type: requested_token_type.as_deref(),
                scope: scope.as_deref(),
                targets: &targets,
            };
            token_exchange::decide(services, &ctx, tenant, asked, jti).await?
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            let presented = authorization_code::Presented {
                code: &code,
                redirect_uri: redirect_uri.as_deref(),
                code_verifier: code_verifier.as_deref(),
            };
            authorization_code::redeem(services, &ctx, tenant, presented, jti).await?
        }
    };
    // A person removed from the users Secret gets nothing more: no refresh, no code or device
    // redemption (their sign-ins already end with their session).
    if is_user_subject(&outcome.claims.sub) && tenant.config.user(&outcome.claims.sub).is_none() {
        return Err(OAuthError::invalid_grant(format!(
            "user {} no longer exists",
            outcome.claims.sub
        ))
        .into());
    }
    let mut response = mint_outcome(services, tenant, outcome).await?;
    if grant == GrantType::TokenExchange {
        response.issued_token_type = Some(gatehouse_core::grant::token_exchange::ACCESS_TOKEN_TYPE);
    }
    Ok(Issued { response, grant })
}

/// The code, refresh token or device code a grant spends when it issues.
struct Spending {
    kind: RecordKind,
    id: String,
    /// How long the mark is kept, so that a replay is recognised.
    until: u64,
    /// The grant family it carries, where its mark is kept (see [`Spend::family`]).
    family: Option<String>,
}

/// The grant family an access token joins.
struct GrantFamily {
    id: String,
    /// Until when it matters (see [`FamilyMember::until`]).
    until: u64,
    /// Whether this grant starts it, or it was started already (see [`Joining`]).
    joining: Joining,
}

/// What a grant decided, before anything is minted.
struct Outcome {
    claims: AccessTokenClaims,
    /// What was presented and is spent by issuing (written with the rest, or not at all).
    spend: Option<Spending>,
    /// A refresh token to issue with the access token.
    refresh: Option<RefreshTokenRecord>,
    /// The grant family the access token joins.
    family: Option<GrantFamily>,
    /// For OpenID Connect code flows: what the ID token needs besides the access token.
    id_token: Option<IdTokenClaims>,
    /// When the user the grant is for signed in (a grant that came of no sign-in has none):
    /// issuing is refused if they were signed out since.
    signed_in: Option<u64>,
}

impl Outcome {
    fn plain(claims: AccessTokenClaims) -> Self {
        Outcome {
            claims,
            spend: None,
            refresh: None,
            family: None,
            id_token: None,
            signed_in: None,
        }
    }

    /// An outcome that starts a new grant family when it issues a refresh token.
    fn with_new_family(
        ctx: &GrantContext<'_>,
        services: &Services,
        claims: AccessTokenClaims,
        auth_time: u64,
    ) -> Result<Self, Error> {
        use gatehouse_core::grant::refresh_token::{issues_refresh_token, new_family};
        let refresh = if issues_refresh_token(ctx, claims.scope.as_deref()) {
            let family = services.random.id()?;
            Some(RefreshTokenRecord {
                auth_time,
                ..new_family(ctx, &claims, family)
            })
        } else {
            None
        };
        let family = refresh.as_ref().map(|r| GrantFamily {
            id: r.family.clone(),
            until: r.expires_at,
            joining: Joining::Starts,
        });
        Ok(Outcome {
            claims,
            spend: None,
            refresh,
            family,
            id_token: None,
            signed_in: Some(auth_time),
        })
    }
}

/// Mints the access token (and refresh and ID tokens) and writes everything the grant writes
/// in one atomic step: spending what was presented, joining the family, storing the refresh
/// token and an opaque access token. A store failure leaves no trace; a code or token spent
/// meanwhile, or a family revoked meanwhile, gets nothing.
async fn mint_outcome(
    services: &Services,
    tenant: &ServedTenant,
    mut outcome: Outcome,
) -> Result<TokenResponse, Error> {
    let name = tenant.name();
    let store = services.store();
    // The token names its family, so that revoking the family revokes it where it is checked.
    outcome.claims.fam = outcome.family.as_ref().map(|f| f.id.clone());
    let minted = mint::access_token(services, tenant, &outcome.claims).await?;
    let mut body = TokenResponse::bearer(minted.token.clone(), &outcome.claims);
    // The access token's jti, random and minted with it, makes the refresh token distinct
    // too: one draw from the generator fewer per rotation.
    let refresh = outcome
        .refresh
        .as_ref()
        .map(|record| tenant.refresh_tokens.seal(&outcome.claims.jti, record));
    let refresh_id = refresh.as_deref().map(opaque_token_id);
    let issue = Issue {
        spend: outcome.spend.as_ref().map(|s| Spend {
            kind: s.kind,
            id: &s.id,
            until: s.until,
            attempt: &outcome.claims.jti,
            family: s.family.as_deref(),
        }),
        family: outcome.family.as_ref().map(|family| FamilyMember {
            family: &family.id,
            jti: &outcome.claims.jti,
            exp: outcome.claims.exp,
            until: family.until,
            joining: family.joining,
        }),
        successor: refresh_id.as_deref(),
        opaque: minted.opaque_id.as_deref().map(|id| (id, &outcome.claims)),
        signed_in: outcome
            .signed_in
            .filter(|_| gatehouse_core::subject::is_user_subject(&outcome.claims.sub))
            .map(|at| (outcome.claims.sub.as_str(), at)),
    };
    let nothing_to_write =
        issue.spend.is_none() && issue.family.is_none() && issue.opaque.is_none();
    if !nothing_to_write {
        let issued = match store.issue(name, &issue).await {
            Ok(issued) => issued,
            Err(e) => {
                // No answer: if this attempt spent the token, what it minted is valid.
                let (Some(spend), StoreError::Unavailable(_)) = (&outcome.spend, &e) else {
                    return Err(e.into());
                };
                let unknown = Unanswered {
                    kind: spend.kind,
                    id: spend.id.clone(),
                    attempt: outcome.claims.jti.clone(),
                    until: spend.until,
                    family: spend.family.clone(),
                };
                if !unknown.went_through(services, name).await {
                    return Err(e.into());
                }
                gatehouse_store::Issued::Done
            }
        };
        // Spent already: a replay, a race lost, or the retry of an answer lost to an outage
        // that the server which lost it has not recorded yet (it asks the moment the store is
        // back, as this request did). A moment later, once more, before calling it a replay.
        let issued = if issued == gatehouse_store::Issued::Spent {
            tokio::time::sleep(unanswered::RECHECK_AFTER).await;
            store.issue(name, &issue).await?
        } else {
            issued
        };
        match issued {
            gatehouse_store::Issued::Done => {}
            gatehouse_store::Issued::Spent => {
                return Err(spent_again(services, name, &outcome).await);
            }
            gatehouse_store::Issued::Revoked => return Err(revoked(&outcome)),
            // Its grant expired, or the store lost it: refused as the store's record of the
            // token would have been.
            gatehouse_store::Issued::Unknown => {
                let what = presented(&outcome);
                return Err(OAuthError::invalid_grant(format!("unknown or expired {what}")).into());
            }
            gatehouse_store::Issued::SignedOut => {
                return Err(OAuthError::invalid_grant(
                    "the sign-in this grant came of has been ended: the user was signed out everywhere",
                )
                .into());
            }
        }
    }
    body.refresh_token = refresh;
    if let Some(mut id) = outcome.id_token {
        id.at_hash = Some(at_hash(&minted.token, tenant.config.signing_algorithm));
        body.id_token = Some(mint::id_token(tenant, &id)?);
    }
    Ok(body)
}

/// A code or refresh token presented again revokes everything its grant issued (RFC 6749
/// sections 4.1.2 and 10.4); a device code presented again is simply refused.
async fn spent_again(services: &Services, tenant: &str, outcome: &Outcome) -> Error {
    let kind = outcome.spend.as_ref().map(|s| s.kind);
    let client = &outcome.claims.client_id;
    let message = match kind {
        Some(RecordKind::AuthorizationCode) => {
            tracing::warn!(
                tenant,
                client,
                "authorization code replayed; its tokens are revoked"
            );
            "the authorization code was already used; the tokens it issued are revoked"
        }
        Some(RecordKind::RefreshToken) => {
            tracing::warn!(tenant, client, "refresh token reused; its grant is revoked");
            "the refresh token was already used; every token of its grant is now revoked"
        }
        _ => return OAuthError::invalid_grant("the device code was already used").into(),
    };
    if let Some(family) = &outcome.family
        && let Err(e) = family::revoke(services.store(), tenant, &family.id, family.until).await
    {
        return e;
    }
    OAuthError::invalid_grant(message).into()
}

fn revoked(outcome: &Outcome) -> Error {
    OAuthError::invalid_grant(format!("the {} was revoked", presented(outcome))).into()
}

/// What was presented to join an existing family: a code, or else a refresh token.
fn presented(outcome: &Outcome) -> &'static str {
    match outcome.spend.as_ref().map(|s| s.kind) {
        Some(RecordKind::AuthorizationCode) => "authorization code",
        _ => "refresh token",
    }
}

#[cfg(test)]
mod tests;
