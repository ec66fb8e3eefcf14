//! Store semantics under paused time: blocking, expiry, single use, attempts.

use super::*;

fn settings() -> ChallengeSettings {
    ChallengeSettings {
        validity: Duration::from_secs(600),
        blocking: Duration::from_secs(120),
        max_attempts: 3,
    }
}

/// Limits that never refuse (the throttles are `limits`' tests).
fn no_limits() -> Arc<MemoryLimiter> {
    let lockout = crate::limits::Lockout {
        after: 0,
        duration: Duration::ZERO,
    };
    let throttling = crate::limits::Throttling::default();
    MemoryLimiter::start(throttling, lockout, &Lifecycle::new(Duration::ZERO))
}

fn store() -> Arc<MemoryStore> {
    MemoryStore::start(settings(), no_limits(), &Lifecycle::new(Duration::ZERO))
}

async fn open(store: &MemoryStore, user: &str, code: u32) -> (Transaction, Opened) {
    open_from(store, user, &here(), code).await
}

async fn open_from(store: &MemoryStore, user: &str, origin: &Origin, code: u32) -> (Transaction, Opened) {
    let tx = Transaction::random();
    let opened = open_valid(store, user, origin, tx, code, settings().validity).await;
    (tx, opened)
}

/// Opens a code challenge `tx` valid for `validity`.
async fn open_valid(
    store: &MemoryStore,
    user: &str,
    origin: &Origin,
    tx: Transaction,
    code: u32,
    validity: Duration,
) -> Opened {
    let code = Otp::from_value(code, 6);
    let new = NewChallenge {
        tx,
        code: &code,
        link: None,
        validity,
        max_attempts: settings().max_attempts,
        policy: None,
        deny: None,
        mail: None,
    };
    store.open(user, origin, new, None).await.unwrap()
}

/// The origin the user logs in from.
fn here() -> Origin {
    Origin::Station("198.51.100.7".to_owned())
}

/// Another origin, where someone else has the user's PIN.
fn elsewhere() -> Origin {
    Origin::Station("203.0.113.66".to_owned())
}

#[test]
fn state_round_trips_and_refuses_foreign_values() {
    let tx = Transaction::random();
    assert_eq!(Transaction::from_state(&tx.to_state()), Some(tx));
    for bad in [&b""[..], b"abc", &[b'0'; 31], &[b'0'; 33], &[b'A'; 32], &[b'g'; 32]] {
        assert_eq!(Transaction::from_state(bad), None);
    }
}

#[tokio::test(start_paused = true)]
async fn pin_again_within_blocking_timeout_reuses_the_challenge() {
    let store = store();
    let (first, opened) = open(&store, "alice", 111111).await;
    assert_eq!(opened, Opened::New);
    let (_, again) = open(&store, "alice", 222222).await;
    let left = settings().validity;
    assert_eq!(again, Opened::AlreadySent { tx: first, left });
    tokio::time::advance(Duration::from_secs(121)).await;
    let (_, later) = open(&store, "alice", 333333).await;
    assert_eq!(later, Opened::New);
    assert_eq!(store.open_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_code_is_accepted_once() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Accepted { policy: None }
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Unknown
    );
    assert_eq!(store.open_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_state_belongs_to_its_user() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    assert_eq!(
        store.answer(&tx, "bob", &here(), b"123456").await.unwrap(),
        Answer::Unknown
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Accepted { policy: None }
    );
}

#[tokio::test(start_paused = true)]
async fn wrong_answers_void_the_challenge_at_max_attempts() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"000000").await.unwrap(),
        Answer::Wrong { void: false }
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"000000").await.unwrap(),
        Answer::Wrong { void: false }
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"000000").await.unwrap(),
        Answer::Wrong { void: true }
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Unknown
    );
}

