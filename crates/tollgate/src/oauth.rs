//! OAuth 2.0 id_token (JWT) authentication.
//!
//! An authorization API fronts the user's authorization server and carries the settings
//! ([`crate::config::OauthConfig`]); each `auth: OAUTH` business API names one. A business
//! API's request is served only with a token that verifies against the authorization API's
//! keys: signature, `exp` and `nbf` always (with a leeway), `iss` and `aud` when configured.

mod fetch;
mod keys;
mod verify;

pub use fetch::spawn_refresh;
pub use keys::{KeySet, SUPPORTED_ALGORITHMS};
pub use verify::{forward_claims, strip_token_cookie, Claims, OauthVerifier, TokenLocation};
