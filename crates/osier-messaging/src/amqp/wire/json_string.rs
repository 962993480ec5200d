//! JSON strings escaped as serde_json writes them, and read back where only the short escapes
//! occur.
//!
//! Escaping: the 2.0 envelope carries the message as a JSON string, so a string inside the
//! message is escaped twice ([`escape_twice_into`]): once as the message's JSON has it, and
//! once more as the envelope's string holds that JSON. Both in one pass, eight bytes at a time
//! past the runs that need nothing (a message's text has a quote every few bytes, so the first
//! byte to escape is found in the word, not looked for again byte by byte).
//!
//! The escapes are serde_json's, byte for byte: `"` and `\` escaped with a backslash, the
//! control characters with `\b \t \n \f \r` or `\u00xx` (lower-case hex), everything else (all
//! of UTF-8 above them) as it is. So a string escaped twice here reads, inside the envelope,
//! as serde_json writes that string inside a message that it then serialises as a string.

const BB: u8 = b'b';
const TT: u8 = b't';
const NN: u8 = b'n';
const FF: u8 = b'f';
const RR: u8 = b'r';
const QU: u8 = b'"';
const BS: u8 = b'\\';
const UU: u8 = b'u';
const __: u8 = 0;

/// For each byte, how it is escaped (`b'x'`: as `\x`; `b'u'`: as `\u00xx`), or 0 when it is
/// written as it is.
static ESCAPE: [u8; 256] = {
    let mut t = [__; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = UU;
        b += 1;
    }
    t[0x08] = BB;
    t[0x09] = TT;
    t[0x0A] = NN;
    t[0x0C] = FF;
    t[0x0D] = RR;
    t[b'"' as usize] = QU;
    t[b'\\' as usize] = BS;
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// One in each byte of a word; the high bit of each byte.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` that need an escape, flagged by their high bit: a control character
/// (below 0x20), `"` or `\\` (the word-at-a-time tests for a byte below `n` and a byte equal
/// to `c`). A flag above the lowest one may be wrong (a borrow runs upwards); the lowest is
/// always right, and there is none when no byte needs an escape.
#[inline]
fn escape_flags(w: u64) -> u64 {
    let below_0x20 = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * b'\\' as u64);
    let backslash = b.wrapping_sub(ONES) & !b;
    (below_0x20 | quote | backslash) & HIGHS
}

/// Appends byte `b`'s escape `e` to `out`; with `TWICE`, that escape escaped once more (as it
/// reads inside a JSON string that holds the text).
#[inline(always)]
fn escape_byte<const TWICE: bool>(out: &mut Vec<u8>, b: u8, e: u8) {
    let hex = [HEX[(b >> 4) as usize], HEX[(b & 0xF) as usize]];
    match (TWICE, e) {
        (false, UU) => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', hex[0], hex[1]]),
        (false, _) => out.extend_from_slice(&[b'\\', e]),
        // `\"` and `\\` escaped: each of their two bytes needs a backslash.
        (true, QU | BS) => out.extend_from_slice(&[b'\\', b'\\', b'\\', e]),
        (true, UU) => out.extend_from_slice(&[b'\\', b'\\', b'u', b'0', b'0', hex[0], hex[1]]),
        // `\n` and the like: only the backslash needs one.
        (true, _) => out.extend_from_slice(&[b'\\', b'\\', e]),
    }
}

/// Appends `bytes` to `out` as the inside of a JSON string (no quotes around it), as serde_json
/// escapes it: JSON text written elsewhere (a call's arguments) put into the envelope's string.
pub(crate) fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    escape_with::<false>(out, bytes);
}

/// Appends `bytes` escaped as a string's contents, then escaped once more: a string of the
/// message as the envelope's string holds it (see the module docs).
pub(crate) fn escape_twice_into(out: &mut Vec<u8>, bytes: &[u8]) {
    escape_with::<true>(out, bytes);
}

/// Each word is appended whole, then cut back to the byte that needs an escape: a fixed
/// eight-byte copy, where a copy of the run between two escapes (a few bytes in a message's
/// text) would be a call of its own.
#[inline(always)]
fn escape_with<const TWICE: bool>(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 8);
    let mut i = 0;
    while let Some(at) = copy_run(out, bytes, i, &mut 0) {
        let b = bytes[at];
        escape_byte::<TWICE>(out, b, ESCAPE[b as usize]);
        i = at + 1;
    }
}

