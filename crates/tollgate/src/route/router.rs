//! The API router of one environment.
//!
//! Paths are tried in the product's priority order: exact (`=`), then the longest priority
//! prefix (`^~`), then regex paths in configuration order, then the longest plain prefix. The
//! first kind that matches decides the path; the method is chosen among that path's APIs only,
//! so a path that matches with no API for the method gives 405 rather than falling through to
//! a lower-priority path, as nginx `location` blocks behave.
//!
//! Cost per request: one hash lookup and three walks of byte tries, each linear in the path
//! length, whatever the number of APIs. Regex paths are indexed by their literal start (the
//! text before the first `{var}` or regex operator), so a request runs only the regexes whose
//! start it shares; `/(v1|v2)/{id}` starts with `/` and is tried on every path, `/user/{id}`
//! only on paths under `/user/`.

use std::collections::HashMap;

use http::Method;
use regex::{Captures, Regex};

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
    /// Each path variable and its capture group index.
    variables: Vec<(String, usize)>,
    group: usize,
}

/// An environment's APIs indexed by frontend path.
pub struct Router<T> {
    groups: Vec<MethodGroup<T>>,
    exact: HashMap<String, usize>,
    priority: PrefixTrie<usize>,
    /// Indexes into `regexes` by literal start, each list in configuration order.
    regex_starts: PrefixTrie<Vec<usize>>,
    regexes: Vec<RegexRoute>,
    prefix: PrefixTrie<usize>,
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
        if let Some((len, &group)) = self.priority.longest_prefix(path.as_bytes()) {
            return Some(plain(group, len));
        }
        if let Some((route, captures)) = self.first_regex_match(path) {
            let matched_len = captures.get(0).map_or(0, |whole| whole.end());
            let values = route
                .variables
                .iter()
                .map(|(name, index)| {
                    let value = captures.get(*index).map_or("", |m| m.as_str());
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
            .map(|(len, &group)| plain(group, len))
    }

    /// Returns the first regex route, in configuration order, that matches `path`, with its
    /// captures.
    fn first_regex_match<'p>(&self, path: &'p str) -> Option<(&RegexRoute, Captures<'p>)> {
        let try_route = |index: usize| {
            let route = &self.regexes[index];
            route.regex.captures(path).map(|captures| (route, captures))
        };
        let mut lists = self.regex_starts.prefixes(path.as_bytes());
        let first = lists.next()?;
        let Some(second) = lists.next() else {
            // The usual case: one literal start covers the path.
            return first.iter().copied().find_map(try_route);
        };
        let mut candidates: Vec<usize> = first.iter().chain(second).copied().collect();
        candidates.extend(lists.flatten());
        candidates.sort_unstable();
        candidates.into_iter().find_map(try_route)
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
    priority: PrefixTrie<usize>,
    regex_starts: PrefixTrie<Vec<usize>>,
    regexes: Vec<RegexRoute>,
    prefix: PrefixTrie<usize>,
}

impl<T> Default for RouterBuilder<T> {
    fn default() -> Self {
        RouterBuilder {
            groups: Vec::new(),
            by_key: HashMap::new(),
            exact: HashMap::new(),
            priority: PrefixTrie::default(),
            regex_starts: PrefixTrie::default(),
            regexes: Vec::new(),
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
            PathPattern::PriorityPrefix(path) => {
                *self.priority.get_or_insert_with(path.as_bytes(), || group) = group;
            }
            PathPattern::Regex(regex) => {
                let index = self.regexes.len();
                self.regex_starts
                    .get_or_insert_with(regex.literal_start.as_bytes(), Vec::new)
                    .push(index);
                self.regexes.push(RegexRoute {
                    regex: regex.regex.clone(),
                    variables: regex
                        .variables
                        .iter()
                        .cloned()
                        .zip(regex.groups.iter().copied())
                        .collect(),
                    group,
                });
            }
            PathPattern::Prefix(path) => {
                *self.prefix.get_or_insert_with(path.as_bytes(), || group) = group;
            }
        }
        group
    }

    /// Builds the router.
    pub fn build(self) -> Router<T> {
        Router {
            groups: self.groups,
            exact: self.exact,
            priority: self.priority,
            regex_starts: self.regex_starts,
            regexes: self.regexes,
            prefix: self.prefix,
        }
    }
}

/// A byte trie from prefixes to values.
#[derive(Debug)]
struct PrefixTrie<V> {
    nodes: Vec<TrieNode<V>>,
}

#[derive(Debug)]
struct TrieNode<V> {
    /// Children sorted by byte.
    children: Vec<(u8, u32)>,
    value: Option<V>,
}

impl<V> Default for PrefixTrie<V> {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![TrieNode::new()],
        }
    }
}

