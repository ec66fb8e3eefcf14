//! The decision against stub users and counting stores: what a stranger
//! could measure from outside must not tell known users from unknown ones.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::answers::mask;
use super::*;
use crate::challenge::{ChallengeSettings, MemoryStore};
use crate::config::ChallengeMode;
use crate::config::{Config, LoadOptions, Source};
use crate::lifecycle::Lifecycle;
use crate::limits::{Lockout, MemoryLimiter, Throttling};
use crate::policy::Conditions;
use crate::users::DirectoryError;
use crate::wire::Code;

/// alice's PIN is 1234; nobody else exists.
struct Stub;

#[async_trait::async_trait]
impl UserDirectory for Stub {
    async fn check_pin(&self, name: &str, pin: &[u8], gate: &dyn LockGate) -> Result<PinCheck, DirectoryError> {
        let locked = gate.is_locked(name).await;
        Ok(match (name, pin) {
            ("alice", _) if locked => PinCheck::Locked("alice".to_owned()),
            ("alice", b"1234") => PinCheck::Valid(User {
                name: "alice".to_owned(),
                email: "alice@example.test".parse().unwrap(),
                groups: vec!["staff".to_owned()],
                languages: Vec::new(),
            }),
            ("alice", _) => PinCheck::WrongPin("alice".to_owned()),
            _ => PinCheck::UnknownUser,
        })
    }

    fn len(&self) -> usize {
        1
    }
}

/// Counts the limiter's round trips.
struct Counting {
    inner: Arc<MemoryLimiter>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Limiter for Counting {
    async fn is_locked(&self, user: &str) -> Result<bool, BackendUnavailable> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.is_locked(user).await
    }
    async fn failed(&self, user: &str) -> Result<bool, BackendUnavailable> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.failed(user).await
    }
    async fn lock(&self, user: &str) -> Result<(), BackendUnavailable> {
        self.inner.lock(user).await
    }
    async fn reset_failures(&self, user: &str) -> Result<(), BackendUnavailable> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.reset_failures(user).await
    }
}

fn authenticator(limits: Arc<Counting>) -> Authenticator {
    let text = "[server]\nlisten = [\"127.0.0.1:0\"]\n[[clients]]\nname = \"vpn\"\naddress = \"10.1.2.0/24\"\n\
                secret = \"s3cret\"\n[users]\nfile = \"users.toml\"\n[email.provider]\nkind = \"file\"\n";
    let config = Config::from_text(
        text,
        Source::File("/nonexistent/mailotp.toml".into()),
        LoadOptions::default(),
    )
    .unwrap();
    let life = Lifecycle::new(Duration::from_secs(1));
    let settings = ChallengeSettings {
        validity: Duration::from_secs(600),
        blocking: Duration::from_secs(120),
        max_attempts: 3,
    };
    Authenticator {
        users: ArcSwap::from_pointee(Box::new(Stub) as Box<dyn UserDirectory>),
        challenges: MemoryStore::start(settings, Arc::clone(&limits.inner), &life),
        limits,
        mail: crate::mail::start(&config.email, &life).unwrap(),
        settings: ArcSwap::from_pointee(AuthSettings::from(&config.email)),
        denied: Arc::default(),
        policies: ArcSwap::default(),
    }
}

fn counting() -> Arc<Counting> {
    let lockout = Lockout {
        after: 10,
        duration: Duration::from_secs(300),
    };
    let inner = MemoryLimiter::start(Throttling::default(), lockout, &Lifecycle::new(Duration::ZERO));
    Arc::new(Counting {
        inner,
        calls: AtomicUsize::new(0),
    })
}

fn request<'a>(user: &'a str, password: &'a [u8]) -> Request<'a> {
    Request {
        user,
        password,
        state: None,
        challenge_mode: ChallengeMode::AccessChallenge,
        client_ip: Some("198.51.100.7"),
        trusted_email: None,
        client: "vpn",
    }
}

#[tokio::test]
async fn unknown_and_known_users_cost_the_same_limiter_round_trips() {
    for password in [&b"wrong"[..], b"wrong-pin-123456"] {
        let (known, unknown) = (counting(), counting());
        let (a, b) = (authenticator(Arc::clone(&known)), authenticator(Arc::clone(&unknown)));
        let wrong = a.decide(&request("alice", password)).await.unwrap();
        let nobody = b.decide(&request("mallory", password)).await.unwrap();
        assert_eq!((wrong.code, wrong.reason), (Code::AccessReject, Reason::WrongPin));
        assert_eq!((nobody.code, nobody.reason), (Code::AccessReject, Reason::UnknownUser));
        assert_eq!(
            known.calls.load(Ordering::Relaxed),
            unknown.calls.load(Ordering::Relaxed),
            "password {:?}",
            String::from_utf8_lossy(password)
        );
    }
}