/// Appends `bytes[i..]` to `out` up to the next byte that needs an escape (a control
/// character, `"` or `\`) and returns that byte's index, or `None` once everything is
/// appended. Eight bytes at a time: each word appended whole, then cut back to that byte (a
/// fixed eight-byte copy, where a copy of the run between two escapes, a few bytes in a
/// message's text, would be a call of its own). Every byte looked at is ORed into `seen`,
/// which tells whether any was above ASCII (bytes past the one found may be counted too).
// Inlined into both callers: a call per run (a few bytes each) costs more than the copy.
#[inline(always)]
fn copy_run(out: &mut Vec<u8>, bytes: &[u8], mut i: usize, seen: &mut u64) -> Option<usize> {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let flags = escape_flags(w);
        out.extend_from_slice(&word);
        *seen |= w;
        if flags != 0 {
            let k = (flags.trailing_zeros() / 8) as usize;
            out.truncate(out.len() - (8 - k));
            return Some(i + k);
        }
        i += 8;
    }
    let rest = bytes.get(i..).unwrap_or_default();
    let off = rest.iter().position(|&b| ESCAPE[b as usize] != __);
    let run = &rest[..off.unwrap_or(rest.len())];
    *seen |= run.iter().fold(0, |a, &b| a | u64::from(b));
    out.extend_from_slice(run);
    off.map(|o| i + o)
}

/// What [`unescape_simple`] gives: the string's text and the index just past its closing quote.
pub(super) struct Unescaped {
    pub text: String,
    pub end: usize,
}

