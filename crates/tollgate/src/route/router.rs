//! The API router of one environment.
//!
//! Paths are tried in the product's priority order: exact (`=`), then the longest priority
//! prefix (`^~`), then regex paths in configuration order, then the longest plain prefix. The
//! first kind that matches decides the path; the method is chosen among that path's APIs only,
//! so a path that matches with no API for the method gives 405 rather than falling through to
//! a lower-priority path, as nginx `location` blocks behave.
//!
//! Cost per request: one hash lookup, two walks of a byte trie (linear in the path length),
//! and one pass of a [`RegexSet`] over the path, whatever the number of APIs.

use std::collections::HashMap;

use http::Method;
use regex::{Regex, RegexSet};

use super::pattern::PathPattern;
use crate::config::ApiMethod;

/// The reason no API was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    /// No path matched.
    NoMatch,
    /// A path matched, but none of its APIs serves this method.
    MethodNotAllowed,
}

/// A successful match.
#[derive(Debug)]
pub struct RouteMatch<'r, T> {
    pub value: &'r T,
    /// Bytes of the path consumed by the frontend pattern; the rest is the remainder that
    /// prefix APIs forward to their backend.
    pub matched_len: usize,
    /// Path variables and their values, in pattern order.
    pub captures: Vec<(&'r str, String)>,
}

/// The APIs that share one frontend path, by method.
#[derive(Debug)]
struct MethodGroup<T> {
    methods: Vec<(Method, T)>,
    any: Option<T>,
}

impl<T> MethodGroup<T> {
    fn new() -> Self {
        MethodGroup {
            methods: Vec::new(),
            any: None,
        }
    }

    /// Returns the API for `method`: an API with that exact method before an `ANY` one.
    fn select(&self, method: &Method) -> Option<&T> {
        self.methods
            .iter()
            .find(|(known, _)| known == method)
            .map(|(_, value)| value)
            .or(self.any.as_ref())
    }
}

struct RegexRoute {
    regex: Regex,
    variables: Vec<String>,
    group: usize,
}

/// An environment's APIs indexed by frontend path.
pub struct Router<T> {
    groups: Vec<MethodGroup<T>>,
    exact: HashMap<String, usize>,
    priority: PrefixTrie,
    regex_set: RegexSet,
    regexes: Vec<RegexRoute>,
    prefix: PrefixTrie,
}

impl<T> Router<T> {
    /// Finds the API for a path (after the environment segment) and method.
    pub fn find(&self, path: &str, method: &Method) -> Result<RouteMatch<'_, T>, RouteError> {
        let found = self.find_path(path).ok_or(RouteError::NoMatch)?;
        let value = self.groups[found.group]
            .select(method)
            .ok_or(RouteError::MethodNotAllowed)?;
        Ok(RouteMatch {
            value,
            matched_len: found.matched_len,
            captures: found.captures,
        })
    }

    fn find_path(&self, path: &str) -> Option<PathMatch<'_>> {
        let plain = |group, matched_len| PathMatch {
            group,
            matched_len,
            captures: Vec::new(),
        };
        if let Some(&group) = self.exact.get(path) {
            return Some(plain(group, path.len()));
        }
        if let Some((len, group)) = self.priority.longest_prefix(path.as_bytes()) {
            return Some(plain(group, len));
        }
        if let Some(index) = self.regex_set.matches(path).iter().next() {
            let route = &self.regexes[index];
            let captures = route.regex.captures(path)?;
            let matched_len = captures.get(0).map_or(0, |whole| whole.end());
            let values = route
                .variables
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let value = captures.get(i + 1).map_or("", |m| m.as_str());
                    (name.as_str(), value.to_string())
                })
                .collect();
            return Some(PathMatch {
                group: route.group,
                matched_len,
                captures: values,
            });
        }
        self.prefix
            .longest_prefix(path.as_bytes())
            .map(|(len, group)| plain(group, len))
    }
}

/// The path-level result of a lookup, before the method is chosen.
struct PathMatch<'r> {
    group: usize,
    matched_len: usize,
    captures: Vec<(&'r str, String)>,
}

/// Collects APIs, then builds a [`Router`].
pub struct RouterBuilder<T> {
    groups: Vec<MethodGroup<T>>,
    by_key: HashMap<String, usize>,
    exact: HashMap<String, usize>,
    priority: PrefixTrie,
    regexes: Vec<RegexRoute>,
    regex_sources: Vec<String>,
    prefix: PrefixTrie,
}

