//! Mail bodies and subject: the built-in text, or `body_file` /
//! `html_body_file` / `email_subject` with the placeholders `{otp}`, `{user}`,
//! `{minutes}`, `{link}`, and what says who asked: `{client_ip}`, `{nas}`,
//! `{time}`, `{expires}`, `{deny_link}`.
//!
//! Values that come from a request (the Calling-Station-Id above all) are
//! text: control characters are removed from every value before it is
//! placed, and the HTML part escapes them, so a value can start no line,
//! header or tag of its own.
//!
//! A template is parsed once at start, so an unknown placeholder is refused
//! then and not discovered in a user's inbox. Rendering never fails.
//!
//! Parsing is part of loading the configuration, so the templates live with
//! `config` (which `mail` reads), not in `mail`: config knows nothing of mail.

use std::path::Path;

use super::{read_text, ConfigError};

const BUILT_IN_TEXT: &str = "Hello {user},

your one-time password is: {otp}

It is valid for {minutes} minutes, until {expires}.

The login was asked for
from:    {client_ip}
through: {nas}
at:      {time}
If you did not just try to log in, do not use the code,
and please tell your IT team.
";

const BUILT_IN_LINK_TEXT: &str = "Hello {user},

to finish logging in, open this link and press Confirm:

{link}

The link works once, for {minutes} minutes (until {expires}).
Then go back to your VPN client and press Enter.

The login was asked for
from:    {client_ip}
through: {nas}
at:      {time}
If you did not just try to log in, do not open the link,
and please tell your IT team.
";

/// Added to the built-in text when the mail carries a deny link.
const BUILT_IN_DENY: &str = "
If this was not you, open this link and press \"This wasn't me\":
{deny_link}
";

/// The page after "This wasn't me": what happened and what to do next.
const BUILT_IN_DENY_PAGE: &str = "<h1>The login was stopped</h1>
<p>The login as <strong>{user}</strong> from {client_ip} through {nas} at {time} was stopped.</p>
<p>Someone may know your PIN or password. Change it now, and tell your help desk
that you did not ask for this login.</p>";

/// The placeholders, for error messages.
const KNOWN: &str = "{otp} {user} {minutes} {link} {client_ip} {nas} {time} {expires} {deny_link}";

/// What a template can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Otp,
    User,
    Minutes,
    Link,
    ClientIp,
    Nas,
    Time,
    Expires,
    DenyLink,
}

impl Placeholder {
    fn parse(name: &str) -> Option<Placeholder> {
        Some(match name {
            "otp" => Placeholder::Otp,
            "user" => Placeholder::User,
            "minutes" => Placeholder::Minutes,
            "link" => Placeholder::Link,
            "client_ip" => Placeholder::ClientIp,
            "nas" => Placeholder::Nas,
            "time" => Placeholder::Time,
            "expires" => Placeholder::Expires,
            "deny_link" => Placeholder::DenyLink,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Value(Placeholder),
}

/// A parsed body template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

/// The values one mail (or page) fills in; a page leaves the code and links
/// empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct Values<'a> {
    /// The code.
    pub otp: &'a str,
    /// The user name.
    pub user: &'a str,
    /// Whole minutes the code is valid.
    pub minutes: u64,
    /// The confirmation link (link delivery), or empty.
    pub link: &'a str,
    /// The Calling-Station-Id as the NAS sent it, or `unknown`.
    pub client_ip: &'a str,
    /// The configured name of the client (NAS) the request came through.
    pub nas: &'a str,
    /// When the request arrived (RFC 3339, in `[email] timezone`).
    pub time: &'a str,
    /// When the code stops working (same form).
    pub expires: &'a str,
    /// The deny ("this wasn't me") link, `{base_url}/d/{token}`, or empty.
    pub deny_link: &'a str,
}

impl Template {
    /// Parses template text. `{word}` where word is a placeholder name is
    /// replaced; `{word}` with any other identifier is an error (a typo would
    /// otherwise reach users); other braces (CSS in HTML) stay as they are.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let is_placeholder = name_len > 0 && after[name_len..].starts_with('}');
            if !is_placeholder {
                literal.push('{');
                rest = after;
                continue;
            }
            let name = &after[..name_len];
            let Some(p) = Placeholder::parse(name) else {
                let line = text[..text.len() - rest.len() + open].lines().count().max(1);
                return Err(format!(
                    "unknown placeholder {{{name}}} on line {line} (known: {KNOWN})"
                ));
            };
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Value(p));
            rest = &after[name_len + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// Fills in the values; `escape` is applied to each (HTML escaping for
    /// the HTML body).
    pub(crate) fn render(&self, values: &Values<'_>, escape: fn(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            let value = match part {
                Part::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Part::Value(Placeholder::Minutes) => &values.minutes.to_string(),
                Part::Value(p) => values.get(*p),
            };
            out.push_str(&escape(&without_controls(value)));
        }
        out
    }

    /// Parses the wording of a page (`[link] deny_page_file`, HTML): it may
    /// say who asked, never a code or a link.
    pub(crate) fn parse_page(text: &str) -> Result<Template, String> {
        let template = Template::parse(text)?;
        let refused = [
            Placeholder::Otp,
            Placeholder::Link,
            Placeholder::DenyLink,
            Placeholder::Minutes,
            Placeholder::Expires,
        ];
        if refused.iter().any(|p| template.places(*p)) {
            return Err("a page may place only {user} {client_ip} {nas} {time}".to_owned());
        }
        Ok(template)
    }