impl<V> TrieNode<V> {
    fn new() -> Self {
        TrieNode {
            children: Vec::new(),
            value: None,
        }
    }
}

impl<V> PrefixTrie<V> {
    /// Returns the value stored at `key`, storing `make()` first if there is none.
    fn get_or_insert_with(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        let mut node = 0usize;
        for &byte in key {
            node = match self.nodes[node]
                .children
                .binary_search_by_key(&byte, |(b, _)| *b)
            {
                Ok(found) => self.nodes[node].children[found].1 as usize,
                Err(at) => {
                    let child = self.nodes.len();
                    self.nodes.push(TrieNode::new());
                    self.nodes[node].children.insert(at, (byte, child as u32));
                    child
                }
            };
        }
        self.nodes[node].value.get_or_insert_with(make)
    }

    /// Returns the values of every stored key that is a prefix of `path`, shortest first,
    /// with the length of each key.
    fn prefixes_with_len<'t>(&'t self, path: &'t [u8]) -> impl Iterator<Item = (usize, &'t V)> {
        let mut node = Some(0usize);
        let mut depth = 0usize;
        std::iter::from_fn(move || loop {
            let current = node?;
            let value = self.nodes[current].value.as_ref();
            let len = depth;
            node = path.get(depth).and_then(|byte| {
                let children = &self.nodes[current].children;
                children
                    .binary_search_by_key(byte, |(b, _)| *b)
                    .ok()
                    .map(|found| children[found].1 as usize)
            });
            depth += 1;
            if let Some(value) = value {
                return Some((len, value));
            }
        })
    }

    /// Returns the values of every stored key that is a prefix of `path`, shortest first.
    fn prefixes<'t>(&'t self, path: &'t [u8]) -> impl Iterator<Item = &'t V> {
        self.prefixes_with_len(path).map(|(_, value)| value)
    }

    /// Returns the length and value of the longest stored key that is a prefix of `path`.
    fn longest_prefix<'t>(&'t self, path: &'t [u8]) -> Option<(usize, &'t V)> {
        self.prefixes_with_len(path).last()
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
        builder.build()
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
    fn regexes_are_tried_only_where_their_literal_start_matches() {
        use ApiMethod::Get;
        let router = router(&[
            ("/a/{x}", Get, "a"),
            ("/(v1|v2)/{x}", Get, "versioned"),
            ("/a/b/{x}", Get, "ab"),
            ("/ab*c", Get, "optional-b"),
        ]);
        assert_eq!(found(&router, "/a/b/c"), Some("a"));
        assert_eq!(found(&router, "/v2/b"), Some("versioned"));
        assert_eq!(found(&router, "/ac"), Some("optional-b"));
        assert_eq!(found(&router, "/abbc"), Some("optional-b"));
        assert_eq!(found(&router, "/b/c"), None);
    }

    #[test]
    fn later_regex_with_a_shorter_start_keeps_its_order() {
        use ApiMethod::Get;
        let specific_first = router(&[("/x/{a}", Get, "first"), ("/{b}", Get, "second")]);
        assert_eq!(found(&specific_first, "/x/1"), Some("first"));
        let general_first = router(&[("/{b}", Get, "first"), ("/x/{a}", Get, "second")]);
        assert_eq!(found(&general_first, "/x/1"), Some("first"));
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