impl<T> Default for RouterBuilder<T> {
    fn default() -> Self {
        RouterBuilder {
            groups: Vec::new(),
            by_key: HashMap::new(),
            exact: HashMap::new(),
            priority: PrefixTrie::default(),
            regexes: Vec::new(),
            regex_sources: Vec::new(),
            prefix: PrefixTrie::default(),
        }
    }
}

impl<T> RouterBuilder<T> {
    /// Adds an API. Fails when another API already has the same path and method.
    pub fn insert(
        &mut self,
        pattern: &PathPattern,
        method: ApiMethod,
        value: T,
    ) -> Result<(), String> {
        let group = self.group_for(pattern);
        let slot = &mut self.groups[group];
        match method.to_http() {
            None if slot.any.is_some() => {
                return Err("another API has the same path and method ANY".into());
            }
            None => slot.any = Some(value),
            Some(method) if slot.methods.iter().any(|(known, _)| *known == method) => {
                return Err(format!("another API has the same path and method {method}"));
            }
            Some(method) => slot.methods.push((method, value)),
        }
        Ok(())
    }

    fn group_for(&mut self, pattern: &PathPattern) -> usize {
        let key = pattern.key();
        if let Some(&group) = self.by_key.get(&key) {
            return group;
        }
        let group = self.groups.len();
        self.groups.push(MethodGroup::new());
        self.by_key.insert(key, group);
        match pattern {
            PathPattern::Exact(path) => {
                self.exact.insert(path.clone(), group);
            }
            PathPattern::PriorityPrefix(path) => self.priority.insert(path.as_bytes(), group),
            PathPattern::Regex(regex) => {
                self.regex_sources.push(regex.source.clone());
                self.regexes.push(RegexRoute {
                    regex: regex.regex.clone(),
                    variables: regex.variables.clone(),
                    group,
                });
            }
            PathPattern::Prefix(path) => self.prefix.insert(path.as_bytes(), group),
        }
        group
    }

    /// Builds the router. Fails only if the regex set exceeds the regex crate's size limit.
    pub fn build(self) -> Result<Router<T>, String> {
        let regex_set = RegexSet::new(&self.regex_sources)
            .map_err(|error| format!("the regex paths cannot be combined: {error}"))?;
        Ok(Router {
            groups: self.groups,
            exact: self.exact,
            priority: self.priority,
            regex_set,
            regexes: self.regexes,
            prefix: self.prefix,
        })
    }
}

/// A byte trie from prefixes to values that finds the longest stored prefix of a path.
#[derive(Debug)]
struct PrefixTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Default)]
struct TrieNode {
    /// Children sorted by byte.
    children: Vec<(u8, u32)>,
    value: Option<usize>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![TrieNode::default()],
        }
    }
}

impl PrefixTrie {
    fn insert(&mut self, key: &[u8], value: usize) {
        let mut node = 0usize;
        for &byte in key {
            node = match self.nodes[node]
                .children
                .binary_search_by_key(&byte, |(b, _)| *b)
            {
                Ok(found) => self.nodes[node].children[found].1 as usize,
                Err(at) => {
                    let child = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    self.nodes[node].children.insert(at, (byte, child as u32));
                    child
                }
            };
        }
        self.nodes[node].value = Some(value);
    }

