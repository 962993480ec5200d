//! The ids of the wire format: `_unique_id` (each message), `_msg_id` (each call, echoed by
//! its replies) and the suffix of a reply queue's name, each a uuid4 as 32 lower-case hex
//! digits, as oslo's `uuid.uuid4().hex`.
//!
//! An [`Id`] is held in place (32 bytes, no allocation): most ids are written into a body and
//! dropped, a call's `_msg_id` is kept as it is by its waiter, and a reply queue's name is made
//! from one with [`From`].

/// A new id: uuid4 as 32 lower-case hex digits.
///
/// ```
/// let id = osier_messaging::amqp::wire::new_id();
/// assert_eq!(id.len(), 32);
/// assert!(id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
/// ```
pub fn new_id() -> Id {
    let mut hex = [0u8; 32];
    uuid::Uuid::new_v4().simple().encode_lower(&mut hex);
    Id(hex)
}

/// An id of the wire format, in place: it reads as a `&str` (`Deref`).
///
/// It hashes and compares as its text, so a map keyed by `Id` is looked up with a `&str` (the
/// `_msg_id` a reply carries).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Id([u8; 32]);

impl Id {
    /// The id's text.
    pub fn as_str(&self) -> &str {
        // Only `new_id` makes an `Id`, from uuid's hex encoder: ASCII, so UTF-8. Checked rather
        // than assumed; the empty text is never returned.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::hash::Hash for Id {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        String::from(id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_lower_case_hex_digits_and_differ() {
        let (a, b) = (new_id(), new_id());
        for id in [a, b] {
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
            assert_eq!(String::from(id), id.as_str());
            assert_eq!(format!("{id}"), id.as_str());
        }
        assert_ne!(a, b);
    }

    #[test]
    fn a_map_keyed_by_ids_is_looked_up_by_their_text() {
        let id = new_id();
        let text = String::from(id);
        let map = std::collections::HashMap::from([(id, 1)]);
        assert_eq!(map.get(text.as_str()), Some(&1));
        assert_eq!(map.get("0123456789abcdef0123456789abcdef"), None);
    }
}
