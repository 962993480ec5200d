//! Bodies read in one pass: the envelope's message found by a scan of its own
//! ([`envelope`](super::envelope)) or, for any other body, the envelope's members picked out as
//! they are parsed (no map built for it), then the message's members handed one by one to what
//! wants them ([`Members`]): a request keeps its method, arguments, context and call members
//! and skips the rest unbuilt; a reply keeps its four members; a generic body keeps everything,
//! as a map.
//!
//! The outcome is that of parsing the body into a map and picking from it (`decode_body` then
//! `decode_request`, `decode_reply`), error for error, with one difference: a member nobody
//! reads is skipped, not built, so it is not held to the decoder's nesting limit (Python's
//! decoder reads it too).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{WireError, OSLO_VERSION};
use crate::driver::Dict;
use crate::error::Cause;

/// A member's name, borrowed from the body when it has no escapes (serde's own `Cow<str>`
/// always copies).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// What a message's members become: each member is offered once, in the order it comes.
pub(super) trait Members: Default {
    /// Whether the member named `key` is kept (parsed into a value and given to [`put`]);
    /// one that is not is skipped unbuilt.
    ///
    /// [`put`]: Members::put
    fn wants(&self, key: &str) -> bool;
    /// A kept member.
    fn put(&mut self, key: Cow<'_, str>, value: Value);
}

/// Every member, as a map (what `decode_body` returns).
impl Members for Dict {
    fn wants(&self, _key: &str) -> bool {
        true
    }

    fn put(&mut self, key: Cow<'_, str>, value: Value) {
        self.insert(key.into_owned(), value);
    }
}

/// How a body's top level parsed.
enum Parsed<M> {
    NotObject,
    /// `oslo.version` was present: the envelope, its message still to be read.
    Envelope {
        version: Value,
        message: Option<Value>,
    },
    /// No `oslo.version`: the body is the message.
    Bare(M),
}

/// Visits a top-level value: an object's members go to `M`, `oslo.version` and `oslo.message`
/// aside (when `envelope`).
struct Top<M> {
    envelope: bool,
    _m: PhantomData<M>,
}

impl<'de, M: Members> Visitor<'de> for Top<M> {
    type Value = Parsed<M>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed<M>, A::Error> {
        let mut members = M::default();
        let (mut version, mut message) = (None, None);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match &*key {
                "oslo.version" if self.envelope => version = Some(map.next_value::<Value>()?),
                "oslo.message" if self.envelope => message = Some(map.next_value::<Value>()?),
                k if members.wants(k) => {
                    let v = map.next_value::<Value>()?;
                    members.put(key, v);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match version {
            Some(version) => Parsed::Envelope { version, message },
            None => {
                // A bare message may carry a member of that name too.
                if let Some(m) = message {
                    if members.wants("oslo.message") {
                        members.put(Cow::Borrowed("oslo.message"), m);
                    }
                }
                Parsed::Bare(members)
            }
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed<M>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Parsed::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Parsed<M>, E> {
        Ok(Parsed::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Parsed<M>, E> {
        Ok(Parsed::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Parsed<M>, E> {
        Ok(Parsed::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Parsed<M>, E> {
        Ok(Parsed::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Parsed<M>, E> {
        Ok(Parsed::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Parsed<M>, E> {
        Ok(Parsed::NotObject)
    }
}

impl<'de, M: Members> DeserializeSeed<'de> for Top<M> {
    type Value = Parsed<M>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed<M>, D::Error> {
        d.deserialize_any(self)
    }
}

fn parse<M: Members>(json: &[u8], envelope: bool) -> Result<Parsed<M>, WireError> {
    parse_from(serde_json::Deserializer::from_slice(json), envelope)
}

fn parse_from<'de, R: serde_json::de::Read<'de>, M: Members>(
    mut de: serde_json::Deserializer<R>,
    envelope: bool,
) -> Result<Parsed<M>, WireError> {
    let top = Top {
        envelope,
        _m: PhantomData,
    }
    .deserialize(&mut de)
    .and_then(|p| de.end().map(|()| p))
    .map_err(|e| WireError::NotJson(Cause::new(e)))?;
    Ok(top)
}

/// A body's message, its members given to `M`: the 2.0 envelope's message, or the body itself
/// when it has no `oslo.version` (Python accepts both).
pub(super) fn body<M: Members>(body: &[u8]) -> Result<M, WireError> {
    if let Some(text) = super::envelope::message(body) {
        return message_str::<M>(&text);
    }
    match parse::<M>(body, true)? {
        Parsed::NotObject => Err(WireError::NotObject),
        Parsed::Bare(m) => Ok(m),
        Parsed::Envelope { version, message } => match version {
            Value::String(v) if v == OSLO_VERSION => {
                let Some(Value::String(inner)) = message else {
                    return Err(WireError::BadMember("oslo.message"));
                };
                self::message_str::<M>(&inner)
            }
            Value::String(s) => Err(WireError::UnsupportedEnvelope(s)),
            v => Err(WireError::UnsupportedEnvelope(v.to_string())),
        },
    }
}

/// The envelope's message text, its members given to `M`. Parsed as text, known to be UTF-8:
/// serde_json then checks no string of it again (from bytes, it checks each string it reads).
fn message_str<M: Members>(text: &str) -> Result<M, WireError> {
    match parse_from(serde_json::Deserializer::from_str(text), false)? {
        Parsed::Bare(m) => Ok(m),
        Parsed::NotObject | Parsed::Envelope { .. } => Err(WireError::NotObject),
    }
}
