//! Session stickiness: a client goes back to the node that served it while that node is up.
//!
//! By cookie, the gateway names the node in a cookie (`Max-Age` is the timeout) and the
//! client's browser or HTTP library sends it back. By header, the gateway keeps a table from
//! a digest of the header's value to the node, and an entry lapses when the value has not
//! been seen for the timeout. A client whose node is out, weight 0 or gone goes to the round
//! robin's next node and sticks to that one instead.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use http::header::{HeaderMap, HeaderName, HeaderValue, COOKIE};

use crate::config::StickyConfig;

/// The maximum number of header values the table keeps. When it is full, expired entries
/// are dropped, and new clients are balanced without stickiness until there is room.
const MAX_ENTRIES: usize = 100_000;

pub struct Sticky {
    by: By,
    timeout: Duration,
    table: Mutex<Table>,
}

/// Header digests to node tokens and the time each was last used.
#[derive(Default)]
struct Table {
    entries: HashMap<u64, (String, Instant)>,
    /// The time expired entries were last dropped, so that `bind` sweeps a full table at
    /// most once a second.
    swept: Option<Instant>,
}

#[derive(PartialEq, Eq)]
enum By {
    Cookie(String),
    Header(HeaderName),
}

/// The stickiness key a request carries.
pub enum Claim {
    /// The cookie's node token, if the request had the cookie.
    Cookie(Option<String>),
    /// The digest of the header's value.
    Header(u64),
    /// No header: the request is balanced without stickiness.
    None,
}

impl Sticky {
    /// Builds the stickiness of one balancer. `cookie_suffix` distinguishes the cookies of
    /// balancers that share a configuration, such as the microservices of one API.
    pub fn new(config: &StickyConfig, cookie_suffix: Option<&str>) -> anyhow::Result<Sticky> {
        let by = match (&config.cookie, &config.header) {
            (Some(cookie), None) => By::Cookie(match cookie_suffix {
                Some(suffix) => format!("{cookie}_{suffix}"),
                None => cookie.clone(),
            }),
            (None, Some(header)) => By::Header(HeaderName::from_bytes(header.as_bytes())?),
            _ => bail!("stickiness needs `cookie` or `header`, not both"),
        };
        Ok(Sticky {
            by,
            timeout: Duration::from_secs(config.timeout_secs),
            table: Mutex::new(Table::default()),
        })
    }

    /// Takes over the header table of the stickiness a reload replaces, when both key
    /// clients the same way.
    pub fn adopt(&self, old: &Sticky) {
        if self.by != old.by {
            return;
        }
        let old_table = old.table.lock().unwrap_or_else(|p| p.into_inner());
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.entries = old_table.entries.clone();
    }

    /// Reads the request's claim.
    pub fn claim(&self, headers: &HeaderMap) -> Claim {
        match &self.by {
            By::Cookie(name) => Claim::Cookie(find_cookie(headers, name)),
            By::Header(name) => match headers.get(name).filter(|value| !value.is_empty()) {
                Some(value) => {
                    let mut hasher = DefaultHasher::new();
                    value.as_bytes().hash(&mut hasher);
                    Claim::Header(hasher.finish())
                }
                None => Claim::None,
            },
        }
    }

    /// Returns the token of the node a claim points to, if the binding has not expired.
    pub fn token(&self, claim: &Claim, now: Instant) -> Option<String> {
        match claim {
            Claim::Cookie(token) => token.clone(),
            Claim::Header(digest) => {
                let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
                table
                    .entries
                    .get(digest)
                    .filter(|(_, used)| now.duration_since(*used) < self.timeout)
                    .map(|(token, _)| token.clone())
            }
            Claim::None => None,
        }
    }

    /// Binds the claim to the node that was chosen. Returns the `Set-Cookie` value to send:
    /// in cookie mode on every response, so the timeout counts from the client's last
    /// request as it does for headers.
    pub fn bind(&self, claim: &Claim, token: &str, now: Instant) -> Option<HeaderValue> {
        match claim {
            Claim::Cookie(_) => {
                let By::Cookie(name) = &self.by else {
                    return None;
                };
                HeaderValue::from_str(&format!(
                    "{name}={token}; Path=/; Max-Age={}; HttpOnly",
                    self.timeout.as_secs()
                ))
                .ok()
            }
            Claim::Header(digest) => {
                let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
                if table.entries.len() >= MAX_ENTRIES && !table.entries.contains_key(digest) {
                    let recently = table
                        .swept
                        .is_some_and(|swept| now.duration_since(swept) < Duration::from_secs(1));
                    if recently {
                        return None;
                    }
                    let timeout = self.timeout;
                    table
                        .entries
                        .retain(|_, (_, used)| now.duration_since(*used) < timeout);
                    table.swept = Some(now);
                    if table.entries.len() >= MAX_ENTRIES {
                        tracing::warn!(
                            entries = MAX_ENTRIES,
                            "the stickiness table is full; new header values are balanced \
                             without stickiness until entries expire"
                        );
                        return None;
                    }
                }
                table.entries.insert(*digest, (token.to_string(), now));
                None
            }
            Claim::None => None,
        }
    }
}

/// Finds a cookie's value in the request's `Cookie` headers. Other cookies may hold bytes
/// that are not ASCII, so the header is split as bytes.
fn find_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let at = pair.iter().position(|&b| b == b'=')?;
            Some((&pair[..at], &pair[at + 1..]))
        })
        .find(|(key, _)| *key == name.as_bytes())
        .and_then(|(_, value)| std::str::from_utf8(value.trim_ascii()).ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sticky(cookie: Option<&str>, header: Option<&str>) -> Sticky {
        Sticky::new(
            &StickyConfig {
                cookie: cookie.map(str::to_string),
                header: header.map(str::to_string),
                timeout_secs: 60,
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; tg_node=abc ; b=2"));
        assert_eq!(find_cookie(&headers, "tg_node").as_deref(), Some("abc"));
        assert_eq!(find_cookie(&headers, "tg"), None);
        // Another cookie's UTF-8 bytes do not hide this one.
        let mixed = HeaderValue::from_bytes("user=José; tg_node=abc".as_bytes()).unwrap();
        headers.insert(COOKIE, mixed);
        assert_eq!(find_cookie(&headers, "tg_node").as_deref(), Some("abc"));
    }

    #[test]
    fn cookie_names_the_chosen_node_every_time() {
        let sticky = sticky(Some("tg_node"), None);
        let now = Instant::now();
        let expected = "tg_node=abc; Path=/; Max-Age=60; HttpOnly";
        for held_token in [None, Some("abc".to_string()), Some("old".to_string())] {
            let set = sticky.bind(&Claim::Cookie(held_token), "abc", now).unwrap();
            assert_eq!(set, expected);
        }
    }

    #[test]
    fn header_binding_lapses_after_the_timeout() {
        let sticky = sticky(None, Some("x-user"));
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("alice"));
        let claim = sticky.claim(&headers);
        let now = Instant::now();
        assert_eq!(sticky.token(&claim, now), None);
        sticky.bind(&claim, "abc", now);
        assert_eq!(
            sticky
                .token(&claim, now + Duration::from_secs(59))
                .as_deref(),
            Some("abc")
        );
        assert_eq!(sticky.token(&claim, now + Duration::from_secs(61)), None);
    }

    #[test]
    fn both_or_neither_is_an_error() {
        let both = StickyConfig {
            cookie: Some("a".into()),
            header: Some("b".into()),
            timeout_secs: 1,
        };
        assert!(Sticky::new(&both, None).is_err());
    }
}