#[tokio::test(start_paused = true)]
async fn expired_challenges_are_swept() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    tokio::time::advance(Duration::from_secs(601)).await;
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Unknown
    );
    // Let the sweeper run: its deadline has passed.
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(store.open_count(), 0);
    assert!(store.by_user.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_older_code_is_accepted_under_the_newer_state_and_closes_both() {
    let store = store();
    let (_older, _) = open(&store, "alice", 111111).await;
    tokio::time::advance(Duration::from_secs(121)).await;
    let (newer, opened) = open(&store, "alice", 222222).await;
    assert_eq!(opened, Opened::New);
    assert_eq!(
        store.answer(&newer, "alice", &here(), b"111111").await.unwrap(),
        Answer::Accepted { policy: None }
    );
    assert_eq!(store.open_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn find_then_consume_is_single_use() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    assert_eq!(
        store.find("alice", &here(), b"123456").await.unwrap(),
        CodeMatch::Matched(tx)
    );
    assert_eq!(store.find("alice", &here(), b"654321").await.unwrap(), CodeMatch::Wrong);
    assert_eq!(
        store.find("alice", &elsewhere(), b"123456").await.unwrap(),
        CodeMatch::NoChallenge
    );
    assert!(store.consume("alice", &tx).await.unwrap());
    assert!(!store.consume("alice", &tx).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn open_challenges_per_user_are_bounded() {
    let store = MemoryStore::start(
        ChallengeSettings {
            blocking: Duration::ZERO,
            ..settings()
        },
        no_limits(),
        &Lifecycle::new(Duration::ZERO),
    );
    let mut txs = Vec::new();
    for i in 0..(MAX_OPEN_PER_USER as u32 + 3) {
        txs.push(open(&store, "bob", 100000 + i).await.0);
    }
    assert_eq!(store.open_count(), MAX_OPEN_PER_USER);
    // The oldest were closed, the newest still answer.
    assert_eq!(
        store.answer(&txs[0], "bob", &here(), b"100000").await.unwrap(),
        Answer::Unknown
    );
    let last = txs.len() as u32 - 1;
    let code = format!("{}", 100000 + last);
    assert_eq!(
        store
            .answer(&txs[last as usize], "bob", &here(), code.as_bytes())
            .await
            .unwrap(),
        Answer::Accepted { policy: None }
    );
}

#[tokio::test(start_paused = true)]
async fn a_link_challenge_waits_for_one_confirmation() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    let token = LinkToken::random();
    store.attach("alice", &tx, &token);
    assert!(matches!(store.link_status(&token).await.unwrap(), LinkStatus::Pending { user, .. } if user == "alice"));
    for _ in 0..5 {
        assert!(
            matches!(
                store.answer(&tx, "alice", &here(), b"").await.unwrap(),
                Answer::LinkPending { .. }
            ),
            "no attempt used"
        );
    }
    assert!(matches!(
        store.confirm_link(&token).await.unwrap(),
        LinkStatus::Pending { .. }
    ));
    assert_eq!(
        store.confirm_link(&token).await.unwrap(),
        LinkStatus::Gone,
        "confirms once"
    );
    assert_eq!(
        store.answer(&tx, "bob", &here(), b"").await.unwrap(),
        Answer::Unknown,
        "another user's State"
    );
    assert_eq!(
        store.answer(&tx, "alice", &elsewhere(), b"").await.unwrap(),
        Answer::Unknown,
        "the confirmation completes only the origin's login"
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"").await.unwrap(),
        Answer::Accepted { policy: None }
    );
    assert_eq!(store.answer(&tx, "alice", &here(), b"").await.unwrap(), Answer::Unknown);
    assert_eq!(store.link_status(&token).await.unwrap(), LinkStatus::Gone);
    assert_eq!(
        store.link_status(&LinkToken::random()).await.unwrap(),
        LinkStatus::Unknown
    );
}

#[tokio::test(start_paused = true)]
async fn an_expired_link_is_gone_then_forgotten() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    let token = LinkToken::random();
    store.attach("alice", &tx, &token);
    tokio::time::advance(Duration::from_secs(601)).await;
    assert_eq!(store.confirm_link(&token).await.unwrap(), LinkStatus::Gone);
    tokio::time::advance(LINK_MEMORY).await;
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(store.link_status(&token).await.unwrap(), LinkStatus::Unknown);
    assert!(store.links.is_empty());
}

#[test]
fn a_record_has_no_padding_to_spare() {
    // The memory budget (256 bytes per open challenge at a million) counts on
    // it: the map's buckets hold a Transaction and a Record each. The origin's
    // 8-byte hash took it from 48 to 56; the policy's number fills the last
    // 2 bytes of padding.
    assert_eq!(std::mem::size_of::<Record>(), 56);
}

#[tokio::test(start_paused = true)]
async fn another_origin_can_neither_use_nor_void_nor_learn_a_state() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    let (_, again) = open_from(&store, "alice", &elsewhere(), 222222).await;
    assert_eq!(again, Opened::SentElsewhere, "the State is not handed out");
    for _ in 0..5 {
        assert_eq!(
            store.answer(&tx, "alice", &elsewhere(), b"000000").await.unwrap(),
            Answer::Unknown
        );
    }
    assert_eq!(
        store.answer(&tx, "alice", &elsewhere(), b"123456").await.unwrap(),
        Answer::Unknown,
        "not even with the right code"
    );
    let (_, same) = open(&store, "alice", 333333).await;
    assert!(
        matches!(same, Opened::AlreadySent { tx: same, .. } if same == tx),
        "a retrying NAS gets the same State"
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Accepted { policy: None }
    );
}

