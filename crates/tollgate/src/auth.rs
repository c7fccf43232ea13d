//! Key-pair (HMAC) authentication: verifying signed requests, and signing them for clients.

mod key_pair;
pub mod sign;
pub mod signature;

pub use key_pair::{
    body_digest_matches, verify, KeyPairOptions, VerifiedKey, REQUEST_LINE, REQUEST_TARGET,
};
