//! Issue 22: every word the user sees can be changed and can be in the
//! user's language. radclient as the NAS, a real SMTP server, and Python's
//! `email` package as the mail client that decodes what arrived.

use std::path::Path;

use crate::harness::*;
use crate::ldap::{users_section, write_without_users_file};
use crate::slapd::*;

/// A mail as a mail client shows it: the decoded subject, and each part's
/// content type (with charset) and decoded text.
struct Shown {
    subject: String,
    parts: Vec<(String, String)>,
}

impl Shown {
    fn part(&self, content_type: &str) -> &str {
        self.parts
            .iter()
            .find(|(t, _)| t.starts_with(content_type))
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no {content_type} part in {:?}", self.parts))
    }
}

const DECODE: &str = r#"
import email, email.policy, json, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts = [[p.get_content_type() + "; charset=" + str(p.get_content_charset()), p.get_content()]
         for p in m.walk() if not p.is_multipart()]
print(json.dumps({"subject": str(m["subject"]), "parts": parts}))
"#;

fn shown(mail: &Mail) -> Shown {
    use std::io::Write;
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", DECODE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(mail.raw.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python could not decode:\n{}", mail.raw);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let parts = json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().replace("\r\n", "\n"),
            )
        })
        .collect();
    Shown {
        subject: json["subject"].as_str().unwrap().to_owned(),
        parts,
    }
}

/// The first word of 6 to 8 digits in decoded text: the code.
fn first_code(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| (6..=8).contains(&w.len()))
        .unwrap_or_else(|| panic!("no code in {text}"))
        .to_owned()
}

