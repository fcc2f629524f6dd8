//! `targetPath` wildcard patterns: `*` matches any run of characters (including `/` and the empty
//! run), `?` exactly one character, everything else itself. The whole string must match.

/// Whether `pattern` matches all of `text`.
///
/// Greedy two-pointer matching with a single backtrack point: linear in practice and never
/// exponential, whatever the pattern (no recursion, so no stack to exhaust).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position after the last `*` seen, and the text position it is currently assumed to cover to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ti));
            pi += 1;
        } else if let Some((after_star, covered)) = star {
            // Let the last `*` swallow one more character and retry.
            pi = after_star;
            ti = covered + 1;
            star = Some((after_star, covered + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::wildcard_match as m;
    use proptest::prelude::*;

    /// Independent reference: a dynamic-programming table over prefixes.
    fn reference(p: &str, t: &str) -> bool {
        let p: Vec<char> = p.chars().collect();
        let t: Vec<char> = t.chars().collect();
        let mut dp = vec![vec![false; t.len() + 1]; p.len() + 1];
        dp[0][0] = true;
        for i in 1..=p.len() {
            dp[i][0] = dp[i - 1][0] && p[i - 1] == '*';
            for j in 1..=t.len() {
                dp[i][j] = match p[i - 1] {
                    '*' => dp[i - 1][j] || dp[i][j - 1],
                    '?' => dp[i - 1][j - 1],
                    c => dp[i - 1][j - 1] && c == t[j - 1],
                };
            }
        }
        dp[p.len()][t.len()]
    }

    #[test]
    fn documented_examples() {
        assert!(m(
            "deploy/*/container/container-?",
            "deploy/name/container/container-1"
        ));
        assert!(m(
            "deploy/*/container/container-?",
            "deploy/another-name/container/container-2"
        ));
        assert!(m("*/example-deploy*", "deploy/example-deploy"));
        assert!(m(
            "*/example-deploy*",
            "deploy/example-deploy/container/app"
        ));
        assert!(m("*/example-deploy*", "pod/example-deploy-7d9f-abcde"));
        assert!(!m("*/example-deploy*", "deploy/other"));
    }

    #[test]
    fn star_spans_slashes_and_question_never_matches_empty() {
        assert!(m("*", ""));
        assert!(m("*", "a/b/c"));
        assert!(m("a*c", "a/b/c"));
        assert!(!m("?", ""));
        assert!(!m("a?", "a"));
        assert!(m("a?", "a/"));
    }

    #[test]
    fn no_wildcard_is_exact() {
        assert!(m("deploy/x", "deploy/x"));
        assert!(!m("deploy/x", "deploy/xy"));
        assert!(!m("deploy/x", "deploy/"));
        assert!(!m("", "a"));
        assert!(m("", ""));
    }

    proptest! {
        #[test]
        fn agrees_with_reference(p in "[ab/*?]{0,10}", t in "[ab/]{0,12}") {
            prop_assert_eq!(m(&p, &t), reference(&p, &t));
        }

        #[test]
        fn literal_pattern_matches_only_itself(s in "[a-z/\\-0-9]{0,16}", t in "[a-z/\\-0-9]{0,16}") {
            prop_assert!(m(&s, &s));
            prop_assert_eq!(m(&s, &t), s == t);
        }

        #[test]
        fn unicode_agrees_with_reference(p in "[é*?x]{0,8}", t in "[éx]{0,10}") {
            prop_assert_eq!(m(&p, &t), reference(&p, &t));
        }
    }
}
