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

mod built_in;
use built_in::{
    BUILT_IN_DENY, BUILT_IN_DENY_PAGE, BUILT_IN_HTML_ASKED, BUILT_IN_HTML_DENY, BUILT_IN_HTML_FOOT, BUILT_IN_HTML_HEAD,
    BUILT_IN_HTML_LINK, BUILT_IN_HTML_TEXT, BUILT_IN_LINK_TEXT, BUILT_IN_TEXT,
};

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

/// A piece of a parsed template: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part<P> {
    Text(String),
    Value(P),
}

/// A parsed body template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part<Placeholder>>,
}

/// Splits `text` into literal text and placeholders. `{word}` where `lookup`
/// knows the word is a placeholder; `{word}` with any other identifier is an
/// error (a typo would otherwise reach users; `known` lists the right
/// ones); other braces (CSS in HTML) stay as they are.
pub(crate) fn parse_parts<P>(
    text: &str,
    lookup: impl Fn(&str) -> Option<P>,
    known: &str,
) -> Result<Vec<Part<P>>, String> {
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
        let Some(p) = lookup(name) else {
            let line = text[..text.len() - rest.len() + open].lines().count().max(1);
            return Err(format!(
                "unknown placeholder {{{name}}} on line {line} (known: {known})"
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
    Ok(parts)
}

/// The values one mail (or page) fills in; a page leaves the code and links
/// empty.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Values<'a> {
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
    /// Parses template text (see [`parse_parts`]).
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        parse_parts(text, Placeholder::parse, KNOWN).map(|parts| Template { parts })
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

    /// Refuses what this delivery leaves empty: `{link}` in a code's mail,
    /// `{otp}` in a link's (the code is never used there).
    pub(crate) fn fits_delivery(&self, link: bool) -> Result<(), String> {
        match (link, self.places(Placeholder::Otp), self.places(Placeholder::Link)) {
            (true, true, _) => Err("{otp} is not used with delivery = \"link\": place {link}".to_owned()),
            (false, _, true) => Err("{link} is empty with delivery = \"otp\": place {otp}".to_owned()),
            _ => Ok(()),
        }
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
pub(crate) struct Templates {
    subject: Template,
    body: Body,
    /// Without `body_file`: the built-in bodies of the other delivery, for
    /// the mails of a policy whose `delivery` is not `[email]`'s.
    other: Option<Body>,
}

/// A text body and its optional HTML alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Body {
    text: Template,
    html: Option<Template>,
}

/// Where the templates come from (`[email]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources<'a> {
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
    pub(crate) fn load(from: &Sources<'_>) -> Result<Templates, ConfigError> {
        let load = |path: &Path, key: &str| -> Result<Template, ConfigError> {
            Template::parse(&read_text(path)?).map_err(|reason| ConfigError::invalid(path.display(), key, reason))
        };
        let subject = Template::parse(from.subject)
            .map_err(|reason| ConfigError::invalid("configuration", "email.provider.email_subject", reason))?;
        let built_in = |link: bool| {
            let body = if link { BUILT_IN_LINK_TEXT } else { BUILT_IN_TEXT };
            let deny = if from.deny { BUILT_IN_DENY } else { "" };
            Body {
                text: Template::parse(&format!("{body}{deny}")).expect("built-in template parses"),
                html: Some(built_in_html(link, from.deny)),
            }
        };
        let (body, other) = match (from.body_file, from.html_body_file) {
            (None, None) => (built_in(from.link), Some(built_in(!from.link))),
            // Own text without own HTML: an HTML part would say other words.
            (Some(text), None) => (
                Body {
                    text: load(text, "email.body_file")?,
                    html: None,
                },
                None,
            ),
            (Some(text), Some(html)) => (
                Body {
                    text: load(text, "email.body_file")?,
                    html: Some(load(html, "email.html_body_file")?),
                },
                None,
            ),
            // Own HTML only: the other delivery's mails go as built-in text.
            (None, Some(html)) => {
                let body = Body {
                    text: built_in(from.link).text,
                    html: Some(load(html, "email.html_body_file")?),
                };
                let other = Body {
                    text: built_in(!from.link).text,
                    html: None,
                };
                (body, Some(other))
            }
        };
        Ok(Templates { subject, body, other })
    }

    /// A language directory's templates (see `config::languages`).
    pub(crate) fn of_language(subject: Template, text: Template, html: Option<Template>) -> Templates {
        Templates {
            subject,
            body: Body { text, html },
            other: None,
        }
    }

    /// The subject, the text body, and the HTML body when one is configured.
    pub(crate) fn render(&self, values: &Values<'_>) -> (String, String, Option<String>) {
        let subject = self.subject.render(values, str::to_owned);
        // The built-in bodies for links when the mail has one, for codes when not.
        let body = match &self.other {
            Some(other) if self.body.text.places(Placeholder::Link) == values.link.is_empty() => other,
            _ => &self.body,
        };
        let text = body.text.render(values, str::to_owned);
        let html = body.html.as_ref().map(|t| t.render(values, escape_html));
        (subject, text, html)
    }

    /// The bodies (`body_file`, `html_body_file`) that do not place
    /// `{deny_link}`, for `check` to warn about when mails carry one.
    pub(crate) fn without_deny_link(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.body.text.places(Placeholder::DenyLink) {
            missing.push("email.body_file");
        }
        if self
            .body
            .html
            .as_ref()
            .is_some_and(|h| !h.places(Placeholder::DenyLink))
        {
            missing.push("email.html_body_file");
        }
        missing
    }
}

/// The built-in HTML part: the text's words, values escaped when rendered.
fn built_in_html(link: bool, deny: bool) -> Template {
    let body = if link { BUILT_IN_HTML_LINK } else { BUILT_IN_HTML_TEXT };
    let deny = if deny { BUILT_IN_HTML_DENY } else { "" };
    Template::parse(&format!(
        "{BUILT_IN_HTML_HEAD}{body}{BUILT_IN_HTML_ASKED}{deny}{BUILT_IN_HTML_FOOT}"
    ))
    .expect("built-in HTML parses")
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
mod tests;
