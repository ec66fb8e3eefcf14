//! Loader tests: the shipped files load, and each kind of mistake is refused
//! with the file, the key and the reason.

use super::*;

/// A minimal valid configuration (users file, file mail provider).
pub(super) const MINIMAL: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[[clients]]
name = "vpn"
address = "10.1.2.0/24"
secret = "s3cret"

[users]
file = "users.toml"

[email.provider]
kind = "file"
"#;

/// Loads `text` as `/etc/mailotp/mailotp.toml`.
pub(super) fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_text(
        text,
        Source::File(PathBuf::from("/etc/mailotp/mailotp.toml")),
        LoadOptions::default(),
    )
}

fn error_of(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn embedded_default_loads_with_spec_values() {
    let c = Config::embedded().unwrap();
    assert_eq!(c.server.listen, vec!["127.0.0.1:1812".parse().unwrap()]);
    assert_eq!(c.clients[0].secret.expose(), b"testing123");
    assert!(!c.clients[0].require_message_authenticator);
    assert_eq!(c.users.source, UsersSource::Embedded);
    assert!(matches!(&c.email.provider, Provider::File { outbox } if outbox == Path::new("./outbox")));
}

#[test]
fn shipped_example_configuration_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let c = Config::load(&dir.join("mailotp.toml"), LoadOptions::default()).unwrap();
    assert!(!c.clients.is_empty());
}

#[test]
fn defaults_follow_linotp() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.email.challenge_validity, Duration::from_secs(600));
    assert_eq!(c.email.blocking_timeout, Duration::from_secs(120));
    assert_eq!(c.email.otp_length, 6);
    assert_eq!(c.email.max_attempts, 3);
    assert_eq!(c.email.subject, "Your OTP");
    assert_eq!(c.email.from.email.to_string(), "linotp@example.com");
    assert!(c.clients[0].require_message_authenticator);
    assert_eq!(c.clients[0].challenge_mode, ChallengeMode::AccessChallenge);
    assert_eq!(
        c.users.source,
        UsersSource::File(PathBuf::from("/etc/mailotp/users.toml"))
    );
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let text = MINIMAL.replace("secret = \"s3cret\"", "secret = \"s3cret\"\ncolour = \"blue\"");
    let err = error_of(&text);
    assert!(err.starts_with("/etc/mailotp/mailotp.toml: key `clients[0]"), "{err}");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn mistakes_name_file_key_and_reason() {
    let cases = [
        (
            MINIMAL.replace("10.1.2.0/24", "10.1.2.0/33"),
            "key `clients[0].address`: `10.1.2.0/33` is not an IP address or CIDR network",
        ),
        (
            MINIMAL.replace("secret = \"s3cret\"", ""),
            "key `clients[0].secret`: `clients[0].secret` or `clients[0].secret_file` is required",
        ),
        (
            MINIMAL.replace("secret = \"s3cret\"", "secret = \"\""),
            "key `clients[0].secret`: the secret is empty",
        ),
        (
            MINIMAL.replace("127.0.0.1:0", "localhost"),
            "key `server.listen[0]`: `localhost` is not an address with port",
        ),
        (
            MINIMAL.replace("kind = \"file\"", "kind = \"smtp\""),
            "key `email.provider.smtp_server`: required with kind = \"smtp\"",
        ),
        (
            MINIMAL.replace(
                "kind = \"file\"",
                "kind = \"smtp\"\nsmtp_server = \"mail\"\nsmtp_user = \"u\"",
            ),
            "key `email.provider.smtp_password`: smtp_user is set",
        ),
        (
            MINIMAL.replace("kind = \"file\"", "kind = \"pigeon\""),
            "key `email.provider.kind`: unknown variant `pigeon`",
        ),
    ];
    for (text, want) in cases {
        let err = error_of(&text);
        assert!(err.starts_with("/etc/mailotp/mailotp.toml: "), "{err}");
        assert!(err.contains(want), "want {want:?} in {err:?}");
    }
}

#[test]
fn otp_length_is_bounded() {
    let text = MINIMAL.replace("[email.provider]", "[email]\notp_length = 9\n\n[email.provider]");
    assert!(error_of(&text).contains("key `email.otp_length`: 9 is outside 6..=8"));
}

#[test]
fn fixed_otp_needs_test_mode() {
    let text = MINIMAL.replace(
        "[email.provider]",
        "[email]\nfixed_otp_for_testing = \"123456\"\n\n[email.provider]",
    );
    assert!(error_of(&text).contains("start with `serve --test-mode`"));
    let source = Source::File(PathBuf::from("t.toml"));
    let c = Config::from_text(&text, source, LoadOptions { test_mode: true }).unwrap();
    assert_eq!(c.email.fixed_otp.as_deref(), Some("123456"));
}

