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

/// The same with grant families as the previous version wrote them (a rolling upgrade).
#[tokio::test]
async fn redis_store_writing_listed_families_keeps_the_contract() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect")
        .with_new_families(gatehouse_store::FamilyLayout::Hash);
    contract::run_all(&store, "listed").await;
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
            gatehouse_testkit::redis_command(redis.port, &["TTL", "{t:acme}:fam:fam"]).unwrap();
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

/// Seconds a key has left (`TTL`), read straight from Redis.
fn ttl(port: u16, key: &str) -> i64 {
    let reply = gatehouse_testkit::redis_command(port, &["TTL", key]).unwrap();
    reply.trim_start_matches(':').parse().unwrap()
}

/// Redeeming what carries no family of its own (a device code, a code from before sealed
/// codes): it starts `family` with an access token `jti` and the refresh token `successor`.
fn redemption_apart(
    now: u64,
    kind: gatehouse_store::RecordKind,
    id: &'static str,
    family: &'static str,
    jti: &'static str,
    successor: &'static str,
) -> gatehouse_store::Issue<'static> {
    use gatehouse_store::{FamilyMember, Issue, Joining, Spend};
    Issue {
        spend: Some(Spend {
            kind,
            id,
            until: now + 600,
            attempt: jti,
            family: None,
        }),
        family: Some(FamilyMember {
            family,
            jti,
            exp: now + 30,
            until: now + 3_600,
            joining: Joining::Starts,
        }),
        successor: Some(successor),
        ..Issue::default()
    }
}

/// Families written before a family was one hash (its tokens a set, its revocation and its
/// spent marks keys of their own) keep working in that layout until they expire: they rotate,
/// a spent token of theirs is spent, a revoked one refuses, revocation reaches their tokens,
/// and a sealed code's family started so is redeemed.
#[tokio::test]
async fn families_written_in_the_layout_before_hashes_keep_working() {
    use gatehouse_store::{FamilyMember, Issue, Issued, Joining, RecordKind, Spend};
    use gatehouse_testkit::redis_command;
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    let now = contract::unix_now();
    let exp = (now + 30).to_string();
    let until = (now + 600).to_string();
    let raw = |args: &[&str]| redis_command(redis.port, args).unwrap();
    // Written by the layout before: a family with one token, one of its refresh tokens spent
    // (naming its successor), a revoked family, and a code's family started before its token.
    raw(&["SADD", "{t:acme}:rfa:old", &format!("{exp}:jti-old")]);
    raw(&["EXPIREAT", "{t:acme}:rfa:old", &until]);
    raw(&[
        "SET",
        "{t:acme}:rt.used:rt-spent",
        "jti-old rt-next",
        "EXAT",
        &until,
    ]);
    raw(&["SADD", "{t:acme}:rfa:gone", &format!("{exp}:jti-gone")]);
    raw(&["EXPIREAT", "{t:acme}:rfa:gone", &until]);
    raw(&["SET", "{t:acme}:rfr:gone", "1", "EXAT", &until]);
    raw(&["SADD", "{t:acme}:rfa:code-fam", "started"]);
    raw(&["EXPIREAT", "{t:acme}:rfa:code-fam", &(now + 60).to_string()]);

    let rotate = |family, id, jti| contract::rotation(now, family, id, jti);
    assert!(store.is_family_live("acme", "old").await.unwrap());
    assert!(!store.is_family_live("acme", "gone").await.unwrap());
    assert_eq!(
        store
            .issue("acme", &rotate("old", "rt-spent", "jti-x"))
            .await
            .unwrap(),
        Issued::Spent
    );
    assert_eq!(
        store
            .spent_by("acme", RecordKind::RefreshToken, "rt-spent", Some("old"))
            .await
            .unwrap()
            .as_deref(),
        Some("jti-old")
    );
    assert_eq!(
        store
            .issue("acme", &rotate("old", "rt-next", "jti-new"))
            .await
            .unwrap(),
        Issued::Done
    );
    // Kept in the old layout: its set gained the token, its mark is a key of its own.
    assert_eq!(
        raw(&["SISMEMBER", "{t:acme}:rfa:old", &format!("{exp}:jti-new")]),
        ":1"
    );
    assert_eq!(raw(&["EXISTS", "{t:acme}:rt.used:rt-next"]), ":1");
    assert_eq!(raw(&["EXISTS", "{t:acme}:fam:old"]), ":0");
    assert_eq!(
        store
            .issue("acme", &rotate("old", "rt-next", "jti-again"))
            .await
            .unwrap(),
        Issued::Spent
    );
    assert_eq!(
        store
            .issue("acme", &rotate("gone", "rt-gone", "jti-g"))
            .await
            .unwrap(),
        Issued::Revoked
    );

    // Revocation reaches the tokens of both layouts, and nothing joins afterwards.
    assert_eq!(
        store.revoke_family("acme", "old", now + 600).await.unwrap(),
        2
    );
    assert!(store.is_revoked("acme", "jti-old").await.unwrap());
    assert!(store.is_revoked("acme", "jti-new").await.unwrap());
    assert!(!store.is_family_live("acme", "old").await.unwrap());
    assert_eq!(
        store
            .issue("acme", &rotate("old", "rt-successor", "jti-late"))
            .await
            .unwrap(),
        Issued::Revoked
    );

    // A sealed code's family started in the old layout is redeemed, and lives on as long as
    // its tokens may.
    let exchange = Issue {
        spend: Some(Spend {
            kind: RecordKind::AuthorizationCode,
            id: "code",
            until: now + 3_600,
            attempt: "jti-c",
            family: Some("code-fam"),
        }),
        family: Some(FamilyMember {
            family: "code-fam",
            jti: "jti-c",
            exp: now + 30,
            until: now + 3_600,
            joining: Joining::Started,
        }),
        ..Issue::default()
    };
    assert_eq!(store.issue("acme", &exchange).await.unwrap(), Issued::Done);
    assert_eq!(store.issue("acme", &exchange).await.unwrap(), Issued::Spent);
    let ttl = ttl(redis.port, "{t:acme}:rfa:code-fam");
    assert!((3_590..=3_600).contains(&ttl), "{ttl}");
}