    /// Returns the length and value of the longest stored key that is a prefix of `path`.
    fn longest_prefix(&self, path: &[u8]) -> Option<(usize, usize)> {
        let mut node = 0usize;
        let mut best = self.nodes[0].value.map(|value| (0, value));
        for (depth, byte) in path.iter().enumerate() {
            let children = &self.nodes[node].children;
            match children.binary_search_by_key(byte, |(b, _)| *b) {
                Ok(found) => node = children[found].1 as usize,
                Err(_) => break,
            }
            if let Some(value) = self.nodes[node].value {
                best = Some((depth + 1, value));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(apis: &[(&str, ApiMethod, &'static str)]) -> Router<&'static str> {
        let mut builder = RouterBuilder::default();
        for (path, method, name) in apis {
            let pattern = PathPattern::parse(path).unwrap();
            builder.insert(&pattern, *method, *name).unwrap();
        }
        builder.build().unwrap()
    }

    fn found(router: &Router<&'static str>, path: &str) -> Option<&'static str> {
        router.find(path, &Method::GET).ok().map(|m| *m.value)
    }

    #[test]
    fn priority_order() {
        use ApiMethod::Get;
        let router = router(&[
            ("/user", Get, "plain"),
            ("/user/{id}", Get, "regex"),
            ("^~/user/vip", Get, "priority"),
            ("=/user/exact", Get, "exact"),
        ]);
        let cases = [
            ("/user/exact", Some("exact")),
            ("/user/exact/more", Some("regex")),
            ("/user/vip", Some("priority")),
            ("/user/vip/1", Some("priority")),
            ("/user/1", Some("regex")),
            ("/user", Some("plain")),
            ("/usertest", Some("plain")),
            ("/use", None),
        ];
        for (path, expected) in cases {
            assert_eq!(found(&router, path), expected, "path {path}");
        }
    }

    #[test]
    fn longest_plain_prefix_wins() {
        use ApiMethod::Get;
        let router = router(&[("/", Get, "root"), ("/a", Get, "a"), ("/a/b", Get, "ab")]);
        assert_eq!(found(&router, "/a/b/c"), Some("ab"));
        assert_eq!(found(&router, "/a/c"), Some("a"));
        assert_eq!(found(&router, "/x"), Some("root"));
        let matched = router.find("/a/b/c", &Method::GET).unwrap();
        assert_eq!(matched.matched_len, 4);
    }

    #[test]
    fn longest_priority_prefix_wins() {
        use ApiMethod::Get;
        let router = router(&[("^~/a", Get, "a"), ("^~/a/b", Get, "ab")]);
        assert_eq!(found(&router, "/a/b/c"), Some("ab"));
        assert_eq!(found(&router, "/a/c"), Some("a"));
    }

    #[test]
    fn regex_paths_try_in_configuration_order() {
        use ApiMethod::Get;
        let router = router(&[("/r/{x}", Get, "first"), ("/r/.*", Get, "second")]);
        assert_eq!(found(&router, "/r/1"), Some("first"));
    }

    #[test]
    fn documented_path_variable_examples() {
        let cases = [
            (
                "/{PathA}/{PathB}/detail",
                "/middleware/apigw/detail",
                vec![("PathA", "middleware"), ("PathB", "apigw")],
            ),
            (
                "/{PathA}/product/{PathB}",
                "/middleware/product/apigw/detail",
                vec![("PathA", "middleware"), ("PathB", "apigw/detail")],
            ),
            (
                "/{PathA}/{PathB}",
                "/middleware/apigw/detail",
                vec![("PathA", "middleware/apigw"), ("PathB", "detail")],
            ),
        ];
        for (pattern, path, expected) in cases {
            let router = router(&[(pattern, ApiMethod::Get, "api")]);
            let matched = router.find(path, &Method::GET).unwrap();
            let captures: Vec<(&str, &str)> = matched
                .captures
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            assert_eq!(captures, expected, "pattern {pattern} on {path}");
        }
    }

    #[test]
    fn method_selection() {
        use ApiMethod::*;
        let router = router(&[
            ("/m", Get, "get"),
            ("/m", Any, "any"),
            ("/only", Post, "post"),
        ]);
        assert_eq!(*router.find("/m", &Method::GET).unwrap().value, "get");
        assert_eq!(*router.find("/m", &Method::DELETE).unwrap().value, "any");
        assert_eq!(
            router.find("/only", &Method::GET).unwrap_err(),
            RouteError::MethodNotAllowed
        );
        assert_eq!(
            router.find("/x", &Method::GET).unwrap_err(),
            RouteError::NoMatch
        );
    }

    #[test]
    fn path_match_decides_before_method() {
        use ApiMethod::*;
        let router = router(&[("=/p", Post, "exact-post"), ("/p", Get, "prefix-get")]);
        assert_eq!(
            router.find("/p", &Method::GET).unwrap_err(),
            RouteError::MethodNotAllowed
        );
    }

    #[test]
    fn duplicate_path_and_method_is_rejected() {
        let mut builder = RouterBuilder::default();
        let pattern = PathPattern::parse("/a").unwrap();
        builder.insert(&pattern, ApiMethod::Get, 1).unwrap();
        let error = builder.insert(&pattern, ApiMethod::Get, 2).unwrap_err();
        assert!(error.contains("same path and method GET"), "{error}");
    }
}
