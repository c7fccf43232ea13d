//! Reading a configuration file and reporting every problem in it.
//!
//! Serde stops at the first error, so the file is first parsed into a YAML value and each
//! service and API is then deserialized on its own: one bad API does not hide the next. Each
//! problem carries its path in the file (`services[0].apis[2].backend`) and, looked up in an
//! index built from the parser's events, the line where that path starts.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_norway::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::model::{ApiConfig, Config, ServerConfig, ServiceConfig, UpstreamConfig};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The location in the file, as `services[0].apis[1].path`; empty for the whole file.
    pub path: String,
    /// 1-based line of `path` in the file, when known.
    pub line: Option<usize>,
    /// The problem and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line, self.path.is_empty()) {
            (Some(line), false) => write!(f, "line {line}: {}: {}", self.path, self.message),
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems {
    /// The file's name as given, for messages.
    pub source: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let noun = if count == 1 { "problem" } else { "problems" };
        write!(f, "{}: {count} {noun}", self.source)?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Collects problems with their lines while a file is read and checked.
#[derive(Debug)]
pub struct Report {
    lines: LineIndex,
    problems: Vec<Problem>,
    /// `(service path, API id)` of APIs that failed to deserialize, so validation does not
    /// also report references to them as unknown.
    unparsed_apis: HashSet<(String, String)>,
    /// Position in the file of each service kept, when some failed to deserialize.
    service_positions: Vec<usize>,
    /// Position in the file of each API kept, by service path.
    api_positions: HashMap<String, Vec<usize>>,
    /// Ids of upstreams that failed to deserialize, so APIs naming them are not also
    /// reported.
    unparsed_upstreams: HashSet<String>,
    /// Position in the file of each upstream kept.
    upstream_positions: Vec<usize>,
}

impl Report {
    fn new(lines: LineIndex) -> Self {
        Report {
            lines,
            problems: Vec::new(),
            unparsed_apis: HashSet::new(),
            service_positions: Vec::new(),
            api_positions: HashMap::new(),
            unparsed_upstreams: HashSet::new(),
            upstream_positions: Vec::new(),
        }
    }

    /// Returns the path of the `index`th upstream kept, as it is in the file.
    pub fn upstream_path(&self, index: usize) -> String {
        let position = self.upstream_positions.get(index).copied().unwrap_or(index);
        format!("upstreams[{position}]")
    }

    /// Returns true when an upstream `id` failed to deserialize and was reported already.
    pub fn is_unparsed_upstream(&self, id: &str) -> bool {
        self.unparsed_upstreams.contains(id)
    }

    /// Returns the path of the `index`th service kept, as it is in the file.
    pub fn service_path(&self, index: usize) -> String {
        let position = self.service_positions.get(index).copied().unwrap_or(index);
        format!("services[{position}]")
    }

    /// Returns the path of the `index`th API kept in the service at `service_path`.
    pub fn api_path(&self, service_path: &str, index: usize) -> String {
        let position = self
            .api_positions
            .get(service_path)
            .and_then(|positions| positions.get(index))
            .copied()
            .unwrap_or(index);
        format!("{service_path}.apis[{position}]")
    }

    /// Returns true when the service at `service_path` has an API `id` that failed to
    /// deserialize and was reported already.
    pub fn is_unparsed_api(&self, service_path: &str, id: &str) -> bool {
        self.unparsed_apis
            .contains(&(service_path.to_string(), id.to_string()))
    }

    /// Records a problem at `path`, with the line of the nearest enclosing path the file has.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let path = path.into();
        let line = self.lines.line_of(&path);
        self.problems.push(Problem {
            path,
            line,
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    fn into_problems(self, source: &str) -> Problems {
        let mut problems = self.problems;
        problems.sort_by_key(|problem| problem.line.unwrap_or(usize::MAX));
        Problems {
            source: source.to_string(),
            problems,
        }
    }
}

/// Reads and parses `path`. The result is not yet validated: see [`super::validate`].
pub fn read_file(path: &Path) -> Result<(Config, Report), Problems> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| Problems {
        source: source.clone(),
        problems: vec![Problem {
            path: String::new(),
            line: None,
            message: format!("cannot read the file: {error}"),
        }],
    })?;
    parse_str(&text, &source)
}

/// Parses configuration text; `source` names it in messages. Only YAML syntax errors fail
/// here: other problems are in the returned report, and the parts that could not be read are
/// left out of the returned configuration.
pub fn parse_str(text: &str, source: &str) -> Result<(Config, Report), Problems> {
    let lines = match LineIndex::build(text) {
        Ok(lines) => lines,
        Err(problem) => {
            return Err(Problems {
                source: source.to_string(),
                problems: vec![problem],
            })
        }
    };
    let mut report = Report::new(lines);

    let root: Value = match serde_norway::from_str(text) {
        Ok(Value::Null) => Value::Mapping(Default::default()),
        Ok(value) => value,
        Err(error) => {
            let line = error.location().map(|location| location.line());
            let problem = Problem {
                path: String::new(),
                line,
                message: format!("invalid YAML: {error}"),
            };
            return Err(Problems {
                source: source.to_string(),
                problems: vec![problem],
            });
        }
    };
    let config = deserialize_config(root, &mut report).unwrap_or_default();
    Ok((config, report))
}

/// Turns a report into the final result once validation has added its problems.
pub fn finish<T>(value: T, report: Report, source: &str) -> Result<T, Problems> {
    if report.is_empty() {
        Ok(value)
    } else {
        Err(report.into_problems(source))
    }
}

/// Deserializes the root piece by piece, so that every bad service and API is reported.
fn deserialize_config(root: Value, report: &mut Report) -> Option<Config> {
    let Value::Mapping(mut root) = root else {
        report.push(
            "",
            "the file must be a mapping with the keys `server` and `services`",
        );
        return None;
    };
    let server = match root.remove("server") {
        Some(value) => deserialize_at::<ServerConfig>(value, "server", report),
        None => Some(ServerConfig::default()),
    };
    let services = match root.remove("services") {
        Some(Value::Sequence(items)) => {
            let mut services = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                if let Some(service) =
                    deserialize_service(item, &format!("services[{index}]"), report)
                {
                    services.push(service);
                    report.service_positions.push(index);
                }
            }
            Some(services)
        }
        Some(Value::Null) | None => Some(Vec::new()),
        Some(_) => {
            report.push("services", "invalid type: expected a list of services");
            None
        }
    };
    let mut take = |key: &str| root.remove(key);
    let key_pairs = take("key_pairs").and_then(|v| deserialize_at(v, "key_pairs", report));
    let usage_plans = take("usage_plans").and_then(|v| deserialize_at(v, "usage_plans", report));
    let key_pair_auth =
        take("key_pair_auth").and_then(|v| deserialize_at(v, "key_pair_auth", report));
    let counters = take("counters").and_then(|v| deserialize_at(v, "counters", report));
    let upstreams = take("upstreams").and_then(|value| deserialize_upstreams(value, report));
    let registry = take("registry").and_then(|v| deserialize_at(v, "registry", report));
    for (key, _) in root {
        let key = serde_norway::to_string(&key).unwrap_or_default();
        report.push(
            "",
            format!(
                "unknown key `{}`, expected `server`, `services`, `key_pairs`, `usage_plans`, \
                 `key_pair_auth`, `counters`, `upstreams` or `registry`",
                key.trim()
            ),
        );
    }
    Some(Config {
        server: server.unwrap_or_default(),
        services: services.unwrap_or_default(),
        key_pairs: key_pairs.unwrap_or_default(),
        usage_plans: usage_plans.unwrap_or_default(),
        key_pair_auth: key_pair_auth.unwrap_or_default(),
        counters: counters.unwrap_or_default(),
        upstreams: upstreams.unwrap_or_default(),
        registry: registry.unwrap_or_default(),
    })
}