#[tokio::test]
async fn a_pin_holder_elsewhere_gets_a_reject_without_state() {
    let auth = authenticator(counting());
    let first = auth.decide(&request("alice", b"1234")).await.unwrap();
    assert_eq!(first.code, Code::AccessChallenge);
    let elsewhere = Request {
        client_ip: Some("203.0.113.66"),
        ..request("alice", b"1234")
    };
    let refused = auth.decide(&elsewhere).await.unwrap();
    assert_eq!(refused.code, Code::AccessReject);
    assert_eq!((refused.state, refused.reason), (None, Reason::SentElsewhere));
    assert_eq!(refused.reply_message.as_deref(), Some(ALREADY_SUBMITTED));
    let again = auth.decide(&request("alice", b"1234")).await.unwrap();
    assert_eq!(again.state, first.state, "the same origin gets the same State");
}

#[test]
fn addresses_are_masked() {
    assert_eq!(mask("alice@example.com"), "a***@example.com");
    assert_eq!(mask("weird"), "your e-mail address");
}

#[tokio::test]
async fn status_server_is_answered_by_the_handler_and_silenced_by_a_backend_down() {
    let handler = Handler {
        auth: authenticator(counting()),
        health: Arc::default(),
    };
    assert!(handler.answers_at_once(Kind::StatusServer) && !handler.answers_at_once(Kind::Pin));
    let alive = handler.handle(&Incoming::StatusServer).await.unwrap();
    assert_eq!((alive.code, alive.reason), (Code::AccessAccept, Reason::StatusServer));
    let challenge = handler.handle(&Incoming::Access(request("alice", b"1234"))).await;
    assert_eq!(challenge.unwrap().code, Code::AccessChallenge);
    assert_eq!(handler.stats().open_challenges, 1);
    handler.health.down(crate::health::Backend::Directory);
    assert!(matches!(
        handler.handle(&Incoming::StatusServer).await,
        Err(Unavailable::Backend)
    ));
}

fn policy(name: &str, groups: &[&str], second_factor: SecondFactor) -> Policy {
    Policy {
        name: name.to_owned(),
        conditions: Conditions {
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            ..Conditions::default()
        },
        second_factor,
        challenge_validity: None,
        otp_length: None,
        max_attempts: None,
        delivery: None,
        reply: vec![crate::dictionary::Dictionary::builtin()
            .encode("Filter-Id", "admins")
            .unwrap()],
    }
}

#[tokio::test]
async fn an_exempt_user_is_accepted_on_the_pin_with_the_policy_reply_and_no_challenge() {
    let auth = authenticator(counting());
    auth.policies.store(Arc::new(Policies(vec![policy(
        "service",
        &["staff"],
        SecondFactor::None,
    )])));
    let accepted = auth.decide(&request("alice", b"1234")).await.unwrap();
    assert_eq!((accepted.code, accepted.reason), (Code::AccessAccept, Reason::Exempt));
    assert_eq!(accepted.policy.as_deref(), Some("service"));
    assert_eq!((accepted.attributes[0].attr_type, accepted.state), (11, None));
    assert_eq!(auth.challenges.open_count(), 0);
    // A wrong PIN is a wrong PIN whatever the policy.
    let wrong = auth.decide(&request("alice", b"9999")).await.unwrap();
    assert_eq!(
        (wrong.code, wrong.reason, wrong.policy),
        (Code::AccessReject, Reason::WrongPin, None)
    );
}

