//! Storage for Gatehouse: one [`Store`] trait, an in-memory and a Redis implementation.
//!
//! Two kinds of data live here. Configuration (tenants, clients, signing keys) is written only
//! by the reconcile side and read by servers into an in-process snapshot; each write bumps the
//! tenant's version so servers know what to reload. Runtime state (opaque tokens, revocations)
//! is written by servers and always carries a TTL, so nothing outlives its usefulness.
//!
//! Keys are laid out for Redis Cluster: everything of one tenant shares the hash tag
//! `{t:<tenant>}`, so every multi-key operation stays in one slot.
#![warn(missing_docs)]

mod memory;
pub mod records;
mod redis_store;
mod sentinel;
pub mod timed;

pub use memory::MemoryStore;
pub use redis_store::RedisStore;

use async_trait::async_trait;
use gatehouse_core::keys::SigningKeyRecord;
use gatehouse_core::token::AccessTokenClaims;
use gatehouse_core::{ClientConfig, TenantConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time. Callers answer 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data did not decode; a bug or a foreign writer, never the caller's input.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt {
        /// Where it was read.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
    /// The store URL cannot be used.
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, its password replaced.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store is set up so that it may drop what replay protection rests on (it evicts
    /// keys under memory pressure).
    #[error("unsafe store settings: {0}")]
    Unsafe(String),
    /// A record could not be encoded for storage; a bug, never the caller's input.
    #[error("cannot encode a {kind:?} record: {reason}")]
    Encode {
        /// The kind of record.
        kind: RecordKind,
        /// What the encoder said.
        reason: String,
    },
}

/// Everything a server needs to serve one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct TenantBundle {
    /// The tenant's settings.
    pub config: TenantConfig,
    /// Its signing keys (sealed).
    pub keys: Vec<SigningKeyRecord>,
    /// Its clients.
    pub clients: Vec<ClientConfig>,
}

/// A tenant's settings and keys without its clients: what publishing the tenant compares
/// against (its clients are published one by one).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantSettings {
    /// The tenant's settings, if it has any.
    pub config: Option<TenantConfig>,
    /// Its signing keys (sealed).
    pub keys: Vec<SigningKeyRecord>,
}

/// Kinds of short-lived runtime records. Each kind has its own key space; ids are digests or
/// random values, never the secrets themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A refresh token's record (under the token's digest).
    RefreshToken,
    /// An authorization code's record (under the code's digest).
    AuthorizationCode,
    /// A sign-in waiting for the person.
    AuthorizationRequest,
    /// A signed-in browser (under the cookie's digest).
    Session,
    /// What a person allowed a client.
    Consent,
    /// A device authorization (under the device code's digest).
    DeviceCode,
    /// A user code, pointing at its device authorization.
    UserCode,
    /// A spent assertion `jti`.
    AssertionJti,
    /// When an operator last unlocked a username's sign-in.
    Unlock,
}

impl RecordKind {
    /// Short key prefix in Redis.
    pub fn prefix(self) -> &'static str {
        match self {
            RecordKind::RefreshToken => "rt",
            RecordKind::AuthorizationCode => "code",
            RecordKind::AuthorizationRequest => "ar",
            RecordKind::Session => "sess",
            RecordKind::Consent => "consent",
            RecordKind::DeviceCode => "dc",
            RecordKind::UserCode => "uc",
            RecordKind::AssertionJti => "ajti",
            RecordKind::Unlock => "unlock",
        }
    }
}

/// A code, refresh token or device code presented to the token endpoint, spent by
/// [`Store::issue`]: marked used until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spend<'a> {
    /// What was presented.
    pub kind: RecordKind,
    /// Its record's id (the digest of the presented value).
    pub id: &'a str,
    /// How long the mark is kept (so a replay is recognised until then).
    pub until: u64,
    /// What this spending writes as its mark: an id of the attempt (the access token's `jti`),
    /// by which a server that lost the store's answer learns whether its attempt went through
    /// ([`Store::spent_by`]).
    pub attempt: &'a str,
    /// The grant family the presented code or refresh token carries, authenticated with it
    /// (a refresh token's, a sealed code's), so that a replay names the same family: the mark
    /// is then kept with the family, where issuing reads it with the family's state in one
    /// step. `None` for what carries no family of its own (a device code, a code from before
    /// sealed codes). When the issue joins a family too, it is this one.
    pub family: Option<&'a str>,
}

