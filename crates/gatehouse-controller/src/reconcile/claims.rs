//! Who holds a client id. Several OAuthClients of one tenant may ask for the same `clientId`;
//! the oldest eligible one (then the alphabetically first) holds it, so an established client
//! keeps its id when a newcomer collides with it. Eligible: a valid spec in a namespace the
//! tenant admits (a client refused for those reasons claims nothing; one refused only for its
//! grant types keeps its claim, so a client fixed later does not find its id taken).
//!
//! The index is kept up to date object by object (the operator feeds it from its watches;
//! standalone builds it once per pass), so finding the holder looks at the claimants of one
//! id, not at every client.

use gatehouse_crd::OAuthClient;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A client asking for an id, in the order that decides who holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claimant {
    /// `None` sorts first (an object not yet created has no age; it never is in practice).
    pub created: Option<Timestamp>,
    pub namespace: String,
    pub name: String,
}

impl Claimant {
    #[must_use]
    pub fn of(client: &OAuthClient) -> Self {
        Claimant {
            created: client.metadata.creation_timestamp.as_ref().map(|t| t.0),
            namespace: client.namespace().unwrap_or_default(),
            name: client.name_any(),
        }
    }
}

/// `(tenant, client id)` claimed by a client.
pub type Claim = (String, String);

/// The client ids claimed in every tenant.
#[derive(Debug, Default)]
pub struct ClientIds {
    claims: BTreeMap<Claim, BTreeSet<Claimant>>,
    /// What each client (namespace, name) claims now, to move it when its spec changes.
    by_client: HashMap<(String, String), (Claim, Claimant)>,
}

impl ClientIds {
    /// The claim of `client`: its tenant and its effective client id.
    #[must_use]
    pub fn claim_of(client: &OAuthClient) -> Claim {
        let namespace = client.namespace().unwrap_or_default();
        let id = client
            .spec
            .effective_client_id(&namespace, &client.name_any());
        (client.spec.tenant_ref.clone(), id)
    }

    /// Records (or moves) `client`'s claim.
    pub fn insert(&mut self, client: &OAuthClient) {
        let claimant = Claimant::of(client);
        let claim = Self::claim_of(client);
        let key = (claimant.namespace.clone(), claimant.name.clone());
        if let Some((old, old_claimant)) = self.by_client.get(&key) {
            if *old == claim && *old_claimant == claimant {
                return;
            }
            let (old, old_claimant) = (old.clone(), old_claimant.clone());
            self.forget(&old, &old_claimant);
        }
        self.claims
            .entry(claim.clone())
            .or_default()
            .insert(claimant.clone());
        self.by_client.insert(key, (claim, claimant));
    }

    /// Drops the claim of the client `namespace/name`.
    pub fn remove(&mut self, namespace: &str, name: &str) {
        if let Some((claim, claimant)) = self
            .by_client
            .remove(&(namespace.to_string(), name.to_string()))
        {
            self.forget(&claim, &claimant);
        }
    }

    fn forget(&mut self, claim: &Claim, claimant: &Claimant) {
        if let Some(set) = self.claims.get_mut(claim) {
            set.remove(claimant);
            if set.is_empty() {
                self.claims.remove(claim);
            }
        }
    }

    /// Everyone claiming `(tenant, id)`, oldest first.
    pub fn claimants(&self, tenant: &str, id: &str) -> impl Iterator<Item = &Claimant> {
        self.claims
            .get(&(tenant.to_string(), id.to_string()))
            .into_iter()
            .flatten()
    }

    /// Who holds `(tenant, id)`: the first claimant `eligible` accepts.
    pub fn holder(
        &self,
        tenant: &str,
        id: &str,
        mut eligible: impl FnMut(&Claimant) -> bool,
    ) -> Option<&Claimant> {
        self.claimants(tenant, id).find(|c| eligible(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(name: &str, created: i64, id: &str) -> OAuthClient {
        serde_json::from_value(json!({
            "apiVersion": "gatehouse.dev/v1alpha1", "kind": "OAuthClient",
            "metadata": {"name": name, "namespace": "acme",
                         "creationTimestamp": Timestamp::from_second(created).unwrap().to_string()},
            "spec": {"tenantRef": "acme", "clientId": id, "grantTypes": ["client_credentials"]}
        }))
        .unwrap()
    }

    #[test]
    fn the_oldest_eligible_claimant_holds_an_id_and_claims_move_with_their_spec() {
        let mut ids = ClientIds::default();
        ids.insert(&client("newer", 20, "shared"));
        ids.insert(&client("older", 10, "shared"));
        ids.insert(&client("other", 5, "own"));
        let names = |ids: &ClientIds| {
            ids.claimants("acme", "shared")
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&ids), ["older", "newer"]);
        assert_eq!(
            ids.holder("acme", "shared", |_| true).unwrap().name,
            "older"
        );
        assert_eq!(
            ids.holder("acme", "shared", |c| c.name != "older")
                .unwrap()
                .name,
            "newer",
            "an ineligible claimant holds nothing"
        );
        // The older one changes its id: the newer one is alone.
        ids.insert(&client("older", 10, "renamed"));
        assert_eq!(names(&ids), ["newer"]);
        ids.insert(&client("older", 10, "renamed"));
        assert_eq!(ids.claimants("acme", "renamed").count(), 1, "idempotent");
        ids.remove("acme", "newer");
        assert_eq!(names(&ids), Vec::<String>::new());
        assert!(ids.holder("acme", "shared", |_| true).is_none());
    }
}
