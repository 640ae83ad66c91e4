//! Fixtures for the flow tests: a tenant as served (with a real signing key), a store, and a
//! clock that moves only when a test moves it.

use crate::{ServedTenant, Services};
use gatehouse_core::clock::{Clock, ManualClock, SystemClock};
use gatehouse_core::config::{ScopeConfig, UserConfig};
use gatehouse_core::keys::{KeyEncryptionKey, KeyState, generate_signing_key};
use gatehouse_core::secret::{HashCost, hash_secret_with};
use gatehouse_core::{
    ClientAuthMethod, ClientConfig, GrantType, SigningAlgorithm, TenantConfig, TokenFormat,
};
use gatehouse_store::{MemoryStore, RedisStore, Store, TenantBundle};
use std::sync::Arc;

pub const ISSUER_BASE: &str = "https://auth.example.com";
pub const PORTAL_SECRET: &str = "portal-secret";
pub const REDIRECT: &str = "https://app.example.com/cb";
pub const ALICE_PASSWORD: &str = "wonderland";
/// The demo service key of `examples/jwt-bearer-service.yaml` (`tests/fixtures`).
pub const REPORTER_KEY: &str = include_str!("../../../tests/fixtures/reporter-es256.pem");

/// A flow test's world: the services (on `clock`), the tenant, and the clock.
pub struct World {
    pub services: Services,
    pub tenant: ServedTenant,
    pub clock: Arc<ManualClock>,
    /// Kept alive for Redis-backed worlds.
    pub redis: Option<gatehouse_testkit::RedisServer>,
    pub cluster: Option<gatehouse_testkit::RedisCluster>,
}

fn tenant_config() -> TenantConfig {
    TenantConfig {
        name: "acme".into(),
        display_name: Some("Acme".into()),
        grant_types: GrantType::ALL.to_vec(),
        access_token_format: TokenFormat::Jwt,
        access_token_ttl_secs: 900,
        refresh_token_ttl_secs: 86_400,
        refresh_token_rotation: true,
        authorization_code_ttl_secs: 60,
        pkce_required: true,
        signing_algorithm: SigningAlgorithm::ES256,
        scopes: vec![ScopeConfig {
            name: "billing.read".into(),
            description: Some("Read invoices".into()),
        }],
        users: vec![UserConfig {
            username: "alice".into(),
            password_hash: hash_secret_with(ALICE_PASSWORD, HashCost::RandomKey).unwrap(),
            email: Some("alice@example.com".into()),
            name: Some("Alice Liddell".into()),
            groups: vec!["finance".into()],
        }],
        review_service_account_tokens: false,
    }
}

fn client(id: &str, grants: &[GrantType]) -> ClientConfig {
    ClientConfig {
        client_id: id.into(),
        source: format!("acme/{id}"),
        client_name: Some(format!("{id} app")),
        public: false,
        grant_types: grants.to_vec(),
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![],
        scopes: vec![
            "openid".into(),
            "profile".into(),
            "email".into(),
            "offline_access".into(),
            "billing.read".into(),
        ],
        audiences: vec![],
        token_endpoint_auth_method: ClientAuthMethod::ClientSecretPost,
        secret_hash: Some(hash_secret_with(PORTAL_SECRET, HashCost::RandomKey).unwrap()),
        jwks: None,
        may_assert: gatehouse_core::config::AssertableSubjects::default(),
        incarnation: "i1".into(),
        workload: None,
        federated: None,
        extra: std::collections::BTreeMap::default(),
    }
}

