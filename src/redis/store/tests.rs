//! The checks a challenge read back from Redis must pass. No Redis is
//! needed: the store connects lazily and these checks never call it.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::{PoolKey, RedisConfig};
use crate::health::Health;

fn store(key: u8) -> Arc<RedisStore> {
    let config = RedisConfig {
        url: "redis://127.0.0.1:1/0".to_owned(),
        key: PoolKey::new([key; 32]),
    };
    let keys = PoolKeys::derive(&config.key);
    let redis = Redis::connect(&config, &keys.fingerprint, Arc::new(Health::default())).unwrap();
    let settings = ChallengeSettings {
        validity: Duration::from_secs(600),
        blocking: Duration::from_secs(120),
        max_attempts: 3,
    };
    let queue = crate::redis::mail::QueueArgs {
        stream: "mailotp:mail".to_owned(),
        limit: 10,
        ttl_ms: 60_000,
    };
    RedisStore::new(redis, &keys, settings, crate::limits::Throttling::default(), queue)
}

/// A record as OPEN writes it, in the order DIGESTS reads it back.
fn record(store: &RedisStore, tx: &Transaction, user: &str, expires: u64) -> Vec<Vec<u8>> {
    let digest = store.sealer.seal(tx, b"123456");
    let expires = expires.to_string();
    let origin = b"s:198.51.100.7";
    let (policy, max_attempts) = (b"admins", b"2");
    let fields = challenge_fields([
        user.as_bytes(),
        &digest,
        expires.as_bytes(),
        origin,
        policy,
        max_attempts,
    ]);
    let mac = store.records.mac(&challenge_key(&tx.to_string()), &fields);
    vec![
        tx.to_string().into_bytes(),
        user.as_bytes().to_vec(),
        digest.to_vec(),
        expires.into_bytes(),
        origin.to_vec(),
        policy.to_vec(),
        max_attempts.to_vec(),
        mac.to_vec(),
        Vec::new(),
    ]
}

fn in_ten_minutes() -> u64 {
    now_unix_ms() + 600_000
}

#[tokio::test]
async fn only_a_record_of_this_pool_user_and_state_counts() {
    let store = store(1);
    let tx = Transaction::random();
    let honest = record(&store, &tx, "alice", in_ten_minutes());
    let open = store.checked("alice", &honest).expect("an honest record");
    assert_eq!((open.tx, open.link), (tx, Link::None));
    assert_eq!((open.policy.as_deref(), open.max_attempts), (Some("admins"), 2));
    assert!(store.checked("bob", &honest).is_none(), "alice's, read for bob");
    assert!(self::store(2).checked("alice", &honest).is_none(), "another pool key");
    let mut moved = honest.clone();
    moved[0] = Transaction::random().to_string().into_bytes();
    assert!(store.checked("alice", &moved).is_none(), "under another State");
    for field in [1, 2, 3, 4, 5, 6, 7] {
        let mut changed = honest.clone();
        *changed[field].last_mut().unwrap() ^= 1;
        assert!(store.checked("alice", &changed).is_none(), "field {field} changed");
    }
    let expired = record(&store, &tx, "alice", now_unix_ms() - 1);
    assert!(store.checked("alice", &expired).is_none(), "past its validity");
}

#[tokio::test]
async fn a_link_mark_counts_only_as_written_for_its_own_challenge() {
    let (store, stranger) = (store(1), store(2));
    let (one, other) = (challenge_key("aa"), challenge_key("bb"));
    assert_eq!(store.link_mark(&one, b""), Some(Link::None));
    assert_eq!(store.link_mark(&one, &store.mark(&one, PENDING)), Some(Link::Pending));
    assert_eq!(
        store.link_mark(&one, &store.mark(&one, CONFIRMED)),
        Some(Link::Confirmed)
    );
    assert_eq!(store.link_mark(&one, b"c"), None, "the flag set by hand");
    assert_eq!(
        store.link_mark(&other, &store.mark(&one, CONFIRMED)),
        None,
        "another challenge's"
    );
    let mut relabelled = store.mark(&one, PENDING);
    relabelled[0] = CONFIRMED;
    assert_eq!(store.link_mark(&one, &relabelled), None, "pending relabelled confirmed");
    assert_eq!(
        store.link_mark(&one, &stranger.mark(&one, CONFIRMED)),
        None,
        "another pool key"
    );
}
