//! `gatehouse demo-client`: a registered client run from the terminal, to see what a tenant
//! issues without writing an application. It discovers the tenant, runs the grant chosen (the
//! authorization code flow with PKCE, state and nonce by default, receiving the browser's
//! callback on the loopback redirect URI it listens on), verifies the ID token and any JWT
//! access token against the tenant's published keys, calls userinfo, and uses the refresh
//! token once.

use crate::http_client::{self as http, Http};
use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

#[derive(Args, Debug)]
pub struct DemoClientArgs {
    /// The tenant's issuer.
    #[arg(
        long,
        env = "GATEHOUSE_DEMO_ISSUER",
        default_value = "http://127.0.0.1:8080/acme"
    )]
    issuer: String,
    /// The client id (an OAuthClient of that tenant).
    #[arg(long, env = "GATEHOUSE_DEMO_CLIENT_ID", default_value = "acme-spa")]
    client_id: String,
    /// The client's secret, for a confidential client (sent with HTTP Basic); none for a
    /// public one.
    #[arg(long, env = "GATEHOUSE_DEMO_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// The grant to run.
    #[arg(long, value_enum, default_value = "authorization-code")]
    grant: DemoGrant,
    /// A redirect URI registered for the client, on a loopback address: the command listens
    /// there for the browser's return (authorization code only).
    #[arg(long, default_value = "http://127.0.0.1:9999/spa")]
    redirect_uri: String,
    /// Scopes to ask for, separated by spaces.
    #[arg(long, default_value = "openid profile")]
    scope: String,
    /// The user (password grant); the password is asked for without echo on a terminal, or
    /// read from standard input.
    #[arg(long)]
    username: Option<String>,
    /// Do not use the refresh token.
    #[arg(long)]
    no_refresh: bool,
    /// How long to wait for the browser or the device's user, in seconds.
    #[arg(long, default_value_t = 300)]
    wait: u64,
    /// A PEM file of extra CA certificates for an `https` issuer.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DemoGrant {
    AuthorizationCode,
    ClientCredentials,
    Password,
    DeviceCode,
}

/// What the tenant says of itself, and how to talk to it.
struct Tenant {
    http: Http,
    issuer: String,
    metadata: Value,
    jwks: Value,
}

impl Tenant {
    fn endpoint(&self, name: &str) -> anyhow::Result<&str> {
        self.metadata[name].as_str().ok_or_else(|| {
            anyhow!(
                "the tenant's metadata has no {name}: is the grant enabled for the tenant (spec.grantTypes)?"
            )
        })
    }

    /// A token endpoint call; an OAuth error comes back as a message with its code.
    async fn token(&self, args: &DemoClientArgs, pairs: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = self.endpoint("token_endpoint")?;
        let answer = self.call(url, args, pairs).await?;
        let body = answer.json("token endpoint")?;
        if answer.status != 200 {
            bail!("the token endpoint refused: {}", oauth_error(&body));
        }
        Ok(body)
    }

    /// A form POST authenticated as the client: HTTP Basic with a secret, else `client_id`.
    async fn call(
        &self,
        url: &str,
        args: &DemoClientArgs,
        pairs: &[(&str, &str)],
    ) -> anyhow::Result<http::Answer> {
        let mut form: Vec<(&str, &str)> = pairs.to_vec();
        let basic = args
            .client_secret
            .as_deref()
            .map(|secret| (args.client_id.as_str(), secret));
        if basic.is_none() {
            form.push(("client_id", &args.client_id));
        }
        self.http.post_form(url, &form, basic).await
    }
}

fn oauth_error(body: &Value) -> String {
    let code = body["error"].as_str().unwrap_or("(no error code)");
    match body["error_description"].as_str() {
        Some(d) => format!("{code}: {d}"),
        None => code.to_string(),
    }
}

