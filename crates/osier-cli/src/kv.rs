//! Arguments as `key=value`, the value read as JSON when it is JSON (`count=3`,
//! `force=true`, `tags=["a","b"]`, `spec={"ram":512}`) and as a string otherwise
//! (`name=web-1`); `key:=value` forces a string (`id:=007`).

use serde_json::{Map, Value};

/// A `key=value` argument that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{arg:?} is not key=value (or key:=string)")]
pub struct KvError {
    /// The argument.
    pub arg: String,
}

/// Reads `args` into a JSON object, in order (a repeated key keeps the last value).
pub fn parse(args: &[String]) -> Result<Map<String, Value>, KvError> {
    let mut m = Map::new();
    for a in args {
        let bad = || KvError { arg: a.clone() };
        let (k, v) = a.split_once('=').ok_or_else(bad)?;
        let (k, v) = match k.strip_suffix(':') {
            Some(k) => (k, Value::String(v.to_string())),
            None => (
                k,
                serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string())),
            ),
        };
        if k.is_empty() {
            return Err(bad());
        }
        m.insert(k.to_string(), v);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(args: &[&str]) -> Result<Value, KvError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map(Value::Object)
    }

    #[test]
    fn json_values_are_json_and_the_rest_strings() {
        assert_eq!(
            p(&[
                "n=3",
                "ok=true",
                "name=web-1",
                "tags=[\"a\"]",
                "spec={\"ram\":512}",
                "none=null"
            ])
            .unwrap(),
            json!({"n": 3, "ok": true, "name": "web-1", "tags": ["a"], "spec": {"ram": 512}, "none": null})
        );
    }

    #[test]
    fn colon_equals_forces_a_string() {
        assert_eq!(p(&["id:=007"]).unwrap(), json!({"id": "007"}));
    }

    #[test]
    fn a_value_may_hold_an_equals_sign() {
        assert_eq!(p(&["q=a=b"]).unwrap(), json!({"q": "a=b"}));
    }

    #[test]
    fn an_argument_without_equals_or_key_is_refused() {
        assert!(p(&["oops"]).is_err());
        assert!(p(&["=3"]).is_err());
    }
}
