//! Caller identification and the rate and quota checks of one request.

use http::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, LOCATION};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::auth::{self, KeyPairOptions, VerifiedKey};
use crate::config::{AuthType, WhenUnreachable};
use crate::counters::{Counters, Outcome, PlanCounters, Refusal, Usage, Window};
use crate::error::GatewayError;
use crate::oauth::{self, TokenLocation};
use crate::pipeline::ResponseBody;
use crate::snapshot::{Environment, OauthBusiness, OauthLink, PublishedApi, Snapshot};

static X_SERVICE_RATE_LIMIT: HeaderName = HeaderName::from_static("x-service-ratelimit");
static X_API_RATE_LIMIT: HeaderName = HeaderName::from_static("x-api-ratelimit");
static X_USAGE_PLAN_RATE_LIMIT: HeaderName = HeaderName::from_static("x-usageplan-ratelimit");
static X_USAGE_PLAN_QUOTA: HeaderName = HeaderName::from_static("x-usageplan-quota");

/// The caller, as far as the request shows it.
pub struct Caller<'s> {
    /// The verified key, if the request was signed.
    pub key: Option<VerifiedKey<'s>>,
    /// The plan that counts the request, by index into [`Snapshot::plans`], with the
    /// counter name of the key in it.
    pub plan: Option<(usize, &'s str)>,
}

/// Verifies the signature of a key-pair API and finds the plan that binds the key here. On
/// an API without auth, a valid signature with a key bound here puts the request under that
/// key's plan; a missing or invalid one leaves it anonymous.
pub fn identify<'s>(
    snapshot: &'s Snapshot,
    published: &'s PublishedApi,
    parts: &Parts,
    now: std::time::SystemTime,
) -> Result<Caller<'s>, GatewayError> {
    let api = &published.api;
    let options = KeyPairOptions {
        sign_request_target: api.key_pair.sign_request_target,
        require_digest: api.key_pair.require_digest,
        x_date_window: snapshot.x_date_window,
        check_date: snapshot.check_date,
    };
    let find_key = |id: &str| snapshot.key_pairs.get(id);
    match api.auth {
        AuthType::Secret => {
            let key = auth::verify(parts, options, now, find_key)?;
            if published.plans.is_empty() {
                return Err(GatewayError::NoValidUsagePlan);
            }
            let (plan, counter) = key
                .key
                .plan_in(&published.plans)
                .ok_or(GatewayError::HmacApiKeyInvalidForApi)?;
            Ok(Caller {
                key: Some(key),
                plan: Some((plan, counter)),
            })
        }
        AuthType::None if parts.headers.contains_key(AUTHORIZATION) => {
            let key = auth::verify(parts, options, now, find_key).ok();
            let plan = key
                .as_ref()
                .and_then(|key| key.key.plan_in(&published.plans))
                .map(|(plan, counter)| (plan, &**counter));
            Ok(Caller { key, plan })
        }
        AuthType::None => Ok(Caller {
            key: None,
            plan: None,
        }),
        // Checked by `authorize_oauth`.
        AuthType::Oauth => Ok(Caller {
            key: None,
            plan: None,
        }),
    }
}