/// Prints a section: a title and indented lines.
fn section(title: &str, body: &str) -> anyhow::Result<()> {
    let mut text = format!("\n{title}\n");
    for line in body.lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    crate::cli::write_stdout(&text)
}

pub async fn run(args: DemoClientArgs) -> anyhow::Result<()> {
    let http = Http::new(args.ca_file.as_deref())?;
    let issuer = args.issuer.trim_end_matches('/').to_string();
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    let metadata = http.get(&discovery, None).await?.json("discovery")?;
    if metadata["issuer"].as_str() != Some(issuer.as_str()) {
        bail!(
            "{discovery} names the issuer {}, not {issuer}",
            metadata["issuer"]
        );
    }
    let jwks_uri = metadata["jwks_uri"]
        .as_str()
        .ok_or_else(|| anyhow!("{discovery} has no jwks_uri"))?;
    let jwks = http.get(jwks_uri, None).await?.json("jwks_uri")?;
    let tenant = Tenant {
        http,
        issuer,
        metadata,
        jwks,
    };
    let (tokens, nonce) = match args.grant {
        DemoGrant::AuthorizationCode => authorization_code(&tenant, &args).await?,
        DemoGrant::ClientCredentials => {
            let pairs = [
                ("grant_type", "client_credentials"),
                ("scope", args.scope.as_str()),
            ];
            (tenant.token(&args, &pairs).await?, None)
        }
        DemoGrant::Password => (password(&tenant, &args).await?, None),
        DemoGrant::DeviceCode => (device_code(&tenant, &args).await?, None),
    };
    show_tokens("Token response", &tokens)?;
    let access_token = tokens["access_token"].as_str().unwrap_or_default();
    if let Some(id_token) = tokens["id_token"].as_str() {
        show_jwt(&tenant, &args, "ID token", id_token, nonce.as_deref())?;
    }
    if access_token.split('.').count() == 3 {
        show_jwt(&tenant, &args, "Access token (JWT)", access_token, None)?;
    } else if !access_token.is_empty() {
        section(
            "Access token",
            "opaque: only the tenant's introspection endpoint can read it",
        )?;
    }
    let scopes = tokens["scope"].as_str().unwrap_or(&args.scope);
    if scopes.split(' ').any(|s| s == "openid")
        && let Ok(userinfo) = tenant.endpoint("userinfo_endpoint")
    {
        let answer = tenant.http.get(userinfo, Some(access_token)).await?;
        let shown = match answer.json("userinfo") {
            Ok(body) if answer.status == 200 => serde_json::to_string_pretty(&body)?,
            Ok(body) => format!("refused ({}): {}", answer.status, oauth_error(&body)),
            Err(e) => e.to_string(),
        };
        section(&format!("Userinfo ({userinfo})"), &shown)?;
    }
    if let Some(refresh_token) = tokens["refresh_token"].as_str()
        && !args.no_refresh
    {
        let pairs = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let refreshed = tenant.token(&args, &pairs).await?;
        show_tokens(
            "Refreshed (grant_type=refresh_token; with rotation the refresh token above is now spent)",
            &refreshed,
        )?;
    }
    Ok(())
}

fn show_tokens(title: &str, tokens: &Value) -> anyhow::Result<()> {
    let mut lines = String::new();
    for name in [
        "token_type",
        "expires_in",
        "scope",
        "access_token",
        "refresh_token",
        "id_token",
        "issued_token_type",
    ] {
        match &tokens[name] {
            Value::Null => {}
            Value::String(s) => {
                let _ = writeln!(lines, "{name}: {s}");
            }
            other => {
                let _ = writeln!(lines, "{name}: {other}");
            }
        }
    }
    section(title, &lines)
}

