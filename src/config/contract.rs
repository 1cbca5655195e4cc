//! `channels[].contract`: a JSON Schema (draft 2020-12) every body of the
//! channel must satisfy, compiled once here (see [`crate::core::contract`]).
//! Needs the cargo feature `contract`; a build without it refuses the key.

use super::{ConfigError, FieldPath};
use serde_json::Value;

use crate::core::contract::Contract;

/// Compiles `contract`; an invalid schema is refused at the field path of
/// the failing schema member (`channels[0].contract.properties.a.type`).
#[cfg(feature = "contract")]
pub(super) fn compile(schema: &Value, path: &FieldPath) -> Result<Contract, ConfigError> {
    if !matches!(schema, Value::Object(_) | Value::Bool(_)) {
        return Err(path.error("must be a JSON Schema: an object or a boolean"));
    }
    Contract::compile(schema).map_err(|e| {
        schema_path(schema, &e.pointer, path).error(format!("invalid JSON Schema: {}", e.reason))
    })
}

#[cfg(not(feature = "contract"))]
pub(super) fn compile(_schema: &Value, path: &FieldPath) -> Result<Contract, ConfigError> {
    Err(path.error("this build has no body contract support (cargo feature `contract`)"))
}

/// The field path of a JSON pointer inside the schema: array members as
/// `[i]`, object members as `.key`; stops where the pointer leaves it.
#[cfg(feature = "contract")]
fn schema_path(schema: &Value, pointer: &str, path: &FieldPath) -> FieldPath {
    let mut at = path.clone();
    let mut node = schema;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        let next = match node {
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| {
                at = at.index(i);
                items.get(i)
            }),
            Value::Object(members) => {
                at = at.key(&token);
                members.get(&token)
            }
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn load(contract: &str) -> Result<crate::config::Policy, crate::config::ConfigError> {
        let doc = format!(
            r#"{{"channels":[{{"name":"a","match":{{"path_prefix":"/a"}}}},
                {{"name":"b","match":{{"path_prefix":"/b"}},"contract":{contract}}}]}}"#
        );
        crate::config::load(doc.as_bytes(), &|_| None)
    }

    #[cfg(feature = "contract")]
    #[test]
    fn a_schema_compiles_once_at_load() {
        let policy = load(r#"{"type":"object","required":["id"]}"#).unwrap();
        assert!(policy.channels[0].contract.is_none());
        let c = policy.channels[1].contract.as_ref().unwrap();
        assert!(c.check(br#"{"id":1}"#).is_ok());
        assert!(c.check(b"{}").is_err());
    }

    #[cfg(feature = "contract")]
    #[test]
    fn an_invalid_schema_is_refused_at_its_path() {
        let err = load(r#"{"properties":{"id":{"type":"strng"}}}"#).unwrap_err();
        assert_eq!(err.path, "channels[1].contract.properties.id.type", "{err}");
        assert!(err.reason.starts_with("invalid JSON Schema"), "{err}");
        let err = load(r#"{"allOf":[{"type":"object"},{"minLength":-1}]}"#).unwrap_err();
        assert_eq!(err.path, "channels[1].contract.allOf[1].minLength", "{err}");
        let err = load(r#"{"$ref":"https://example.com/order.json"}"#).unwrap_err();
        assert!(err.path.starts_with("channels[1].contract"), "{err}");
        let err = load(r#""object""#).unwrap_err();
        assert_eq!(err.path, "channels[1].contract", "{err}");
    }

    #[cfg(not(feature = "contract"))]
    #[test]
    fn a_build_without_the_feature_refuses_the_key() {
        let err = load(r#"{"type":"object"}"#).unwrap_err();
        assert_eq!(err.path, "channels[1].contract");
        assert!(err.reason.contains("cargo feature `contract`"), "{err}");
    }
}
