//! Issuing whose answer from the store never came. The step that spends a code or refresh
//! token and writes what replaces it is atomic, but the store can go away after running it and
//! before answering: the server then does not know whether the token is spent. Answering 503
//! as if nothing happened would be wrong when it did happen: the client's retry would look like
//! a replay, and revoke a healthy grant. So the server asks the store which attempt spent the
//! token: if it was this one, the tokens it minted are valid and are answered after all; if the
//! store stays away too long to wait for, the server keeps asking in the background and, if
//! its attempt did go through, records it as unanswered, so that the client's next
//! presentation issues again (see `Store::mark_unanswered`). Only the server that lost the
//! answer can record that, so requests racing on one token still have exactly one winner.

use crate::Services;
use gatehouse_store::{RecordKind, Store};
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits for the store to come back before answering 503.
const WAIT_IN_REQUEST: Duration = Duration::from_secs(2);
/// How long the server keeps asking after that.
const KEEP_ASKING: Duration = Duration::from_secs(300);
/// Between two questions.
const EVERY: Duration = Duration::from_millis(100);
/// How long a presentation of a spent code or token waits before it is looked at once more
/// (and then counted as a replay): long enough for the server that lost an answer to record
/// it, since it asks every [`EVERY`] once the store is back.
pub const RECHECK_AFTER: Duration = Duration::from_millis(500);
/// How long after being recorded as unanswered a code or token may be presented once more.
pub const RETRY_WINDOW_SECS: u64 = 600;

/// A spending whose outcome is unknown.
#[derive(Clone, Debug)]
pub(crate) struct Unanswered {
    pub kind: RecordKind,
    pub id: String,
    /// The attempt's mark (the access token's `jti`).
    pub attempt: String,
    /// When the spent code or token would have expired anyway.
    pub until: u64,
    /// The grant family it carries, where its mark is kept.
    pub family: Option<String>,
}

impl Unanswered {
    /// Whether this attempt spent the token: asked until the store answers, at most
    /// [`WAIT_IN_REQUEST`]; after that, false, and the question goes on in the background.
    pub(crate) async fn went_through(self, services: &Services, tenant: &str) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT_IN_REQUEST;
        loop {
            match services
                .store
                .spent_by(tenant, self.kind, &self.id, self.family.as_deref())
                .await
            {
                Ok(mark) => return mark.as_deref() == Some(self.attempt.as_str()),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(EVERY).await;
                }
                Err(_) => break,
            }
        }
        let store = services.store.clone();
        let retry_until = self.until.min(services.now() + RETRY_WINDOW_SECS);
        let tenant = tenant.to_string();
        tokio::spawn(async move { self.settle_later(store, &tenant, retry_until).await });
        false
    }

    /// Keeps asking; if the attempt went through, records the spending as unanswered.
    async fn settle_later(self, store: Arc<dyn Store>, tenant: &str, retry_until: u64) {
        let deadline = tokio::time::Instant::now() + KEEP_ASKING;
        while tokio::time::Instant::now() < deadline {
            match store
                .spent_by(tenant, self.kind, &self.id, self.family.as_deref())
                .await
            {
                Ok(Some(mark)) if mark == self.attempt => {
                    match store
                        .mark_unanswered(tenant, self.kind, &self.id, retry_until)
                        .await
                    {
                        Ok(()) => {
                            tracing::info!(
                                tenant,
                                kind = ?self.kind,
                                "an answer lost to a store outage: the client may present the same code or token once more"
                            );
                            return;
                        }
                        Err(_) => tokio::time::sleep(EVERY).await,
                    }
                }
                Ok(_) => return,
                Err(_) => tokio::time::sleep(EVERY).await,
            }
        }
        tracing::warn!(
            tenant,
            kind = ?self.kind,
            "the store stayed away: whether a code or token was spent is unknown, and presenting it again will count as a replay"
        );
    }
}
