//! The sealing of queued mails, and (against a real redis-server) what
//! happens to a job an instance cannot open.

use std::process::{Child, Command, Stdio};

use super::*;
use crate::config::PoolKey;
use crate::health::Health;
use crate::redis::PoolKeys;

fn queue(key: [u8; 32]) -> Arc<RedisOutbox> {
    queue_at("redis://127.0.0.1:1/0", key)
}

fn queue_at(url: &str, key: [u8; 32]) -> Arc<RedisOutbox> {
    let config = RedisConfig {
        url: url.to_owned(),
        key: PoolKey::new(key),
    };
    let keys = PoolKeys::derive(&config.key);
    let redis = Redis::connect(&config, &keys.fingerprint, Arc::new(Health::default())).unwrap();
    RedisOutbox::new(redis, &config, &keys.mail, Duration::from_secs(600), 10).unwrap()
}

fn job() -> MailJob {
    MailJob {
        to: "alice@example.test".parse().unwrap(),
        user: "alice".to_owned(),
        otp: Otp::from_value(493817, 6),
        link: Some(Zeroizing::new("https://otp.example.test/l/0123".to_owned())),
        deny_link: Some(Zeroizing::new("https://otp.example.test/d/4567".to_owned())),
        asked: AskedBy {
            client_ip: Some("203.0.113.9".to_owned()),
            nas: "vpn1".to_owned(),
            at_unix: 1_796_000_000,
            until_unix: 1_796_000_600,
        },
        language: Some("de".to_owned()),
        tx: Transaction::random(),
        expires: Instant::now() + Duration::from_secs(600),
    }
}

#[tokio::test]
async fn queued_mails_are_sealed_and_open_only_under_the_pool_key() {
    let (one, other, stranger) = (queue([5; 32]), queue([5; 32]), queue([6; 32]));
    let job = job();
    let sealed = one.seal(&job).unwrap();
    assert!(!sealed.windows(6).any(|w| w == b"493817"), "no code in clear");
    assert!(!sealed.windows(5).any(|w| w == b"alice"), "no user in clear");
    let opened = other.open(&sealed).expect("another instance of the pool opens it");
    assert_eq!(opened.otp.expose(), "493817");
    assert_eq!(
        opened.link.as_deref().map(String::as_str),
        Some("https://otp.example.test/l/0123")
    );
    assert_eq!((opened.tx, opened.user.as_str()), (job.tx, "alice"));
    assert_eq!(opened.asked, job.asked);
    assert_eq!(
        opened.deny_link.as_deref().map(String::as_str),
        Some("https://otp.example.test/d/4567")
    );
    assert_eq!(opened.to.email.to_string(), "alice@example.test");
    assert!(opened.expires > Instant::now() + Duration::from_secs(590));
    assert!(stranger.open(&sealed).is_none(), "another key does not open it");
    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(one.open(&tampered).is_none(), "a changed job does not open");
    assert!(one.open(&sealed[..10]).is_none());
}

/// A redis-server on a free port, without persistence; killed (by PID) on drop.
struct TestRedis {
    child: Child,
    url: String,
}

impl TestRedis {
    fn start() -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let url = format!("redis://127.0.0.1:{port}/0");
        let client = redis::Client::open(url.as_str()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while client
            .get_connection()
            .and_then(|mut c| redis::cmd("PING").query::<()>(&mut c))
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TestRedis { child, url }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn read_one(queue: &RedisOutbox) -> StreamId {
    let reply: StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(GROUP)
        .arg(&queue.consumer)
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&queue.stream)
        .arg(">")
        .query_async(&mut queue.redis.conn.clone())
        .await
        .unwrap();
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .next()
        .expect("a job to read")
}

#[tokio::test]
async fn a_job_under_another_key_is_left_pending_and_taken_by_an_instance_that_opens_it() {
    let redis = TestRedis::start();
    let (ours, theirs) = (queue_at(&redis.url, [5; 32]), queue_at(&redis.url, [6; 32]));
    let mut conn = ours.redis.conn.clone();
    ours.ensure_group(&mut conn).await.unwrap();
    let sealed = theirs.seal(&job()).unwrap();
    let id: String = redis::cmd("XADD")
        .arg(&ours.stream)
        .arg("*")
        .arg("job")
        .arg(sealed)
        .query_async(&mut conn)
        .await
        .unwrap();

    let entry = read_one(&ours).await;
    assert_eq!(entry.id, id);
    assert!(ours.open_entry(&entry).await.is_none(), "not ours to open");
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(&ours.stream)
        .arg(GROUP)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.count(), 1, "left pending, not acknowledged");

    // Idle at once: the instance with the right key takes it on its next look.
    let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(&theirs.stream)
        .arg(GROUP)
        .arg(&theirs.consumer)
        .arg(millis(TAKEOVER_IDLE))
        .arg("0-0")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(claimed.claimed.len(), 1);
    let job = theirs.open_entry(&claimed.claimed[0]).await.expect("theirs opens it");
    assert_eq!(job.otp.expose(), "493817");
}

async fn pending_count(outbox: &RedisOutbox) -> usize {
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(&outbox.stream)
        .arg(GROUP)
        .query_async(&mut outbox.redis.conn.clone())
        .await
        .unwrap();
    pending.count()
}

#[tokio::test]
async fn a_job_to_retry_stays_held_and_a_finished_one_is_acknowledged_and_deleted() {
    let redis = TestRedis::start();
    let outbox = queue_at(&redis.url, [5; 32]);
    let mut conn = outbox.redis.conn.clone();
    outbox.ensure_group(&mut conn).await.unwrap();
    outbox.enqueue(job()).await.unwrap();

    outbox.hold(&read_one(&outbox).await).await;
    let taken = outbox.take_ready().expect("held for the delivery worker");
    assert_eq!(taken.otp.expose(), "493817");
    assert_eq!(outbox.pending(), 1);

    outbox.report(&taken, Outcome::RetryLater).await;
    assert_eq!((outbox.pending(), pending_count(&outbox).await), (1, 1), "kept");

    outbox.report(&taken, Outcome::Delivered).await;
    assert_eq!((outbox.pending(), pending_count(&outbox).await), (0, 0), "acknowledged");
    let left: usize = redis::cmd("XLEN")
        .arg(&outbox.stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "deleted from the stream");
}

#[tokio::test]
async fn jobs_finished_together_are_all_acknowledged_and_deleted() {
    let redis = TestRedis::start();
    let outbox = queue_at(&redis.url, [5; 32]);
    let mut conn = outbox.redis.conn.clone();
    outbox.ensure_group(&mut conn).await.unwrap();
    for _ in 0..10 {
        let mut one = job();
        one.tx = Transaction::random();
        outbox.enqueue(one).await.unwrap();
    }
    let mut reports = tokio::task::JoinSet::new();
    for _ in 0..10 {
        outbox.hold(&read_one(&outbox).await).await;
        let taken = outbox.take_ready().expect("held for the delivery worker");
        let outbox = Arc::clone(&outbox);
        reports.spawn(async move { outbox.report(&taken, Outcome::Delivered).await });
    }
    while reports.join_next().await.is_some() {}
    assert_eq!(outbox.pending(), 0);
    // A report that found a flush running returns before its batch is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: usize = redis::cmd("XLEN")
            .arg(&outbox.stream)
            .query_async(&mut conn)
            .await
            .unwrap();
        if left == 0 && pending_count(&outbox).await == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{left} jobs left in the stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