/// Counts the request against the service's and the API's throttling, then the caller's
/// plan, adding the rate and quota headers. Refuses with 429 when a limit is reached.
pub async fn count(
    counters: &Counters,
    snapshot: &Snapshot,
    environment: &Environment,
    published: &PublishedApi,
    caller: &Caller<'_>,
    second: u64,
    headers: &mut Vec<(HeaderName, HeaderValue)>,
) -> Result<(), GatewayError> {
    let mut windows = Vec::with_capacity(2);
    let mut names = Vec::with_capacity(2);
    for (throttle, name) in [
        (&environment.throttle, &X_SERVICE_RATE_LIMIT),
        (&published.throttle, &X_API_RATE_LIMIT),
    ] {
        if let Some(throttle) = throttle {
            windows.push(Window {
                counter: &throttle.counter,
                limit: throttle.per_second,
            });
            names.push(name);
        }
    }
    if !windows.is_empty() {
        let Some(outcome) = ask(counters, counters.throttle(second, &windows).await)? else {
            return Ok(());
        };
        for (name, usage) in names.into_iter().zip(&outcome.usage) {
            headers.push((name.clone(), usage_value(*usage)));
        }
        if outcome.refused.is_some() {
            return Err(GatewayError::RateLimitExceeded);
        }
    }
    let Some((plan_index, counter)) = caller.plan else {
        return Ok(());
    };
    let plan = &snapshot.plans[plan_index];
    let limits = PlanCounters {
        counter,
        per_second: plan.per_second,
        quota: plan.quota,
    };
    let Some(outcome) = ask(counters, counters.plan(second, limits).await)? else {
        return Ok(());
    };
    headers.push((
        X_USAGE_PLAN_RATE_LIMIT.clone(),
        usage_value(outcome.usage[0]),
    ));
    headers.push((X_USAGE_PLAN_QUOTA.clone(), usage_value(outcome.usage[1])));
    if outcome.refused.is_some() && !windows.is_empty() {
        // The throttle step counted this request, and the plan refused it: it must not take
        // a place in the service's or the API's second from other callers. A failed refund
        // leaves the window one higher until the second ends.
        let _ = counters.refund(second, &windows).await;
    }
    match outcome.refused {
        None => Ok(()),
        Some(Refusal::RateLimited) => Err(GatewayError::RateLimitExceeded),
        Some(Refusal::QuotaExceeded) => Err(GatewayError::QuotaExceeded),
    }
}

/// Applies the unreachable-store policy: `Ok(None)` serves the request uncounted.
fn ask(
    counters: &Counters,
    result: Result<Outcome, crate::counters::StoreError>,
) -> Result<Option<Outcome>, GatewayError> {
    match result {
        Ok(outcome) => Ok(Some(outcome)),
        Err(_) => match counters.when_unreachable() {
            WhenUnreachable::Allow => Ok(None),
            WhenUnreachable::Reject => Err(GatewayError::Internal),
        },
    }
}

/// Formats a limit header: `LIMIT/REMAINING`, or `unlimited`.
fn usage_value(usage: Option<Usage>) -> HeaderValue {
    match usage {
        Some(usage) => HeaderValue::try_from(format!("{}/{}", usage.limit, usage.remaining))
            .expect("digits are a valid header value"),
        None => HeaderValue::from_static("unlimited"),
    }
}

/// Checks an `auth: OAUTH` business API's token, then sets the claim headers and strips the
/// token when configured. Returns a 302 to the login page for a browser without a token,
/// when the authorization API has a `login_redirect_url`.
pub fn authorize_oauth(
    business: &OauthBusiness,
    parts: &mut Parts,
    now: u64,
    request_id: &impl std::fmt::Display,
) -> Result<Option<Response<ResponseBody>>, GatewayError> {
    let verifier = match &business.link {
        OauthLink::NoRelatedApi => return Err(GatewayError::OauthNoRelatedApi),
        OauthLink::NoConfig => return Err(GatewayError::OauthNoConfig),
        OauthLink::Verifier(verifier) => verifier,
    };
    if let Some(error) = verifier.config_error() {
        return Err(error);
    }
    let token = match verifier.find_token(&parts.headers) {
        Ok(token) => token,
        Err(missing) => {
            return match (&verifier.login_redirect, is_browser_navigation(parts)) {
                (Some(location), true) => Ok(Some(login_redirect(location.clone()))),
                _ => Err(missing),
            };
        }
    };
    let claims = verifier.verify(token, now).map_err(|reason| {
        tracing::info!(%request_id, api = %verifier.api_id, %reason, "id_token rejected");
        GatewayError::OauthIdTokenVerify
    })?;
    oauth::forward_claims(&mut parts.headers, &business.claim_headers, &claims);
    if business.strip_token {
        match verifier.location {
            Some(TokenLocation::Cookie) => oauth::strip_token_cookie(&mut parts.headers),
            _ => {
                parts.headers.remove(AUTHORIZATION);
            }
        }
    }
    Ok(None)
}

/// A page load in a browser: GET or HEAD asking for HTML.
fn is_browser_navigation(parts: &Parts) -> bool {
    (parts.method == Method::GET || parts.method == Method::HEAD)
        && parts
            .headers
            .get(ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
}

fn login_redirect(location: HeaderValue) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(LOCATION, location);
    response
}
