//! logging::fields: how the text format writes an event's fields, so that
//! no value — a User-Name, a Calling-Station-Id, an SMTP server's reply —
//! can start a line of its own or pose as another field.
//!
//! The message comes first, then `name=value` pairs, as tracing's default
//! text format writes them. Every value has its control characters (C0,
//! DEL, C1, U+2028/U+2029) escaped as `\n`, `\r`, `\t`, `\x1b`, `\u{85}`,
//! `\u{2028}`. A value that needs escaping, or holds a space, `"` or `=`,
//! is quoted (logfmt), and inside quotes `"` and `\` are escaped too: a bare
//! value never contains an escape, a quoted one is read like a Rust string.
//! String values (`field = "text"`) are always quoted, as before. This module
//! writes into the formatter's buffer; it does not decide where lines go.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// The text format's field formatter (`fmt().fmt_fields(EscapedFields)`).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapedVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> EscapedVisitor<'a> {
        EscapedVisitor {
            writer: target,
            empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's (or span's) fields.
#[derive(Debug)]
pub(super) struct EscapedVisitor<'a> {
    writer: Writer<'a>,
    empty: bool,
    result: fmt::Result,
}

impl EscapedVisitor<'_> {
    /// `name=` after a space, or nothing for the message.
    fn start(&mut self, field: &Field) -> Option<&'static str> {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return None;
        }
        if !std::mem::take(&mut self.empty) {
            self.result = self.writer.write_char(' ');
        }
        Some(name.strip_prefix("r#").unwrap_or(name))
    }

    fn field(&mut self, field: &Field, value: fmt::Arguments<'_>, always_quote: bool) {
        let Some(name) = self.start(field) else { return };
        let mut text = String::new();
        let _ = text.write_fmt(value);
        self.result = if name == "message" {
            write_escaped(&mut self.writer, &text, false)
        } else {
            let quoted = always_quote || needs_quotes(&text);
            write!(self.writer, "{name}=").and_then(|()| write_quoted_if(&mut self.writer, &text, quoted))
        };
    }
}

impl Visit for EscapedVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, format_args!("{value}"), true);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.field(field, format_args!("{text}"), false);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, format_args!("{value:?}"), false);
    }
}

impl VisitOutput<fmt::Result> for EscapedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn Write {
        &mut self.writer
    }
}

/// Characters no log value may hold raw: C0, DEL, C1, and the Unicode line
/// and paragraph separators that some viewers break lines at.
fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| is_control(c) || matches!(c, ' ' | '"' | '=' | '\\'))
}

fn write_quoted_if(out: &mut dyn Write, value: &str, quoted: bool) -> fmt::Result {
    if quoted {
        out.write_char('"')?;
        write_escaped(out, value, true)?;
        out.write_char('"')
    } else {
        out.write_str(value)
    }
}

/// Writes `value` with control characters escaped; `quoted` also escapes
/// `"` and `\`, for a value between quotes.
fn write_escaped(out: &mut dyn Write, value: &str, quoted: bool) -> fmt::Result {
    let special = |c: char| is_control(c) || (quoted && matches!(c, '"' | '\\'));
    let mut rest = value;
    while let Some(at) = rest.find(special) {
        out.write_str(&rest[..at])?;
        let c = rest[at..].chars().next().expect("found a character there");
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            c if c.is_ascii() => write!(out, "\\x{:02x}", u32::from(c))?,
            c => write!(out, "\\u{{{:x}}}", u32::from(c))?,
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.write_str(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &str, quoted: bool) -> String {
        let mut out = String::new();
        write_escaped(&mut out, value, quoted).unwrap();
        out
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escaped("a\nb\r\tc\u{1b}[31m\u{7f}\u{85}\u{9b}\u{2028}\u{2029}\0", false),
            "a\\nb\\r\\tc\\x1b[31m\\x7f\\u{85}\\u{9b}\\u{2028}\\u{2029}\\x00"
        );
        assert_eq!(escaped("DOMAIN\\alice \"x\"", false), "DOMAIN\\alice \"x\"");
        assert_eq!(escaped("DOMAIN\\alice \"x\"", true), "DOMAIN\\\\alice \\\"x\\\"");
        assert_eq!(escaped("Grüße, 日本", true), "Grüße, 日本");
    }

    #[test]
    fn bare_values_hold_no_escape_and_no_separator() {
        for plain in ["alice", "10.0.0.1:1812", "DOMAIN.alice@example.com"] {
            assert!(!needs_quotes(plain), "{plain}");
        }
        for odd in ["", "a b", "a=b", "a\"b", "a\\nb", "a\nb", "a\u{2028}b"] {
            assert!(needs_quotes(odd), "{odd:?}");
        }
    }
}