/// The tenant `acme` with every grant, user alice, and clients: `portal` (code, refresh,
/// password), `tv` (device code, refresh), `reporter` (`private_key_jwt`, jwt-bearer, may assert
/// alice) and
/// `billing` (client credentials only) and `legacy` (public, implicit).
pub fn bundle() -> (TenantBundle, KeyEncryptionKey) {
    let kek = KeyEncryptionKey::generate().unwrap().0;
    let keys = vec![
        generate_signing_key("acme", SigningAlgorithm::ES256, KeyState::Active, &kek, 1).unwrap(),
    ];
    let portal = client(
        "portal",
        &[
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::Password,
        ],
    );
    let tv = client("tv", &[GrantType::DeviceCode, GrantType::RefreshToken]);
    let mut reporter = client("reporter", &[GrantType::JwtBearer]);
    reporter.token_endpoint_auth_method = ClientAuthMethod::PrivateKeyJwt;
    reporter.secret_hash = None;
    // As a Tenant's `spec.subjectAssertions` would grant it: alice only.
    reporter.may_assert.users = vec!["alice".into()];
    reporter.jwks = Some(serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "reporter-2026", "alg": "ES256", "use": "sig",
        "x": "pDPyG0M9IzX9fXd4b9UPwTsP6WCVsIkEgBA63fdjAzQ",
        "y": "0MjEgT0Z6kBLTOEsGrtgvUfaSZzllDmhPdmTwEMGJp0"}]}));
    let billing = client("billing", &[GrantType::ClientCredentials]);
    let mut legacy = client("legacy", &[GrantType::Implicit]);
    legacy.public = true;
    legacy.token_endpoint_auth_method = ClientAuthMethod::None;
    legacy.secret_hash = None;
    let bundle = TenantBundle {
        config: tenant_config(),
        keys,
        clients: vec![portal, tv, reporter, billing, legacy],
    };
    (bundle, kek)
}

fn world_on(
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    redis: Option<gatehouse_testkit::RedisServer>,
) -> World {
    let (bundle, kek) = bundle();
    let tenant = ServedTenant::build(bundle, ISSUER_BASE, &kek);
    let services = Services::new(store, clock.clone(), gatehouse_core::random::system());
    World {
        services,
        tenant,
        clock,
        redis,
        cluster: None,
    }
}

/// On the memory store, whose expiry follows the test's clock.
pub fn memory_world() -> World {
    let clock = ManualClock::at(1_700_000_000);
    let store = Arc::new(MemoryStore::with_clock(clock.clone()));
    world_on(store, clock, None)
}

/// On a real `redis-server`. Redis expires keys by the wall clock, so the test's clock starts
/// at the real time.
pub async fn redis_world() -> World {
    let redis = gatehouse_testkit::RedisServer::start();
    let store = Arc::new(RedisStore::connect(&redis.url(), None).await.unwrap());
    let clock = ManualClock::at(SystemClock.now());
    world_on(store, clock, Some(redis))
}

/// On a real 3-primary Redis Cluster.
pub async fn cluster_world() -> World {
    let cluster = gatehouse_testkit::RedisCluster::start(3);
    let store = Arc::new(RedisStore::connect(&cluster.url(), None).await.unwrap());
    let clock = ManualClock::at(SystemClock.now());
    let mut world = world_on(store, clock, None);
    world.cluster = Some(cluster);
    world
}

/// On a real `redis-server` behind a proxy that can cut the connection at a chosen command.
pub async fn proxied_redis_world() -> (World, gatehouse_testkit::CuttingProxy) {
    let redis = gatehouse_testkit::RedisServer::start();
    let proxy = gatehouse_testkit::CuttingProxy::start(redis.port);
    let store = Arc::new(RedisStore::connect(&proxy.url(), None).await.unwrap());
    let clock = ManualClock::at(SystemClock.now());
    (world_on(store, clock, Some(redis)), proxy)
}

impl World {
    pub fn client(&self, id: &str) -> Arc<ClientConfig> {
        self.tenant.client(id).unwrap().clone()
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Whether the world's single Redis holds `key`.
    pub fn redis_has(&self, key: &str) -> bool {
        self.redis.as_ref().is_some_and(|r| {
            gatehouse_testkit::redis_command(r.port, &["EXISTS", key]).is_ok_and(|v| v == ":1")
        })
    }
}

/// Parameters from pairs.
pub fn params(pairs: &[(&str, &str)]) -> crate::Params {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    crate::Params::parse(body.as_bytes()).unwrap()
}

/// The reporter's signing key (kid `reporter-2026`).
pub fn reporter_key() -> jsonwebtoken::EncodingKey {
    use base64::Engine;
    let body: String = REPORTER_KEY
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    jsonwebtoken::EncodingKey::from_ec_der(&der)
}

/// An assertion signed with the reporter's key.
pub fn reporter_assertion(sub: &str, aud: &str, now: u64, jti: &str) -> String {
    let key = reporter_key();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("reporter-2026".into());
    let claims = serde_json::json!({
        "iss": "reporter", "sub": sub, "aud": aud,
        "iat": now, "exp": now + 60, "jti": jti,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}
