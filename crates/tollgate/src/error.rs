//! The catalog of every error the gateway itself responds with.
//!
//! Each variant is one row of the Tencent Cloud API Gateway error table: a status code and a
//! message that clients match byte for byte. Nothing else in the gateway writes an error
//! response: a check returns a [`GatewayError`], and [`GatewayError::body`] renders it as
//! `{"message":"..."}` with `/` escaped as `\/`, as the product's bodies are.
//!
//! A few variants are Tollgate's own (limits the product leaves undocumented); their docs say so.

use bytes::Bytes;
use http::StatusCode;

/// A gateway-made error: a status and the product's exact message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    // 400: Tollgate's own; the product documents no response for a broken request body.
    /// The client's request body was malformed (a bad chunk) or ended before its declared
    /// length while it was sent to the backend.
    #[error("Bad Request.")]
    BadRequestBody,

    // 401: key-pair (HMAC) authentication.
    #[error("HMAC apikey is invalid for API.")]
    HmacApiKeyInvalidForApi,
    #[error("HMAC signature cannot be verified, a valid x-date header is required for HMAC Authentication.")]
    HmacXDateRequired,
    #[error("HMAC signature cannot be verified, the x-date header is out of date for HMAC Authentication.")]
    HmacXDateOutOfDate,
    #[error("HMAC signature cannot be verified, a valid date or x-date header is required.")]
    HmacDateRequired,
    #[error("HMAC id or signature missing.")]
    HmacIdOrSignatureMissing,
    #[error("HMAC do not support multiple HTTP header.")]
    HmacMultipleHeader,
    /// A header named in `headers="..."` is absent from the request.
    #[error("HMAC signature cannot be verified, a valid {0} header is required.")]
    HmacSignedHeaderMissing(String),
    #[error("HMAC algorithm {0} not supported.")]
    HmacAlgorithmNotSupported(String),
    #[error("HMAC authorization format error.")]
    HmacAuthorizationFormat,
    #[error("HMAC authorization headers is invalidate.")]
    HmacAuthorizationHeadersInvalid,
    /// The key is unknown, disabled, or not bound through a usage plan.
    #[error("HMAC signature cannot be verified.")]
    HmacSignatureUnverifiable,
    #[error("HMAC signature does not match.")]
    HmacSignatureMismatch,
    /// Tollgate's own: the body does not match its signed `Digest` header, on APIs that
    /// require one (the product has no body digest).
    #[error("HMAC body digest does not match.")]
    HmacDigestMismatch,
    /// The product's message has no trailing period.
    #[error("HMAC signature cannot be verified, a validate authorization header is required")]
    HmacAuthorizationMissing,
    /// Application auth mismatch; the detail is the server's string to sign with `\n` as `#`.
    #[error("HMAC signature does not match, Server StringToSign:{0}")]
    AppSignatureMismatch(String),

    // 401: OAuth 2.0.
    #[error("Oauth call authentication server fail.")]
    OauthCallAuthServerFailed,
    #[error("Oauth found no related Oauth api.")]
    OauthNoRelatedApi,
    #[error("Oauth miss Oauth id_token.")]
    OauthMissIdToken,
    #[error("Oauth signature cannot be verified, a validate authorization header is required.")]
    OauthAuthorizationRequired,
    #[error("Oauth authorization header format error.")]
    OauthAuthorizationFormat,
    #[error("Oauth found no authorization header.")]
    OauthNoAuthorizationHeader,
    #[error("Oauth found no id_token.")]
    OauthNoIdToken,
    #[error("Oauth id_token verify error.")]
    OauthIdTokenVerify,

    // 403.
    #[error("Found no validate usage plan.")]
    NoValidUsagePlan,
    #[error("Cannot identify the client IP address, unix domain sockets are not supported.")]
    ClientIpUnknown,
    #[error("Endpoint IP address is not allowed.")]
    EndpointIpNotAllowed,
    #[error("Get {0} params fail.")]
    GetParamsFailed(String),
    #[error("need header Sec-WebSocket-Key.")]
    WebSocketKeyMissing,
    #[error("need header Sec-WebSocket-Version.")]
    WebSocketVersionMissing,
    #[error("header {0} is required.")]
    HeaderParamRequired(String),
    #[error("path variable {0} is required.")]
    PathParamRequired(String),
    #[error("querystring {0} is required.")]
    QueryParamRequired(String),
    #[error("req content type need application/x-www-form-urlencoded.")]
    FormContentTypeRequired,
    #[error("body param {0} is required.")]
    BodyParamRequired(String),
    #[error("Access not authorized")]
    EiamAccessNotAuthorized,
    /// Tollgate's own: the product leaves the IP access control rejection undocumented.
    #[error("Client IP address is not allowed.")]
    ClientIpNotAllowed,

    // 404.
    #[error("Not found micro service with key.")]
    MicroServiceNotFound,
    #[error("Not Found Host.")]
    HostMissing,
    #[error("Get Host Fail.")]
    HostInvalid,
    #[error("Could not support method.")]
    MethodNotSupported,
    #[error("There is no api match host[{0}].")]
    NoApiMatchesHost(String),
    /// A custom domain whose custom path mappings do not cover the path.
    #[error("There is no api match env_mapping[{0}].")]
    NoApiMatchesEnvMapping(String),
    /// A default mapping whose first path segment is not a published environment.
    #[error("There is no api match default env_mapping[{0}].")]
    NoApiMatchesDefaultEnvMapping(String),
    /// The format seen in real traffic: no period, and the host appended.
    #[error("There is no api match uri[{uri}] host [{host}]")]
    NoApiMatchesUri { uri: String, host: String },
    #[error("Found no api.")]
    NoApiFound,
    /// The older tables' form of [`GatewayError::MethodNotAllowed`], kept for completeness.
    #[error("There is no api match method[{0}]")]
    NoApiMatchesMethod(String),
    /// The older tables' 404 form of [`GatewayError::HttpsNotAllowed`], without the period.
    #[error("Not allow use HTTPS protocol")]
    LegacyHttpsNotAllowed,
    /// The older tables' 404 form of [`GatewayError::HttpNotAllowed`], without the period.
    #[error("Not allow use HTTP protocol")]
    LegacyHttpNotAllowed,

    // 405.
    #[error("Method Not Allowed.")]
    MethodNotAllowed,

    // 413: Tollgate's own; the product documents a 16 MB upload limit but not its response.
    #[error("Request Entity Too Large.")]
    BodyTooLarge,

    // 426.
    #[error("Not allow use HTTPS protocol.")]
    HttpsNotAllowed,
    #[error("Not allow use HTTP protocol.")]
    HttpNotAllowed,
    /// Any other scheme the service does not accept (for example `ws`).
    #[error("Not allow use {0} protocol.")]
    ProtocolNotAllowed(String),

    // 429.
    #[error("API rate limit exceeded.")]
    RateLimitExceeded,
    #[error("API quota exceeded.")]
    QuotaExceeded,
    #[error("req is cross origin, api {0} need open cors flag on qcloud apigateway.")]
    CorsNotEnabled(String),

    // 481: configuration that cannot be served.
    #[error("API config error.")]
    ApiConfig,
    #[error("TSF config error.")]
    TsfConfig,
    #[error("Get location of micro service info fail.")]
    MicroServiceLocationMissing,
    #[error("Only support the map_from like method.req.{{path}}.{{}}.")]
    MicroServiceLocationMalformed,
    #[error("Found no valid cors config.")]
    CorsConfig,
    #[error("Oauth public key error.")]
    OauthPublicKey,
    #[error("Oauth id_token location forbidden.")]
    OauthIdTokenLocationForbidden,
    #[error("Oauth found no oauth config.")]
    OauthNoConfig,
    #[error("Oauth found no public key.")]
    OauthNoPublicKey,
    #[error("Mock config error.")]
    MockConfig,

    // 499: logged only; the client is gone, so nothing is sent.
    #[error("Client closed connetion.")]
    ClientClosed,

    // 500.
    #[error("Error occurred during query params.")]
    QueryParams,
    #[error("Internal Server Error.")]
    Internal,

    // 502 and 504.
    #[error("Bad Gateway.")]
    BadGateway,
    #[error("Gateway Time-out.")]
    GatewayTimeout,
}

