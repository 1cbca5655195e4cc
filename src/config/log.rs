//! `refusal_log` (extension): how the filter logs the requests it refuses.

use super::{ConfigError, FieldPath};
use crate::core::decision::{DEFAULT_LOG_PER_SECOND, LogLevel, MAX_LOG_PER_SECOND};
use crate::core::policy::RefusalLog;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RefusalLogSpec {
    /// off | debug | info (default) | warn: the proxy's log level for one
    /// line per refused channel request.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(extend("default" = "info")))]
    pub level: LogLevel,
    /// Lines per second per worker at most (default 10, 1..=1000); the
    /// lines dropped are counted on the next one written.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 1000), extend("default" = 10)))]
    pub per_second: Option<u32>,
}

pub(super) fn compile(
    spec: Option<&RefusalLogSpec>,
    path: &FieldPath,
) -> Result<RefusalLog, ConfigError> {
    let Some(spec) = spec else {
        return Ok(RefusalLog::default());
    };
    let per_second = spec.per_second.unwrap_or(DEFAULT_LOG_PER_SECOND);
    if !(1..=MAX_LOG_PER_SECOND).contains(&per_second) {
        return Err(path.key("per_second").error(format!(
            "must be between 1 and {MAX_LOG_PER_SECOND}, got {per_second}"
        )));
    }
    Ok(RefusalLog {
        level: spec.level,
        per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn defaults_and_bounds() {
        let root = FieldPath::root().key("refusal_log");
        assert_eq!(compile(None, &root), Ok(RefusalLog::default()));
        let spec: RefusalLogSpec =
            serde_json::from_str(r#"{"level":"warn","per_second":3}"#).unwrap();
        assert_eq!(
            compile(Some(&spec), &root),
            Ok(RefusalLog {
                level: LogLevel::Warn,
                per_second: 3
            })
        );
        let spec: RefusalLogSpec = serde_json::from_str(r#"{"per_second":0}"#).unwrap();
        assert_eq!(
            compile(Some(&spec), &root).unwrap_err().to_string(),
            "refusal_log.per_second: must be between 1 and 1000, got 0"
        );
        assert!(serde_json::from_str::<RefusalLogSpec>(r#"{"level":"loud"}"#).is_err());
    }
}
