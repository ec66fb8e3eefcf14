//! The words a user sees, per language: `[email] templates_dir` holds one
//! directory per language (`subject.txt`, `body.txt` required, `body.html`,
//! `messages.toml`), `default_language` names the one for everybody else.
//!
//! [`Wording`] is everything read at load (and again on SIGHUP, as part of
//! the configuration), with the fallbacks already applied: a language's
//! missing subject is the default language's, then `email_subject`; a missing
//! message the default language's, then `[messages]`, then the built-in text.
//! It picks a user's language; it neither sends nor decides anything.

use std::collections::BTreeMap;
use std::path::Path;

use super::messages::{Key, MessageSet, ReplyValues};
use super::raw::RawEmail;
use super::template::{Sources, Template, Templates};
use super::validate::Validator;
use super::{parse_toml, read_text, ConfigError};

/// One language's directory, read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Language {
    templates: Templates,
    messages: MessageSet,
}

/// Subjects, bodies and Reply-Messages, per language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wording {
    /// `[email]`'s subject and bodies (or the built-in ones).
    base: Templates,
    /// `[messages]`.
    messages: MessageSet,
    /// By directory name (lower case).
    languages: BTreeMap<String, Language>,
    /// `default_language`, when `templates_dir` is set.
    default: Option<String>,
}

/// Where the words come from.
pub(crate) struct WordingSources<'a> {
    /// `[email]`'s subject and bodies.
    pub base: Templates,
    /// `[messages]`, as written.
    pub messages: &'a BTreeMap<String, String>,
    /// `templates_dir` (resolved) and `default_language`.
    pub dir: Option<(&'a Path, &'a str)>,
    /// `email_subject`, the last fallback of a subject.
    pub subject: &'a str,
    /// Link delivery: `{otp}` is refused, else `{link}` is.
    pub link: bool,
}

impl Wording {
    /// Reads `[messages]` and every language directory.
    pub(crate) fn load(from: WordingSources<'_>) -> Result<Wording, ConfigError> {
        let messages = MessageSet::parse(from.messages, &"configuration", "messages.")?;
        let Some((dir, default)) = from.dir else {
            return Ok(Wording {
                base: from.base,
                messages,
                languages: BTreeMap::new(),
                default: None,
            });
        };
        let mut read = BTreeMap::new();
        for name in language_dirs(dir)? {
            read.insert(name.clone(), read_language(&dir.join(&name), from.link)?);
        }
        let Some(fallback) = read.get(default).cloned() else {
            return Err(ConfigError::invalid(
                dir.display(),
                "email.default_language",
                format!("there is no directory `{default}` (with a body.txt) in templates_dir"),
            ));
        };
        let default_subject = match &fallback.subject {
            Some(subject) => subject.clone(),
            None => parse_subject(from.subject, &"configuration", "email.provider.email_subject")?,
        };
        let default_messages = fallback.messages.or(&messages);
        let languages = read
            .into_iter()
            .map(|(name, lang)| {
                let subject = lang.subject.unwrap_or_else(|| default_subject.clone());
                let language = Language {
                    templates: Templates::of_language(subject, lang.text, lang.html),
                    messages: lang.messages.or(&default_messages),
                };
                (name, language)
            })
            .collect();
        Ok(Wording {
            base: from.base,
            messages,
            languages,
            default: Some(default.to_owned()),
        })
    }

    /// The language of a user whose directory entry (or users file) says
    /// `wanted`: the first value that has a directory, trying `de-ch` then
    /// `de` for `de-CH`; `None` is the default language.
    pub(crate) fn language_of(&self, wanted: &[String]) -> Option<String> {
        for tag in wanted {
            let mut tag = tag.trim().to_ascii_lowercase().replace('_', "-");
            loop {
                if self.languages.contains_key(&tag) {
                    return Some(tag);
                }
                match tag.rfind('-') {
                    Some(cut) => tag.truncate(cut),
                    None => break,
                }
            }
        }
        None
    }

    fn language(&self, name: Option<&str>) -> Option<&Language> {
        name.and_then(|n| self.languages.get(n))
            .or_else(|| self.default.as_deref().and_then(|n| self.languages.get(n)))
    }

    /// The subject and bodies of a mail in `language` (`None`: the default).
    pub(crate) fn templates(&self, language: Option<&str>) -> &Templates {
        self.language(language).map_or(&self.base, |l| &l.templates)
    }

    /// The Reply-Message `key` in `language`, filled in.
    pub(crate) fn reply(&self, language: Option<&str>, key: Key, values: &ReplyValues<'_>) -> String {
        self.language(language)
            .map_or(&self.messages, |l| &l.messages)
            .render(key, values)
    }

    /// The words that refuse a PIN from elsewhere while a challenge is open:
    /// `already_sent` without the transaction (its State belongs to the
    /// other origin); LinOTP's bare words when nobody changed them.
    pub(crate) fn reply_elsewhere(&self, language: Option<&str>, email: &str) -> Option<String> {
        let messages = self.language(language).map_or(&self.messages, |l| &l.messages);
        let values = ReplyValues {
            email,
            ..ReplyValues::default()
        };
        messages.get(Key::AlreadySent).map(|m| m.render(&values))
    }