impl GatewayError {
    /// Returns the HTTP status the product sends with this error.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        let code = match self {
            BadRequestBody => 400,
            HmacApiKeyInvalidForApi
            | HmacXDateRequired
            | HmacXDateOutOfDate
            | HmacDateRequired
            | HmacIdOrSignatureMissing
            | HmacMultipleHeader
            | HmacSignedHeaderMissing(_)
            | HmacAlgorithmNotSupported(_)
            | HmacAuthorizationFormat
            | HmacDigestMismatch
            | HmacAuthorizationHeadersInvalid
            | HmacSignatureUnverifiable
            | HmacSignatureMismatch
            | HmacAuthorizationMissing
            | AppSignatureMismatch(_)
            | OauthCallAuthServerFailed
            | OauthNoRelatedApi
            | OauthMissIdToken
            | OauthAuthorizationRequired
            | OauthAuthorizationFormat
            | OauthNoAuthorizationHeader
            | OauthNoIdToken
            | OauthIdTokenVerify => 401,
            NoValidUsagePlan
            | ClientIpUnknown
            | EndpointIpNotAllowed
            | GetParamsFailed(_)
            | WebSocketKeyMissing
            | WebSocketVersionMissing
            | HeaderParamRequired(_)
            | PathParamRequired(_)
            | QueryParamRequired(_)
            | FormContentTypeRequired
            | BodyParamRequired(_)
            | EiamAccessNotAuthorized
            | ClientIpNotAllowed => 403,
            MicroServiceNotFound
            | HostMissing
            | HostInvalid
            | MethodNotSupported
            | NoApiMatchesHost(_)
            | NoApiMatchesEnvMapping(_)
            | NoApiMatchesDefaultEnvMapping(_)
            | NoApiMatchesUri { .. }
            | NoApiFound
            | NoApiMatchesMethod(_)
            | LegacyHttpsNotAllowed
            | LegacyHttpNotAllowed => 404,
            MethodNotAllowed => 405,
            BodyTooLarge => 413,
            HttpsNotAllowed | HttpNotAllowed | ProtocolNotAllowed(_) => 426,
            RateLimitExceeded | QuotaExceeded | CorsNotEnabled(_) => 429,
            ApiConfig
            | TsfConfig
            | MicroServiceLocationMissing
            | MicroServiceLocationMalformed
            | CorsConfig
            | OauthPublicKey
            | OauthIdTokenLocationForbidden
            | OauthNoConfig
            | OauthNoPublicKey
            | MockConfig => 481,
            ClientClosed => 499,
            QueryParams | Internal => 500,
            BadGateway => 502,
            GatewayTimeout => 504,
        };
        StatusCode::from_u16(code).expect("catalog status codes are in 100..=999")
    }

    /// Renders the response body, `{"message":"..."}`, escaped as the product escapes it.
    pub fn body(&self) -> Bytes {
        let message = self.to_string();
        let mut body = String::with_capacity(message.len() + 16);
        body.push_str("{\"message\":\"");
        push_json_escaped(&mut body, &message);
        body.push_str("\"}");
        Bytes::from(body)
    }
}

/// Appends `text` as the inside of a JSON string. `/` is escaped as `\/` because the product's
/// bodies escape it, and clients that compare bytes must see the same.
fn push_json_escaped(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_escapes_slash_quote_and_controls() {
        let error = GatewayError::NoApiMatchesUri {
            uri: "/a\"b\\c\n\u{1}".into(),
            host: "h".into(),
        };
        assert_eq!(
            error.body(),
            "{\"message\":\"There is no api match uri[\\/a\\\"b\\\\c\\n\\u0001] host [h]\"}"
        );
    }

    #[test]
    fn body_is_valid_json_with_the_message() {
        let error = GatewayError::NoApiMatchesHost("x.example.com".into());
        let parsed: serde_json::Value = serde_json::from_slice(&error.body()).unwrap();
        assert_eq!(
            parsed["message"],
            "There is no api match host[x.example.com]."
        );
    }
}
