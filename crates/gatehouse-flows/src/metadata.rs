//! A tenant's public documents: RFC 8414 authorization server metadata and OpenID Connect
//! discovery, rendered once per configuration version. They name every endpoint the server
//! serves for the tenant, and only the grants the tenant enables.

use gatehouse_core::config::BUILT_IN_SCOPES;
use gatehouse_core::{ClientAuthMethod, GrantType, TenantConfig, endpoints};
use serde_json::{Value, json};

/// The two documents, as served.
pub struct Documents {
    pub oauth: String,
    pub openid: String,
}

#[must_use]
pub fn documents(config: &TenantConfig, issuer: &str) -> Documents {
    let oauth = oauth_metadata(config, issuer);
    let mut openid = oauth.clone();
    openid["subject_types_supported"] = json!(["public"]);
    openid["id_token_signing_alg_values_supported"] = json!([config.signing_algorithm.as_str()]);
    Documents {
        oauth: oauth.to_string(),
        openid: openid.to_string(),
    }
}

fn oauth_metadata(config: &TenantConfig, issuer: &str) -> Value {
    let grants: Vec<&str> = config.grant_types.iter().map(|g| g.as_str()).collect();
    // Exactly what each endpoint accepts: every method at the token and revocation endpoints
    // (a public client may revoke its own tokens, RFC 7009), confidential ones only at
    // introspection.
    let confidential = [
        ClientAuthMethod::ClientSecretBasic.as_str(),
        ClientAuthMethod::ClientSecretPost.as_str(),
        ClientAuthMethod::PrivateKeyJwt.as_str(),
    ];
    let mut token_auth_methods = confidential.to_vec();
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
        "introspection_endpoint_auth_methods_supported": confidential,
        "revocation_endpoint_auth_methods_supported": token_auth_methods,
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