/// Deserializes upstreams one by one, so that one bad upstream hides neither the others nor
/// its own id.
fn deserialize_upstreams(value: Value, report: &mut Report) -> Option<Vec<UpstreamConfig>> {
    let Value::Sequence(items) = value else {
        return deserialize_at(value, "upstreams", report);
    };
    let mut upstreams = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let id = item.get("id").and_then(Value::as_str).map(str::to_string);
        match deserialize_at::<UpstreamConfig>(item, &format!("upstreams[{index}]"), report) {
            Some(upstream) => {
                upstreams.push(upstream);
                report.upstream_positions.push(index);
            }
            None => {
                if let Some(id) = id {
                    report.unparsed_upstreams.insert(id);
                }
            }
        }
    }
    Some(upstreams)
}

fn deserialize_service(item: Value, path: &str, report: &mut Report) -> Option<ServiceConfig> {
    let Value::Mapping(mut fields) = item else {
        report.push(path, "invalid type: expected a service mapping");
        return None;
    };
    let apis = fields.remove("apis");
    let service = deserialize_at::<ServiceConfig>(Value::Mapping(fields), path, report);
    let apis = match apis {
        Some(Value::Sequence(items)) => {
            let mut apis = Vec::with_capacity(items.len());
            let mut positions = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                let id = item.get("id").and_then(Value::as_str).map(str::to_string);
                let api_path = format!("{path}.apis[{index}]");
                match (deserialize_at::<ApiConfig>(item, &api_path, report), id) {
                    (Some(api), _) => {
                        apis.push(api);
                        positions.push(index);
                    }
                    (None, Some(id)) => {
                        report.unparsed_apis.insert((path.to_string(), id));
                    }
                    (None, None) => {}
                }
            }
            report.api_positions.insert(path.to_string(), positions);
            apis
        }
        Some(Value::Null) | None => Vec::new(),
        Some(_) => {
            report.push(
                format!("{path}.apis"),
                "invalid type: expected a list of APIs",
            );
            Vec::new()
        }
    };
    let mut service = service?;
    service.apis = apis;
    Some(service)
}

