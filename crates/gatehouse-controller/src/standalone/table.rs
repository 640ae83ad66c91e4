//! The kubectl-like table standalone prints when the status of what it loaded changes, with
//! every problem spelled out below it.

use super::manifests::{Origins, object_key};
use gatehouse_crd::condition::{ConditionStatus, reasons, types};
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

/// Widest a cell is shown; longer values are cut (the problem lines say the rest).
const MAX_CELL: usize = 80;

fn cell(value: &str) -> String {
    if value.chars().count() <= MAX_CELL {
        value.to_string()
    } else {
        format!("{}…", value.chars().take(MAX_CELL - 1).collect::<String>())
    }
}

fn columns(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| cell(c)).collect())
        .collect();
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

/// The reason column: the refusal when the spec is not accepted, else why it is (not) ready.
fn worst_reason<'a>(
    accepted: ConditionStatus,
    accepted_reason: &'a str,
    ready_reason: &'a str,
) -> &'a str {
    if accepted == ConditionStatus::False {
        accepted_reason
    } else {
        ready_reason
    }
}

/// The line under the table for an object that is not simply live: a held one says what
/// keeps serving and what was refused; others say why they are refused or not ready.
fn problem(
    accepted: ConditionStatus,
    (a_reason, a_message): (&str, &str),
    (ready, r_reason, r_message): (ConditionStatus, &str, &str),
) -> Option<String> {
    if ready == ConditionStatus::True && r_reason == reasons::SERVING_LAST_VALID {
        Some(format!("{a_reason}: {r_message}"))
    } else if accepted == ConditionStatus::False {
        Some(format!("{a_reason}: {a_message}"))
    } else if ready != ConditionStatus::True {
        Some(format!("{r_reason}: {r_message}"))
    } else {
        None
    }
}

/// Client statuses by (namespace, name), with their tenant.
pub type ClientStatuses = HashMap<(String, String), (String, OAuthClientStatus)>;

/// Tenant statuses by name.
pub type TenantStatuses = HashMap<String, TenantStatus>;

#[must_use]
pub fn render(tenants: &TenantStatuses, clients: &ClientStatuses, origins: &Origins) -> String {
    // A problem line names the object and where it was read.
    let with_origin = |key: String| match origins.get(&key) {
        Some(origin) => format!("{key} ({origin})"),
        None => key,
    };
    let mut out = String::new();
    let mut problems = Vec::new();
    let mut rows = vec![
        ["TENANT", "ISSUER", "CLIENTS", "ACCEPTED", "READY", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    let mut names: Vec<&String> = tenants.keys().collect();
    names.sort();
    for name in names {
        let s = &tenants[name];
        let (accepted, a_reason, a_message) = condition(&s.conditions, types::ACCEPTED);
        let (ready, r_reason, r_message) = condition(&s.conditions, types::READY);
        let reason = worst_reason(accepted, a_reason, r_reason);
        if let Some(problem) = problem(
            accepted,
            (a_reason, a_message),
            (ready, r_reason, r_message),
        ) {
            problems.push(format!(
                "{}: {problem}",
                with_origin(object_key("Tenant", None, name))
            ));
        }
        for type_ in [types::USERS_LOADED, types::TRUSTED_ISSUERS_READ] {
            let (status, reason, message) = condition(&s.conditions, type_);
            if status == ConditionStatus::False {
                problems.push(format!(
                    "{}: {reason}: {message}",
                    with_origin(object_key("Tenant", None, name))
                ));
            }
        }
        rows.push(vec![
            name.clone(),
            s.issuer.clone().unwrap_or_else(|| "-".into()),
            s.clients.map_or_else(|| "-".into(), |c| c.to_string()),
            accepted.to_string(),
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
        let reason = worst_reason(accepted, a_reason, r_reason);
        if let Some(problem) = problem(
            accepted,
            (a_reason, a_message),
            (ready, r_reason, r_message),
        ) {
            problems.push(format!(
                "{}: {problem}",
                with_origin(object_key("OAuthClient", Some(&key.0), &key.1))
            ));
        }
        let grants = if s.grant_types.is_empty() {
            "-".to_string()
        } else {
            s.grant_types
                .iter()
                .map(|g| g.short_name())
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