#[tokio::test(start_paused = true)]
async fn wrong_codes_in_pin_and_code_void_the_origins_code_challenges() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    for _ in 0..3 {
        store.wrong_code("alice", &elsewhere()).await.unwrap();
    }
    assert_eq!(
        store.find("alice", &here(), b"123456").await.unwrap(),
        CodeMatch::Matched(tx)
    );
    for _ in 0..3 {
        store.wrong_code("alice", &here()).await.unwrap();
    }
    assert_eq!(
        store.find("alice", &here(), b"123456").await.unwrap(),
        CodeMatch::NoChallenge
    );
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Unknown
    );
}

#[tokio::test(start_paused = true)]
async fn a_link_challenge_is_not_found_by_its_code() {
    let store = store();
    let (tx, _) = open(&store, "alice", 123456).await;
    store.attach("alice", &tx, &LinkToken::random());
    assert_eq!(
        store.find("alice", &here(), b"123456").await.unwrap(),
        CodeMatch::NoChallenge
    );
    store.wrong_code("alice", &here()).await.unwrap();
    assert!(matches!(
        store.answer(&tx, "alice", &here(), b"").await.unwrap(),
        Answer::LinkPending { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_challenge_of_its_own_validity_ends_its_blocking_with_it() {
    let (store, here) = (store(), here());
    let short = Duration::from_secs(60);
    let tx = Transaction::random();
    assert_eq!(open_valid(&store, "alice", &here, tx, 111111, short).await, Opened::New);
    tokio::time::advance(Duration::from_secs(20)).await;
    let again = open_valid(&store, "alice", &here, Transaction::random(), 222222, short).await;
    let left = Duration::from_secs(40);
    assert_eq!(again, Opened::AlreadySent { tx, left }, "the rest of its validity");
    // Past its 60 s (inside the 120 s blocking timeout): a new challenge.
    tokio::time::advance(Duration::from_secs(41)).await;
    let later = open_valid(&store, "alice", &here, Transaction::random(), 333333, short).await;
    assert_eq!(later, Opened::New);
}

#[tokio::test(start_paused = true)]
async fn a_challenge_keeps_its_own_max_attempts_and_policy() {
    let store = store();
    let (tx, code) = (Transaction::random(), Otp::from_value(123456, 6));
    let new = NewChallenge {
        tx,
        code: &code,
        link: None,
        validity: settings().validity,
        max_attempts: 5,
        policy: Some("admins"),
        deny: None,
        mail: None,
    };
    assert_eq!(store.open("alice", &here(), new, None).await.unwrap(), Opened::New);
    // [email]'s 3 attempts are not this challenge's 5.
    for _ in 0..4 {
        assert_eq!(
            store.answer(&tx, "alice", &here(), b"000000").await.unwrap(),
            Answer::Wrong { void: false }
        );
    }
    assert_eq!(
        store.answer(&tx, "alice", &here(), b"123456").await.unwrap(),
        Answer::Accepted {
            policy: Some("admins".to_owned())
        }
    );
}