/// Copies the shipped `conf/templates` into `dir/templates`.
fn copy_shipped_templates(dir: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/templates");
    for lang in ["en", "de"] {
        let to = dir.join("templates").join(lang);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(shipped.join(lang)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Writes `files` (path under `dir`, text).
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// The test users, with `language` lines: (user, language).
fn users_with_languages(languages: &[(&str, &str)]) -> String {
    let mut text = users_toml().to_owned();
    for (user, language) in languages {
        let line = format!("name = \"{user}\"\n");
        assert!(text.contains(&line));
        text = text.replace(&line, &format!("{line}language = \"{language}\"\n"));
    }
    text
}

/// A server with the shipped templates and `languages` in the users file.
fn start_with_templates(smtp: &SmtpSink, languages: &[(&str, &str)], extra_files: &[(&str, &str)]) -> Server {
    let mut setup = Setup::new(smtp.port);
    setup.email = "templates_dir = \"templates\"\ndefault_language = \"en\"\n".to_owned();
    setup.users_file = users_with_languages(languages);
    let dir = setup.write();
    copy_shipped_templates(dir.path());
    write_files(dir.path(), extra_files);
    Server::start_in(dir, &[], 1)
}

fn pin_from(server: &Server, user: &str, calling_station: &str) -> Reply {
    let attrs = format!(
        "User-Name = \"{user}\", User-Password = \"{}\", Calling-Station-Id = \"{calling_station}\"",
        pin(user)
    );
    radclient(server.addr(), SECRET, &attrs).expect("an answer")
}

const GERMAN_PROMPT: &str = "Bitte geben Sie den Code aus der E-Mail an a***@example.test ein (gültig 10 Minuten)";

#[test]
fn a_german_and_an_english_user_get_their_own_words_from_one_server() {
    let smtp = SmtpSink::start();
    let server = start_with_templates(&smtp, &[("alice", "de-CH"), ("bob", "en")], &[]);

    // de-CH has no directory: de is used. radclient prints the UTF-8 bytes.
    let german = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(german.code, "Access-Challenge");
    assert_eq!(german.attr("Reply-Message"), Some(GERMAN_PROMPT));
    let english = send_pin(&server, "bob", pin("bob")).unwrap();
    assert_eq!(
        english.attr("Reply-Message"),
        Some("Enter the one-time password sent to b***@example.test")
    );

    smtp.wait_for_mails(2);
    let to_alice = smtp.mails_to("alice@example.test").remove(0);
    assert!(
        to_alice.header("Subject").to_ascii_lowercase().contains("=?utf-8?b?"),
        "a non-ASCII subject is RFC 2047 encoded: {}",
        to_alice.raw
    );
    let alice = shown(&to_alice);
    assert_eq!(alice.subject, "Ihr Code für die Anmeldung");
    let text = alice.part("text/plain; charset=utf-8");
    let otp = first_code(text);
    assert!(text.contains(&format!("Ihr Einmalpasswort lautet: {otp}")), "{text}");
    assert!(text.contains("über:  local"), "{text}");
    let html = alice.part("text/html; charset=utf-8");
    assert!(
        html.contains(&format!("<strong>{otp}</strong>")) && html.contains("über: local<br>"),
        "{html}"
    );

    let bob = shown(&smtp.mails_to("bob@example.test").remove(0));
    assert_eq!(bob.subject, "Your login code");
    assert!(bob
        .part("text/plain; charset=utf-8")
        .contains("your one-time password is: "));

    // The honest path still ends in Access-Accept.
    assert_eq!(
        send_otp(&server, "alice", &otp, &german.state()).unwrap().code,
        "Access-Accept"
    );
}

#[test]
fn a_missing_subject_or_message_falls_back_to_the_default_language_then_messages() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "templates_dir = \"t\"\ndefault_language = \"en\"\n".to_owned();
    setup.users_file = users_with_languages(&[("alice", "de")]);
    setup.extra = "[messages]\nprompt = \"Code an {email}!\"\nbusy = \"Später\"\n".to_owned();
    let dir = setup.write();
    write_files(
        dir.path(),
        &[
            ("t/en/body.txt", "Code {otp}\n"),
            ("t/en/subject.txt", "Code for {user}\n"),
            ("t/en/messages.toml", "link_pending = \"Click it\"\n"),
            ("t/de/body.txt", "Hallo {user}, Ihr Code: {otp}\n"),
            ("t/de/messages.toml", "throttled = \"Zu viele\"\n"),
        ],
    );
    let server = Server::start_in(dir, &[], 1);
    let reply = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(reply.attr("Reply-Message"), Some("Code an a***@example.test!"));
    let mail = smtp.wait_for_mails(1).remove(0);
    let alice = shown(&mail);
    assert_eq!(alice.subject, "Code for alice", "the default language's subject");
    assert_eq!(alice.parts.len(), 1, "de has no body.html: text only");
    let text = alice.part("text/plain");
    assert_eq!(text.trim(), format!("Hallo alice, Ihr Code: {}", first_code(text)));
}

#[test]
fn an_overridden_prompt_is_what_the_access_challenge_says() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.extra = "[messages]\nprompt = \"Code für {email} – {minutes} Minuten gültig\"\n".to_owned();
    let server = Server::start(&setup);
    let reply = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(reply.code, "Access-Challenge");
    assert_eq!(
        reply.attr("Reply-Message"),
        Some("Code für a***@example.test – 10 Minuten gültig")
    );
    let again = send_pin(&server, "alice", pin("alice")).unwrap();
    assert!(
        again
            .attr("Reply-Message")
            .unwrap()
            .starts_with("e-mail with otp already submitted (transaction "),
        "keys not overridden keep the built-in words: {again:?}"
    );
}

#[test]
fn an_ldap_users_language_comes_from_preferred_language() {
    let slapd = Slapd::start();
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.users = users_section(&slapd.url(), "language_attribute = \"preferredLanguage\"\n");
    setup.email = "templates_dir = \"templates\"\n".to_owned();
    let dir = write_without_users_file(&setup);
    copy_shipped_templates(dir.path());
    let server = Server::start_in(dir, &[], 1);
    // alice's entry says preferredLanguage: de-CH.
    let reply = send_pin(&server, "alice", ldap_password("alice")).unwrap();
    assert_eq!(reply.code, "Access-Challenge", "{reply:?}");
    assert_eq!(reply.attr("Reply-Message"), Some(GERMAN_PROMPT));
    assert_eq!(shown(&smtp.wait_for_mails(1)[0]).subject, "Ihr Code für die Anmeldung");
}

/// What `check` says of the shipped templates changed by `edit` (a path
/// under the directory and its text; empty text removes the file), with
/// `[messages]` lines `messages`; it must refuse.
fn refusal(edit: &[(&str, &str)], messages: &str) -> String {
    let mut setup = Setup::new(2525);
    setup.email = "templates_dir = \"templates\"\n".to_owned();
    setup.extra = format!("[messages]\n{messages}");
    let dir = setup.write();
    copy_shipped_templates(dir.path());
    for (path, text) in edit {
        match text.is_empty() {
            true => std::fs::remove_file(dir.path().join(path)).unwrap(),
            false => write_files(dir.path(), &[(path, text)]),
        }
    }
    let out = run_mailotp("check", dir.path());
    assert!(!out.status.success(), "check passed: {edit:?} {messages}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_refuses_bad_templates_and_messages_with_file_key_and_reason() {
    let cases = [
        (
            refusal(&[("templates/de/body.txt", "")], ""),
            "templates/de/body.txt: key `email.templates_dir`: a language directory needs a body.txt",
        ),
        (
            refusal(&[("templates/de/body.txt", "Code: {code}\n")], ""),
            "templates/de/body.txt: key `email.templates_dir`: unknown placeholder {code} on line 1",
        ),
        (
            refusal(&[("templates/de/messages.toml", "promt = \"Code\"\n")], ""),
            "templates/de/messages.toml: key `promt`: unknown message (known: prompt,",
        ),
        (
            refusal(&[("templates/en/body.html", "<a href=\"{link}\">open</a>")], ""),
            "templates/en/body.html: key `email.templates_dir`: {link} is empty with delivery = \"otp\"",
        ),
        (
            refusal(&[], "throttled = \"Wait {minutes} minutes\"\n"),
            "key `messages.throttled`: unknown placeholder {minutes} on line 1 (known: {email})",
        ),
        (
            refusal(&[], &format!("prompt = \"{}{{email}}\"\n", "ü".repeat(100))),
            "key `messages.prompt`: can be 264 octets long",
        ),
    ];
    for (stderr, expected) in cases {
        assert!(stderr.contains(expected), "expected `{expected}` in:\n{stderr}");
    }
}

#[test]
fn sighup_reads_an_edited_template_and_message_again() {
    let smtp = SmtpSink::start();
    let server = start_with_templates(&smtp, &[("alice", "de"), ("bob", "de")], &[]);
    assert_eq!(
        send_pin(&server, "alice", pin("alice")).unwrap().attr("Reply-Message"),
        Some(GERMAN_PROMPT)
    );
    assert_eq!(shown(&smtp.wait_for_mails(1)[0]).subject, "Ihr Code für die Anmeldung");

    let de = server.dir.path().join("templates/de");
    std::fs::write(de.join("subject.txt"), "Neuer Betreff für {user}\n").unwrap();
    let messages = "prompt = \"Neu: Code an {email}\"\nalready_sent = \"Schon gesendet ({transaction})\"\n";
    std::fs::write(de.join("messages.toml"), messages).unwrap();
    server.process.signal("HUP");
    server.wait_for_log("configuration reloaded");

    let reply = send_pin(&server, "bob", pin("bob")).unwrap();
    assert_eq!(reply.attr("Reply-Message"), Some("Neu: Code an b***@example.test"));
    let to_bob = poll("bob's mail", DEADLINE, || smtp.mails_to("bob@example.test").pop());
    assert_eq!(shown(&to_bob).subject, "Neuer Betreff für bob");

    // A broken edit is refused and the words in use stay.
    std::fs::write(de.join("messages.toml"), "promt = \"typo\"\n").unwrap();
    server.process.signal("HUP");
    server.wait_for_log("reload refused");
    let again = send_pin(&server, "bob", pin("bob")).unwrap();
    assert!(
        again.attr("Reply-Message").unwrap().starts_with("Schon gesendet ("),
        "{again:?}"
    );
}

#[test]
fn the_built_in_mail_has_an_html_part_with_escaped_values_and_the_deny_link() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.extra = "[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"https://otp.example.test\"\n".to_owned();
    let server = Server::start(&setup);
    assert_eq!(pin_from(&server, "alice", "<b>10.0.0.1</b>").code, "Access-Challenge");
    let mail = smtp.wait_for_mails(1).remove(0);
    assert!(
        mail.header("Content-Type").starts_with("multipart/alternative"),
        "{}",
        mail.raw
    );
    let alice = shown(&mail);
    let types: Vec<&str> = alice.parts.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["text/plain; charset=utf-8", "text/html; charset=utf-8"]);
    assert!(alice.part("text/plain").contains("from:    <b>10.0.0.1</b>\n"));
    let html = alice.part("text/html");
    assert!(html.contains("from: &lt;b&gt;10.0.0.1&lt;/b&gt;<br>"), "{html}");
    assert!(!html.contains("<b>10.0.0.1"), "{html}");
    assert!(
        html.contains(&format!("<strong>{}</strong>", first_code(html))),
        "{html}"
    );
    assert!(html.contains("<a href=\"https://otp.example.test/d/"), "{html}");
}

