//! What a server holds for one tenant: its settings, clients, the opened signing key, the
//! verification keys and its pre-rendered public documents. Built once per configuration
//! version (see [`crate::TenantDirectory`]) and shared by every request to the tenant.

use crate::metadata;
use crate::verified_tokens::VerifiedTokens;
use gatehouse_core::grant::authorization_code::CodeKey;
use gatehouse_core::grant::refresh_token::RefreshTokenKey;
use gatehouse_core::keys::{KeyEncryptionKey, KeyState, SigningKey};
use gatehouse_core::token::VerificationKey;
use gatehouse_core::{ClientConfig, OAuthError, TenantConfig, endpoints};
use gatehouse_store::TenantBundle;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

pub struct ServedTenant {
    pub config: TenantConfig,
    pub issuer: String,
    pub clients: HashMap<String, Arc<ClientConfig>>,
    /// The active key, opened once; `None` if no usable key is published (tokens then fail
    /// with `temporarily_unavailable` until the reconcile side publishes one).
    pub signing_key: Option<SigningKey>,
    pub verification_keys: Vec<VerificationKey>,
    pub jwks: String,
    /// Origins of the clients' redirect URIs: the browser apps allowed cross-origin calls.
    pub cors_origins: HashSet<String>,
    pub oauth_metadata: String,
    pub openid_metadata: String,
    /// JWTs already verified here (introspection, userinfo).
    pub verified_tokens: VerifiedTokens,
    /// Signs and verifies the tenant's refresh tokens.
    pub refresh_tokens: RefreshTokenKey,
    /// Seals and opens the tenant's authorization codes.
    pub codes: CodeKey,
}

impl ServedTenant {
    #[must_use]
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
        let documents = metadata::documents(&bundle.config, &issuer);
        let cors_origins = bundle
            .clients
            .iter()
            .flat_map(|c| c.redirect_uris.iter())
            .filter_map(|u| origin_of(u))
            .map(str::to_string)
            .collect();
        let clients = bundle
            .clients
            .into_iter()
            .map(|c| (c.client_id.clone(), Arc::new(c)))
            .collect();
        ServedTenant {
            config: bundle.config,
            issuer,
            clients,
            signing_key,
            verification_keys,
            jwks,
            cors_origins,
            oauth_metadata: documents.oauth,
            openid_metadata: documents.openid,
            verified_tokens: VerifiedTokens::default(),
            refresh_tokens: kek.refresh_token_key(&name),
            codes: kek.code_key(&name),
        }
    }

    #[must_use]
    pub fn client(&self, id: &str) -> Option<&Arc<ClientConfig>> {
        self.clients.get(id)
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The name shown to people: the display name, else the tenant's name.
    #[must_use]
    pub fn display_name(&self) -> &str {
        self.config
            .display_name
            .as_deref()
            .unwrap_or(&self.config.name)
    }

    /// The name shown for a client: its `clientName`, else its id.
    #[must_use]
    pub fn client_display_name(&self, client_id: &str) -> String {
        self.client(client_id)
            .and_then(|c| c.client_name.clone())
            .unwrap_or_else(|| client_id.to_string())
    }

    /// The URL of one of the tenant's endpoints.
    #[must_use]
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The key that signs now, or `temporarily_unavailable` until one is published.
    ///
    /// # Errors
    /// As above.
    pub fn signing_key(&self) -> Result<&SigningKey, OAuthError> {
        self.signing_key.as_ref().ok_or_else(|| {
            OAuthError::temporarily_unavailable(format!(
                "tenant {} has no usable signing key yet",
                self.config.name
            ))
        })
    }
}

/// `scheme://host[:port]` of a URL.
#[must_use]
pub fn origin_of(url: &str) -> Option<&str> {
    let scheme_end = url.find("://")? + 3;
    let end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    Some(&url[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        assert_eq!(
            super::origin_of("https://app.example.com:8443/cb?x=1"),
            Some("https://app.example.com:8443")
        );
        assert_eq!(
            super::origin_of("http://127.0.0.1:9999"),
            Some("http://127.0.0.1:9999")
        );
        assert_eq!(super::origin_of("com.example.app:/callback"), None);
    }
}