fn deserialize_at<T: DeserializeOwned>(value: Value, path: &str, report: &mut Report) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(value) => Some(value),
        Err(error) => {
            let inner = error.path().to_string();
            let full = match (path.is_empty(), inner.as_str()) {
                (_, ".") => path.to_string(),
                (true, _) => inner,
                (false, inner) if inner.starts_with('[') => format!("{path}{inner}"),
                (false, _) => format!("{path}.{inner}"),
            };
            report.push(full, error.into_inner().to_string());
            None
        }
    }
}

/// The line where each path of the file starts, for messages.
#[derive(Debug, Default)]
struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    fn build(text: &str) -> Result<LineIndex, Problem> {
        let mut builder = LineIndexBuilder::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, false).map_err(|error| Problem {
            path: String::new(),
            line: Some(error.marker().line()),
            message: format!("invalid YAML: {}", error.info()),
        })?;
        Ok(LineIndex {
            lines: builder.lines,
        })
    }

    /// Returns the line of `path`, or of its nearest ancestor the file contains.
    fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// A container being walked: a mapping waiting for its next key, or a sequence and its index.
enum Frame {
    Mapping { key: Option<String> },
    Sequence { index: usize },
}

#[derive(Default)]
struct LineIndexBuilder {
    stack: Vec<(String, Frame)>,
    lines: HashMap<String, usize>,
}

impl LineIndexBuilder {
    /// Returns the path of the node that starts now, and advances its parent.
    fn next_child_path(&mut self) -> Option<String> {
        let (parent, frame) = self.stack.last_mut()?;
        match frame {
            Frame::Mapping { key } => key.take().map(|key| {
                if parent.is_empty() {
                    key
                } else {
                    format!("{parent}.{key}")
                }
            }),
            Frame::Sequence { index } => {
                let path = format!("{parent}[{index}]");
                *index += 1;
                Some(path)
            }
        }
    }

    /// Returns true when the scalar that starts now is a mapping key.
    fn expects_key(&self) -> bool {
        matches!(self.stack.last(), Some((_, Frame::Mapping { key: None })))
    }
}

impl MarkedEventReceiver for LineIndexBuilder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, ..) if self.expects_key() => {
                if let Some((_, Frame::Mapping { key })) = self.stack.last_mut() {
                    *key = Some(text);
                }
            }
            Event::Scalar(..) | Event::Alias(_) => {
                if let Some(path) = self.next_child_path() {
                    self.lines.entry(path).or_insert(mark.line());
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_child_path().unwrap_or_default();
                self.lines.entry(path.clone()).or_insert(mark.line());
                let frame = if matches!(event, Event::MappingStart(..)) {
                    Frame::Mapping { key: None }
                } else {
                    Frame::Sequence { index: 0 }
                };
                self.stack.push((path, frame));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_finds_nested_paths() {
        let text = "server:\n  listen: [\"127.0.0.1:1\"]\nservices:\n  - id: a\n    apis:\n      - id: x\n        path: /p\n";
        let index = LineIndex::build(text).unwrap();
        assert_eq!(index.line_of("server.listen"), Some(2));
        assert_eq!(index.line_of("services[0]"), Some(4));
        assert_eq!(index.line_of("services[0].apis[0].path"), Some(7));
        assert_eq!(index.line_of("services[0].apis[0].backend.url"), Some(6));
    }

    #[test]
    fn every_bad_api_is_reported() {
        let text = r#"
services:
  - id: service-a
    name: a
    apis:
      - id: api-1
        name: one
        path: /one
        colour: blue
        backend: { type: mock }
      - id: api-2
        name: two
        path: /two
        backend: { type: carrier-pigeon }
"#;
        let (_, report) = parse_str(text, "test.yaml").unwrap();
        let problems = report.problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].path, "services[0].apis[0].colour");
        assert!(problems[0].message.contains("unknown field `colour`"));
        assert_eq!(problems[0].line, Some(9));
        assert_eq!(problems[1].path, "services[0].apis[1].backend.type");
        assert!(problems[1].message.contains("carrier-pigeon"));
    }

    #[test]
    fn syntax_error_has_a_line() {
        let problems = parse_str("services:\n  - id: [\n", "t.yaml")
            .unwrap_err()
            .problems;
        assert_eq!(problems.len(), 1);
        assert!(problems[0].line.is_some());
        assert!(problems[0].message.starts_with("invalid YAML"));
    }
}
