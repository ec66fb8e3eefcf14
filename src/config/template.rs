//! Mail bodies: the built-in text, or `body_file` / `html_body_file` with the
//! placeholders `{otp}`, `{user}`, `{minutes}` and `{link}`.
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

It is valid for {minutes} minutes. If you did not just try to log in,
please tell your IT team.
";

const BUILT_IN_LINK_TEXT: &str = "Hello {user},

to finish logging in, open this link and press Confirm:

{link}

The link works once, for {minutes} minutes. Then go back to your VPN
client and press Enter. If you did not just try to log in, do not open
the link, and please tell your IT team.
";

/// What a template can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Otp,
    User,
    Minutes,
    Link,
}

impl Placeholder {
    fn parse(name: &str) -> Option<Placeholder> {
        Some(match name {
            "otp" => Placeholder::Otp,
            "user" => Placeholder::User,
            "minutes" => Placeholder::Minutes,
            "link" => Placeholder::Link,
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

/// The values one mail fills in.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    /// The code.
    pub otp: &'a str,
    /// The user name.
    pub user: &'a str,
    /// Whole minutes the code is valid.
    pub minutes: u64,
    /// The confirmation link (link delivery), or empty.
    pub link: &'a str,
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
                    "unknown placeholder {{{name}}} on line {line} (known: {{otp}} {{user}} {{minutes}} {{link}})"
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
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(Placeholder::Otp) => out.push_str(&escape(values.otp)),
                Part::Value(Placeholder::User) => out.push_str(&escape(values.user)),
                Part::Value(Placeholder::Minutes) => out.push_str(&values.minutes.to_string()),
                Part::Value(Placeholder::Link) => out.push_str(&escape(values.link)),
            }
        }
        out
    }
}

/// The text body and the optional HTML alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templates {
    text: Template,
    html: Option<Template>,
}

impl Templates {
    /// Loads `body_file` (or the built-in text for codes or, with `link`, for
    /// links) and `html_body_file`.
    pub fn load(body_file: Option<&Path>, html_body_file: Option<&Path>, link: bool) -> Result<Templates, ConfigError> {
        let load = |path: &Path, key: &str| -> Result<Template, ConfigError> {
            Template::parse(&read_text(path)?).map_err(|reason| ConfigError::invalid(path.display(), key, reason))
        };
        let text = match body_file {
            Some(p) => load(p, "email.body_file")?,
            None if link => Template::parse(BUILT_IN_LINK_TEXT).expect("built-in template parses"),
            None => Template::parse(BUILT_IN_TEXT).expect("built-in template parses"),
        };
        let html = html_body_file.map(|p| load(p, "email.html_body_file")).transpose()?;
        Ok(Templates { text, html })
    }

    /// The text body, and the HTML body when one is configured.
    pub fn render(&self, values: &Values<'_>) -> (String, Option<String>) {
        let text = self.text.render(values, str::to_owned);
        let html = self.html.as_ref().map(|t| t.render(values, escape_html));
        (text, html)
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
            "unknown placeholder {code} on line 2 (known: {otp} {user} {minutes} {link})"
        );
    }

    #[test]
    fn built_in_body_carries_the_code() {
        let t = Templates::load(None, None, false).unwrap();
        let (text, html) = t.render(&VALUES);
        assert!(text.contains("123456") && text.contains("10 minutes"));
        assert_eq!(html, None);
    }
}