/// Verifies a JWT of the tenant (signature with its published keys, `iss`, `aud`, `exp`, and
/// the nonce sent) and prints its header and claims.
fn show_jwt(
    tenant: &Tenant,
    args: &DemoClientArgs,
    title: &str,
    token: &str,
    nonce: Option<&str>,
) -> anyhow::Result<()> {
    let claims: Value = gatehouse_core::assertion::verify_signature(token, Some(&tenant.jwks))
        .map_err(|e| {
            anyhow!("{title}: the signature does not verify with the tenant's keys: {e}")
        })?;
    let header = jsonwebtoken::decode_header(token)?;
    let mut checked = vec![format!(
        "signature ({:?}, kid {})",
        header.alg,
        header.kid.as_deref().unwrap_or("-")
    )];
    if claims["iss"].as_str() != Some(tenant.issuer.as_str()) {
        bail!("{title}: iss is {}, not {}", claims["iss"], tenant.issuer);
    }
    checked.push("iss".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now) {
        bail!("{title}: expired or without exp");
    }
    checked.push("exp".into());
    if title.starts_with("ID token") {
        let aud = &claims["aud"];
        let ours = aud.as_str() == Some(args.client_id.as_str())
            || aud
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(&args.client_id)));
        if !ours {
            bail!("{title}: aud {aud} does not name {}", args.client_id);
        }
        checked.push("aud".into());
        if let Some(sent) = nonce {
            if claims["nonce"].as_str() != Some(sent) {
                bail!("{title}: the nonce is not the one sent");
            }
            checked.push("nonce".into());
        }
    }
    section(
        &format!("{title}: verified {}", checked.join(", ")),
        &serde_json::to_string_pretty(&claims)?,
    )
}

/// The authorization code flow with PKCE (S256), state and nonce; returns the token response
/// and the nonce sent.
async fn authorization_code(
    tenant: &Tenant,
    args: &DemoClientArgs,
) -> anyhow::Result<(Value, Option<String>)> {
    let redirect: ::http::Uri = args
        .redirect_uri
        .parse()
        .with_context(|| format!("--redirect-uri {}", args.redirect_uri))?;
    let host = redirect.host().unwrap_or_default();
    if redirect.scheme_str() != Some("http") || !matches!(host, "127.0.0.1" | "localhost" | "[::1]")
    {
        bail!(
            "--redirect-uri must be a loopback http address this command can listen on (http://127.0.0.1:PORT/PATH), and registered for the client"
        );
    }
    let port = redirect.port_u16().unwrap_or(80);
    let path = redirect.path().to_string();
    let random = gatehouse_core::random::system();
    let verifier = Zeroizing::new(random.token()?);
    let state = random.id()?;
    let nonce = random.id()?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &args.client_id)
        .append_pair("redirect_uri", &args.redirect_uri)
        .append_pair("scope", &args.scope)
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &gatehouse_core::pkce::s256(&verifier))
        .append_pair("code_challenge_method", "S256");
    let url = format!(
        "{}?{}",
        tenant.endpoint("authorization_endpoint")?,
        query.finish()
    );
    let listen = if host == "[::1]" {
        format!("[::1]:{port}")
    } else {
        format!("127.0.0.1:{port}")
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {listen} for the redirect URI {}",
                args.redirect_uri
            )
        })?;
    section(
        "Open this URL in a browser and sign in (with the examples: alice / wonderland):",
        &url,
    )?;
    crate::cli::write_stdout(&format!(
        "\nWaiting up to {} s for the browser to come back to {} ...\n",
        args.wait, args.redirect_uri
    ))?;
    let params = callback(listener, &path, Duration::from_secs(args.wait)).await?;
    if params.get("state") != Some(&state) {
        bail!("the callback's state is not the one sent: refusing it (a forged or stale callback)");
    }
    if let Some(error) = params.get("error") {
        bail!(
            "the authorization server answered {error}{}",
            params
                .get("error_description")
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
    }
    let code = params
        .get("code")
        .ok_or_else(|| anyhow!("the callback has neither code nor error"))?;
    crate::cli::write_stdout("Got the authorization code; exchanging it.\n")?;
    let pairs = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", args.redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    Ok((tenant.token(args, &pairs).await?, Some(nonce)))
}

