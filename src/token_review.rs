//! `gatehouse server --token-review`: the API server's TokenReview behind the flows'
//! [`TokenReviewer`], with accepted answers kept for [`KEEP`] so that a pod signing in often
//! costs the API server one review per token every ten seconds at most.

use gatehouse_flows::token_review::{Review, Reviewing, TokenReviewer};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::{Api, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an accepted token is not asked about again.
const KEEP: Duration = Duration::from_secs(10);
/// Most answers kept; past it the oldest are dropped.
const MAX_KEPT: usize = 10_000;

pub struct KubeTokenReviewer {
    client: kube::Client,
    /// Accepted answers by the token's hash.
    kept: Mutex<HashMap<String, (Review, Instant)>>,
}

impl KubeTokenReviewer {
    pub fn new(client: kube::Client) -> Self {
        KubeTokenReviewer {
            client,
            kept: Mutex::new(HashMap::new()),
        }
    }

    fn kept(&self, key: &str) -> Option<Review> {
        let kept = self.kept.lock().ok()?;
        kept.get(key)
            .filter(|(_, at)| at.elapsed() < KEEP)
            .map(|(review, _)| review.clone())
    }

    fn keep(&self, key: String, review: &Review) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= MAX_KEPT {
                kept.retain(|_, (_, at)| at.elapsed() < KEEP);
            }
            if kept.len() < MAX_KEPT {
                kept.insert(key, (review.clone(), Instant::now()));
            }
        }
    }
}

impl TokenReviewer for KubeTokenReviewer {
    fn review<'a>(&'a self, token: &'a str, audiences: &'a [String]) -> Reviewing<'a> {
        Box::pin(async move {
            let key = gatehouse_core::token::opaque_token_id(token);
            if let Some(review) = self.kept(&key) {
                return Ok(review);
            }
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let asked = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: Some(audiences.to_vec()),
                },
                ..TokenReview::default()
            };
            let answer = api
                .create(&PostParams::default(), &asked)
                .await
                .map_err(|e| format!("TokenReview: {e}"))?;
            let status = answer.status.unwrap_or_default();
            let user = status.user.unwrap_or_default();
            let review = Review {
                authenticated: status.authenticated.unwrap_or(false),
                username: user.username.unwrap_or_default(),
                uid: user.uid.unwrap_or_default(),
            };
            if review.authenticated {
                self.keep(key, &review);
            }
            Ok(review)
        })
    }
}