impl Spend<'_> {
    /// The attempt of a spending that issues nothing (a code whose exchange was refused is
    /// spent all the same): it never counts as the retry of a lost answer, so a mark found is
    /// a replay. No access token's `jti` takes this value.
    pub const REFUSED: &'static str = "refused";
}

/// An access token joining its grant family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FamilyMember<'a> {
    /// The family (all tokens of one authorization).
    pub family: &'a str,
    /// The access token's `jti` and `exp`.
    pub jti: &'a str,
    /// The access token's `exp` (its revocation is kept until then).
    pub exp: u64,
    /// How long the family must be remembered: the same for every token of a refresh-token
    /// family (its lifetime does not grow with rotation), later for a later code's family.
    pub until: u64,
    /// Whether the family exists already, and whose lifetime counts.
    pub joining: Joining,
}

/// How an access token joins its family (see [`FamilyMember`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joining {
    /// The grant starts the family (a password sign-in, a device approval, a code from before
    /// sealed codes): remembered from now until `until`.
    Starts,
    /// The family was started before its first token ([`Store::start_family`], a sealed
    /// code's): it must exist, and is remembered from now until `until` (longer than the
    /// code it was started for).
    Started,
    /// A refresh token's rotation: the family must exist, and keeps its lifetime.
    Existing,
}

impl Joining {
    /// Whether the family must exist already: one the store does not know (expired, or lost
    /// with the store's data) refuses the issue ([`Issued::Unknown`]).
    #[must_use]
    pub fn must_exist(self) -> bool {
        self != Joining::Starts
    }
}

/// What issuing tokens writes (see [`Store::issue`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Issue<'a> {
    /// The presented code, refresh token or device code to spend.
    pub spend: Option<Spend<'a>>,
    /// The family the access token joins; a revoked family refuses it.
    pub family: Option<FamilyMember<'a>>,
    /// The id of the refresh token issued (it carries its own record, so nothing is written
    /// for it): a retry after an unanswered spending retires it.
    pub successor: Option<&'a str>,
    /// An opaque access token: (id, claims).
    pub opaque: Option<(&'a str, &'a AccessTokenClaims)>,
    /// The user a grant is for and when they signed in: refused ([`Issued::SignedOut`]) when
    /// the user has been signed out since ([`Store::sign_out_user`]).
    pub signed_in: Option<(&'a str, u64)>,
}

impl Issue<'_> {
    /// How long the refresh token of a lost answer stays retired after a retry (see
    /// [`Store::mark_unanswered`]): as long as its family, the longest it could live, and no
    /// shorter than the spent token's mark.
    #[must_use]
    pub fn retired_until(&self) -> u64 {
        let spent = self.spend.map_or(0, |s| s.until);
        self.family.map_or(spent, |f| f.until.max(spent))
    }
}

/// How [`Store::issue`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Issued {
    /// Everything was written.
    Done,
    /// The presented code or token was spent already: nothing was written.
    Spent,
    /// The family is revoked: nothing was written.
    Revoked,
    /// The user was signed out everywhere since the sign-in the grant came of: nothing was
    /// written.
    SignedOut,
    /// The family to join ([`FamilyMember::existing`]) is not known (expired, or lost with
    /// the store's data): nothing was written.
    Unknown,
}

/// A tenant's configuration version; bumped on every configuration write of the tenant.
pub type Version = u64;

