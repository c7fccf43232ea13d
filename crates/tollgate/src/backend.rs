//! Backends, which serve a request after the checks: HTTP backends and mocks.

pub mod guard;
pub mod http;
pub mod mock;

pub use self::http::HttpClient;
