//! Every malformed or refused token request gets the exact RFC 6749 section 5.2 error: status,
//! `error` code, `WWW-Authenticate` on 401, `Cache-Control: no-store`, and never a 500.

mod support;

use support::*;

struct Case {
    name: &'static str,
    authorization: Option<String>,
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    error: &'static str,
}

fn case(
    name: &'static str,
    authorization: Option<String>,
    body: String,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        authorization,
        content_type: Some("application/x-www-form-urlencoded"),
        body,
        status,
        error,
    }
}

#[tokio::test]
async fn malformed_and_refused_requests_get_their_rfc_error() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let url = g.endpoint("acme", "token_endpoint").await;
    let good = || Some(basic("acme-billing", BILLING_SECRET));
    let cc = form(&[("grant_type", "client_credentials")]);
    let cases = vec![
        case(
            "missing grant_type",
            good(),
            form(&[("scope", "billing.read")]),
            400,
            "invalid_request",
        ),
        case(
            "repeated parameter",
            good(),
            "grant_type=client_credentials&scope=billing.read&scope=billing.write".into(),
            400,
            "invalid_request",
        ),
        case(
            "repeated grant_type",
            good(),
            "grant_type=client_credentials&grant_type=client_credentials".into(),
            400,
            "invalid_request",
        ),
        case(
            "unknown grant",
            good(),
            form(&[("grant_type", "urn:example:teleport")]),
            400,
            "unsupported_grant_type",
        ),
        case(
            "implicit is not a token grant",
            good(),
            form(&[("grant_type", "implicit")]),
            400,
            "unsupported_grant_type",
        ),
        case(
            "grant the tenant does not enable",
            good(),
            form(&[
                ("grant_type", "password"),
                ("username", "a"),
                ("password", "b"),
            ]),
            400,
            "unsupported_grant_type",
        ),
        case(
            "grant the client may not use",
            Some(basic("acme-limited", "limited-secret")),
            cc.clone(),
            400,
            "unauthorized_client",
        ),
        Case {
            content_type: Some("application/json"),
            ..case(
                "JSON body",
                good(),
                r#"{"grant_type":"client_credentials"}"#.into(),
                400,
                "invalid_request",
            )
        },
        Case {
            content_type: None,
            ..case(
                "no content type",
                good(),
                cc.clone(),
                400,
                "invalid_request",
            )
        },
        case(
            "Basic header not base64",
            Some("Basic %%%".into()),
            cc.clone(),
            401,
            "invalid_client",
        ),
        case(
            "Basic header without colon",
            Some("Basic YWNtZS1iaWxsaW5n".into()),
            cc.clone(),
            401,
            "invalid_client",
        ),
        case(
            "other auth scheme",
            Some("Bearer abc".into()),
            cc.clone(),
            401,
            "invalid_client",
        ),
        case(
            "no client authentication",
            None,
            cc.clone(),
            401,
            "invalid_client",
        ),
        case(
            "unknown client",
            Some(basic("nobody", "x")),
            cc.clone(),
            401,
            "invalid_client",
        ),
        case(
            "wrong secret",
            Some(basic("acme-billing", "wrong")),
            cc.clone(),
            401,
            "invalid_client",
        ),
        case(
            "secret not form-encoded in Basic",
            Some(format!(
                "Basic {}",
                base64_plain("acme-billing", BILLING_SECRET)
            )),
            cc.clone(),
            401,
            "invalid_client",
        ),
        case(
            "two authentication methods",
            good(),
            form(&[
                ("grant_type", "client_credentials"),
                ("client_secret", BILLING_SECRET),
            ]),
            400,
            "invalid_request",
        ),
        case(
            "client_secret without client_id",
            None,
            form(&[("grant_type", "client_credentials"), ("client_secret", "x")]),
            400,
            "invalid_request",
        ),
        case(
            "scope not allowed for the client",
            good(),
            form(&[("grant_type", "client_credentials"), ("scope", "admin")]),
            400,
            "invalid_scope",
        ),
        case(
            "malformed scope",
            good(),
            form(&[
                ("grant_type", "client_credentials"),
                ("scope", "billing\\read"),
            ]),
            400,
            "invalid_scope",
        ),
        case(
            "resource not allowed",
            good(),
            form(&[
                ("grant_type", "client_credentials"),
                ("resource", "https://evil.example.com"),
            ]),
            400,
            "invalid_target",
        ),
        case(
            "resource with fragment",
            good(),
            form(&[
                ("grant_type", "client_credentials"),
                ("resource", "https://billing.example.com#x"),
            ]),
            400,
            "invalid_target",
        ),
        case(
            "oversized body",
            good(),
            format!(
                "grant_type=client_credentials&pad={}",
                "x".repeat(70 * 1024)
            ),
            413,
            "invalid_request",
        ),
        case(
            "private_key_jwt not available",
            None,
            form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "acme-billing"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", "a.b.c"),
            ]),
            401,
            "invalid_client",
        ),
    ];
    let mut failures = Vec::new();
    for c in cases {
        let r = post_raw(
            &url,
            c.authorization.as_deref(),
            c.content_type,
            c.body.clone(),
        )
        .await;
        let ok = r.status == c.status
            && r.error() == c.error
            && r.body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
            && r.headers
                .get("cache-control")
                .is_some_and(|v| v == "no-store")
            && (r.status != 401
                || r.headers
                    .get("www-authenticate")
                    .is_some_and(|v| v.to_str().unwrap().starts_with("Basic")));
        if !ok {
            failures.push(format!(
                "{}: expected {} {}, got {} {} {:?}",
                c.name,
                c.status,
                c.error,
                r.status,
                r.body,
                r.headers.get("www-authenticate")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn base64_plain(id: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

#[tokio::test]
async fn other_endpoints_and_methods_answer_precisely() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let client = reqwest::Client::new();
    // Unknown tenant: 404 with an OAuth-shaped body.
    let r = post_form(
        &format!("{}/nope/oauth2/token", g.base),
        Some(&basic("a", "b")),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!((r.status, r.error()), (404, "invalid_request"));
    assert_eq!(
        reqwest::get(format!(
            "{}/.well-known/oauth-authorization-server/nope",
            g.base
        ))
        .await
        .unwrap()
        .status(),
        404
    );
    // The token endpoint takes POST only (RFC 6749 section 3.2).
    let token_endpoint = g.endpoint("acme", "token_endpoint").await;
    assert_eq!(
        client.get(&token_endpoint).send().await.unwrap().status(),
        405
    );
    // Introspection and revocation need client authentication and a token.
    let introspection = g.endpoint("acme", "introspection_endpoint").await;
    let r = post_form(&introspection, None, &form(&[("token", "x")])).await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
    let r = post_form(
        &introspection,
        Some(&basic("acme-billing", BILLING_SECRET)),
        "",
    )
    .await;
    assert_eq!((r.status, r.error()), (400, "invalid_request"));
    let revocation = g.endpoint("acme", "revocation_endpoint").await;
    let r = post_form(
        &revocation,
        Some(&basic("acme-billing", "wrong")),
        &form(&[("token", "x")]),
    )
    .await;
    assert_eq!((r.status, r.error()), (401, "invalid_client"));
    // Garbage paths are a plain 404, not a 500.
    assert_eq!(
        client
            .get(format!("{}/acme/../../etc/passwd", g.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

/// Deterministic pseudo-random input: arbitrary parameters, values, encodings and headers
/// never produce a 5xx, a panic or a non-JSON error.
#[tokio::test]
async fn arbitrary_input_never_produces_a_server_error() {
    let redis = RedisServer::start();
    let g = Gatehouse::start(&redis.url(), &fixtures());
    let urls = [
        g.endpoint("acme", "token_endpoint").await,
        g.endpoint("acme", "introspection_endpoint").await,
        g.endpoint("acme", "revocation_endpoint").await,
        g.endpoint("globex", "token_endpoint").await,
    ];
    let names = [
        "grant_type",
        "client_id",
        "client_secret",
        "scope",
        "resource",
        "token",
        "token_type_hint",
        "client_assertion",
        "x",
        "",
    ];
    let values = [
        "client_credentials",
        "acme-billing",
        "globex-ops",
        "%",
        "%zz",
        "%00",
        "\u{1F600}",
        "a.b.c",
        "eyJ.eyJ.sig",
        "billing.read",
        " ",
        "+",
        "=",
        "&",
    ];
    let auths = [
        String::new(),
        basic("acme-billing", BILLING_SECRET),
        basic("globex-ops", "globex-secret"),
        "Basic".into(),
        "Basic =".into(),
        "Basic Og==".into(),
        "basic YTpi".into(),
        "Digest x".into(),
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % n as u64).unwrap()
    };
    let mut bad = Vec::new();
    for i in 0..400 {
        let mut body = String::new();
        for _ in 0..next(6) {
            if next(10) == 0 {
                body.push_str(&"%".repeat(next(5)));
                body.push('&');
                continue;
            }
            let raw = next(4) == 0;
            let (k, v) = (names[next(names.len())], values[next(values.len())]);
            if raw {
                body.push_str(k);
                body.push('=');
                body.push_str(v);
                body.push('&');
            } else {
                body.push_str(&form(&[(k, v)]));
                body.push('&');
            }
        }
        let auth = &auths[next(auths.len())];
        let content_type = match next(8) {
            0 => None,
            1 => Some("text/plain"),
            2 => Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
            _ => Some("application/x-www-form-urlencoded"),
        };
        let url = &urls[next(urls.len())];
        let r = post_raw(
            url,
            (!auth.is_empty()).then_some(auth.as_str()),
            content_type,
            body.clone(),
        )
        .await;
        let well_formed = match r.status {
            200 => true,
            400 | 401 => !r.error().starts_with('<'),
            _ => false,
        };
        if !well_formed {
            bad.push(format!(
                "#{i} {url} auth={auth:?} ct={content_type:?} body={body:?} -> {} {}",
                r.status, r.body
            ));
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
    assert!(!g.stderr().contains("panicked"), "a handler panicked");
}