#[tokio::test]
async fn a_denied_user_gets_the_answer_of_a_wrong_pin_and_the_same_round_trips() {
    let (denied_calls, wrong_calls) = (counting(), counting());
    let (auth, other) = (
        authenticator(Arc::clone(&denied_calls)),
        authenticator(Arc::clone(&wrong_calls)),
    );
    auth.policies.store(Arc::new(Policies(vec![policy(
        "no-staff",
        &["staff"],
        SecondFactor::Deny,
    )])));
    let denied = auth.decide(&request("alice", b"1234")).await.unwrap();
    let wrong = other.decide(&request("alice", b"9999")).await.unwrap();
    assert_eq!(denied.reason, Reason::DeniedByPolicy);
    assert_eq!(denied.policy.as_deref(), Some("no-staff"));
    assert_eq!(
        (denied.code, denied.state, &denied.reply_message, &denied.attributes),
        (wrong.code, wrong.state, &wrong.reply_message, &wrong.attributes)
    );
    assert_eq!(auth.challenges.open_count(), 0);
    assert_eq!(
        denied_calls.calls.load(Ordering::Relaxed),
        wrong_calls.calls.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn a_policy_that_does_not_match_leaves_the_email_settings() {
    let auth = authenticator(counting());
    auth.policies.store(Arc::new(Policies(vec![policy(
        "admins",
        &["admins"],
        SecondFactor::Deny,
    )])));
    let challenge = auth.decide(&request("alice", b"1234")).await.unwrap();
    assert_eq!((challenge.code, challenge.policy), (Code::AccessChallenge, None));
}

#[tokio::test]
async fn a_code_finishing_a_login_through_a_client_the_policy_denies_is_refused() {
    let auth = authenticator(counting());
    let mut settings = (**auth.settings.load()).clone();
    settings.fixed_otp = Some("123456".to_owned());
    auth.settings.store(Arc::new(settings));
    let mut off_other = policy("off-other", &[], SecondFactor::Deny);
    off_other.conditions = Conditions {
        clients: Some(vec!["other".to_owned()]),
        ..Conditions::default()
    };
    auth.policies.store(Arc::new(Policies(vec![off_other])));
    // Opened through "vpn", where no policy applies...
    let opened = auth.decide(&request("alice", b"1234")).await.unwrap();
    assert_eq!(opened.code, Code::AccessChallenge);
    let state = opened.state.unwrap().to_state();
    // ...and answered through "other" with the same Calling-Station-Id.
    let through_other = Request {
        state: Some(&state),
        client: "other",
        ..request("alice", b"123456")
    };
    let refused = auth.decide(&through_other).await.unwrap();
    assert_eq!(
        (refused.code, refused.reason),
        (Code::AccessReject, Reason::DeniedByPolicy)
    );
    assert_eq!(refused.policy.as_deref(), Some("off-other"));
    assert!(refused.attributes.is_empty(), "no reply attributes on a refusal");
}

/// `auth` with a fixed code and the policies `policies`.
fn with_policies(policies: Vec<Policy>) -> Authenticator {
    let auth = authenticator(counting());
    let mut settings = (**auth.settings.load()).clone();
    settings.fixed_otp = Some("123456".to_owned());
    auth.settings.store(Arc::new(settings));
    auth.policies.store(Arc::new(Policies(policies)));
    auth
}

/// The State alice's right PIN gets.
async fn pin_state(auth: &Authenticator) -> [u8; 32] {
    let decision = auth.decide(&request("alice", b"1234")).await.unwrap();
    decision.state.expect("a challenge").to_state()
}

/// The State's answer `code` from where `request` comes from.
async fn answer(auth: &Authenticator, state: &[u8], code: &[u8]) -> Decision {
    let req = Request {
        state: Some(state),
        ..request("alice", code)
    };
    auth.decide(&req).await.unwrap()
}

#[tokio::test]
async fn the_answer_gets_the_policy_the_challenge_was_opened_under() {
    // The directory's groups (staff) are not known on the State's path:
    // the policy comes with the challenge.
    let auth = with_policies(vec![policy("staff", &["staff"], SecondFactor::Email)]);
    let state = pin_state(&auth).await;
    let accepted = answer(&auth, &state, b"123456").await;
    assert_eq!(
        (accepted.code, accepted.policy.as_deref()),
        (Code::AccessAccept, Some("staff"))
    );
    assert_eq!(accepted.attributes[0].attr_type, 11, "the policy's Filter-Id");
    // Renamed by a reload while the challenge is open: `[email]`'s answer.
    let state = pin_state(&auth).await;
    auth.policies.store(Arc::new(Policies(vec![policy(
        "renamed",
        &["staff"],
        SecondFactor::Email,
    )])));
    let accepted = answer(&auth, &state, b"123456").await;
    assert_eq!((accepted.code, accepted.policy), (Code::AccessAccept, None));
    assert!(accepted.attributes.is_empty());
}

#[tokio::test]
async fn a_policy_max_attempts_voids_its_challenge_at_the_nth_wrong_answer() {
    let mut strict = policy("strict", &["staff"], SecondFactor::Email);
    strict.max_attempts = Some(1);
    let auth = with_policies(vec![strict]);
    let state = pin_state(&auth).await;
    assert_eq!(answer(&auth, &state, b"000000").await.reason, Reason::ChallengeVoid);
    assert_eq!(answer(&auth, &state, b"123456").await.reason, Reason::UnknownState);
}

#[tokio::test]
async fn a_wrong_code_of_a_policy_length_counts_against_the_open_challenge() {
    let mut long = policy("long", &["staff"], SecondFactor::Email);
    (long.otp_length, long.max_attempts) = (Some(8), Some(1));
    let auth = authenticator(counting());
    auth.policies.store(Arc::new(Policies(vec![long])));
    let opened = auth.decide(&request("alice", b"1234")).await.unwrap();
    assert_eq!(opened.reason, Reason::ChallengeSent);
    let wrong = auth.decide(&request("alice", b"123400000000")).await.unwrap();
    assert_eq!((wrong.code, wrong.reason), (Code::AccessReject, Reason::WrongOtp));
    // That was its one attempt: the PIN now opens a new challenge.
    let again = auth.decide(&request("alice", b"1234")).await.unwrap();
    assert_eq!(again.reason, Reason::ChallengeSent);
    assert_ne!(again.state, opened.state);
}

#[tokio::test]
async fn an_exempt_accept_starts_the_failures_in_a_row_from_zero() {
    let auth = with_policies(vec![policy("service", &["staff"], SecondFactor::None)]);
    for _ in 0..2 {
        for _ in 0..9 {
            assert_eq!(
                auth.decide(&request("alice", b"9999")).await.unwrap().reason,
                Reason::WrongPin
            );
        }
        let accepted = auth.decide(&request("alice", b"1234")).await.unwrap();
        assert_eq!(accepted.reason, Reason::Exempt, "18 failures, never 10 in a row");
    }
}
