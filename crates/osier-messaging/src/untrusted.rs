//! Text that came off the wire, made safe to log: control characters (newlines included) are
//! escaped, so a crafted method name or event type cannot forge log lines, and long values are
//! cut, so one message cannot write megabytes of log.
//!
//! ```
//! use osier_messaging::Untrusted;
//!
//! let method = "ping\nERROR fake line";
//! assert_eq!(Untrusted(method).to_string(), "ping\\nERROR fake line");
//! let long = "x".repeat(1000);
//! assert!(Untrusted(&long).to_string().ends_with("...(1000 bytes)"));
//! ```

use std::borrow::Cow;
use std::fmt;

/// How many characters of an untrusted value a log line shows.
pub const SHOWN_CHARS: usize = 128;

/// Displays a string received from the network for a log line or an error message: control
/// characters and other non-printing characters escaped (`\n`, `\u{1b}`), at most
/// 128 characters (`SHOWN_CHARS`), then the full length in bytes.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

/// Whether `c` is shown escaped.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl<'a> Untrusted<'a> {
    /// The text as shown: the value itself when it is short and printable (the common case,
    /// no copy), otherwise its escaped and cut form. What a span records as a string, so a
    /// log formatter copies it rather than running `Display`.
    pub fn shown(self) -> Cow<'a, str> {
        if self.is_plain() {
            Cow::Borrowed(self.0)
        } else {
            Cow::Owned(self.to_string())
        }
    }

    fn is_plain(self) -> bool {
        self.0.len() <= SHOWN_CHARS && (printable_ascii(self.0) || !self.0.chars().any(hidden))
    }
}

/// Whether every byte is printable ASCII (space to `~`): what a method name or a request id
/// is, checked a byte at a time without decoding characters (one pass, no early exit, so the
/// compiler can take several bytes at once).
fn printable_ascii(s: &str) -> bool {
    s.bytes()
        .fold(true, |plain, b| plain & (b.wrapping_sub(b' ') < 0x5f))
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The common case (a method name, an event type): short and printable, written whole.
        if self.is_plain() {
            return f.write_str(self.0);
        }
        for (shown, c) in self.0.chars().enumerate() {
            if shown == SHOWN_CHARS {
                return write!(f, "...({} bytes)", self.0.len());
            }
            if hidden(c) {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            Untrusted("a\r\nb\u{1b}[31m").to_string(),
            "a\\r\\nb\\u{1b}[31m"
        );
        assert_eq!(Untrusted("a\u{2028}b").to_string(), "a\\u{2028}b");
        assert_eq!(Untrusted("ünïcode ok").to_string(), "ünïcode ok");
    }

    /// The byte test passes exactly the ASCII characters the character test shows as they are.
    #[test]
    fn the_ascii_test_agrees_with_the_character_test_on_every_ascii_byte() {
        for b in 0u8..=0x7f {
            let s = (b as char).to_string();
            assert_eq!(printable_ascii(&s), !hidden(b as char), "byte {b:#04x}");
        }
        assert!(!printable_ascii("é"));
        assert!(Untrusted("é").is_plain());
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let s = "é".repeat(SHOWN_CHARS + 1);
        let shown = Untrusted(&s).to_string();
        assert!(shown.starts_with(&"é".repeat(SHOWN_CHARS)));
        assert!(shown.ends_with(&format!("...({} bytes)", s.len())));
        assert_eq!(
            Untrusted(&"x".repeat(SHOWN_CHARS)).to_string().len(),
            SHOWN_CHARS
        );
    }
}
