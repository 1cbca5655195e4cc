//! Ordered admission rules: the first rule whose priority and principals
//! match the request decides `allow` or `deny`.

use super::Priority;
use super::principal::Principal;
use crate::config::{ConfigError, FieldPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// The fields of one `RuleSpec`, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RuleFields<'a> {
    pub priority: &'a str,
    pub principals: &'a [String],
    pub effect: &'a str,
    pub unauthenticated: bool,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub priority: Priority,
    pub principals: Vec<Principal>,
    pub effect: Effect,
    /// Extension: this (deny) rule also matches requests without identity.
    pub unauthenticated: bool,
}

impl Rule {
    /// Compiles `admission.rules[i]` (its fields: `config` does not export
    /// `RuleSpec` by name).
    pub fn compile(spec: RuleFields<'_>, path: &FieldPath) -> Result<Self, ConfigError> {
        let priority = Priority::from_name(spec.priority).ok_or_else(|| {
            path.key("priority").error(format!(
                "unknown priority {:?} (expected high, normal or low)",
                spec.priority
            ))
        })?;
        let effect = match spec.effect {
            "allow" => Effect::Allow,
            "deny" => Effect::Deny,
            other => {
                return Err(path
                    .key("effect")
                    .error(format!("unknown effect {other:?} (expected allow or deny)")));
            }
        };
        if spec.unauthenticated && effect == Effect::Allow {
            return Err(path.key("unauthenticated").error(
                "only a deny rule can match unauthenticated requests; nothing is allowed without an identity",
            ));
        }
        if spec.principals.is_empty() && !spec.unauthenticated {
            return Err(path
                .key("principals")
                .error("must list at least one principal"));
        }
        let principals = spec
            .principals
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Principal::parse(p).map_err(|reason| path.key("principals").index(i).error(reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            priority,
            principals,
            effect,
            unauthenticated: spec.unauthenticated,
        })
    }

    fn matches(&self, priority: Priority, identity: Option<&str>) -> bool {
        if self.priority != priority {
            return false;
        }
        match identity {
            // No identity is its own case: it never matches a principal,
            // not even `*`; only an explicit `unauthenticated` deny rule.
            None => self.unauthenticated,
            Some(id) => self.principals.iter().any(|p| p.matches(id)),
        }
    }
}

/// The effect of the first rule that matches, if any.
pub fn first_match(rules: &[Rule], priority: Priority, identity: Option<&str>) -> Option<Effect> {
    rules
        .iter()
        .find(|r| r.matches(priority, identity))
        .map(|r| r.effect)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rule(priority: &str, principals: &[&str], effect: &str) -> Rule {
        let principals: Vec<String> = principals.iter().map(|s| s.to_string()).collect();
        Rule::compile(
            RuleFields {
                priority,
                principals: &principals,
                effect,
                unauthenticated: false,
            },
            &FieldPath::root().key("r"),
        )
        .unwrap()
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = vec![
            rule("high", &["cluster.local/ns/default/sa/evil-*"], "deny"),
            rule("high", &["cluster.local/ns/default/sa/*"], "allow"),
            rule("high", &["cluster.local/ns/default/sa/evil-bot"], "allow"),
        ];
        let evil = Some("spiffe://cluster.local/ns/default/sa/evil-bot");
        let good = Some("spiffe://cluster.local/ns/default/sa/webhook");
        assert_eq!(
            first_match(&rules, Priority::High, evil),
            Some(Effect::Deny)
        );
        assert_eq!(
            first_match(&rules, Priority::High, good),
            Some(Effect::Allow)
        );
        assert_eq!(first_match(&rules, Priority::Normal, good), None);
        assert_eq!(first_match(&rules, Priority::High, None), None);
    }

    #[test]
    fn no_identity_never_matches_principals() {
        let rules = vec![rule("high", &["*"], "allow"), rule("low", &["*"], "deny")];
        assert_eq!(first_match(&rules, Priority::High, None), None);
        assert_eq!(first_match(&rules, Priority::Low, None), None);
        assert_eq!(
            first_match(&rules, Priority::Low, Some("td/x")),
            Some(Effect::Deny)
        );
    }
}
