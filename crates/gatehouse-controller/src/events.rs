//! Kubernetes Events (`events.k8s.io/v1`) for the operator's transitions. A repeat of the same
//! event about the same object within six minutes bumps the first one's series (a PATCH)
//! instead of adding another, as kubectl expects.
//!
//! Why not kube-runtime's `Recorder`: it sweeps its whole memory of recent events on every
//! publish, so 100,000 clients going Ready after a cold start cost 100,000² steps (measured:
//! half of the operator's CPU at 60,000 clients). Here the sweep runs at most once a minute.

use gatehouse_core::clock::Clock;
use gatehouse_core::random::Randomness;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use kube::runtime::events::EventType;

/// How long an event is remembered for its series.
const SERIES_WINDOW_SECS: u64 = 6 * 60;
/// How often remembered events are swept.
const SWEEP_EVERY_SECS: u64 = 60;

/// What makes two events the same: their type, reason and object.
type Key = (&'static str, String, String, String, String, String);

fn key(type_: EventType, reason: &str, regarding: &ObjectReference) -> Key {
    let field = |v: &Option<String>| v.clone().unwrap_or_default();
    (
        type_name(type_),
        reason.to_string(),
        field(&regarding.kind),
        field(&regarding.namespace),
        field(&regarding.name),
        field(&regarding.uid),
    )
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

#[derive(Default)]
struct Recent {
    /// Each event with the unix second it was last seen.
    events: HashMap<Key, (Event, u64)>,
    swept_at: u64,
}

impl Recent {
    fn sweep(&mut self, now: u64) {
        if now.saturating_sub(self.swept_at) < SWEEP_EVERY_SECS {
            return;
        }
        self.swept_at = now;
        self.events
            .retain(|_, (_, seen)| now.saturating_sub(*seen) < SERIES_WINDOW_SECS);
    }
}

fn time(unix: u64) -> MicroTime {
    MicroTime(
        Timestamp::from_second(i64::try_from(unix).unwrap_or(i64::MAX))
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

/// Publishes the operator's events.
pub struct Recorder {
    client: Client,
    /// `reportingController`.
    controller: String,
    /// `reportingInstance`: the pod.
    instance: String,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Randomness>,
    recent: Mutex<Recent>,
    /// Events published so far: orders the names of events of the same second.
    published: std::sync::atomic::AtomicU64,
}

/// One event to publish.
pub struct Note<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    /// Shown by `kubectl describe`; cut to 1024 characters.
    pub note: &'a str,
}

impl Recorder {
    #[must_use]
    pub fn new(
        client: Client,
        controller: &str,
        instance: Option<String>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Randomness>,
    ) -> Self {
        Recorder {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            clock,
            random,
            recent: Mutex::new(Recent::default()),
            published: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Creates the event, or bumps the series of the same one published recently. Events
    /// about cluster-scoped objects go to the `default` namespace.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        e: &Note<'_>,
    ) -> Result<(), kube::Error> {
        let now = self.clock.now();
        let key = key(e.type_, e.reason, regarding);
        let repeat = {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.sweep(now);
            recent
                .events
                .get(&key)
                .filter(|(_, seen)| now.saturating_sub(*seen) < SERIES_WINDOW_SECS)
                .map(|(event, _)| event.clone())
        };
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let event = if let Some(mut event) = repeat {
            let count = event.series.as_ref().map_or(2, |s| s.count + 1);
            event.series = Some(EventSeries {
                count,
                last_observed_time: time(now),
            });
            let name = event.metadata.name.clone().unwrap_or_default();
            events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&event))
                .await?;
            event
        } else {
            let event = self.fresh(regarding, e, &namespace, now);
            events.create(&PostParams::default(), &event).await?;
            event
        };
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.events.insert(key, (event, now));
        Ok(())
    }

    fn fresh(&self, regarding: &ObjectReference, e: &Note<'_>, namespace: &str, now: u64) -> Event {
        let object = regarding.name.as_deref().unwrap_or(&self.controller);
        // A name unique among this object's events that sorts in the order they happened, as
        // client-go's recorders make them (`<object>.<time in hex>`): the API server lists by
        // name, and `kubectl describe` keeps that order for events of the same second. A
        // random tail keeps two replicas' names apart.
        let sequence = self
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tail = self
            .random
            .bytes::<4>()
            .map_or_else(|_| String::new(), |b| gatehouse_core::hex::encode(&b));
        let unique = format!("{now:010x}{:06x}{tail}", sequence % 0x100_0000);
        // An event's name is at most 253 characters; an object's name may be as long.
        let object: String = object.chars().take(253 - 1 - unique.len()).collect();
        let mut event = Event {
            action: Some("Reconcile".to_string()),
            reason: Some(e.reason.to_string()),
            event_time: Some(time(now)),
            regarding: Some(regarding.clone()),
            note: Some(e.note.chars().take(1024).collect()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_name(e.type_).to_string()),
            ..Event::default()
        };
        event.metadata.name = Some(format!("{object}.{unique}"));
        event.metadata.namespace = Some(namespace.to_string());
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_events_are_swept_at_most_once_a_minute() {
        let mut recent = Recent::default();
        let r = ObjectReference::default();
        recent
            .events
            .insert(key(EventType::Normal, "A", &r), (Event::default(), 0));
        recent.sweep(30);
        assert_eq!(
            recent.events.len(),
            1,
            "too early to sweep, and not old yet"
        );
        recent.sweep(SERIES_WINDOW_SECS + 1);
        assert!(recent.events.is_empty());
        recent
            .events
            .insert(key(EventType::Normal, "B", &r), (Event::default(), 0));
        recent.sweep(SERIES_WINDOW_SECS + 30);
        assert_eq!(recent.events.len(), 1, "swept 29 s ago");
    }
}