/// Where tenants, clients, keys and runtime state are kept. Implementations keep one contract
/// (`tests/contract/suite.rs`): every method is atomic on its own, and `mark_used` is true for
/// exactly one caller however many race.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // Configuration, written by the reconcile core's publisher.

    /// Creates or replaces a tenant's settings.
    async fn put_tenant(&self, config: &TenantConfig) -> Result<(), StoreError>;
    /// Replaces a tenant's signing keys.
    async fn put_signing_keys(
        &self,
        tenant: &str,
        keys: &[SigningKeyRecord],
    ) -> Result<(), StoreError>;
    /// Creates or replaces a client of a tenant.
    async fn put_client(&self, tenant: &str, client: &ClientConfig) -> Result<(), StoreError>;
    /// Removes a client; removing an absent one is not an error.
    async fn delete_client(&self, tenant: &str, client_id: &str) -> Result<(), StoreError>;
    /// Removes a tenant's configuration, clients and keys; its issuer stops serving. Runtime
    /// data (tokens, sessions, codes) stays, so a tenant taken out of service by a bad edit
    /// comes back with its sessions; [`Store::purge_tenant`] removes that too.
    async fn delete_tenant(&self, tenant: &str) -> Result<(), StoreError>;
    /// Removes everything a tenant's server wrote (tokens, codes, sessions, revocations,
    /// counters), in bounded batches; returns how many entries went. For a tenant that is gone.
    async fn purge_tenant(&self, tenant: &str) -> Result<u64, StoreError>;
    /// One client's stored registration.
    async fn get_client(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<ClientConfig>, StoreError>;
    /// Every tenant with its configuration version.
    async fn tenant_versions(&self) -> Result<BTreeMap<String, Version>, StoreError>;
    /// One tenant's full configuration, or `None` if it has none.
    async fn load_tenant(&self, tenant: &str) -> Result<Option<TenantBundle>, StoreError>;
    /// One tenant's settings and keys, however many clients it has (one round trip).
    async fn tenant_settings(&self, tenant: &str) -> Result<TenantSettings, StoreError>;

    // Runtime state, written by servers.

    /// Stores the claims of an opaque access token under its digest until `claims.exp`.
    async fn put_opaque_token(
        &self,
        tenant: &str,
        id: &str,
        claims: &AccessTokenClaims,
    ) -> Result<(), StoreError>;
    /// Claims of a live opaque token.
    async fn get_opaque_token(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<AccessTokenClaims>, StoreError>;
    /// Deletes an opaque token; true if it existed.
    async fn delete_opaque_token(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
    /// Marks a JWT's `jti` revoked until `until` (unix seconds, its `exp`).
    async fn revoke_jti(&self, tenant: &str, jti: &str, until: u64) -> Result<(), StoreError>;
    /// Whether a JWT's `jti` is revoked now.
    async fn is_revoked(&self, tenant: &str, jti: &str) -> Result<bool, StoreError>;
    /// Whether an access token is revoked now: its `jti`, or the grant family it names
    /// ([`AccessTokenClaims::fam`]); one round trip. A family the store does not know is not
    /// revoked (a family outlives every token it issued, so only lost data forgets one, and
    /// that forgets `jti` revocations too).
    async fn is_token_revoked(
        &self,
        tenant: &str,
        jti: &str,
        family: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// Counts a failed sign-in under `key`, in a window of `window_secs` that starts with the
    /// first failure; returns the count so far.
    async fn record_failure(
        &self,
        tenant: &str,
        key: &str,
        window_secs: u64,
    ) -> Result<u64, StoreError>;
    /// Failures counted under `key` in its current window.
    async fn failure_count(&self, tenant: &str, key: &str) -> Result<u64, StoreError>;
    /// Forgets the failures counted under `key` (after a successful sign-in).
    async fn clear_failures(&self, tenant: &str, key: &str) -> Result<(), StoreError>;
    /// Takes back one attempt counted under `key` (never below zero, the window unchanged):
    /// attempts are counted before they are verified, so that the limit holds however many
    /// race, and one that succeeds is then no failure.
    async fn forgive_failure(&self, tenant: &str, key: &str) -> Result<(), StoreError>;

    /// Stores a short-lived record (JSON) of `kind` under `id` until `expires_at`.
    async fn put_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        json: &str,
        expires_at: u64,
    ) -> Result<(), StoreError>;
    /// A live record (one round trip; whether it was used is the business of [`Store::issue`]
    /// and [`Store::mark_used`], which decide atomically).
    async fn get_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Marks a record used until `until`; true for exactly one caller, however many race.
    async fn mark_used(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError>;
    /// Claims `id` of `kind` until `until` without a record (an assertion's `jti`); true for
    /// exactly one caller, however many race.
    async fn claim_once(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<bool, StoreError>;
    /// Deletes a record; deleting an absent one is not an error.
    async fn delete_record(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
    ) -> Result<(), StoreError>;
    /// Writes what issuing tokens writes, atomically: spends what was presented (its mark
    /// naming the refresh token issued), starts or joins the grant family, stores the opaque
    /// access token — all of it, or (when the presented code or token was spent already, or the
    /// family is revoked or unknown, or the store fails) none of it. Revocation ([`Store::revoke_family`]) and
    /// issuing never interleave: a token is either in the family when it is revoked, or refused.
    async fn issue(&self, tenant: &str, issue: &Issue<'_>) -> Result<Issued, StoreError>;
    /// Starts a grant family before anything is issued into it (an authorization code's, when
    /// the code is issued), known until `until`: its tokens then join it as
    /// [`FamilyMember::existing`], so a store that lost the family refuses them. Starting a
    /// family that exists only extends how long it is known.
    async fn start_family(&self, tenant: &str, family: &str, until: u64) -> Result<(), StoreError>;
    /// Revokes a family until `until` and, atomically with it, every access token it issued
    /// (until each one's `exp`): by a mark of its own for each token where the family lists
    /// them, through the family each names ([`Store::is_token_revoked`]) where it does not
    /// ([`FamilyLayout::Compact`]). Returns how many tokens got marks of their own.
    async fn revoke_family(
        &self,
        tenant: &str,
        family: &str,
        until: u64,
    ) -> Result<usize, StoreError>;

    /// Signs `user` out everywhere: every sign-in up to and including the second `at` is over
    /// — its sessions, and the grants and tokens that came of it — while later ones are not.
    /// Kept until `until` (when everything from before has expired anyway); of two marks the
    /// later one holds.
    async fn sign_out_user(
        &self,
        tenant: &str,
        user: &str,
        at: u64,
        until: u64,
    ) -> Result<(), StoreError>;

    /// The second up to which `user`'s sign-ins are over, if they were signed out.
    async fn signed_out_at(&self, tenant: &str, user: &str) -> Result<Option<u64>, StoreError>;

    /// Whether a grant family is known and not revoked (a refresh token of another family is
    /// dead, whatever it carries; introspection asks this, issuing decides it inside
    /// [`Store::issue`]).
    async fn is_family_live(&self, tenant: &str, family: &str) -> Result<bool, StoreError>;

    /// The attempt whose spending marked `(kind, id)` used, if it is used: a server whose
    /// [`Store::issue`] failed without an answer asks, to learn whether it went through.
    /// `family` is the spending's [`Spend::family`].
    async fn spent_by(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        family: Option<&str>,
    ) -> Result<Option<String>, StoreError>;

    /// Records that the spending of `(kind, id)` went through but its answer never reached
    /// the client (the server learned it only afterwards, and answered 503). Presenting the
    /// same code or token once more until `until` then issues again, instead of counting as a
    /// replay: the refresh token the lost answer carried is retired (presenting it later is a
    /// reuse) and the new tokens take its place. Only the server that answered 503 writes
    /// this, so two requests racing on one token still have exactly one winner.
    async fn mark_unanswered(
        &self,
        tenant: &str,
        kind: RecordKind,
        id: &str,
        until: u64,
    ) -> Result<(), StoreError>;

    /// Cheap liveness probe for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Checks the backend keeps what it is given: spent codes, used refresh tokens and
    /// assertion `jti`s are markers with a TTL, and a store that evicts them under memory
    /// pressure lets a spent code or token be used again. [`StoreError::Unsafe`] says which
    /// setting, on which node, and what to set instead.
    async fn check_settings(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Opens the store a URL names: `memory://`, `redis://host:port/db`, `rediss://...`,
/// `redis+cluster://host:port[,host:port...]` (`rediss+cluster://` with TLS), or
/// `redis+sentinel://host:port[,host:port...]/primary-name[/db]` (`rediss+sentinel://` with TLS).
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with(url, &Access::default()).await
}

/// How to get into a Redis besides its URL: credentials given apart from the URL (from a
/// Kubernetes Secret, say) so they never have to be written into one, and the CA of a
/// `rediss://` server with a private CA.
#[derive(Default)]
pub struct Access<'a> {
    /// An ACL user (Redis 6+); `default` when absent.
    pub username: Option<&'a str>,
    /// The password (of `username`, else of `default`).
    pub password: Option<&'a str>,
    /// PEM CA certificates that sign the server's certificate; trusted instead of the web's
    /// roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The Sentinels' own password (`requirepass` of a Sentinel), for `redis+sentinel://`.
    pub sentinel_password: Option<&'a str>,
    /// What grant families started from now on are written as. Not access, but given with it
    /// to every opening of a store, since only Redis has a choice.
    pub new_families: FamilyLayout,
}

/// How Redis keeps a grant family started from now on. Families already written keep their
/// layout until they expire, and every layout is read, revoked and rotated alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FamilyLayout {
    /// One hash per family of a size that does not grow with rotation: its state, the refresh
    /// token that is current, and the last spending's mark. Any other refresh token of the
    /// family is spent (refresh tokens are sealed, so one the family never issued does not
    /// open), and its access tokens name it ([`AccessTokenClaims::fam`]) so that revoking it
    /// revokes them wherever they are checked ([`Store::is_token_revoked`]).
    #[default]
    Compact,
    /// One hash per family that lists its access tokens and the marks of all its spent codes
    /// and refresh tokens: what servers of the previous version write and read. For a rolling
    /// upgrade from such a server: run every server so first, then switch to
    /// [`FamilyLayout::Compact`].
    Hash,
    /// A set of the family's tokens, with its revocation and each spent mark a key of its own:
    /// what servers from before the hash write and read. For a rolling upgrade from such a
    /// server: run every server so first, then switch to [`FamilyLayout::Hash`].
    Sets,
}

/// [`open`] with [`Access`]. Credentials already in the URL and given apart are an error, as
/// is a username without a password or a CA for a URL without TLS.
pub async fn open_with(url: &str, access: &Access<'_>) -> Result<Arc<dyn Store>, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: redact_url(url),
        reason: reason.into(),
    };
    let sentinels = sentinel::is_sentinel_url(url);
    if access.sentinel_password.is_some_and(|p| !p.is_empty()) && !sentinels {
        return Err(invalid(
            "a Sentinel password is for a Sentinel URL: redis+sentinel:// or rediss+sentinel://",
        ));
    }
    let credentials = match (
        access.username.filter(|u| !u.is_empty()),
        access.password.filter(|p| !p.is_empty()),
    ) {
        (Some(_), None) => {
            return Err(invalid(
                "an ACL username needs a password (GATEHOUSE_STORE_PASSWORD)",
            ));
        }
        (username, password) => password.map(|p| (username, p)),
    };
    if sentinels {
        // The credentials go to the primary the Sentinels name, not into the URL.
        return Ok(Arc::new(
            RedisStore::connect_sentinel(url, access)
                .await?
                .with_new_families(access.new_families),
        ));
    }
    let with_credentials;
    let url = match credentials {
        None => url,
        Some((username, password)) => {
            with_credentials = add_credentials(url, username, password)?;
            with_credentials.as_str()
        }
    };
    if url == "memory://" || url == "memory:" {
        if access.ca_pem.is_some() {
            return Err(invalid("memory:// has no TLS: a CA file is for rediss://"));
        }
        return Ok(Arc::new(MemoryStore::new()));
    }
    let tls = url.starts_with("rediss://") || url.starts_with("rediss+cluster://");
    if access.ca_pem.is_some() && !tls {
        return Err(invalid(
            "a CA file is for a TLS URL: rediss:// or rediss+cluster://",
        ));
    }
    if url.starts_with("redis://") || url.starts_with("redis+cluster://") || tls {
        return Ok(Arc::new(
            RedisStore::connect(url, access.ca_pem.as_deref())
                .await?
                .with_new_families(access.new_families),
        ));
    }
    Err(invalid(
        "expected memory://, redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://",
    ))
}

/// `scheme://host...` → `scheme://[user]:<password>@host...`, percent-encoded, on every node
/// of a cluster URL.
fn add_credentials(
    url: &str,
    username: Option<&str>,
    password: &str,
) -> Result<String, StoreError> {
    let invalid = |reason: &str| StoreError::InvalidUrl {
        url: redact_url(url),
        reason: reason.into(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
    if scheme == "memory" {
        return Err(invalid("memory:// has no password"));
    }
    if rest.contains('@') {
        return Err(invalid(
            "the URL already holds credentials; give them in one place only",
        ));
    }
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let user = username.map(encode).unwrap_or_default();
    let secret = encode(password);
    let nodes: Vec<String> = rest
        .split(',')
        .map(|n| format!("{user}:{secret}@{n}"))
        .collect();
    Ok(format!("{scheme}://{}", nodes.join(",")))
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separate_password_is_encoded_into_every_node() {
        assert_eq!(
            add_credentials("redis://r:6379/0", None, "p@ss w/rd").unwrap(),
            "redis://:p%40ss%20w%2Frd@r:6379/0"
        );
        assert_eq!(
            add_credentials("rediss+cluster://a:1,b:2", None, "x").unwrap(),
            "rediss+cluster://:x@a:1,:x@b:2"
        );
        assert_eq!(
            add_credentials("redis://r:6379/0", Some("gate house"), "pw").unwrap(),
            "redis://gate%20house:pw@r:6379/0",
            "an ACL user"
        );
        assert!(add_credentials("redis://:old@r:6379", None, "new").is_err());
        let refused = add_credentials("redis://:hunter2@r", None, "new").unwrap_err();
        assert!(!format!("{refused:?}").contains("hunter2"), "{refused:?}");
    }

    #[tokio::test]
    async fn credentials_given_apart_are_checked_before_anything_connects() {
        let refused = |url: &'static str, access: Access<'static>| async move {
            match open_with(url, &access).await {
                Err(StoreError::InvalidUrl { reason, .. }) => reason,
                other => panic!("{url}: {:?}", other.map(|_| ())),
            }
        };
        let user_only = || Access {
            username: Some("gatehouse"),
            ..Access::default()
        };
        for url in ["redis://127.0.0.1:1/0", "redis+sentinel://127.0.0.1:1/p"] {
            let reason = refused(url, user_only()).await;
            assert!(
                reason.contains("GATEHOUSE_STORE_PASSWORD"),
                "{url}: {reason}"
            );
        }
        let misplaced = Access {
            sentinel_password: Some("s3cret"),
            ..Access::default()
        };
        let reason = refused("redis://127.0.0.1:1/0", misplaced).await;
        assert!(reason.contains("Sentinel URL"), "{reason}");
        assert!(!reason.contains("s3cret"), "{reason}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("redis://:hunter2@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(super::redact_url("redis://u:p@h"), "redis://u:***@h");
        assert_eq!(super::redact_url("redis://h:6379"), "redis://h:6379");
    }
}
