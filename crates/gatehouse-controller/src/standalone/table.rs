//! The kubectl-like table standalone prints when the status of what it loaded changes, with
//! every problem spelled out below it.

use gatehouse_crd::condition::{ConditionStatus, types};
use gatehouse_crd::{OAuthClientStatus, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use std::collections::HashMap;

/// (status, reason, message) of the condition `type_`.
fn condition<'a>(conditions: &'a [Condition], type_: &str) -> (ConditionStatus, &'a str, &'a str) {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map_or((ConditionStatus::Unknown, "", ""), |c| {
            (
                ConditionStatus::parse(&c.status),
                c.reason.as_str(),
                c.message.as_str(),
            )
        })
}

fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(cell, width)| {
                    let pad = width.saturating_sub(cell.chars().count());
                    format!("{cell}{}", " ".repeat(pad))
                })
                .collect::<Vec<_>>()
                .join("   ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Client statuses by (namespace, name), with their tenant.
pub type ClientStatuses = HashMap<(String, String), (String, OAuthClientStatus)>;

/// Tenant statuses by name.
pub type TenantStatuses = HashMap<String, TenantStatus>;

#[must_use]
pub fn render(tenants: &TenantStatuses, clients: &ClientStatuses) -> String {
    let mut out = String::new();
    let mut problems = Vec::new();
    let mut rows = vec![
        ["TENANT", "ISSUER", "CLIENTS", "READY", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    let mut names: Vec<&String> = tenants.keys().collect();
    names.sort();
    for name in names {
        let s = &tenants[name];
        let (ready, reason, message) = condition(&s.conditions, types::READY);
        if ready != ConditionStatus::True {
            problems.push(format!("Tenant {name}: {reason}: {message}"));
        }
        let (users, users_reason, users_message) = condition(&s.conditions, types::USERS_LOADED);
        if users == ConditionStatus::False {
            problems.push(format!("Tenant {name}: {users_reason}: {users_message}"));
        }
        rows.push(vec![
            name.clone(),
            s.issuer.clone().unwrap_or_else(|| "-".into()),
            s.clients.map_or_else(|| "-".into(), |c| c.to_string()),
            ready.to_string(),
            reason.into(),
        ]);
    }
    out.push_str(&columns(&rows));
    out.push_str("\n\n");
    let mut rows = vec![
        [
            "OAUTHCLIENT",
            "TENANT",
            "CLIENT-ID",
            "GRANTS",
            "ACCEPTED",
            "READY",
            "REASON",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut keys: Vec<&(String, String)> = clients.keys().collect();
    keys.sort();
    for key in keys {
        let (tenant, s) = &clients[key];
        let (accepted, a_reason, a_message) = condition(&s.conditions, types::ACCEPTED);
        let (ready, r_reason, r_message) = condition(&s.conditions, types::READY);
        let reason = if accepted == ConditionStatus::True {
            r_reason
        } else {
            a_reason
        };
        if accepted != ConditionStatus::True {
            problems.push(format!(
                "OAuthClient {}/{}: {a_reason}: {a_message}",
                key.0, key.1
            ));
        } else if ready != ConditionStatus::True {
            problems.push(format!(
                "OAuthClient {}/{}: {r_reason}: {r_message}",
                key.0, key.1
            ));
        }
        let grants = if s.grant_types.is_empty() {
            "-".to_string()
        } else {
            s.grant_types
                .iter()
                .map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push(vec![
            format!("{}/{}", key.0, key.1),
            tenant.clone(),
            s.client_id.clone().unwrap_or_default(),
            grants,
            accepted.to_string(),
            ready.to_string(),
            reason.into(),
        ]);
    }
    out.push_str(&columns(&rows));
    if !problems.is_empty() {
        out.push_str("\n\n");
        out.push_str(&problems.join("\n"));
    }
    out.push('\n');
    out
}
