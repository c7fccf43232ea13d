//! Frontend path patterns and their four match kinds.
//!
//! The product's paths follow nginx `location` rules:
//!
//! * `=/user` matches `/user` exactly;
//! * `^~/user` is a priority prefix: it wins over regex and plain paths;
//! * a path holding `{var}` or a regex operator (`* ? + [ ] ( ) | \ ^ $`) is a regex, anchored
//!   at the start only. `{var}` becomes `(.+)`, so variables are greedy and may span `/`:
//!   `/{a}/{b}` on `/x/y/z` gives `a = x/y`, `b = z`, as the product documents;
//! * any other path is a plain prefix, compared by raw characters: `/user` matches `/user`,
//!   `/usertest` and `/user/a`. Among plain prefixes the longest wins.

use regex::Regex;

/// Characters that make a frontend path a regex. A `.` alone does not, so `/index.html` stays
/// a plain path.
const REGEX_OPERATORS: &[char] = &['*', '?', '+', '[', ']', '(', ')', '|', '\\', '^', '$'];

/// A parsed frontend path.
#[derive(Debug, Clone)]
pub enum PathPattern {
    Exact(String),
    PriorityPrefix(String),
    Regex(RegexPattern),
    Prefix(String),
}

/// A regex-class path, compiled.
#[derive(Debug, Clone)]
pub struct RegexPattern {
    /// The regex source, anchored at the start.
    pub source: String,
    pub regex: Regex,
    /// Names of the `{var}` groups, in order.
    pub variables: Vec<String>,
}

impl PathPattern {
    /// Parses a configured frontend path, or explains why it is invalid.
    pub fn parse(path: &str) -> Result<PathPattern, String> {
        if let Some(rest) = path.strip_prefix('=') {
            check_plain(rest, "an exact path (`=`)")?;
            return Ok(PathPattern::Exact(rest.to_string()));
        }
        if let Some(rest) = path.strip_prefix("^~") {
            check_plain(rest, "a priority prefix path (`^~`)")?;
            return Ok(PathPattern::PriorityPrefix(rest.to_string()));
        }
        if !path.starts_with('/') {
            return Err(format!(
                "the path `{path}` must start with `/`, `=/` (exact) or `^~/` (priority prefix)"
            ));
        }
        if path.contains('{') || path.contains(REGEX_OPERATORS) {
            return compile_regex(path).map(PathPattern::Regex);
        }
        Ok(PathPattern::Prefix(path.to_string()))
    }

    /// Names of the path variables, in order.
    pub fn variables(&self) -> &[String] {
        match self {
            PathPattern::Regex(regex) => &regex.variables,
            _ => &[],
        }
    }

    /// The key that identifies the path among an environment's APIs, for conflict checks.
    pub fn key(&self) -> String {
        match self {
            PathPattern::Exact(path) => format!("={path}"),
            PathPattern::PriorityPrefix(path) => format!("^~{path}"),
            PathPattern::Regex(regex) => format!("~{}", regex.source),
            PathPattern::Prefix(path) => path.clone(),
        }
    }
}

fn check_plain(path: &str, kind: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{kind} must continue with `/`, as in `=/user`"));
    }
    if path.contains('{') || path.contains(REGEX_OPERATORS) {
        return Err(format!(
            "{kind} cannot hold `{{var}}` or regex operators; write a plain path after the prefix"
        ));
    }
    Ok(())
}

/// Compiles a regex-class path: `{name}` becomes `(.+)`, the rest is regex syntax.
fn compile_regex(path: &str) -> Result<RegexPattern, String> {
    let mut source = String::from("^");
    let mut variables = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!(
                "the path `{path}` has a `{{` without a closing `}}`"
            ));
        };
        let name = &rest[open + 1..open + close];
        if !is_variable_name(name) {
            return Err(format!(
                "the path variable `{{{name}}}` in `{path}` must be a name of letters, digits, \
                 `_` or `-`, starting with a letter"
            ));
        }
        if variables.iter().any(|known| known == name) {
            return Err(format!(
                "the path variable `{{{name}}}` appears twice in `{path}`"
            ));
        }
        source.push_str(&rest[..open]);
        source.push_str("(.+)");
        variables.push(name.to_string());
        rest = &rest[open + close + 1..];
    }
    source.push_str(rest);
    let regex = Regex::new(&source)
        .map_err(|error| format!("the path `{path}` is not a valid regex: {error}"))?;
    Ok(RegexPattern {
        source,
        regex,
        variables,
    })
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_kinds() {
        assert!(matches!(PathPattern::parse("=/a").unwrap(), PathPattern::Exact(p) if p == "/a"));
        assert!(matches!(
            PathPattern::parse("^~/a").unwrap(),
            PathPattern::PriorityPrefix(p) if p == "/a"
        ));
        assert!(matches!(
            PathPattern::parse("/a/{b}").unwrap(),
            PathPattern::Regex(_)
        ));
        assert!(matches!(
            PathPattern::parse("/a.*").unwrap(),
            PathPattern::Regex(_)
        ));
        assert!(matches!(
            PathPattern::parse("/index.html").unwrap(),
            PathPattern::Prefix(p) if p == "/index.html"
        ));
    }

    #[test]
    fn parse_rejects_bad_paths() {
        for (path, needle) in [
            ("user", "must start with `/`"),
            ("=/a/{b}", "cannot hold"),
            ("^~/a*", "cannot hold"),
            ("=user", "must continue with `/`"),
            ("/a/{b", "without a closing"),
            ("/a/{1b}", "must be a name"),
            ("/{a}/{a}", "appears twice"),
            ("/a/(b", "not a valid regex"),
        ] {
            let error = PathPattern::parse(path).unwrap_err();
            assert!(error.contains(needle), "{path}: {error}");
        }
    }

    #[test]
    fn variables_are_collected_in_order() {
        let pattern = PathPattern::parse("/{PathA}/product/{PathB}").unwrap();
        assert_eq!(pattern.variables(), ["PathA", "PathB"]);
    }
}