/// A rolling upgrade from servers that write families as sets: the servers of this version
/// run with `FamilyLayout::Sets` first, then switch to `FamilyLayout::Hash`. Meanwhile both
/// share one Redis: a server writing sets writes nothing a server from before hashes would
/// miss, each rotates, spends and revokes the other's families, and a family keeps the layout
/// it started in.
#[tokio::test]
async fn servers_writing_sets_and_hashes_share_one_store() {
    use gatehouse_store::{FamilyLayout, Issued, RecordKind};
    use gatehouse_testkit::redis_command;
    let redis = RedisServer::start();
    let sets = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect")
        .with_new_families(FamilyLayout::Sets);
    let hash = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect")
        .with_new_families(FamilyLayout::Hash);
    let now = contract::unix_now();
    let raw = |args: &[&str]| redis_command(redis.port, args).unwrap();
    let keys = |pattern: &str| raw(&["KEYS", pattern]);
    // A family started by a device code (nothing of its own to spend with it), then rotated.
    let start = |family, device_code, jti| {
        redemption_apart(
            now,
            RecordKind::DeviceCode,
            device_code,
            family,
            jti,
            family,
        )
    };
    let rotate = |family, id, jti| contract::rotation(now, family, id, jti);
    // The lost answer's refresh token is retired for servers writing either layout.
    let retired_for_both = async |presented: gatehouse_store::Issue<'static>| {
        for store in [&hash, &sets] {
            assert_eq!(
                store.issue("acme", &presented).await.unwrap(),
                Issued::Spent,
                "the lost answer's refresh token is retired"
            );
        }
    };

    // Written as sets: a device code's family, a sealed code's family, rotations. Nothing a
    // server from before hashes would not read.
    assert_eq!(
        sets.issue("acme", &start("s", "dc-s", "s1")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(
        sets.issue("acme", &rotate("s", "s", "s2")).await.unwrap(),
        Issued::Done
    );
    sets.start_family("acme", "code-s", now + 60).await.unwrap();
    assert_eq!(keys("*:fam:*"), "*0", "no hash while writing sets");
    assert_eq!(
        raw(&["SISMEMBER", "{t:acme}:rfa:s", &format!("{}:s2", now + 30)]),
        ":1"
    );
    assert_eq!(raw(&["EXISTS", "{t:acme}:rt.used:s"]), ":1");
    assert_eq!(raw(&["SISMEMBER", "{t:acme}:rfa:code-s", "started"]), ":1");

    // Written as a hash, by the other server; each server rotates the other's family, which
    // keeps its layout, and sees the other's spent marks.
    assert_eq!(
        hash.issue("acme", &start("h", "dc-h", "h1")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(raw(&["EXISTS", "{t:acme}:fam:h"]), ":1");
    assert_eq!(
        sets.issue("acme", &rotate("h", "h", "h2")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(
        hash.issue("acme", &rotate("h", "h", "h2-again"))
            .await
            .unwrap(),
        Issued::Spent
    );
    assert_eq!(
        hash.issue("acme", &rotate("s", "s2", "s3")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(
        sets.issue("acme", &rotate("s", "s2", "s3-again"))
            .await
            .unwrap(),
        Issued::Spent
    );
    assert_eq!(
        raw(&["EXISTS", "{t:acme}:fam:s"]),
        ":0",
        "the sets family stays sets"
    );

    // Revocation by either reaches the other's tokens; a revocation by the server writing
    // sets leaves the mark a server from before hashes reads.
    assert_eq!(
        sets.revoke_family("acme", "h", now + 3_600).await.unwrap(),
        2
    );
    assert!(hash.is_revoked("acme", "h2").await.unwrap());
    assert_eq!(
        hash.issue("acme", &rotate("h", "h2", "h3")).await.unwrap(),
        Issued::Revoked
    );
    assert_eq!(
        hash.revoke_family("acme", "s", now + 3_600).await.unwrap(),
        3
    );
    assert_eq!(raw(&["EXISTS", "{t:acme}:rfr:s"]), ":1");
    assert!(sets.is_revoked("acme", "s3").await.unwrap());
    sets.revoke_family("acme", "never-started", now + 60)
        .await
        .unwrap();
    assert_eq!(raw(&["EXISTS", "{t:acme}:rfr:never-started"]), ":1");
    assert_eq!(
        raw(&["EXISTS", "{t:acme}:fam:s", "{t:acme}:fam:never-started"]),
        ":0",
        "revoking a family that is no hash writes no hash"
    );

    // A code from before sealed codes starts its family when redeemed: redeemed by the
    // server writing sets, its answer lost, and retried at the other, the family stays sets,
    // and the refresh token the lost answer carried is retired where it is looked for.
    let redeem_handle = |jti, successor| {
        redemption_apart(
            now,
            RecordKind::AuthorizationCode,
            "handle",
            "c",
            jti,
            successor,
        )
    };
    assert_eq!(
        sets.issue("acme", &redeem_handle("c1", "lost"))
            .await
            .unwrap(),
        Issued::Done
    );
    sets.mark_unanswered("acme", RecordKind::AuthorizationCode, "handle", now + 600)
        .await
        .unwrap();
    assert_eq!(
        hash.issue("acme", &redeem_handle("c2", "kept"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(
        raw(&["EXISTS", "{t:acme}:fam:c"]),
        ":0",
        "the family stays sets"
    );
    retired_for_both(rotate("c", "lost", "c3")).await;
    assert_eq!(
        hash.issue("acme", &rotate("c", "kept", "c4"))
            .await
            .unwrap(),
        Issued::Done
    );

    // The other way round, with the family's hash lost meanwhile (Redis's data): the retry at
    // the server writing sets starts the family as a set, and the lost answer's refresh token
    // is retired where a family of sets looks.
    let redeem_d = |jti, successor| {
        redemption_apart(
            now,
            RecordKind::AuthorizationCode,
            "handle-d",
            "d",
            jti,
            successor,
        )
    };
    assert_eq!(
        hash.issue("acme", &redeem_d("d1", "lost-d")).await.unwrap(),
        Issued::Done
    );
    hash.mark_unanswered("acme", RecordKind::AuthorizationCode, "handle-d", now + 600)
        .await
        .unwrap();
    raw(&["DEL", "{t:acme}:fam:d"]);
    assert_eq!(
        sets.issue("acme", &redeem_d("d2", "kept-d")).await.unwrap(),
        Issued::Done
    );
    assert_eq!(raw(&["EXISTS", "{t:acme}:fam:d"]), ":0");
    retired_for_both(rotate("d", "lost-d", "d3")).await;
}

/// A device code spent by an answer that was lost, then presented again: the retry starts a
/// family of its own, and the refresh token the lost answer carried, whose family is a hash,
/// is retired where its presentation looks.
#[tokio::test]
async fn a_retry_retires_the_lost_successor_in_its_own_family_hash() {
    for layout in [
        gatehouse_store::FamilyLayout::Compact,
        gatehouse_store::FamilyLayout::Hash,
    ] {
        a_retry_retires_the_lost_successor_in(layout).await;
    }
}

async fn a_retry_retires_the_lost_successor_in(layout: gatehouse_store::FamilyLayout) {
    use gatehouse_store::{Issued, RecordKind};
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect")
        .with_new_families(layout);
    let now = contract::unix_now();
    let redeem = |family, jti, successor| {
        redemption_apart(now, RecordKind::DeviceCode, "dc", family, jti, successor)
    };
    assert_eq!(
        store
            .issue("acme", &redeem("f1", "j1", "lost-rt"))
            .await
            .unwrap(),
        Issued::Done
    );
    store
        .mark_unanswered("acme", RecordKind::DeviceCode, "dc", now + 600)
        .await
        .unwrap();
    let retry = redeem("f2", "j2", "retry-rt");
    assert_eq!(store.issue("acme", &retry).await.unwrap(), Issued::Done);
    let present_lost = contract::rotation(now, "f1", "lost-rt", "j3");
    assert_eq!(
        store.issue("acme", &present_lost).await.unwrap(),
        Issued::Spent,
        "the lost answer's refresh token is retired"
    );
    assert_eq!(
        store
            .spent_by("acme", RecordKind::RefreshToken, "lost-rt", Some("f1"))
            .await
            .unwrap()
            .as_deref(),
        Some("superseded")
    );
    assert_eq!(
        store
            .spent_by("acme", RecordKind::DeviceCode, "dc", None)
            .await
            .unwrap()
            .as_deref(),
        Some("j2"),
        "the retry's attempt is the device code's mark"
    );

    // The lost answer's family gone meanwhile (lost with Redis's data, say): its refresh
    // token is retired under a key of its own, and no hash is made again without expiry.
    let other = |family, jti, successor| {
        redemption_apart(now, RecordKind::DeviceCode, "dc2", family, jti, successor)
    };
    assert_eq!(
        store
            .issue("acme", &other("g1", "k1", "lost-2"))
            .await
            .unwrap(),
        Issued::Done
    );
    gatehouse_testkit::redis_command(redis.port, &["DEL", "{t:acme}:fam:g1"]).unwrap();
    store
        .mark_unanswered("acme", RecordKind::DeviceCode, "dc2", now + 600)
        .await
        .unwrap();
    assert_eq!(
        store
            .issue("acme", &other("g2", "k2", "retry-2"))
            .await
            .unwrap(),
        Issued::Done
    );
    let raw = |args: &[&str]| gatehouse_testkit::redis_command(redis.port, args).unwrap();
    assert_eq!(raw(&["EXISTS", "{t:acme}:fam:g1"]), ":0");
    if layout == gatehouse_store::FamilyLayout::Hash {
        let ttl = ttl(redis.port, "{t:acme}:rt.used:lost-2");
        assert!((1..=3_600).contains(&ttl), "{ttl}");
    }
    // Either way its refresh token is refused: spent, or of a family no longer known.
    assert_ne!(
        store
            .issue("acme", &contract::rotation(now, "g1", "lost-2", "k3"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(raw(&["EXISTS", "{t:acme}:fam:g1"]), ":0");
}

/// A sealed code whose answer was lost, presented again in a request that is refused (a wrong
/// verifier): the refusal is no retry, so the code counts as replayed, as before families
/// were hashes, and the client's retry is not taken over by it.
#[tokio::test]
async fn a_refused_presentation_is_no_retry_of_a_lost_answer() {
    use gatehouse_store::{FamilyMember, Issue, Issued, Joining, RecordKind, Spend};
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    let now = contract::unix_now();
    store.start_family("acme", "f", now + 60).await.unwrap();
    let spend = |attempt: &'static str| Spend {
        kind: RecordKind::AuthorizationCode,
        id: "code",
        until: now + 3_600,
        attempt,
        family: Some("f"),
    };
    let exchange = Issue {
        spend: Some(spend("j1")),
        family: Some(FamilyMember {
            family: "f",
            jti: "j1",
            exp: now + 30,
            until: now + 3_600,
            joining: Joining::Started,
        }),
        successor: Some("rt"),
        ..Issue::default()
    };
    assert_eq!(store.issue("acme", &exchange).await.unwrap(), Issued::Done);
    store
        .mark_unanswered("acme", RecordKind::AuthorizationCode, "code", now + 600)
        .await
        .unwrap();
    let refused = Issue {
        spend: Some(spend(Spend::REFUSED)),
        ..Issue::default()
    };
    assert_eq!(store.issue("acme", &refused).await.unwrap(), Issued::Spent);
    assert_eq!(
        store
            .spent_by("acme", RecordKind::AuthorizationCode, "code", Some("f"))
            .await
            .unwrap()
            .as_deref(),
        Some("j1"),
        "the refusal wrote nothing"
    );
}

/// A family written as sets and revoked since by a server of this version gains a hash that
/// only says so: its spent marks are still read where they were written, so a spent code of
/// it presented again (a refused exchange spends it) is still the replay it is.
#[tokio::test]
async fn a_revoked_family_of_sets_keeps_its_spent_marks() {
    use gatehouse_store::{Issue, Issued, RecordKind, Spend};
    use gatehouse_testkit::redis_command;
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    let now = contract::unix_now();
    let until = (now + 600).to_string();
    let raw = |args: &[&str]| redis_command(redis.port, args).unwrap();
    raw(&["SADD", "{t:acme}:rfa:old", &format!("{}:jti-old", now + 30)]);
    raw(&["EXPIREAT", "{t:acme}:rfa:old", &until]);
    raw(&["SET", "{t:acme}:code.used:c", "jti-old", "EXAT", &until]);
    assert_eq!(
        store.revoke_family("acme", "old", now + 600).await.unwrap(),
        1
    );
    let refused_again = Issue {
        spend: Some(Spend {
            kind: RecordKind::AuthorizationCode,
            id: "c",
            until: now + 600,
            attempt: "refused",
            family: Some("old"),
        }),
        ..Issue::default()
    };
    assert_eq!(
        store.issue("acme", &refused_again).await.unwrap(),
        Issued::Spent
    );
}

/// However often a compact family rotates, Redis keeps it as a few fields in its compact
/// encoding, where the previous layout grew two fields a rotation; a refresh token rotated
/// long ago is still a reuse, and revoking the family reaches every access token it issued.
#[tokio::test]
async fn a_compact_family_stays_small_however_often_it_rotates() {
    use gatehouse_store::{FamilyLayout, Issued, RecordKind};
    let redis = RedisServer::start();
    let raw = |args: &[&str]| gatehouse_testkit::redis_command(redis.port, args).unwrap();
    let now = contract::unix_now();
    // As long as real ids: a refresh token's id is 43 characters, as is the access token's
    // `jti` here (a real one has 22).
    let ids: Vec<&'static str> = (0..=10_000)
        .map(|i| &*Box::leak(format!("{i:0>43}").into_boxed_str()))
        .collect();
    for (layout, family, rotations) in [
        (FamilyLayout::Compact, "compact", 10_000),
        (FamilyLayout::Hash, "listed", 200),
    ] {
        let store = RedisStore::connect(&redis.url(), None)
            .await
            .expect("connect")
            .with_new_families(layout);
        let device = &*Box::leak(format!("dc-{family}").into_boxed_str());
        let start = redemption_apart(now, RecordKind::DeviceCode, device, family, ids[0], ids[0]);
        assert_eq!(store.issue("acme", &start).await.unwrap(), Issued::Done);
        for pair in ids[..=rotations].windows(2) {
            let rotation = contract::rotation(now, family, pair[0], pair[1]);
            assert_eq!(store.issue("acme", &rotation).await.unwrap(), Issued::Done);
        }
        let key = format!("{{t:acme}}:fam:{family}");
        let (encoding, fields) = (
            raw(&["OBJECT", "ENCODING", &key]),
            raw(&["HLEN", &key])
                .trim_start_matches(':')
                .parse::<usize>()
                .unwrap(),
        );
        if layout == FamilyLayout::Compact {
            assert_eq!(encoding, "listpack", "{fields} fields");
            assert!(fields <= 6, "{fields} fields after {rotations} rotations");
        } else {
            assert!(
                fields > 2 * rotations,
                "the previous layout lists: {fields}"
            );
        }
        // A token of long ago presented again is a reuse; the family's revocation then
        // reaches its first and its latest access token alike.
        let old = contract::rotation(now, family, ids[rotations / 2], "again");
        assert_eq!(store.issue("acme", &old).await.unwrap(), Issued::Spent);
        store
            .revoke_family("acme", family, now + 3_600)
            .await
            .unwrap();
        for jti in [ids[0], ids[rotations]] {
            assert!(
                store
                    .is_token_revoked("acme", jti, Some(family))
                    .await
                    .unwrap(),
                "{layout:?}: {jti}"
            );
        }
        let current = contract::rotation(now, family, ids[rotations], "after");
        assert_eq!(
            store.issue("acme", &current).await.unwrap(),
            Issued::Revoked
        );
    }
}

/// Upgrading from the version whose families list their tokens (`FamilyLayout::Hash`): a
/// server of this version writing either layout rotates, spends and revokes families of both,
/// whoever wrote them, so that switching layouts is a rolling restart like any other. A
/// compact family has none of the fields that version reads (`k`, `u:<id>`), so a server of
/// it refuses the family as unknown rather than rotating it blind; the revocation it would
/// write for one (a mark apart, as for a family of sets) is honoured.
#[tokio::test]
async fn servers_writing_listed_and_compact_families_share_one_store() {
    use gatehouse_store::{FamilyLayout, Issued, RecordKind};
    let redis = RedisServer::start();
    let raw = |args: &[&str]| gatehouse_testkit::redis_command(redis.port, args).unwrap();
    let listed = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect")
        .with_new_families(FamilyLayout::Hash);
    let compact = RedisStore::connect(&redis.url(), None)
        .await
        .expect("connect");
    let now = contract::unix_now();
    let start = |family, device_code, jti| {
        redemption_apart(now, RecordKind::DeviceCode, device_code, family, jti, jti)
    };
    let rotate = |family, id, jti| contract::rotation(now, family, id, jti);

    // A listed family, rotated by both; each sees the other's spending.
    assert_eq!(
        listed
            .issue("acme", &start("l", "dc-l", "l1"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(
        compact
            .issue("acme", &rotate("l", "l1", "l2"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(
        raw(&["HEXISTS", "{t:acme}:fam:l", "b"]),
        ":0",
        "stays listed"
    );
    assert_eq!(
        listed
            .issue("acme", &rotate("l", "l1", "l1-again"))
            .await
            .unwrap(),
        Issued::Spent
    );
    assert_eq!(
        listed
            .issue("acme", &rotate("l", "l2", "l3"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(
        compact
            .issue("acme", &rotate("l", "l2", "l2-again"))
            .await
            .unwrap(),
        Issued::Spent
    );
    // The compact server's revocation marks every listed token, as the old server reads it.
    assert_eq!(
        compact
            .revoke_family("acme", "l", now + 3_600)
            .await
            .unwrap(),
        3
    );
    assert!(listed.is_revoked("acme", "l1").await.unwrap());
    assert!(listed.is_revoked("acme", "l3").await.unwrap());

    // A compact family, rotated by both; a reuse at either is one.
    assert_eq!(
        compact
            .issue("acme", &start("c", "dc-c", "c1"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(raw(&["HEXISTS", "{t:acme}:fam:c", "k"]), ":0");
    assert_eq!(
        listed
            .issue("acme", &rotate("c", "c1", "c2"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(
        raw(&["HEXISTS", "{t:acme}:fam:c", "k"]),
        ":0",
        "stays compact"
    );
    assert_eq!(
        compact
            .issue("acme", &rotate("c", "c1", "c1-again"))
            .await
            .unwrap(),
        Issued::Spent
    );
    assert_eq!(
        compact
            .issue("acme", &rotate("c", "c2", "c3"))
            .await
            .unwrap(),
        Issued::Done
    );
    assert_eq!(
        listed
            .issue("acme", &rotate("c", "c2", "c2-again"))
            .await
            .unwrap(),
        Issued::Spent
    );
    // A sealed code of a compact family whose exchange was refused, at the server writing
    // listed families: spent where the compact family keeps it, so a later exchange is a
    // replay at either.
    compact.start_family("acme", "cc", now + 60).await.unwrap();
    let refused = gatehouse_store::Issue {
        spend: Some(gatehouse_store::Spend {
            kind: RecordKind::AuthorizationCode,
            id: "code-cc",
            until: now + 60,
            attempt: gatehouse_store::Spend::REFUSED,
            family: Some("cc"),
        }),
        ..gatehouse_store::Issue::default()
    };
    assert_eq!(listed.issue("acme", &refused).await.unwrap(), Issued::Done);
    let exchange = contract::spending_in_family(
        now,
        RecordKind::AuthorizationCode,
        "cc",
        "code-cc",
        "jti-cc",
        now + 3_600,
        gatehouse_store::Joining::Started,
    );
    assert_eq!(
        compact.issue("acme", &exchange).await.unwrap(),
        Issued::Spent
    );
    assert_eq!(
        listed.issue("acme", &exchange).await.unwrap(),
        Issued::Spent
    );

    // A server of the previous version revoking a compact family takes it for a family of
    // sets and writes a mark apart: this version honours it, at the token endpoint and for
    // every access token.
    raw(&["SET", "{t:acme}:rfr:c", "1", "EX", "3600"]);
    for store in [&compact, &listed] {
        assert_eq!(
            store.issue("acme", &rotate("c", "c3", "c4")).await.unwrap(),
            Issued::Revoked
        );
        assert!(
            store
                .is_token_revoked("acme", "c1", Some("c"))
                .await
                .unwrap()
        );
        assert!(!store.is_family_live("acme", "c").await.unwrap());
    }
    // Copied into the family's hash, the revocation outlasts the mark apart: by the token
    // endpoint, or by the first check of one of its access tokens.
    raw(&["DEL", "{t:acme}:rfr:c"]);
    assert!(
        compact
            .is_token_revoked("acme", "c1", Some("c"))
            .await
            .unwrap()
    );
    assert!(!compact.is_family_live("acme", "c").await.unwrap());
    assert_eq!(
        compact
            .issue("acme", &start("d", "dc-d", "d1"))
            .await
            .unwrap(),
        Issued::Done
    );
    raw(&["SET", "{t:acme}:rfr:d", "1", "EX", "3600"]);
    assert!(
        compact
            .is_token_revoked("acme", "d1", Some("d"))
            .await
            .unwrap()
    );
    raw(&["DEL", "{t:acme}:rfr:d"]);
    assert!(
        compact
            .is_token_revoked("acme", "d1", Some("d"))
            .await
            .unwrap()
    );

    // A listed family revoked by a server from before the hash (a mark apart only) refuses
    // its rotation at both.
    assert_eq!(
        listed
            .issue("acme", &start("l9", "dc-l9", "l91"))
            .await
            .unwrap(),
        Issued::Done
    );
    raw(&["SET", "{t:acme}:rfr:l9", "1", "EX", "3600"]);
    for store in [&listed, &compact] {
        assert_eq!(
            store
                .issue("acme", &rotate("l9", "l91", "l92"))
                .await
                .unwrap(),
            Issued::Revoked
        );
    }
}
