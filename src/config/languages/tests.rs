use std::path::Path;

use super::*;

/// Writes `files` (path under the directory, text) into a new directory.
fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn load(dir: &Path, messages: &[(&str, &str)], link: bool) -> Result<Wording, String> {
    let messages: BTreeMap<String, String> = messages
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let base = Templates::load(&Sources {
        subject: "Your OTP",
        body_file: None,
        html_body_file: None,
        link,
        deny: false,
    })
    .unwrap();
    Wording::load(WordingSources {
        base,
        messages: &messages,
        dir: Some((dir, "en")),
        subject: "Your OTP",
        link,
    })
    .map_err(|e| e.to_string())
}

const EN_DE: &[(&str, &str)] = &[
    ("en/body.txt", "Code {otp}"),
    ("en/subject.txt", "Your code\n"),
    (
        "en/messages.toml",
        "prompt = \"Code sent to {email}\"\nbusy = \"Busy\"\n",
    ),
    ("de/body.txt", "Ihr Code {otp}"),
    ("de/body.html", "<p>Ihr Code <b>{otp}</b></p>"),
    ("de/messages.toml", "prompt = \"Code an {email} geschickt\"\n"),
    ("fr/body.txt", "Votre code {otp}"),
    ("fr/subject.txt", "Votre code"),
];

fn values() -> crate::config::template::Values<'static> {
    crate::config::template::Values {
        otp: "123456",
        ..Default::default()
    }
}

#[test]
fn a_users_language_is_the_first_value_with_a_directory() {
    let d = dir(EN_DE);
    let w = load(d.path(), &[], false).unwrap();
    let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(w.language_of(&tags(&["de-CH"])).as_deref(), Some("de"));
    assert_eq!(w.language_of(&tags(&["ja", "fr-CA", "de"])).as_deref(), Some("fr"));
    assert_eq!(w.language_of(&tags(&["ja"])), None);
    assert_eq!(w.language_of(&[]), None);
    // A directory's value picks among the directories, nothing else.
    assert_eq!(
        w.language_of(&tags(&["../de", "de/../../etc", " DE_at "])).as_deref(),
        Some("de")
    );
}

#[test]
fn missing_subject_and_keys_fall_back_to_the_default_language_then_messages_then_built_in() {
    let d = dir(EN_DE);
    let w = load(d.path(), &[("throttled", "Zu viele")], false).unwrap();
    let (subject, text, html) = w.templates(Some("de")).render(&values());
    assert_eq!((subject.as_str(), text.as_str()), ("Your code", "Ihr Code 123456"));
    assert_eq!(html.as_deref(), Some("<p>Ihr Code <b>123456</b></p>"));
    // French has no body.html: text only, even though the default has none either.
    assert_eq!(w.templates(Some("fr")).render(&values()).2, None);
    assert_eq!(w.templates(None).render(&values()).0, "Your code");
    let v = ReplyValues {
        email: "a***@example.com",
        ..ReplyValues::default()
    };
    assert_eq!(
        w.reply(Some("de"), Key::Prompt, &v),
        "Code an a***@example.com geschickt"
    );
    assert_eq!(w.reply(Some("de"), Key::Busy, &v), "Busy");
    assert_eq!(w.reply(Some("de"), Key::Throttled, &v), "Zu viele");
    assert_eq!(w.reply(Some("fr"), Key::Prompt, &v), "Code sent to a***@example.com");
    assert!(w.reply(None, Key::LinkPending, &v).starts_with("Open the link"));
    assert_eq!(w.reply_elsewhere(Some("de"), "x"), None);
}

#[test]
fn check_refuses_with_file_key_and_reason() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("en/body.txt", "x"), ("de/subject.txt", "x")],
            "de/body.txt: key `email.templates_dir`: a language directory needs a body.txt",
        ),
        (&[("en/body.txt", "{code}")], "unknown placeholder {code}"),
        (&[("en/body.txt", "{link}")], "{link} is empty with delivery = \"otp\""),
        (
            &[("en/body.txt", "x"), ("en/messages.toml", "promt = \"x\"")],
            "messages.toml: key `promt`: unknown message",
        ),
        (
            &[("en/body.txt", "x"), ("en/messages.toml", "busy = \"{transaction}\"")],
            "unknown placeholder {transaction}",
        ),
        (
            &[("en/body.txt", "x"), ("en/subject.txt", "a\nb\n")],
            "a subject is one line",
        ),
        (
            &[("de/body.txt", "x")],
            "key `email.default_language`: there is no directory `en`",
        ),
        (&[("en/body.txt", "x"), ("DE/body.txt", "x")], "lower-case tag"),
    ];
    for (files, expected) in cases {
        let d = dir(files);
        let err = load(d.path(), &[], false).unwrap_err();
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let long = format!("prompt = \"{}{{email}}\"", "ü".repeat(95));
    let d = dir(&[("en/body.txt", "x"), ("en/messages.toml", &long)]);
    let err = load(d.path(), &[], false).unwrap_err();
    assert!(err.contains("key `prompt`: can be 254 octets long"), "{err}");
}

#[test]
fn the_shipped_templates_load() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/templates");
    let w = load(&shipped, &[], false).unwrap();
    assert_eq!(w.language_of(&["de-AT".to_owned()]).as_deref(), Some("de"));
    let (subject, text, html) = w.templates(Some("de")).render(&values());
    assert_eq!(subject, "Ihr Code für die Anmeldung");
    assert!(text.contains("Ihr Einmalpasswort lautet: 123456") && html.is_some());
    assert!(load(&shipped, &[], true).is_err(), "the examples are for codes");
}

#[test]
fn the_configuration_refuses_keys_that_do_not_go_together() {
    use crate::config::tests::{load as load_config, MINIMAL};
    let error_of = |text: String| load_config(&text).unwrap_err().to_string();
    let email = |lines: &str| format!("{MINIMAL}\n[email]\n{lines}");
    assert!(
        error_of(email("default_language = \"de\"\n")).contains("key `email.default_language`: needs templates_dir")
    );
    assert!(error_of(email("templates_dir = \"t\"\nbody_file = \"m.txt\"\n"))
        .contains("key `email.body_file`: use either it or templates_dir, not both"));
    let ldap_key = MINIMAL.replace(
        "file = \"users.toml\"\n",
        "file = \"users.toml\"\nlanguage_attribute = \"x\"\n",
    );
    assert!(error_of(ldap_key).contains("key `users.language_attribute`: only for backend = \"ldap\""));
    let messages = format!("{MINIMAL}\n[messages]\npromt = \"x\"\n");
    assert!(error_of(messages).contains("key `messages.promt`: unknown message"));
    let ok = load_config(&format!("{MINIMAL}\n[messages]\nprompt = \"Code: {{email}}\"\n")).unwrap();
    let values = ReplyValues {
        email: "a***@b.test",
        ..ReplyValues::default()
    };
    assert_eq!(ok.email.wording.reply(None, Key::Prompt, &values), "Code: a***@b.test");
}
