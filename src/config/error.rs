//! Configuration errors that name the field they are about.

use std::fmt;

/// A configuration problem: the field path (`channels[1].signature.secrets[0]`)
/// and a human reason. `Display` renders `path: reason`, the one log line
/// Envoy prints when it refuses the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "configuration: {}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem [`super::check`] found in one configuration, in document
/// order (the first is what [`super::load`] returns). `Display` joins them
/// with `"; "`, so the proxy still logs one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Never empty: there is always a first error.
    pub fn new(first: ConfigError, rest: impl IntoIterator<Item = ConfigError>) -> Self {
        let mut all = vec![first];
        for e in rest {
            if !all.contains(&e) {
                all.push(e);
            }
        }
        Self(all)
    }

    /// `None` for an empty list.
    pub fn from_vec(errors: Vec<ConfigError>) -> Option<Self> {
        let mut it = errors.into_iter();
        let first = it.next()?;
        Some(Self::new(first, it))
    }

    pub fn as_slice(&self) -> &[ConfigError] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false; for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first error, as [`super::load`] reports it.
    pub fn into_first(self) -> ConfigError {
        let mut it = self.0.into_iter();
        it.next().unwrap_or_else(|| ConfigError::new("", "invalid"))
    }

    pub fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Builds child field paths while compiling (`channels[0]` + `signature`).
#[derive(Debug, Clone, Default)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        Self(String::new())
    }

    pub fn key(&self, key: &str) -> Self {
        if self.0.is_empty() {
            Self(key.to_string())
        } else {
            Self(format!("{}.{key}", self.0))
        }
    }

    pub fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }

    /// This path followed by a relative one as the core reports it
    /// (`"modules.a"`, `"headers[1]"`, or `""` for this field itself).
    pub fn join(&self, relative: &str) -> Self {
        match (self.0.as_str(), relative) {
            (_, "") => self.clone(),
            ("", r) => Self(r.to_string()),
            (p, r) if r.starts_with('[') => Self(format!("{p}{r}")),
            (p, r) => Self(format!("{p}.{r}")),
        }
    }

    pub fn error(&self, reason: impl Into<String>) -> ConfigError {
        ConfigError::new(self.0.clone(), reason)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `value` or its `default`, refused at `path` outside `min..=max`.
pub(crate) fn bounded<T: PartialOrd + Copy + std::fmt::Display>(
    value: Option<T>,
    default: T,
    (min, max): (T, T),
    path: FieldPath,
) -> Result<T, ConfigError> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(path.error(format!("must be between {min} and {max}, got {v}")));
    }
    Ok(v)
}
