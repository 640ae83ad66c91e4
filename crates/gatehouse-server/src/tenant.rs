//! What a server holds for one tenant: its settings, clients, the opened signing key, the
//! verification keys and its pre-rendered public documents.

use gatehouse_core::config::BUILT_IN_SCOPES;
use gatehouse_core::keys::{KeyEncryptionKey, KeyState, SigningKey};
use gatehouse_core::token::VerificationKey;
use gatehouse_core::{ClientAuthMethod, ClientConfig, GrantType, TenantConfig, endpoints};
use gatehouse_store::TenantBundle;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Grants this server can carry out at its token endpoint. A tenant's metadata advertises the
/// intersection with what the tenant enables.
pub const IMPLEMENTED_GRANTS: [GrantType; 7] = [
    GrantType::DeviceCode,
    GrantType::JwtBearer,
    GrantType::AuthorizationCode,
    GrantType::Implicit,
    GrantType::ClientCredentials,
    GrantType::Password,
    GrantType::RefreshToken,
];

pub struct TenantRuntime {
    pub config: TenantConfig,
    pub issuer: String,
    pub clients: HashMap<String, Arc<ClientConfig>>,
    /// The active key, opened once; `None` if no usable key is published (tokens then fail
    /// with `temporarily_unavailable` until the reconcile side publishes one).
    pub signing_key: Option<SigningKey>,
    pub verification_keys: Vec<VerificationKey>,
    pub jwks: String,
    /// Origins of the clients' redirect URIs: the browser apps allowed cross-origin calls.
    pub cors_origins: std::collections::HashSet<String>,
    pub oauth_metadata: String,
    pub openid_metadata: String,
    /// JWTs already verified here (introspection, userinfo).
    pub verified_tokens: crate::verified::VerifiedTokens,
}

impl TenantRuntime {
    pub fn build(bundle: TenantBundle, public_url: &str, kek: &KeyEncryptionKey) -> Self {
        let name = bundle.config.name.clone();
        let issuer = endpoints::issuer(public_url, &name);
        let signing_key = bundle
            .keys
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .find_map(|k| match SigningKey::open(&name, k, kek) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::error!(tenant = %name, kid = %k.kid, error = %e, "cannot open the tenant's active signing key");
                    None
                }
            });
        let verification_keys = bundle
            .keys
            .iter()
            .filter_map(VerificationKey::from_record)
            .collect();
        let jwks = json!({"keys": bundle.keys.iter().map(|k| &k.public_jwk).collect::<Vec<_>>()})
            .to_string();
        let oauth = metadata(&bundle.config, &issuer);
        let mut openid = oauth.clone();
        openid["subject_types_supported"] = json!(["public"]);
        openid["id_token_signing_alg_values_supported"] =
            json!([bundle.config.signing_algorithm.as_str()]);
        let cors_origins = bundle
            .clients
            .iter()
            .flat_map(|c| c.redirect_uris.iter())
            .filter_map(|u| crate::cors::origin_of(u))
            .map(str::to_string)
            .collect();
        let clients = bundle
            .clients
            .into_iter()
            .map(|c| (c.client_id.clone(), Arc::new(c)))
            .collect();
        TenantRuntime {
            config: bundle.config,
            issuer,
            clients,
            signing_key,
            verification_keys,
            jwks,
            cors_origins,
            oauth_metadata: oauth.to_string(),
            openid_metadata: openid.to_string(),
            verified_tokens: Default::default(),
        }
    }

    pub fn client(&self, id: &str) -> Option<&Arc<ClientConfig>> {
        self.clients.get(id)
    }
}

/// RFC 8414 metadata: every endpoint this server serves for the tenant, and only the grants
/// the tenant enables.
fn metadata(config: &TenantConfig, issuer: &str) -> Value {
    let grants: Vec<&str> = config
        .grant_types
        .iter()
        .filter(|g| IMPLEMENTED_GRANTS.contains(g))
        .map(|g| g.as_str())
        .collect();
    let auth_methods = [
        ClientAuthMethod::ClientSecretBasic.as_str(),
        ClientAuthMethod::ClientSecretPost.as_str(),
    ];
    let mut token_auth_methods = auth_methods.to_vec();
    token_auth_methods.push(ClientAuthMethod::PrivateKeyJwt.as_str());
    token_auth_methods.push(ClientAuthMethod::None.as_str());
    let mut scopes: Vec<&str> = BUILT_IN_SCOPES.to_vec();
    scopes.extend(config.scopes.iter().map(|s| s.name.as_str()));
    let mut response_types = Vec::new();
    if config.enables(GrantType::AuthorizationCode) {
        response_types.push("code");
    }
    if config.enables(GrantType::Implicit) {
        response_types.push("token");
    }
    let at = |path: &str| format!("{issuer}{path}");
    let mut doc = json!({
        "issuer": issuer,
        "token_endpoint": at(endpoints::TOKEN),
        "jwks_uri": at(endpoints::JWKS),
        "introspection_endpoint": at(endpoints::INTROSPECTION),
        "revocation_endpoint": at(endpoints::REVOCATION),
        "userinfo_endpoint": at(endpoints::USERINFO),
        "end_session_endpoint": at(endpoints::END_SESSION),
        "grant_types_supported": grants,
        "response_types_supported": response_types,
        "token_endpoint_auth_methods_supported": token_auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": scopes,
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "azp",
                             "name", "preferred_username", "email", "email_verified", "groups"],
        "access_token_signing_alg_values_supported": [config.signing_algorithm.as_str()],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
    });
    if config.enables(GrantType::DeviceCode) {
        doc["device_authorization_endpoint"] = json!(at(endpoints::DEVICE_AUTHORIZATION));
    }
    if !response_types.is_empty() {
        doc["authorization_endpoint"] = json!(at(endpoints::AUTHORIZATION));
        doc["response_modes_supported"] = json!(["query", "fragment"]);
        doc["code_challenge_methods_supported"] = json!(["S256"]);
        doc["authorization_response_iss_parameter_supported"] = json!(true);
        doc["prompt_values_supported"] = json!(["none", "login", "consent"]);
    }
    doc
}
