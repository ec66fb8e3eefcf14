//! Reply-Messages: the built-in words of every text a RADIUS answer carries,
//! and their overrides (`[messages]`, a language's `messages.toml`), parsed
//! once with their placeholders `{email}`, `{transaction}`, `{minutes}`.
//!
//! A message that could render longer than one Reply-Message (253 octets) is
//! refused here, counted with each placeholder at its longest, so no answer
//! is ever cut or split. Rendering never fails. Nothing here picks a language
//! (see `config::languages`).

use std::collections::BTreeMap;
use std::fmt;

use super::template::{parse_parts, without_controls, Part};
use super::ConfigError;

/// The most octets one Reply-Message attribute holds (RFC 2865 §5).
pub(crate) const REPLY_MESSAGE_MAX: usize = 253;
/// The longest masked address a message shows; longer ones end in `…`.
pub(crate) const EMAIL_MAX: usize = 64;

/// Every Reply-Message the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    /// The code was sent: type it.
    Prompt,
    /// The link was sent: open it, then press Enter.
    LinkPrompt,
    /// The PIN again within the blocking timeout.
    AlreadySent,
    /// An e-mail throttle is reached.
    Throttled,
    /// A link challenge answered before its link was confirmed.
    LinkPending,
    /// The mail queue is full.
    Busy,
}

impl Key {
    const ALL: [Key; 6] = [
        Key::Prompt,
        Key::LinkPrompt,
        Key::AlreadySent,
        Key::Throttled,
        Key::LinkPending,
        Key::Busy,
    ];

    /// The name in `[messages]` and `messages.toml`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Key::Prompt => "prompt",
            Key::LinkPrompt => "link_prompt",
            Key::AlreadySent => "already_sent",
            Key::Throttled => "throttled",
            Key::LinkPending => "link_pending",
            Key::Busy => "busy",
        }
    }

    /// What the answer knows when it is sent: a link's State is answered
    /// without asking the directory (no address), a refusal has no
    /// challenge (no transaction, no minutes).
    fn allowed(self) -> &'static [Slot] {
        match self {
            Key::Prompt | Key::LinkPrompt | Key::AlreadySent => &[Slot::Email, Slot::Transaction, Slot::Minutes],
            Key::LinkPending => &[Slot::Transaction, Slot::Minutes],
            Key::Throttled | Key::Busy => &[Slot::Email],
        }
    }

    /// The built-in words (LinOTP's for `already_sent`, which admins search for).
    fn built_in(self) -> &'static str {
        match self {
            Key::Prompt => "Enter the one-time password sent to {email}",
            Key::LinkPrompt => "Open the link in the e-mail sent to {email}, then press Enter",
            Key::AlreadySent => "e-mail with otp already submitted (transaction {transaction})",
            Key::Throttled => "Too many e-mails were sent to you, please try again later",
            Key::LinkPending => "Open the link in the e-mail and press Confirm, then press Enter here",
            Key::Busy => "The e-mail service is busy, please try again later",
        }
    }
}

/// A placeholder of a Reply-Message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Email,
    Transaction,
    Minutes,
}

impl Slot {
    fn parse(name: &str) -> Option<Slot> {
        Some(match name {
            "email" => Slot::Email,
            "transaction" => Slot::Transaction,
            "minutes" => Slot::Minutes,
            _ => return None,
        })
    }

    /// The most octets the value can take: the shortened address, 32 hex
    /// digits, a `u64`.
    fn max_octets(self) -> usize {
        match self {
            Slot::Email => EMAIL_MAX,
            Slot::Transaction => 32,
            Slot::Minutes => 20,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Slot::Email => "{email}",
            Slot::Transaction => "{transaction}",
            Slot::Minutes => "{minutes}",
        }
    }
}

/// The values one answer fills in.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReplyValues<'a> {
    /// The masked address (shortened to [`EMAIL_MAX`] octets here).
    pub email: &'a str,
    /// The transaction, or empty where it must not be told.
    pub transaction: &'a str,
    /// Whole minutes the challenge is (still) valid.
    pub minutes: u64,
}

/// One parsed Reply-Message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    parts: Vec<Part<Slot>>,
}

impl Message {
    /// Parses the text of `key`: only its placeholders, and never longer
    /// than a Reply-Message holds.
    fn parse(key: Key, text: &str) -> Result<Message, String> {
        let allowed = key.allowed();
        let known: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(" ")
        };
        let parts = parse_parts(text, |name| Slot::parse(name).filter(|s| allowed.contains(s)), &known)?;
        let longest: usize = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Value(slot) => slot.max_octets(),
            })
            .sum();
        if longest > REPLY_MESSAGE_MAX {
            return Err(format!(
                "can be {longest} octets long with its placeholders at their longest; a Reply-Message holds {REPLY_MESSAGE_MAX}"
            ));
        }
        Ok(Message { parts })
    }

    /// The text with the values filled in (control characters removed).
    pub(crate) fn render(&self, values: &ReplyValues<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value(Slot::Email) => out.push_str(&shorten(&without_controls(values.email), EMAIL_MAX)),
                Part::Value(Slot::Transaction) => out.push_str(&without_controls(values.transaction)),
                Part::Value(Slot::Minutes) => out.push_str(&values.minutes.to_string()),
            }
        }
        out
    }
}

