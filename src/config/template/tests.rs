use super::*;

const VALUES: Values<'static> = Values {
    otp: "123456",
    user: "<alice>",
    minutes: 10,
    link: "",
    client_ip: "203.0.113.9\r\nBcc: eve@example.com",
    nas: "vpn1",
    time: "2026-12-06T13:04:18+01:00",
    expires: "2026-12-06T13:14:18+01:00",
    deny_link: "",
};

#[test]
fn placeholders_are_filled_and_other_braces_kept() {
    let t = Template::parse("Hi {user}, code {otp} for {minutes} min. p { color: red } {").unwrap();
    assert_eq!(
        t.render(&VALUES, str::to_owned),
        "Hi <alice>, code 123456 for 10 min. p { color: red } {"
    );
    assert_eq!(
        t.render(&VALUES, escape_html),
        "Hi &lt;alice&gt;, code 123456 for 10 min. p { color: red } {"
    );
}

#[test]
fn unknown_placeholders_are_refused_with_their_line() {
    let err = Template::parse("line one\ncode: {code}\n").unwrap_err();
    assert_eq!(
        err,
        "unknown placeholder {code} on line 2 (known: {otp} {user} {minutes} {link} {client_ip} {nas} {time} {expires} {deny_link})"
    );
}

#[test]
fn built_in_body_carries_the_code() {
    let t = Templates::load(&sources(false)).unwrap();
    let (subject, text, html) = t.render(&VALUES);
    assert!(text.contains("123456") && text.contains("10 minutes"));
    assert_eq!(subject, "Your OTP");
    let html = html.expect("the built-in mail has an HTML part");
    assert!(
        html.contains("<strong>123456</strong>") && html.contains("Hello &lt;alice&gt;,"),
        "{html}"
    );
    assert!(html.contains("from: 203.0.113.9Bcc: eve@example.com<br>"), "{html}");
    assert!(!html.contains("deny") && !html.contains("<alice>"), "{html}");
}

#[test]
fn the_built_in_html_carries_the_link_and_the_deny_link() {
    let values = Values {
        link: "https://otp.example.com/l/a?b=1&c=\"2\"",
        deny_link: "https://otp.example.com/d/abc",
        ..VALUES
    };
    let t = Templates::load(&Sources {
        link: true,
        ..sources(true)
    })
    .unwrap();
    let (_, _, html) = t.render(&values);
    let html = html.unwrap();
    assert!(
        html.contains("<a href=\"https://otp.example.com/l/a?b=1&amp;c=&quot;2&quot;\">"),
        "{html}"
    );
    assert!(html.contains("<a href=\"https://otp.example.com/d/abc\">"), "{html}");
    assert!(!html.contains("123456"), "{html}");
}

#[test]
fn own_text_without_own_html_sends_text_only_and_delivery_placeholders_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("mail.txt");
    std::fs::write(&body, "code {otp}").unwrap();
    let t = Templates::load(&Sources {
        body_file: Some(&body),
        ..sources(false)
    })
    .unwrap();
    assert_eq!(t.render(&VALUES).2, None);
    let code = Template::parse("code {otp}").unwrap();
    let link = Template::parse("open {link}").unwrap();
    assert!(code.fits_delivery(false).is_ok() && link.fits_delivery(true).is_ok());
    assert!(code.fits_delivery(true).unwrap_err().contains("{otp}"));
    assert!(link.fits_delivery(false).unwrap_err().contains("{link}"));
}

#[test]
fn the_built_in_bodies_follow_each_mails_delivery() {
    // A policy's delivery may differ from [email]'s: a mail with a link gets
    // the link's words, one without the code's, whatever the default.
    let link = "https://otp.example.test/l/abc";
    for default_is_link in [false, true] {
        let t = Templates::load(&Sources {
            link: default_is_link,
            ..sources(false)
        })
        .unwrap();
        let (_, code, html) = t.render(&VALUES);
        let html = html.expect("built-in HTML");
        assert!(code.contains("123456") && !code.contains(link), "{code}");
        assert!(html.contains("123456") && !html.contains(link), "{html}");
        let (_, linked, html) = t.render(&Values { link, ..VALUES });
        let html = html.expect("built-in HTML");
        assert!(linked.contains(link) && !linked.contains("123456"), "{linked}");
        assert!(html.contains(link) && !html.contains("123456"), "{html}");
    }
}

fn sources(deny: bool) -> Sources<'static> {
    Sources {
        subject: "Your OTP",
        body_file: None,
        html_body_file: None,
        link: false,
        deny,
    }
}

#[test]
fn built_in_body_says_where_and_when() {
    let (_, text, _) = Templates::load(&sources(false)).unwrap().render(&VALUES);
    assert!(
        text.contains("from:    203.0.113.9Bcc: eve@example.com\nthrough: vpn1\nat:      2026-12-06T13:04:18+01:00\n"),
        "{text}"
    );
    assert!(text.contains("until 2026-12-06T13:14:18+01:00") && !text.contains("This wasn't me"));
    let deny = Values {
        deny_link: "https://otp.example.com/d/abc",
        ..VALUES
    };
    let (_, text, _) = Templates::load(&sources(true)).unwrap().render(&deny);
    assert!(
        text.contains("\"This wasn't me\":\nhttps://otp.example.com/d/abc\n"),
        "{text}"
    );
}

#[test]
fn request_values_lose_control_characters_and_are_escaped_in_html() {
    let t = Template::parse("<p>{client_ip}</p>").unwrap();
    let script = Values {
        client_ip: "<script>alert(1)</script>\u{1b}[2J",
        ..VALUES
    };
    assert_eq!(
        t.render(&VALUES, str::to_owned),
        "<p>203.0.113.9Bcc: eve@example.com</p>"
    );
    assert_eq!(
        t.render(&script, escape_html),
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;[2J</p>"
    );
}

#[test]
fn the_subject_is_a_template_and_a_check_sees_a_missing_deny_link() {
    let t = Templates::load(&Sources {
        subject: "Login from {client_ip} at {time}",
        ..sources(false)
    })
    .unwrap();
    let (subject, _, _) = t.render(&VALUES);
    assert_eq!(
        subject,
        "Login from 203.0.113.9Bcc: eve@example.com at 2026-12-06T13:04:18+01:00"
    );
    assert_eq!(t.without_deny_link(), vec!["email.body_file", "email.html_body_file"]);
    assert!(Templates::load(&sources(true)).unwrap().without_deny_link().is_empty());
    assert!(Templates::load(&Sources {
        subject: "{code}",
        ..sources(false)
    })
    .is_err());
}

#[test]
fn a_page_says_who_asked_and_never_a_code_or_link() {
    let page = Template::parse_page("<b>{user}</b> {client_ip}").unwrap();
    assert_eq!(
        page.render_html(&VALUES),
        "<b>&lt;alice&gt;</b> 203.0.113.9Bcc: eve@example.com"
    );
    for refused in ["{otp}", "{link}", "{deny_link}", "{expires}", "{minutes}"] {
        assert!(Template::parse_page(refused).is_err(), "{refused}");
    }
    assert!(Template::built_in_deny_page()
        .render_html(&VALUES)
        .contains("help desk"));
}
