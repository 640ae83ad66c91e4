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

#[tokio::test]
async fn redis_behind_sentinel_keeps_the_contract() {
    let set = gatehouse_testkit::SentinelSet::start(1);
    let store = gatehouse_store::open(&set.url()).await.expect("connect");
    store
        .check_settings()
        .await
        .expect("the primary does not evict");
    contract::run_all(store.as_ref(), "sentinel").await;
}

#[tokio::test]
async fn sentinels_that_know_no_such_primary_are_named_in_the_error() {
    let set = gatehouse_testkit::SentinelSet::start(1);
    let url = set
        .url()
        .replace(gatehouse_testkit::sentinel::PRIMARY_NAME, "no-such-primary");
    let started = std::time::Instant::now();
    let error = gatehouse_store::open(&url).await.err().expect("refused");
    assert!(
        matches!(error, gatehouse_store::StoreError::Unavailable(_)),
        "{error}"
    );
    assert!(error.to_string().contains("no-such-primary"), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A failover: the store follows the Sentinels to the promoted replica without being opened
/// again, what it wrote before is there, and meanwhile calls fail as unavailable.
#[tokio::test]
async fn a_sentinel_failover_is_followed_without_reopening_the_store() {
    let mut set = gatehouse_testkit::SentinelSet::start(3);
    let store = gatehouse_store::open(&set.url()).await.expect("connect");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    store
        .put_record(
            "t",
            gatehouse_store::RecordKind::Session,
            "s1",
            "{}",
            now + 600,
        )
        .await
        .unwrap();
    // Replicated before the primary goes.
    let primary = set.primary_port().unwrap();
    gatehouse_testkit::redis_command(primary, &["WAIT", "1", "5000"]).unwrap();
    let old = set.kill_primary();
    let error = store.ping().await.unwrap_err();
    assert!(
        matches!(error, gatehouse_store::StoreError::Unavailable(_)),
        "{error}"
    );
    let new = set.wait_for_failover(old, std::time::Duration::from_secs(30));
    assert_ne!(new, old);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match store
            .get_record("t", gatehouse_store::RecordKind::Session, "s1")
            .await
        {
            Ok(record) => {
                assert_eq!(record.as_deref(), Some("{}"));
                break;
            }
            Err(gatehouse_store::StoreError::Unavailable(_))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store did not follow the failover: {e}"),
        }
    }
    assert!(
        store
            .mark_used("t", gatehouse_store::RecordKind::Session, "s1", now + 600)
            .await
            .unwrap(),
        "writes go to the new primary"
    );
}

/// `rediss+sentinel://`: TLS to the Sentinels and to the primary they name, both trusted
/// through the given CA (and refused without it).
#[tokio::test]
async fn sentinels_and_primary_over_tls_with_a_private_ca() {
    let set = gatehouse_testkit::SentinelSet::start_tls(1);
    let url = set.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let untrusted = gatehouse_store::open(&url).await.err().expect("refused");
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");
    let access = gatehouse_store::Access {
        ca_pem: Some(std::fs::read(set.ca_file()).unwrap()),
        ..gatehouse_store::Access::default()
    };
    let store = gatehouse_store::open_with(&url, &access)
        .await
        .expect("connect over TLS");
    contract::run_all(store.as_ref(), "sentinel-tls").await;
}

/// A primary demoted behind the store's back (`REPLICAOF`, without the `CLIENT KILL` a
/// Sentinel sends): its first `READONLY` answer drops the connection, the next request asks the
/// Sentinels again (who still name it: refused, as it says it is a replica), and once it is
/// primary again the store goes on.
#[tokio::test]
async fn a_demoted_primary_is_left_at_its_first_readonly_answer() {
    use gatehouse_store::RecordKind::Session;
    use gatehouse_testkit::redis_command;
    let set = gatehouse_testkit::SentinelSet::start(1);
    let store = gatehouse_store::open(&set.url()).await.expect("connect");
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    store
        .put_record("t", Session, "a", "{}", until)
        .await
        .unwrap();
    let primary = set.primary_port().unwrap();
    let replica = set.ports().into_iter().find(|p| *p != primary).unwrap();
    let replica_s = replica.to_string();
    let primary_s = primary.to_string();
    redis_command(replica, &["REPLICAOF", "NO", "ONE"]).unwrap();
    redis_command(primary, &["REPLICAOF", "127.0.0.1", &replica_s]).unwrap();

    let readonly = store
        .put_record("t", Session, "b", "{}", until)
        .await
        .unwrap_err();
    assert!(readonly.to_string().contains("read only"), "{readonly}");
    let next = store
        .put_record("t", Session, "c", "{}", until)
        .await
        .unwrap_err();
    assert!(
        next.to_string().contains("Sentinels") && !next.to_string().contains("read only"),
        "asked the Sentinels again: {next}"
    );

    redis_command(primary, &["REPLICAOF", "NO", "ONE"]).unwrap();
    redis_command(replica, &["REPLICAOF", "127.0.0.1", &primary_s]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Err(e) = store.put_record("t", Session, "d", "{}", until).await {
        assert!(std::time::Instant::now() < deadline, "did not recover: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A sealed code's family is started for the code's short life; redeeming the code keeps it
/// as long as the tokens it issues may live, and a rotation leaves a family's lifetime alone
/// (so an unredeemed code costs Redis a minute, not the refresh tokens' month).
#[tokio::test]
async fn a_started_family_lives_on_once_its_code_is_redeemed_and_rotation_leaves_it() {
    use gatehouse_store::{FamilyMember, Issue, Issued, Joining};
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ttl = || {
        // An integer reply, `:N`.
        let reply =
            gatehouse_testkit::redis_command(redis.port, &["TTL", "{t:acme}:rfa:fam"]).unwrap();
        reply.trim_start_matches(':').parse::<i64>().unwrap()
    };
    store.start_family("acme", "fam", now + 60).await.unwrap();
    assert!((55..=60).contains(&ttl()), "{}", ttl());
    let join = |jti: &'static str, until: u64, joining: Joining| Issue {
        family: Some(FamilyMember {
            family: "fam",
            jti,
            exp: now + 30,
            until,
            joining,
        }),
        ..Issue::default()
    };
    let redeemed = join("jti-1", now + 3_600, Joining::Started);
    assert_eq!(store.issue("acme", &redeemed).await.unwrap(), Issued::Done);
    assert!((3_590..=3_600).contains(&ttl()), "{}", ttl());
    // Never shortened by a later start, nor lengthened by a rotation.
    store.start_family("acme", "fam", now + 60).await.unwrap();
    let rotated = join("jti-2", now + 7_200, Joining::Existing);
    assert_eq!(store.issue("acme", &rotated).await.unwrap(), Issued::Done);
    assert!((3_590..=3_600).contains(&ttl()), "{}", ttl());
}