/// `s` cut to at most `max` octets, ending in `…` when cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Some of the messages, by key: one source of overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MessageSet(BTreeMap<Key, Message>);

impl MessageSet {
    /// Parses a table of overrides (`[messages]`, `messages.toml`); `file`
    /// and `prefix` name where they were written in errors.
    pub(crate) fn parse(
        table: &BTreeMap<String, String>,
        file: &dyn fmt::Display,
        prefix: &str,
    ) -> Result<MessageSet, ConfigError> {
        let mut set = BTreeMap::new();
        for (name, text) in table {
            let key = Key::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
                let known: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
                ConfigError::invalid(
                    file,
                    format!("{prefix}{name}"),
                    format!("unknown message (known: {})", known.join(", ")),
                )
            })?;
            let message = Message::parse(key, text)
                .map_err(|reason| ConfigError::invalid(file, format!("{prefix}{name}"), reason))?;
            set.insert(key, message);
        }
        Ok(MessageSet(set))
    }

    /// These messages, and for the keys they lack, `fallback`'s.
    pub(crate) fn or(&self, fallback: &MessageSet) -> MessageSet {
        let mut set = fallback.0.clone();
        set.extend(self.0.iter().map(|(k, m)| (*k, m.clone())));
        MessageSet(set)
    }

    /// The override of `key`, if this set has one.
    pub(crate) fn get(&self, key: Key) -> Option<&Message> {
        self.0.get(&key)
    }

    /// The override of `key`, or the built-in words.
    pub(crate) fn render(&self, key: Key, values: &ReplyValues<'_>) -> String {
        match self.get(key) {
            Some(message) => message.render(values),
            None => Message::parse(key, key.built_in())
                .expect("built-in message parses")
                .render(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<MessageSet, String> {
        MessageSet::parse(&table(pairs), &"mailotp.toml", "messages.").map_err(|e| e.to_string())
    }

    const VALUES: ReplyValues<'static> = ReplyValues {
        email: "a***@example.com",
        transaction: "00112233445566778899aabbccddeeff",
        minutes: 10,
    };

    #[test]
    fn overrides_render_and_missing_keys_are_built_in() {
        let set = parse(&[("prompt", "Code an {email} ({minutes} min)")]).unwrap();
        assert_eq!(set.render(Key::Prompt, &VALUES), "Code an a***@example.com (10 min)");
        assert_eq!(
            set.render(Key::AlreadySent, &VALUES),
            "e-mail with otp already submitted (transaction 00112233445566778899aabbccddeeff)"
        );
        let built_in = MessageSet::default();
        for key in Key::ALL {
            assert!(!built_in.render(key, &VALUES).contains('{'), "{key:?}");
        }
    }

    #[test]
    fn unknown_keys_and_placeholders_a_message_may_not_use_are_refused() {
        let err = parse(&[("promt", "x")]).unwrap_err();
        assert!(
            err.starts_with("mailotp.toml: key `messages.promt`: unknown message (known: prompt,"),
            "{err}"
        );
        let err = parse(&[("throttled", "Wait {minutes} minutes")]).unwrap_err();
        assert!(
            err.contains("messages.throttled") && err.contains("unknown placeholder {minutes}"),
            "{err}"
        );
        assert!(err.contains("(known: {email})"), "{err}");
        assert!(parse(&[("link_pending", "{email}")]).is_err());
    }

    #[test]
    fn a_message_that_can_render_past_253_octets_is_refused() {
        // 253 - 64 (the longest {email}) octets of text fit, one more does not.
        let fits = format!("{}{{email}}", "x".repeat(REPLY_MESSAGE_MAX - EMAIL_MAX));
        assert!(parse(&[("busy", &fits)]).is_ok());
        let err = parse(&[("busy", &format!("x{fits}"))]).unwrap_err();
        assert!(err.contains("can be 254 octets long"), "{err}");
        // Octets, not characters: 127 × "ü" is 254 octets.
        assert!(parse(&[("busy", &"ü".repeat(127))]).is_err());
    }

    #[test]
    fn a_long_address_is_shortened_and_controls_removed() {
        let set = parse(&[("prompt", "{email}")]).unwrap();
        let long = format!("a***@{}.example", "ü".repeat(40));
        let shown = set.render(Key::Prompt, &ReplyValues { email: &long, ..VALUES });
        assert!(shown.len() <= EMAIL_MAX && shown.ends_with('…'), "{shown}");
        let crlf = set.render(
            Key::Prompt,
            &ReplyValues {
                email: "a\r\nb",
                ..VALUES
            },
        );
        assert_eq!(crlf, "ab");
    }
}
