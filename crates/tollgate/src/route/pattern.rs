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
    /// Names of the `{var}` placeholders, in order.
    pub variables: Vec<String>,
    /// The capture group index of each placeholder.
    pub groups: Vec<usize>,
    /// The text every match starts with: the path up to its first placeholder or regex
    /// operator, without a character an operator makes optional.
    pub literal_start: String,
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

/// Compiles a regex-class path: `{name}` becomes a greedy `.+` group, the rest is regex
/// syntax. The variable groups get generated names, so groups the user writes around them
/// (`/(a|b)/{id}`) do not shift which text a variable receives.
fn compile_regex(path: &str) -> Result<RegexPattern, String> {
    let mut source = String::from("^");
    let mut variables: Vec<String> = Vec::new();
    for piece in split_placeholders(path)? {
        match piece {
            Piece::Literal(text) => source.push_str(text),
            Piece::Variable(name) => {
                if variables.iter().any(|known| known == name) {
                    return Err(format!(
                        "the path variable `{{{name}}}` appears twice in `{path}`"
                    ));
                }
                source.push_str(&format!("(?P<{VARIABLE_GROUP}{}>.+)", variables.len()));
                variables.push(name.to_string());
            }
        }
    }
    let regex = Regex::new(&source)
        .map_err(|error| format!("the path `{path}` is not a valid regex: {error}"))?;
    let groups = (0..variables.len())
        .map(|i| {
            let name = format!("{VARIABLE_GROUP}{i}");
            regex
                .capture_names()
                .position(|group| group == Some(name.as_str()))
                .ok_or_else(|| format!("the path `{path}` redefines the group `{name}`"))
        })
        .collect::<Result<_, _>>()?;
    Ok(RegexPattern {
        source,
        regex,
        variables,
        groups,
        literal_start: literal_start(path).to_string(),
    })
}

/// Returns the literal text a regex-class path's matches all start with.
fn literal_start(path: &str) -> &str {
    // An alternation outside any group makes the path several patterns, so nothing is
    // common to all of them.
    let mut depth = 0i32;
    let mut escaped = false;
    for c in path.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '(' => depth += 1,
            ')' => depth -= 1,
            '|' if depth <= 0 => return "",
            _ => {}
        }
    }
    let end = path
        .find(|c: char| c == '{' || c == '.' || REGEX_OPERATORS.contains(&c))
        .unwrap_or(path.len());
    let literal = &path[..end];
    // `*`, `?` and `{n}` can repeat the character before them zero times.
    match path[end..].chars().next() {
        Some('*' | '?') => {
            let mut chars = literal.chars();
            chars.next_back();
            chars.as_str()
        }
        _ => literal,
    }
}

/// The name prefix of the capture groups generated for `{var}` placeholders.
const VARIABLE_GROUP: &str = "tollgate_var";

/// A piece of a path with `{name}` placeholders.
enum Piece<'a> {
    Literal(&'a str),
    Variable(&'a str),
}

/// Splits a path into literal text and `{name}` placeholders, checking each name. Frontend
/// paths and backend paths share this syntax.
fn split_placeholders(path: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
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
        if open > 0 {
            pieces.push(Piece::Literal(&rest[..open]));
        }
        pieces.push(Piece::Variable(name));
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!(
            "the path `{path}` has a `}}` without an opening `{{`"
        ));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest));
    }
    Ok(pieces)
}

/// A backend path with `{var}` placeholders, filled from the frontend path's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    pieces: Vec<TemplatePiece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplatePiece {
    Literal(String),
    Variable(String),
}

impl PathTemplate {
    /// Parses a backend path, or explains why it is invalid.
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        let pieces = split_placeholders(template)?
            .into_iter()
            .map(|piece| match piece {
                Piece::Literal(text) => TemplatePiece::Literal(text.to_string()),
                Piece::Variable(name) => TemplatePiece::Variable(name.to_string()),
            })
            .collect();
        Ok(PathTemplate { pieces })
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Names of the placeholders, in order.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            TemplatePiece::Variable(name) => Some(name.as_str()),
            TemplatePiece::Literal(_) => None,
        })
    }

    /// Renders the template, filling each variable from `captures`; a variable without a
    /// value renders as nothing.
    pub fn render(&self, captures: &[(&str, String)], out: &mut String) {
        for piece in &self.pieces {
            match piece {
                TemplatePiece::Literal(text) => out.push_str(text),
                TemplatePiece::Variable(name) => {
                    if let Some((_, value)) = captures.iter().find(|(known, _)| known == name) {
                        out.push_str(value);
                    }
                }
            }
        }
    }
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
    fn user_groups_do_not_shift_variables() {
        let PathPattern::Regex(pattern) = PathPattern::parse("/(v1|v2)/{id}/(a|b)").unwrap() else {
            panic!("not a regex path");
        };
        let captures = pattern.regex.captures("/v2/42/b").unwrap();
        assert_eq!(&captures[pattern.groups[0]], "42");
    }

    #[test]
    fn literal_start_stops_at_the_first_operator() {
        for (path, start) in [
            ("/user/{id}", "/user/"),
            ("/(v1|v2)/{id}", "/"),
            ("/ab*c", "/a"),
            ("/ab?c", "/a"),
            ("/ab+c", "/ab"),
            ("/file.json/{x}", "/file"),
            ("/a|/b", ""),
            ("/a\\|b/{x}", "/a"),
        ] {
            assert_eq!(literal_start(path), start, "{path}");
        }
    }

    #[test]
    fn template_renders_variables() {
        let template = PathTemplate::parse("/pets/{id}/x{b}").unwrap();
        assert_eq!(template.variables().collect::<Vec<_>>(), ["id", "b"]);
        let mut out = String::new();
        template.render(&[("id", "7".into()), ("b", "y".into())], &mut out);
        assert_eq!(out, "/pets/7/xy");
    }

    #[test]
    fn template_rejects_bad_placeholders() {
        for (path, needle) in [
            ("/a/{b", "without a closing"),
            ("/a/b}", "without an opening"),
            ("/a/{}", "must be a name"),
        ] {
            let error = PathTemplate::parse(path).unwrap_err();
            assert!(error.contains(needle), "{path}: {error}");
        }
    }

    #[test]
    fn variables_are_collected_in_order() {
        let pattern = PathPattern::parse("/{PathA}/product/{PathB}").unwrap();
        assert_eq!(pattern.variables(), ["PathA", "PathB"]);
    }
}
