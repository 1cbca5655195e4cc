//! Ordered admission rules: the first rule whose priority and principals
//! match the request decides `allow` or `deny`.

use super::Priority;
use super::principal::Principal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
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
        Rule {
            priority: Priority::from_name(priority).unwrap(),
            principals: principals
                .iter()
                .map(|p| Principal::parse(p).unwrap())
                .collect(),
            effect: match effect {
                "allow" => Effect::Allow,
                _ => Effect::Deny,
            },
            unauthenticated: false,
        }
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
