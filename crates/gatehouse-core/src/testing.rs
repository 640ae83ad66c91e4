//! Fixtures for the core's unit tests.

use crate::config::{ClientConfig, ScopeConfig, TenantConfig};
use crate::model::{ClientAuthMethod, GrantType, SigningAlgorithm, TokenFormat};

pub fn tenant() -> TenantConfig {
    TenantConfig {
        name: "acme".into(),
        display_name: Some("Acme".into()),
        grant_types: vec![GrantType::ClientCredentials, GrantType::RefreshToken],
        access_token_format: TokenFormat::Jwt,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86400,
        refresh_token_rotation: true,
        authorization_code_ttl_secs: 60,
        pkce_required: true,
        signing_algorithm: SigningAlgorithm::ES256,
        scopes: vec![
            ScopeConfig {
                name: "billing.read".into(),
                description: None,
            },
            ScopeConfig {
                name: "billing.write".into(),
                description: None,
            },
        ],
        users: vec![],
        review_service_account_tokens: false,
    }
}

pub fn client() -> ClientConfig {
    ClientConfig {
        client_id: "acme-billing".into(),
        source: "acme/billing".into(),
        client_name: None,
        public: false,
        grant_types: vec![GrantType::ClientCredentials],
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        scopes: vec!["billing.read".into(), "billing.write".into()],
        audiences: vec![],
        token_endpoint_auth_method: ClientAuthMethod::ClientSecretBasic,
        secret_hash: None,
        jwks: None,
        may_assert: crate::config::AssertableSubjects::default(),
        incarnation: String::new(),
        workload: None,
        federated: None,
        extra: std::collections::BTreeMap::default(),
    }
}