    /// The built-in page after "This wasn't me".
    pub(crate) fn built_in_deny_page() -> Template {
        Template::parse_page(BUILT_IN_DENY_PAGE).expect("built-in page parses")
    }

    /// Renders a page's HTML (values escaped).
    pub(crate) fn render_html(&self, values: &Values<'_>) -> String {
        self.render(values, escape_html)
    }

    /// Whether the template places `p`.
    fn places(&self, p: Placeholder) -> bool {
        self.parts.contains(&Part::Value(p))
    }
}

impl Values<'_> {
    fn get(&self, p: Placeholder) -> &str {
        match p {
            Placeholder::Otp => self.otp,
            Placeholder::User => self.user,
            Placeholder::Minutes => "",
            Placeholder::Link => self.link,
            Placeholder::ClientIp => self.client_ip,
            Placeholder::Nas => self.nas,
            Placeholder::Time => self.time,
            Placeholder::Expires => self.expires,
            Placeholder::DenyLink => self.deny_link,
        }
    }
}

/// `s` without control characters (CR, LF, NUL, ESC, …): a value from a
/// request can start no line or header of its own.
pub(crate) fn without_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(char::is_control) {
        s.chars().filter(|c| !c.is_control()).collect::<String>().into()
    } else {
        s.into()
    }
}

/// The subject, the text body and the optional HTML alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    subject: Template,
    text: Template,
    /// Without `body_file`: the built-in text of the other delivery, for the
    /// mails of a policy whose `delivery` is not `[email]`'s.
    other_text: Option<Template>,
    html: Option<Template>,
}

/// Where the templates come from (`[email]`).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// `email_subject`.
    pub subject: &'a str,
    /// `body_file`; `None`: the built-in text.
    pub body_file: Option<&'a Path>,
    /// `html_body_file`.
    pub html_body_file: Option<&'a Path>,
    /// Link delivery: the built-in text carries `{link}`, not `{otp}`.
    pub link: bool,
    /// Mails carry a deny link: the built-in text says so.
    pub deny: bool,
}

impl Templates {
    /// Loads the subject, `body_file` (or the built-in text for codes or for
    /// links) and `html_body_file`.
    pub fn load(from: &Sources<'_>) -> Result<Templates, ConfigError> {
        let load = |path: &Path, key: &str| -> Result<Template, ConfigError> {
            Template::parse(&read_text(path)?).map_err(|reason| ConfigError::invalid(path.display(), key, reason))
        };
        let subject = Template::parse(from.subject)
            .map_err(|reason| ConfigError::invalid("configuration", "email.provider.email_subject", reason))?;
        let built_in = |link: bool| {
            let body = if link { BUILT_IN_LINK_TEXT } else { BUILT_IN_TEXT };
            let deny = if from.deny { BUILT_IN_DENY } else { "" };
            Template::parse(&format!("{body}{deny}")).expect("built-in template parses")
        };
        let (text, other_text) = match from.body_file {
            Some(p) => (load(p, "email.body_file")?, None),
            None => (built_in(from.link), Some(built_in(!from.link))),
        };
        let html = from
            .html_body_file
            .map(|p| load(p, "email.html_body_file"))
            .transpose()?;
        Ok(Templates {
            subject,
            text,
            other_text,
            html,
        })
    }

    /// The subject, the text body, and the HTML body when one is configured.
    pub fn render(&self, values: &Values<'_>) -> (String, String, Option<String>) {
        let subject = self.subject.render(values, str::to_owned);
        // The built-in text for links when the mail has one, for codes when not.
        let text = match &self.other_text {
            Some(other) if self.text.places(Placeholder::Link) == values.link.is_empty() => other,
            _ => &self.text,
        };
        let text = text.render(values, str::to_owned);
        let html = self.html.as_ref().map(|t| t.render(values, escape_html));
        (subject, text, html)
    }

    /// The bodies (`body_file`, `html_body_file`) that do not place
    /// `{deny_link}`, for `check` to warn about when mails carry one.
    pub fn without_deny_link(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.text.places(Placeholder::DenyLink) {
            missing.push("email.body_file");
        }
        if self.html.as_ref().is_some_and(|h| !h.places(Placeholder::DenyLink)) {
            missing.push("email.html_body_file");
        }
        missing
    }
}

/// `unix` seconds as RFC 3339 in `zone`, as mails and pages tell times.
pub(crate) fn rfc3339(unix: i64, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_second(unix) {
        Ok(t) => t.to_zoned(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
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
        assert_eq!((subject.as_str(), html), ("Your OTP", None));
    }

    #[test]
    fn the_built_in_body_follows_each_mails_delivery() {
        // A policy's delivery may differ from [email]'s: a mail with a link
        // gets the link text, one without the code's, whatever the default.
        let link = "https://otp.example.test/l/abc";
        for default_is_link in [false, true] {
            let t = Templates::load(&Sources {
                link: default_is_link,
                ..sources(false)
            })
            .unwrap();
            let (_, code, _) = t.render(&VALUES);
            assert!(code.contains("123456") && !code.contains(link), "{code}");
            let (_, linked, _) = t.render(&Values { link, ..VALUES });
            assert!(linked.contains(link) && !linked.contains("123456"), "{linked}");
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
            text.contains(
                "from:    203.0.113.9Bcc: eve@example.com\nthrough: vpn1\nat:      2026-12-06T13:04:18+01:00\n"
            ),
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
        assert_eq!(t.without_deny_link(), vec!["email.body_file"]);
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
}