/// Reads the JSON string whose text starts at `from` (just past its opening quote) when it has
/// only the two-character escapes (`\" \\ \/ \b \f \n \r \t`) and is valid UTF-8: what
/// the envelope's message is, however a peer wrote it (Python escapes every character above
/// ASCII of the message's text as `\u` inside that text, so the envelope's string itself has
/// none). `None` for anything else (`\u` escapes, a control character, invalid UTF-8, no
/// closing quote): the caller reads such a body with serde_json, which decides what it is.
/// Eight bytes at a time to the next quote, backslash or control character.
pub(super) fn unescape_simple(bytes: &[u8], from: usize) -> Option<Unescaped> {
    let mut text = Vec::with_capacity(bytes.len().saturating_sub(from) + 8);
    let mut seen = 0u64;
    let mut i = from;
    loop {
        // No byte that ends the run: no closing quote.
        let at = copy_run(&mut text, bytes, i, &mut seen)?;
        match bytes[at] {
            b'"' => {
                let text = if seen & HIGHS == 0 {
                    // SAFETY: every byte of `text` is below 0x80, so it is ASCII, which is
                    // UTF-8: each was either looked at by `copy_run`, which ORs every byte it
                    // looks at into `seen` (no high bit there), or is the ASCII byte an escape
                    // stands for. (A text with any byte above ASCII is checked below.)
                    unsafe { String::from_utf8_unchecked(text) }
                } else {
                    String::from_utf8(text).ok()?
                };
                return Some(Unescaped { text, end: at + 1 });
            }
            b'\\' => {
                let c = match *bytes.get(at + 1)? {
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'/' => b'/',
                    b'b' => 0x08,
                    b'f' => 0x0C,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    _ => return None,
                };
                text.push(c);
                i = at + 2;
            }
            // A control character: not allowed in a JSON string.
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_test_finds_each_byte_that_needs_an_escape_at_each_place() {
        for b in 0u8..=255 {
            for at in 0..8 {
                let mut w = [b'a'; 8];
                w[at] = b;
                assert_eq!(
                    escape_flags(u64::from_le_bytes(w)) != 0,
                    ESCAPE[b as usize] != __,
                    "byte {b:#x} at {at}"
                );
            }
        }
    }

    #[test]
    fn the_word_test_finds_the_first_byte_to_escape_with_two_near_the_edges_anywhere() {
        let near = [
            0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0xc3, 0xff,
        ];
        for &x in &near {
            for &y in &near {
                for i in 0..8 {
                    for j in 0..8 {
                        let mut w = [b'a'; 8];
                        w[i] = x;
                        w[j] = y;
                        let first = w.iter().position(|&b| ESCAPE[b as usize] != __);
                        let flags = escape_flags(u64::from_le_bytes(w));
                        let lowest = (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize);
                        assert_eq!(lowest, first, "{w:?}");
                    }
                }
            }
        }
    }

    /// Every ASCII character, and a few above (two-, three- and four-byte UTF-8).
    fn every_ascii_character_and_some_above() -> String {
        (0u32..0x80)
            .chain([0xe9, 0x2028, 0x1F600])
            .filter_map(char::from_u32)
            .collect()
    }

    #[test]
    fn escapes_every_byte_as_serde_json_does() {
        let all = every_ascii_character_and_some_above();
        let mut ours = Vec::new();
        escape_into(&mut ours, all.as_bytes());
        let theirs = serde_json::to_string(&all).unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            theirs[1..theirs.len() - 1]
        );
    }

    #[test]
    fn escapes_every_byte_twice_as_serde_json_does_for_a_string_in_a_string() {
        let all = every_ascii_character_and_some_above();
        for s in [all.as_str(), "", "plain", "a\"b\\c\nd\u{1}e"] {
            let mut ours = Vec::new();
            escape_twice_into(&mut ours, s.as_bytes());
            // The string's JSON, itself a JSON string: `"\"<twice>\""`.
            let twice = serde_json::to_string(&serde_json::to_string(s).unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                twice[3..twice.len() - 3],
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_message_escaped_is_its_text_serialised_as_a_string() {
        let v = serde_json::json!({"a": "q\"uo\\te\n", "b": [1, 2.5, null], "c": {"d": "é\u{1}"}});
        let text = serde_json::to_string(&v).unwrap();
        let mut ours = Vec::new();
        escape_into(&mut ours, text.as_bytes());
        let twice = serde_json::to_string(&text).unwrap();
        assert_eq!(String::from_utf8(ours).unwrap(), twice[1..twice.len() - 1]);
    }

    fn unescaped(json: &str) -> Option<(String, usize)> {
        unescape_simple(json.as_bytes(), 1).map(|u| (u.text, u.end))
    }

    #[test]
    fn a_string_with_short_escapes_reads_as_serde_json_reads_it() {
        let texts = [
            "",
            "plain",
            "a \"quoted\" word and a \\ backslash / slash",
            "\u{8}\u{c}\n\r\t controls",
            "héllo wörld, ünïcode ✓ 😀",
            "{\"a\":\"q\\\"uo\\\\te\\n\",\"b\":[1,2.5,null]}",
        ];
        for t in texts {
            for pad in ["", "x", "xxxxxxx", "xxxxxxxx", "xxxxxxxxxxxxxxxxx"] {
                let text = format!("{pad}{t}{pad}");
                let json = serde_json::to_string(&text).unwrap();
                assert_eq!(unescaped(&json), Some((text.clone(), json.len())), "{json}");
                let slashed = json.replace('/', "\\/");
                assert_eq!(unescaped(&slashed).map(|u| u.0), Some(text), "{slashed}");
            }
        }
    }

    #[test]
    fn what_needs_serde_json_is_left_to_it() {
        for json in [
            "\"\\u00e9\"",   // a \u escape
            "\"a\\x\"",      // an unknown escape
            "\"tab\there\"", // a raw control character
            "\"no end",
            "\"ends in a backslash\\",
        ] {
            assert!(unescaped(json).is_none(), "{json:?}");
        }
        let mut bad = b"\"abc".to_vec();
        bad.extend_from_slice(&[0xC3, 0x28, b'"']);
        assert!(unescape_simple(&bad, 1).is_none(), "invalid UTF-8");
    }

    #[test]
    fn the_end_is_just_past_the_closing_quote() {
        let json = "\"abcdefghij\\\"k\",\"next\"";
        assert_eq!(unescaped(json), Some(("abcdefghij\"k".to_string(), 15)));
    }
}
