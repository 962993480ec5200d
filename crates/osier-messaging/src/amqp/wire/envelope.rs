//! The 2.0 envelope read without a JSON parser: a body that is `{"oslo.message": "<text>",
//! "oslo.version": "2.0"}` (either order, any JSON whitespace between the parts, the text with
//! only two-character escapes), as osier and Python write it, gives its message's text straight
//! away. Anything else (another member, a duplicate, another version, a `\u` escape, bytes that
//! are not JSON) is `None`, and the body goes to serde_json, which says what it is: this read
//! only ever agrees with it, so every error stays the one serde_json gives.
//!
//! Reading the envelope through serde_json cost as much as reading the message inside it (the
//! message's text is one long string with an escape every few bytes, each of them a call into
//! serde_json's string reader); here it is a scan eight bytes at a time.

use super::json_string::unescape_simple;
use super::OSLO_VERSION;

/// JSON's whitespace.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `i`, past `c` and the whitespace before it; `None` if the next byte is not `c`.
fn expect(b: &[u8], i: usize, c: u8) -> Option<usize> {
    let i = skip_ws(b, i);
    (b.get(i) == Some(&c)).then_some(i + 1)
}

/// `i`, past the string `"s"` (written without escapes) and the whitespace before it.
fn expect_str(b: &[u8], i: usize, s: &str) -> Option<usize> {
    let i = expect(b, i, b'"')?;
    let end = i + s.len();
    (b.get(i..end) == Some(s.as_bytes()) && b.get(end) == Some(&b'"')).then_some(end + 1)
}

/// `i`, past the member name `"name"` and its colon.
fn member(b: &[u8], i: usize, name: &str) -> Option<usize> {
    expect(b, expect_str(b, i, name)?, b':')
}

/// The envelope's message text, when `body` is a plain 2.0 envelope (see the module docs).
pub(super) fn message(body: &[u8]) -> Option<String> {
    let mut i = expect(body, 0, b'{')?;
    let (mut text, mut version) = (None, false);
    for n in 0..2 {
        if n == 1 {
            i = expect(body, i, b',')?;
        }
        if let Some(at) = member(body, i, "oslo.message").filter(|_| text.is_none()) {
            let s = unescape_simple(body, expect(body, at, b'"')?)?;
            i = s.end;
            text = Some(s.text);
        } else if let Some(at) = member(body, i, "oslo.version").filter(|_| !version) {
            i = expect_str(body, at, OSLO_VERSION)?;
            version = true;
        } else {
            return None;
        }
    }
    i = expect(body, i, b'}')?;
    (skip_ws(body, i) == body.len()).then_some(())?;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_as_osier_and_python_write_it() {
        let text = r#"{"method":"echo","args":{"s":"a \"q\" \\ b"}}"#;
        let escaped = serde_json::to_string(text).unwrap();
        for body in [
            format!(r#"{{"oslo.message":{escaped},"oslo.version":"2.0"}}"#),
            format!(r#"{{"oslo.version": "2.0", "oslo.message": {escaped}}}"#),
            format!(" \r\n{{ \"oslo.version\" :\t\"2.0\" ,\n\"oslo.message\" : {escaped} }} \n"),
        ] {
            assert_eq!(message(body.as_bytes()).as_deref(), Some(text), "{body}");
        }
    }

    #[test]
    fn leaves_everything_else_to_serde_json() {
        let m = r#""{}""#;
        for body in [
            format!(r#"{{"oslo.message":{m},"oslo.version":"1.0"}}"#),
            format!(r#"{{"oslo.message":{m},"oslo.version":"2.0","x":1}}"#),
            format!(r#"{{"oslo.message":{m},"oslo.message":{m}}}"#),
            format!(r#"{{"oslo.message":{m}}}"#),
            format!(r#"{{"oslo.message":{m},"oslo.version":"2.0"}} x"#),
            format!(r#"{{"oslo.message":{m},"oslo.version":"2.0""#),
            format!(r#"{{"oslo.message":{m},"oslo.version":"2.01"}}"#),
            format!(r#"{{"oslo.message":{m},"oslo.version":2.0}}"#),
            format!(r#"{{"oslo\u002emessage":{m},"oslo.version":"2.0"}}"#),
            r#"{"oslo.message":"\u007b}","oslo.version":"2.0"}"#.to_string(),
            r#"{"oslo.message":{},"oslo.version":"2.0"}"#.to_string(),
            r#"{"oslo.messagex":"{}","oslo.version":"2.0"}"#.to_string(),
            "{".to_string(),
            String::new(),
        ] {
            assert_eq!(message(body.as_bytes()), None, "{body}");
        }
    }

    /// What serde_json reads in `body`: the message text, when it is a 2.0 envelope.
    fn serde_reads(body: &[u8]) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let m = v.as_object()?;
        (m.len() == 2 && m.get("oslo.version")? == OSLO_VERSION)
            .then(|| m.get("oslo.message")?.as_str().map(str::to_string))?
    }

    #[test]
    fn agrees_with_serde_json_on_every_mutation_of_real_envelopes() {
        let text = r#"{"_context_request_id":"req-1","args":{"s":"a "q" \ b / é","n":[1,null]},"method":"echo"}"#;
        let escaped = serde_json::to_string(text).unwrap();
        let seeds = [
            format!(r#"{{"oslo.message":{escaped},"oslo.version":"2.0"}}"#),
            format!(r#"{{"oslo.version": "2.0", "oslo.message": {escaped}}}"#),
        ];
        let bytes = b" \"/\\:,{}u0a\xc3\xa9\x01\x7f\xff2.";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut read = 0;
        for _ in 0..20_000 {
            let mut body = seeds[next(2)].as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(body.len());
                match next(3) {
                    0 => body[at] = bytes[next(bytes.len())],
                    1 => body.insert(at, bytes[next(bytes.len())]),
                    _ => {
                        body.remove(at);
                    }
                }
            }
            if let Some(m) = message(&body) {
                read += 1;
                let theirs = serde_reads(&body);
                assert_eq!(Some(m), theirs, "{}", String::from_utf8_lossy(&body));
            }
        }
        // Mutations inside the message's text mostly leave an envelope.
        assert!(read > 1_000, "{read}");
    }
}