/// Serves the redirect URI until the browser comes back to it; returns the query parameters.
async fn callback(
    listener: tokio::net::TcpListener,
    path: &str,
    wait: Duration,
) -> anyhow::Result<HashMap<String, String>> {
    use axum::extract::RawQuery;
    use axum::response::Html;
    let (sender, mut received) = tokio::sync::mpsc::channel::<HashMap<String, String>>(1);
    let router = axum::Router::new().route(
        path,
        axum::routing::get(move |RawQuery(query): RawQuery| {
            let sender = sender.clone();
            async move {
                let params = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect();
                let _ = sender.try_send(params);
                Html(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gatehouse demo client</title><style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5;color:#1a1a1a}</style></head>\
                     <body><main><h1>Back in the terminal</h1><p>The demo client has what it needs; you can close this tab.</p></main></body></html>",
                )
            }
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let params = tokio::time::timeout(wait, received.recv())
        .await
        .map_err(|_| anyhow!("no browser came back within {} s", wait.as_secs()))?
        .ok_or_else(|| anyhow!("the callback listener stopped"))?;
    let _ = stop.send(());
    // The page is answered before the listener goes.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(params)
}

/// The resource owner password grant (RFC 6749 section 4.3).
async fn password(tenant: &Tenant, args: &DemoClientArgs) -> anyhow::Result<Value> {
    use std::io::{IsTerminal, Read};
    let username = args
        .username
        .as_deref()
        .ok_or_else(|| anyhow!("--grant password needs --username"))?;
    let password = if std::io::stdin().is_terminal() {
        crate::password_prompt::ask(&format!("Password of {username}: "))?
    } else {
        let mut input = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from standard input")?;
        Zeroizing::new(input.trim_end_matches(['\r', '\n']).to_string())
    };
    let pairs = [
        ("grant_type", "password"),
        ("username", username),
        ("password", password.as_str()),
        ("scope", args.scope.as_str()),
    ];
    tenant.token(args, &pairs).await
}

/// The device authorization grant (RFC 8628): shows the code to enter, then polls.
async fn device_code(tenant: &Tenant, args: &DemoClientArgs) -> anyhow::Result<Value> {
    let url = tenant.endpoint("device_authorization_endpoint")?;
    let answer = tenant
        .call(url, args, &[("scope", args.scope.as_str())])
        .await?;
    let body = answer.json("device authorization endpoint")?;
    if answer.status != 200 {
        bail!(
            "the device authorization endpoint refused: {}",
            oauth_error(&body)
        );
    }
    let device_code = body["device_code"]
        .as_str()
        .ok_or_else(|| anyhow!("no device_code in {body}"))?;
    let shown = match body["verification_uri_complete"].as_str() {
        Some(complete) => format!(
            "{complete}\n(or open {} and enter {})",
            body["verification_uri"].as_str().unwrap_or_default(),
            body["user_code"].as_str().unwrap_or_default()
        ),
        None => format!(
            "{} and enter {}",
            body["verification_uri"].as_str().unwrap_or_default(),
            body["user_code"].as_str().unwrap_or_default()
        ),
    };
    section("On another device, open:", &shown)?;
    let mut interval = body["interval"].as_u64().unwrap_or(5).max(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.wait);
    let pairs = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
    ];
    loop {
        if tokio::time::Instant::now() >= deadline {
            bail!("nobody approved the device within {} s", args.wait);
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let answer = tenant
            .call(tenant.endpoint("token_endpoint")?, args, &pairs)
            .await?;
        let body = answer.json("token endpoint")?;
        match (answer.status, body["error"].as_str()) {
            (200, _) => return Ok(body),
            (_, Some("authorization_pending")) => {}
            // RFC 8628 section 3.5: five seconds more from now on.
            (_, Some("slow_down")) => interval += 5,
            _ => bail!("the token endpoint refused: {}", oauth_error(&body)),
        }
    }
}
