//! Finding the API for a request: host to service, path to environment, then the API router.

mod host;
mod pattern;
mod router;

pub use host::{normalize_path, request_host, resolve_environment, EnvironmentMatch};
pub use pattern::{PathPattern, PathTemplate, RegexPattern};
pub use router::{RouteError, RouteMatch, Router, RouterBuilder};