#[test]
fn a_calling_station_id_with_html_and_crlf_stays_text_in_the_german_mail() {
    let smtp = SmtpSink::start();
    let server = start_with_templates(&smtp, &[("alice", "de")], &[]);
    let evil = "10.0.0.1\\r\\nBcc: eve@evil.test\\r\\n<script>alert(1)</script>";
    assert_eq!(pin_from(&server, "alice", evil).code, "Access-Challenge");
    let mail = smtp.wait_for_mails(1).remove(0);
    assert_eq!(mail.header("X-Envelope-To"), "alice@example.test");
    let head = mail.raw.split("\r\n\r\n").next().unwrap();
    assert!(!head.contains("evil.test"), "no header carries it:\n{}", mail.raw);
    let alice = shown(&mail);
    let text = alice.part("text/plain");
    assert!(
        text.contains("von:   10.0.0.1Bcc: eve@evil.test<script>alert(1)</script>\n"),
        "{text}"
    );
    let html = alice.part("text/html");
    assert!(
        html.contains("von: 10.0.0.1Bcc: eve@evil.test&lt;script&gt;alert(1)&lt;/script&gt;<br>"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
}

#[test]
fn a_link_mail_and_its_prompts_are_in_the_users_language() {
    let smtp = SmtpSink::start();
    let mut setup = Setup::new(smtp.port);
    setup.email = "delivery = \"link\"\ntemplates_dir = \"t\"\n".to_owned();
    setup.extra = "[link]\nlisten = \"127.0.0.1:0\"\nbase_url = \"https://otp.example.test\"\n".to_owned();
    setup.users_file = users_with_languages(&[("alice", "de")]);
    let dir = setup.write();
    write_files(
        dir.path(),
        &[
            ("t/en/body.txt", "Open {link}\n"),
            ("t/de/body.txt", "Öffnen Sie {link}\nNicht Sie? {deny_link}\n"),
            ("t/de/subject.txt", "Bestätigen Sie die Anmeldung"),
            (
                "t/de/messages.toml",
                "link_prompt = \"Öffnen Sie den Link an {email} ({minutes} Min.)\"\n\
                 link_pending = \"Noch nicht bestätigt ({minutes} Min.)\"\n",
            ),
        ],
    );
    let server = Server::start_in(dir, &[], 1);
    let challenge = send_pin(&server, "alice", pin("alice")).unwrap();
    assert_eq!(challenge.code, "Access-Challenge");
    assert_eq!(
        challenge.attr("Reply-Message"),
        Some("Öffnen Sie den Link an a***@example.test (10 Min.)")
    );
    let pending = send_otp(&server, "alice", "x", &challenge.state()).unwrap();
    assert_eq!(pending.code, "Access-Challenge", "{pending:?}");
    assert_eq!(pending.attr("Reply-Message"), Some("Noch nicht bestätigt (10 Min.)"));
    let alice = shown(&smtp.wait_for_mails(1)[0]);
    assert_eq!(alice.subject, "Bestätigen Sie die Anmeldung");
    let text = alice.part("text/plain");
    assert!(text.starts_with("Öffnen Sie https://otp.example.test/l/"), "{text}");
    assert!(text.contains("Nicht Sie? https://otp.example.test/d/"), "{text}");
}
