//! Parsing the JSON of an export with duplicate object keys refused.
//!
//! `serde_json` keeps the last of two equal keys silently, so `{"result":"fail",...,
//! "result":"pass"}` would verify as whatever the last key says while another reader of the
//! same file sees the first. A verifier must read a document one way only: any object with a
//! repeated key, at any depth, is refused.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON value whose objects had no repeated key.
pub(crate) struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrictValue, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }
    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Value, A::Error> {
        let mut elements = Vec::new();
        while let Some(StrictValue(element)) = sequence.next_element()? {
            elements.push(element);
        }
        Ok(Value::Array(elements))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?} in one object")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Parses `text` as JSON, refusing repeated keys.
pub(crate) fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<StrictValue>(text).map(|StrictValue(value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_duplicate_keys_are_refused_at_any_depth() {
        assert!(parse_strict(r#"{"a":1,"b":[{"c":2,"d":{"e":null}}]}"#).is_ok());
        for text in [r#"{"a":1,"a":1}"#, r#"{"b":[{"c":2,"c":3}]}"#, r#"{"x":{"y":{"z":1,"z":2}}}"#] {
            let error = parse_strict(text).unwrap_err().to_string();
            assert!(error.contains("duplicate key"), "{text}: {error}");
        }
        // Numbers keep their exact form (serde_json's arbitrary precision is not in use).
        assert_eq!(parse_strict("18446744073709551615").unwrap(), Value::from(u64::MAX));
    }
}
