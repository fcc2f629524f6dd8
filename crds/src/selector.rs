//! Label-selector matching (`matchLabels` and `matchExpressions` with `In`, `NotIn`, `Exists`,
//! `DoesNotExist`), the way Kubernetes evaluates it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

/// The operators Kubernetes accepts in `matchExpressions`.
pub const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// Whether `selector` selects an object with `labels`. `None` and an empty selector select
/// everything. An expression with an unknown operator selects nothing (`validate()` reports it).
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let labels_ok = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && selector
            .match_expressions
            .iter()
            .flatten()
            .all(|req| requirement_matches(req, labels))
}

fn requirement_matches(req: &LabelSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn sel(match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    #[test]
    fn absent_and_empty_select_everything() {
        assert!(selector_matches(None, &labels(&[])));
        assert!(selector_matches(
            Some(&LabelSelector::default()),
            &labels(&[("a", "b")])
        ));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = sel(&[("app", "x"), ("tier", "web")], vec![]);
        assert!(selector_matches(
            Some(&s),
            &labels(&[("app", "x"), ("tier", "web"), ("z", "1")])
        ));
        assert!(!selector_matches(Some(&s), &labels(&[("app", "x")])));
        assert!(!selector_matches(
            Some(&s),
            &labels(&[("app", "y"), ("tier", "web")])
        ));
    }

    #[test]
    fn each_operator() {
        let l = labels(&[("env", "prod"), ("team", "a")]);
        let check = |e| selector_matches(Some(&sel(&[], vec![e])), &l);
        assert!(check(expr("env", "In", &["prod", "dev"])));
        assert!(!check(expr("env", "In", &["dev"])));
        assert!(!check(expr("missing", "In", &["x"])));
        assert!(check(expr("env", "NotIn", &["dev"])));
        assert!(!check(expr("env", "NotIn", &["prod"])));
        assert!(check(expr("missing", "NotIn", &["x"])));
        assert!(check(expr("team", "Exists", &[])));
        assert!(!check(expr("missing", "Exists", &[])));
        assert!(check(expr("missing", "DoesNotExist", &[])));
        assert!(!check(expr("team", "DoesNotExist", &[])));
        assert!(!check(expr("team", "Equals", &["a"])));
    }

    #[test]
    fn labels_and_expressions_combine_with_and() {
        let s = sel(&[("app", "x")], vec![expr("env", "In", &["prod"])]);
        assert!(selector_matches(
            Some(&s),
            &labels(&[("app", "x"), ("env", "prod")])
        ));
        assert!(!selector_matches(
            Some(&s),
            &labels(&[("app", "x"), ("env", "dev")])
        ));
    }
}