#[test]
fn secrets_come_from_files_without_the_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vpn.secret"), "from-file\n").unwrap();
    let text = MINIMAL.replace("secret = \"s3cret\"", "secret_file = \"vpn.secret\"");
    let path = dir.path().join("mailotp.toml");
    std::fs::write(&path, text).unwrap();
    let c = Config::load(&path, LoadOptions::default()).unwrap();
    assert_eq!(c.clients[0].secret.expose(), b"from-file");
    assert_eq!(format!("{:?}", c.clients[0].secret), "Secret([redacted])");
}

#[test]
fn drop_log_interval_defaults_to_ten_seconds_and_refuses_zero() {
    assert_eq!(load(MINIMAL).unwrap().server.drop_log_interval, Duration::from_secs(10));
    let text = MINIMAL.replace("[server]\n", "[server]\ndrop_log_interval = 0\n");
    assert_eq!(
        error_of(&text),
        "/etc/mailotp/mailotp.toml: key `server.drop_log_interval`: must be at least 1 second"
    );
}

#[test]
fn pin_queue_per_client_defaults_to_64_and_refuses_zero() {
    assert_eq!(load(MINIMAL).unwrap().server.pin_queue_per_client, 64);
    let text = MINIMAL.replace("[server]\n", "[server]\npin_queue_per_client = 0\n");
    assert_eq!(
        error_of(&text),
        "/etc/mailotp/mailotp.toml: key `server.pin_queue_per_client`: must be at least 1"
    );
}

fn with_state(state: &str) -> String {
    format!("{MINIMAL}\n[state]\n{state}\n")
}

#[test]
fn state_defaults_to_memory_and_redis_needs_url_and_key() {
    assert!(matches!(load(MINIMAL).unwrap().state, StateConfig::Memory));
    let no_url = error_of(&with_state("backend = \"redis\""));
    assert!(no_url.contains("key `state.redis_url`: required"), "{no_url}");
    let no_key = error_of(&with_state(
        "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"",
    ));
    assert!(no_key.contains("key `state.secret_file`: required"), "{no_key}");
    let stray = error_of(&with_state("redis_url = \"redis://127.0.0.1:6379\""));
    assert!(
        stray.contains("key `state.redis_url`: only used with backend = \"redis\""),
        "{stray}"
    );
    let bad = error_of(&with_state("backend = \"etcd\""));
    assert!(
        bad.contains("key `state.backend`: `etcd` is not a supported backend"),
        "{bad}"
    );
}

#[test]
fn pool_key_must_be_32_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let config = |key: &[u8]| {
        let path = dir.path().join("pool.key");
        std::fs::write(&path, key).unwrap();
        let text = with_state(&format!(
            "backend = \"redis\"\nredis_url = \"redis://:pw@127.0.0.1:6379\"\nsecret_file = \"{}\"",
            path.display()
        ));
        load(&text)
    };
    let short = config(&[7u8; 16]).unwrap_err().to_string();
    assert!(
        short.contains("key `state.secret_file`:") && short.contains("holds 16 bytes"),
        "{short}"
    );
    let StateConfig::Redis(raw) = config(&[7u8; 32]).unwrap().state else {
        panic!("redis backend expected")
    };
    assert_eq!(raw.key.expose(), &[7u8; 32]);
    assert_eq!(format!("{raw:?}"), "RedisConfig { url: [redacted], key: [redacted] }");
    assert_eq!(format!("{:?}", raw.key), "PoolKey([redacted])");
    let hex_key = format!("{}\n", "07".repeat(32));
    let StateConfig::Redis(hexed) = config(hex_key.as_bytes()).unwrap().state else {
        panic!("redis backend expected")
    };
    assert_eq!(hexed.key.expose(), &[7u8; 32]);
}

/// Every secret the file can hold, once inline.
const SECRETS: [&str; 3] = ["client-secret-7731", "smtp-pass-4410", "bind-pass-9902"];

#[test]
fn debug_of_the_configuration_never_shows_a_secret() {
    let text = format!(
        "{}\n",
        MINIMAL
            .replace("s3cret", SECRETS[0])
            .replace("file = \"users.toml\"\n", "backend = \"ldap\"\nldap_url = \"ldaps://ldap.example.com\"\nbind_dn = \"cn=svc\"\nbind_password = \"bind-pass-9902\"\nbase_dn = \"dc=example\"\nuser_filter = \"(uid={user})\"\n")
            .replace("kind = \"file\"", "kind = \"smtp\"\nsmtp_server = \"mail.example.com\"\nsmtp_user = \"relay\"\nsmtp_password = \"smtp-pass-4410\"")
    );
    let raw: RawConfig = parse_toml(&text, &"test").unwrap();
    let config = load(&text).unwrap();
    for shown in [format!("{raw:?}"), format!("{config:?}")] {
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("[redacted]"), "{shown}");
    }
    let Provider::Smtp(smtp) = &config.email.provider else {
        panic!("smtp expected")
    };
    assert_eq!(smtp.credentials.as_ref().unwrap().1.expose(), SECRETS[1].as_bytes());
    let UsersSource::Ldap(ldap) = &config.users.source else {
        panic!("ldap expected")
    };
    assert_eq!(format!("{:?}", ldap.bind_password), "Secret([redacted])");
}
