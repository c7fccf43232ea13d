//! Every entry of the error catalog: its status and its exact body.

use tollgate::error::GatewayError::{self, *};

fn s(text: &str) -> String {
    text.to_string()
}

#[test]
fn every_catalog_entry_renders_exactly() {
    let cases: Vec<(GatewayError, u16, &str)> = vec![
        (BadRequestBody, 400, r#"{"message":"Bad Request."}"#),
        (
            HmacApiKeyInvalidForApi,
            401,
            r#"{"message":"HMAC apikey is invalid for API."}"#,
        ),
        (
            HmacXDateRequired,
            401,
            r#"{"message":"HMAC signature cannot be verified, a valid x-date header is required for HMAC Authentication."}"#,
        ),
        (
            HmacXDateOutOfDate,
            401,
            r#"{"message":"HMAC signature cannot be verified, the x-date header is out of date for HMAC Authentication."}"#,
        ),
        (
            HmacDateRequired,
            401,
            r#"{"message":"HMAC signature cannot be verified, a valid date or x-date header is required."}"#,
        ),
        (
            HmacIdOrSignatureMissing,
            401,
            r#"{"message":"HMAC id or signature missing."}"#,
        ),
        (
            HmacMultipleHeader,
            401,
            r#"{"message":"HMAC do not support multiple HTTP header."}"#,
        ),
        (
            HmacSignedHeaderMissing(s("source")),
            401,
            r#"{"message":"HMAC signature cannot be verified, a valid source header is required."}"#,
        ),
        (
            HmacAlgorithmNotSupported(s("hmac-md5")),
            401,
            r#"{"message":"HMAC algorithm hmac-md5 not supported."}"#,
        ),
        (
            HmacDigestMismatch,
            401,
            r#"{"message":"HMAC body digest does not match."}"#,
        ),
        (
            HmacAuthorizationFormat,
            401,
            r#"{"message":"HMAC authorization format error."}"#,
        ),
        (
            HmacAuthorizationHeadersInvalid,
            401,
            r#"{"message":"HMAC authorization headers is invalidate."}"#,
        ),
        (
            HmacSignatureUnverifiable,
            401,
            r#"{"message":"HMAC signature cannot be verified."}"#,
        ),
        (
            HmacSignatureMismatch,
            401,
            r#"{"message":"HMAC signature does not match."}"#,
        ),
        (
            HmacAuthorizationMissing,
            401,
            r#"{"message":"HMAC signature cannot be verified, a validate authorization header is required"}"#,
        ),
        (
            AppSignatureMismatch(s(
                "x-date: Thu, 11 Mar 2021 08:49:30 GMT#POST#application/json##/?p=test",
            )),
            401,
            r#"{"message":"HMAC signature does not match, Server StringToSign:x-date: Thu, 11 Mar 2021 08:49:30 GMT#POST#application\/json##\/?p=test"}"#,
        ),
        (
            OauthCallAuthServerFailed,
            401,
            r#"{"message":"Oauth call authentication server fail."}"#,
        ),
        (
            OauthNoRelatedApi,
            401,
            r#"{"message":"Oauth found no related Oauth api."}"#,
        ),
        (
            OauthMissIdToken,
            401,
            r#"{"message":"Oauth miss Oauth id_token."}"#,
        ),
        (
            OauthAuthorizationRequired,
            401,
            r#"{"message":"Oauth signature cannot be verified, a validate authorization header is required."}"#,
        ),
        (
            OauthAuthorizationFormat,
            401,
            r#"{"message":"Oauth authorization header format error."}"#,
        ),
        (
            OauthNoAuthorizationHeader,
            401,
            r#"{"message":"Oauth found no authorization header."}"#,
        ),
        (
            OauthNoIdToken,
            401,
            r#"{"message":"Oauth found no id_token."}"#,
        ),
        (
            OauthIdTokenVerify,
            401,
            r#"{"message":"Oauth id_token verify error."}"#,
        ),
        (
            NoValidUsagePlan,
            403,
            r#"{"message":"Found no validate usage plan."}"#,
        ),
        (
            ClientIpUnknown,
            403,
            r#"{"message":"Cannot identify the client IP address, unix domain sockets are not supported."}"#,
        ),
        (
            EndpointIpNotAllowed,
            403,
            r#"{"message":"Endpoint IP address is not allowed."}"#,
        ),
        (
            GetParamsFailed(s("page")),
            403,
            r#"{"message":"Get page params fail."}"#,
        ),
        (
            WebSocketKeyMissing,
            403,
            r#"{"message":"need header Sec-WebSocket-Key."}"#,
        ),
        (
            WebSocketVersionMissing,
            403,
            r#"{"message":"need header Sec-WebSocket-Version."}"#,
        ),
        (
            HeaderParamRequired(s("x-tenant")),
            403,
            r#"{"message":"header x-tenant is required."}"#,
        ),
        (
            PathParamRequired(s("id")),
            403,
            r#"{"message":"path variable id is required."}"#,
        ),
        (
            QueryParamRequired(s("page")),
            403,
            r#"{"message":"querystring page is required."}"#,
        ),
        (
            FormContentTypeRequired,
            403,
            r#"{"message":"req content type need application\/x-www-form-urlencoded."}"#,
        ),
        (
            BodyParamRequired(s("name")),
            403,
            r#"{"message":"body param name is required."}"#,
        ),
        (
            EiamAccessNotAuthorized,
            403,
            r#"{"message":"Access not authorized"}"#,
        ),
        (
            ClientIpNotAllowed,
            403,
            r#"{"message":"Client IP address is not allowed."}"#,
        ),
        (
            MicroServiceNotFound,
            404,
            r#"{"message":"Not found micro service with key."}"#,
        ),
        (HostMissing, 404, r#"{"message":"Not Found Host."}"#),
        (HostInvalid, 404, r#"{"message":"Get Host Fail."}"#),
        (
            MethodNotSupported,
            404,
            r#"{"message":"Could not support method."}"#,
        ),
        (
            NoApiMatchesHost(s("a.example.com")),
            404,
            r#"{"message":"There is no api match host[a.example.com]."}"#,
        ),
        (
            NoApiMatchesEnvMapping(s("mypath")),
            404,
            r#"{"message":"There is no api match env_mapping[mypath]."}"#,
        ),
        (
            NoApiMatchesDefaultEnvMapping(s("dev")),
            404,
            r#"{"message":"There is no api match default env_mapping[dev]."}"#,
        ),
        (
            NoApiMatchesUri {
                uri: s("/api/v1/tool/123/ico"),
                host: s("service-asoj98o0-1251762227.ap-guangzhou.apigateway.myqcloud.com"),
            },
            404,
            r#"{"message":"There is no api match uri[\/api\/v1\/tool\/123\/ico] host [service-asoj98o0-1251762227.ap-guangzhou.apigateway.myqcloud.com]"}"#,
        ),
        (NoApiFound, 404, r#"{"message":"Found no api."}"#),
        (
            NoApiMatchesMethod(s("PUT")),
            404,
            r#"{"message":"There is no api match method[PUT]"}"#,
        ),
        (
            LegacyHttpsNotAllowed,
            404,
            r#"{"message":"Not allow use HTTPS protocol"}"#,
        ),
        (
            LegacyHttpNotAllowed,
            404,
            r#"{"message":"Not allow use HTTP protocol"}"#,
        ),
        (
            MethodNotAllowed,
            405,
            r#"{"message":"Method Not Allowed."}"#,
        ),
        (
            BodyTooLarge,
            413,
            r#"{"message":"Request Entity Too Large."}"#,
        ),
        (
            HttpsNotAllowed,
            426,
            r#"{"message":"Not allow use HTTPS protocol."}"#,
        ),
        (
            HttpNotAllowed,
            426,
            r#"{"message":"Not allow use HTTP protocol."}"#,
        ),
        (
            ProtocolNotAllowed(s("ws")),
            426,
            r#"{"message":"Not allow use ws protocol."}"#,
        ),
        (
            RateLimitExceeded,
            429,
            r#"{"message":"API rate limit exceeded."}"#,
        ),
        (QuotaExceeded, 429, r#"{"message":"API quota exceeded."}"#),
        (
            CorsNotEnabled(s("/user")),
            429,
            r#"{"message":"req is cross origin, api \/user need open cors flag on qcloud apigateway."}"#,
        ),
        (ApiConfig, 481, r#"{"message":"API config error."}"#),
        (TsfConfig, 481, r#"{"message":"TSF config error."}"#),
        (
            MicroServiceLocationMissing,
            481,
            r#"{"message":"Get location of micro service info fail."}"#,
        ),
        (
            MicroServiceLocationMalformed,
            481,
            r#"{"message":"Only support the map_from like method.req.{path}.{}."}"#,
        ),
        (
            CorsConfig,
            481,
            r#"{"message":"Found no valid cors config."}"#,
        ),
        (
            OauthPublicKey,
            481,
            r#"{"message":"Oauth public key error."}"#,
        ),
        (
            OauthIdTokenLocationForbidden,
            481,
            r#"{"message":"Oauth id_token location forbidden."}"#,
        ),
        (
            OauthNoConfig,
            481,
            r#"{"message":"Oauth found no oauth config."}"#,
        ),
        (
            OauthNoPublicKey,
            481,
            r#"{"message":"Oauth found no public key."}"#,
        ),
        (MockConfig, 481, r#"{"message":"Mock config error."}"#),
        (
            ClientClosed,
            499,
            r#"{"message":"Client closed connetion."}"#,
        ),
        (
            QueryParams,
            500,
            r#"{"message":"Error occurred during query params."}"#,
        ),
        (Internal, 500, r#"{"message":"Internal Server Error."}"#),
        (BadGateway, 502, r#"{"message":"Bad Gateway."}"#),
        (GatewayTimeout, 504, r#"{"message":"Gateway Time-out."}"#),
    ];
    for (error, status, body) in &cases {
        assert_eq!(error.status().as_u16(), *status, "{error:?}");
        assert_eq!(error.body(), body.as_bytes(), "{error:?}");
    }
    assert_eq!(
        cases.len(),
        72,
        "a catalog entry is missing from this table"
    );
}

/// Fails to compile when a catalog entry is added, as a reminder to add it to the table above.
#[allow(dead_code)]
fn table_covers(error: GatewayError) {
    match error {
        BadRequestBody
        | HmacApiKeyInvalidForApi
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
        | OauthIdTokenVerify
        | NoValidUsagePlan
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
        | ClientIpNotAllowed
        | MicroServiceNotFound
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
        | LegacyHttpNotAllowed
        | MethodNotAllowed
        | BodyTooLarge
        | HttpsNotAllowed
        | HttpNotAllowed
        | ProtocolNotAllowed(_)
        | RateLimitExceeded
        | QuotaExceeded
        | CorsNotEnabled(_)
        | ApiConfig
        | TsfConfig
        | MicroServiceLocationMissing
        | MicroServiceLocationMalformed
        | CorsConfig
        | OauthPublicKey
        | OauthIdTokenLocationForbidden
        | OauthNoConfig
        | OauthNoPublicKey
        | MockConfig
        | ClientClosed
        | QueryParams
        | Internal
        | BadGateway
        | GatewayTimeout => {}
    }
}
