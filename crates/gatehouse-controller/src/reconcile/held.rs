//! What a held client keeps. A client whose spec is refused, or whose Secret or issuer keys
//! cannot be read, keeps its last valid registration so that a typo costs no tokens; but what
//! its tenant grants is the tenant's to take back at any time. A held registration is cut back
//! to what the tenant grants now, with the same rules as a current spec ([`grant`]): otherwise
//! a namespace user could break their own client on purpose and keep for ever a namespace, a
//! grant type, a scope, an audience or a trusted-issuer subject the tenant has withdrawn.

use super::ClientOutcome;
use super::client::{
    Asked, ClientInputs, ClusterIssuer, ServiceAccountView, TenantView, grant, keys_named,
    mapped_subjects, no_keys, tenant_admits,
};
use crate::issuers::IssuerKeys;
use gatehouse_core::ClientConfig;
use gatehouse_core::config::FederatedIdentity;
use gatehouse_crd::Tenant;

/// The tenant's current grants for one held client (see [`ClientOutcome::held_within`]).
#[derive(Clone, Debug)]
pub struct HeldWithin {
    tenant: Tenant,
    namespace: String,
    /// The keys of the tenant's trusted issuers, by name, as this process knows them.
    issuer_keys: Vec<(String, IssuerKeys)>,
    /// The cluster's ServiceAccount issuer, if read: a held ServiceAccount client follows its
    /// key rotation.
    cluster: Option<ClusterIssuer>,
}

impl HeldWithin {
    /// For a held client of a valid tenant; `None` for any other.
    pub(super) fn of(
        outcome: &ClientOutcome,
        namespace: &str,
        inputs: &ClientInputs<'_>,
    ) -> Option<Self> {
        outcome.held.as_ref()?;
        let TenantView::Valid(tenant) = inputs.tenant else {
            return None;
        };
        let cluster = match inputs.service_account {
            ServiceAccountView::Found {
                issuer: Some(issuer),
                ..
            } => Some(issuer.clone()),
            _ => None,
        };
        Some(HeldWithin {
            tenant: tenant.clone(),
            namespace: namespace.to_string(),
            issuer_keys: inputs.issuer_keys.to_vec(),
            cluster,
        })
    }

    /// The stored registration cut back to what the tenant grants now; `None` if the tenant
    /// grants it nothing any more (the registration goes, as a current spec's would).
    #[must_use]
    pub fn clamp(&self, stored: &ClientConfig) -> Option<ClientConfig> {
        let tenant = &self.tenant;
        let namespace = self.namespace.as_str();
        if !tenant_admits(tenant, namespace) {
            return None;
        }
        let asked = Asked {
            grant_types: &stored.grant_types,
            redirect_uris: &stored.redirect_uris,
            post_logout_redirect_uris: &stored.post_logout_redirect_uris,
            scopes: &stored.scopes,
            audiences: &stored.audiences,
        };
        let (granted, _) = grant(tenant, namespace, &stored.client_id, &asked).ok()?;
        let mut config = stored.clone();
        config.grant_types = granted.grant_types;
        config.redirect_uris = granted.redirect_uris;
        config.post_logout_redirect_uris = granted.post_logout_redirect_uris;
        config.scopes = granted.scopes;
        config.audiences = granted.audiences;
        config.may_assert = granted.may_assert;
        if let Some(federated) = &stored.federated {
            // Unbound, it would fall back on whatever else it can sign in with (its own
            // `jwks`): a method a current spec bound to an issuer never gets. It goes, as a
            // current spec's registration would.
            config.federated = Some(self.rebind(federated, &stored.client_id)?);
        }
        if let (Some(workload), Some(cluster)) = (config.workload.as_mut(), &self.cluster)
            && workload.issuer == cluster.issuer
        {
            workload.jwks.clone_from(&cluster.jwks);
        }
        Some(config)
    }

    /// A stored federated identity as the tenant maps it now: the subjects the same trusted
    /// issuer (same name, same URL) still maps to the client, with that issuer's keys as last
    /// read (the stored ones while this process has read none, within an earlier read's grace
    /// period); `None` once no subject is mapped or the issuer is gone.
    fn rebind(&self, stored: &FederatedIdentity, client_id: &str) -> Option<FederatedIdentity> {
        let spec = self
            .tenant
            .spec
            .trusted_issuers
            .iter()
            .find(|spec| spec.name == stored.name && spec.issuer == stored.issuer)?;
        let subjects = mapped_subjects(spec, &self.namespace, client_id);
        if subjects.is_empty() {
            return None;
        }
        let jwks = match keys_named(&self.issuer_keys, &spec.name) {
            Some(IssuerKeys::Current { jwks, .. }) => jwks.clone(),
            Some(IssuerKeys::Held { .. }) => stored.jwks.clone(),
            Some(IssuerKeys::Missing { .. }) | None => no_keys(),
        };
        Some(FederatedIdentity {
            name: spec.name.clone(),
            issuer: stored.issuer.clone(),
            subjects,
            jwks,
        })
    }
}
