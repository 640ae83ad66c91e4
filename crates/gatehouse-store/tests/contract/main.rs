//! The store contract suite against every backend, each started for real by the harness.

mod suite;

use gatehouse_store::{MemoryStore, RedisStore, Store};
use gatehouse_testkit::{RedisCluster, RedisServer};
use suite as contract;

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract::run_all(&MemoryStore::new(), "mem").await;
}

#[tokio::test]
async fn redis_store_keeps_the_contract() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    contract::run_all(&store, "single").await;
}

#[tokio::test]
async fn redis_cluster_store_keeps_the_contract() {
    let cluster = RedisCluster::start(3);
    let store = RedisStore::connect(&cluster.url(), None)
        .await
        .expect("connect");
    contract::run_all(&store, "cluster").await;
    // The tenants of the suite hash to different slots, so the suite crossed masters.
    assert!(
        cluster.keys_per_node().iter().filter(|n| **n > 0).count() >= 2,
        "{:?}",
        cluster.keys_per_node()
    );
}

#[tokio::test]
async fn unreachable_redis_fails_fast_as_unavailable() {
    let port = gatehouse_testkit::free_port();
    let started = std::time::Instant::now();
    let result = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), None).await;
    assert!(
        matches!(result, Err(gatehouse_store::StoreError::Unavailable(_))),
        "{:?}",
        result.err()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn a_stopped_redis_turns_into_unavailable_errors() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    store.ping().await.unwrap();
    drop(redis);
    let err = store.ping().await.unwrap_err();
    assert!(
        matches!(err, gatehouse_store::StoreError::Unavailable(_)),
        "{err}"
    );
}

/// Sets a memory limit and an eviction policy on one server.
fn evicting(port: u16, policy: &str) {
    gatehouse_testkit::redis_command(port, &["CONFIG", "SET", "maxmemory", "1gb"]).unwrap();
    gatehouse_testkit::redis_command(port, &["CONFIG", "SET", "maxmemory-policy", policy]).unwrap();
}

#[tokio::test]
async fn a_redis_that_evicts_is_named_and_refused() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    store.check_settings().await.expect("defaults: no limit");
    evicting(redis.port, "noeviction");
    store
        .check_settings()
        .await
        .expect("a limit without eviction");
    for policy in ["allkeys-lru", "volatile-ttl"] {
        evicting(redis.port, policy);
        let err = store.check_settings().await.unwrap_err();
        assert!(
            matches!(&err, gatehouse_store::StoreError::Unsafe(m) if m.contains(policy)),
            "{err}"
        );
    }
    assert!(MemoryStore::new().check_settings().await.is_ok());
}

#[tokio::test]
async fn every_primary_of_a_cluster_is_checked() {
    let cluster = RedisCluster::start(3);
    let store = RedisStore::connect(&cluster.url(), None)
        .await
        .expect("connect");
    store.check_settings().await.expect("defaults");
    let last = cluster.nodes.last().unwrap().port;
    evicting(last, "allkeys-lfu");
    let err = store.check_settings().await.unwrap_err();
    assert!(
        matches!(&err, gatehouse_store::StoreError::Unsafe(m)
            if m.contains("allkeys-lfu") && m.contains(&last.to_string())),
        "{err}"
    );
}