    /// The bodies that do not place `{deny_link}` (config keys or files),
    /// for `check` to warn about when mails carry one.
    pub(crate) fn without_deny_link(&self) -> Vec<String> {
        let mut missing: Vec<String> = Vec::new();
        if self.languages.is_empty() {
            missing.extend(self.base.without_deny_link().into_iter().map(str::to_owned));
        }
        for (name, lang) in &self.languages {
            for key in lang.templates.without_deny_link() {
                let file = if key == "email.body_file" {
                    "body.txt"
                } else {
                    "body.html"
                };
                missing.push(format!("templates_dir {name}/{file}"));
            }
        }
        missing
    }
}

impl Validator<'_> {
    /// `[email]`'s templates, `[messages]` and `templates_dir`.
    pub(super) fn wording(
        &self,
        raw: &RawEmail,
        messages: &BTreeMap<String, String>,
        link: bool,
        deny: bool,
    ) -> Result<Wording, ConfigError> {
        if raw.templates_dir.is_some() {
            for (key, set) in [
                ("body_file", raw.body_file.is_some()),
                ("html_body_file", raw.html_body_file.is_some()),
            ] {
                if set {
                    return Err(self.err(format!("email.{key}"), "use either it or templates_dir, not both"));
                }
            }
        } else if raw.default_language.is_some() {
            return Err(self.err("email.default_language", "needs templates_dir"));
        }
        let (body_file, html_body_file) = (
            raw.body_file.as_ref().map(|p| self.path(p)),
            raw.html_body_file.as_ref().map(|p| self.path(p)),
        );
        let base = Templates::load(&Sources {
            subject: &raw.provider.email_subject,
            body_file: body_file.as_deref(),
            html_body_file: html_body_file.as_deref(),
            link,
            deny,
        })?;
        let dir = raw.templates_dir.as_ref().map(|d| self.path(d));
        let default = raw.default_language.as_deref().unwrap_or("en");
        Wording::load(WordingSources {
            base,
            messages,
            dir: dir.as_deref().map(|d| (d, default)),
            subject: &raw.provider.email_subject,
            link,
        })
    }
}

/// A language directory as read, before the fallbacks.
#[derive(Debug, Clone)]
struct ReadLanguage {
    subject: Option<Template>,
    text: Template,
    html: Option<Template>,
    messages: MessageSet,
}

/// The language directories in `dir`, by name; a name that is not a
/// lower-case language tag is refused (lookups are by lower-case tag).
fn language_dirs(dir: &Path) -> Result<Vec<String>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
        file: dir.display().to_string(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
        if !entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // .git and the like
        }
        let tag_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if name.is_empty() || !name.chars().all(tag_char) {
            return Err(ConfigError::invalid(
                entry.path().display(),
                "email.templates_dir",
                "a language directory is named by its lower-case tag, e.g. `de` or `de-ch`",
            ));
        }
        names.push(name);
    }
    Ok(names)
}

/// Reads one language directory.
fn read_language(dir: &Path, link: bool) -> Result<ReadLanguage, ConfigError> {
    let key = "email.templates_dir";
    let body = dir.join("body.txt");
    if !body.is_file() {
        return Err(ConfigError::invalid(
            body.display(),
            key,
            "a language directory needs a body.txt",
        ));
    }
    let template = |path: &Path| -> Result<Template, ConfigError> {
        let parsed = Template::parse(&read_text(path)?).and_then(|t| t.fits_delivery(link).map(|()| t));
        parsed.map_err(|reason| ConfigError::invalid(path.display(), key, reason))
    };
    let text = template(&body)?;
    let html = Some(dir.join("body.html"))
        .filter(|p| p.is_file())
        .map(|p| template(&p))
        .transpose()?;
    let subject_file = dir.join("subject.txt");
    let subject = if subject_file.is_file() {
        let text = read_text(&subject_file)?;
        Some(parse_subject(text.trim_end(), &subject_file.display(), key)?)
    } else {
        None
    };
    let messages_file = dir.join("messages.toml");
    let messages = if messages_file.is_file() {
        let shown = messages_file.display();
        let table: BTreeMap<String, String> = parse_toml(&read_text(&messages_file)?, &shown)?;
        MessageSet::parse(&table, &shown, "")?
    } else {
        MessageSet::default()
    };
    Ok(ReadLanguage {
        subject,
        text,
        html,
        messages,
    })
}

/// A subject template: one line.
fn parse_subject(text: &str, file: &dyn std::fmt::Display, key: &str) -> Result<Template, ConfigError> {
    if text.contains('\n') {
        return Err(ConfigError::invalid(file, key, "a subject is one line"));
    }
    Template::parse(text).map_err(|reason| ConfigError::invalid(file, key, reason))
}

#[cfg(test)]
mod tests;
