//! Reading a trusted issuer's public keys over the network, with the limits a controller on a
//! shared cluster needs: `https` only (public roots, plus a private CA when configured), no
//! private, loopback or link-local address unless the operator admits them (checked on the
//! address actually connected to, for the URL the Tenant names, a discovery document's
//! `jwks_uri` and every redirect alike), at most [`MAX_REDIRECTS`] redirects, [`MAX_BODY`]
//! bytes per document, and one deadline for the whole read.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Largest discovery document or JWK Set read.
pub const MAX_BODY: usize = 256 * 1024;
/// Redirects followed per document.
pub const MAX_REDIRECTS: usize = 3;
/// Most keys a JWK Set may hold.
pub const MAX_KEYS: usize = 100;
/// The deadline for reading one issuer's keys (discovery, redirects and the JWK Set).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one address to accept a connection, so that an address that drops
/// packets leaves time for the host's next one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {why}")]
    Url { url: String, why: String },
    #[error(
        "{url} resolves to {address}, a private, loopback or link-local address (the operator's --allow-private-issuer-addresses admits them)"
    )]
    PrivateAddress { url: String, address: IpAddr },
    #[error("{url}: {why}")]
    Connect { url: String, why: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: String },
    #[error("{url}: the document is larger than {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url}: {why}")]
    Document { url: String, why: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("reading the CA file {path}: {why}")]
    CaFile { path: String, why: String },
}

/// What one read found.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    /// Where the keys were read (after discovery and redirects).
    pub jwks_uri: String,
    /// The JWK Set.
    pub jwks: Value,
}

/// The operator's reader of trusted issuers' keys.
#[derive(Clone)]
pub struct Fetcher {
    tls: TlsConnector,
    allow_private: bool,
    timeout: Duration,
}

impl Fetcher {
    /// Trusts the public web roots, and the certificates of `ca_file` (PEM) when given.
    ///
    /// # Errors
    /// The CA file cannot be read or holds no certificate.
    pub fn new(ca_file: Option<&Path>, allow_private: bool) -> Result<Self, FetchError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            let ca_error = |why: String| FetchError::CaFile {
                path: path.display().to_string(),
                why,
            };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".to_string()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::CaFile {
                path: String::new(),
                why: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Fetcher {
            tls: TlsConnector::from(Arc::new(config)),
            allow_private,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same reader with another deadline (tests).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reads the keys of `issuer`: from `jwks_uri`, or from the `jwks_uri` its discovery
    /// document names (whose `issuer` must be `issuer` exactly).
    ///
    /// # Errors
    /// Why no usable JWK Set was read.
    pub async fn keys(&self, issuer: &str, jwks_uri: Option<&str>) -> Result<Fetched, FetchError> {
        tokio::time::timeout(self.timeout, self.keys_unbounded(issuer, jwks_uri))
            .await
            .map_err(|_| FetchError::Timeout(self.timeout))?
    }

    async fn keys_unbounded(
        &self,
        issuer: &str,
        jwks_uri: Option<&str>,
    ) -> Result<Fetched, FetchError> {
        let jwks_uri = match jwks_uri {
            Some(uri) => uri.to_string(),
            None => self.discover(issuer).await?,
        };
        let published = self.json(&jwks_uri).await?;
        let jwks = signing_keys(&published).map_err(|why| FetchError::Document {
            url: jwks_uri.clone(),
            why,
        })?;
        Ok(Fetched { jwks_uri, jwks })
    }

    /// The `jwks_uri` of `issuer`'s discovery document, whose `issuer` must be `issuer`.
    async fn discover(&self, issuer: &str) -> Result<String, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self.json(&url).await?;
        let document = |why: &str| FetchError::Document {
            url: url.clone(),
            why: why.to_string(),
        };
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(document(
                "its issuer is not the trusted issuer's (OpenID Connect Discovery section 4.3)",
            ));
        }
        Ok(doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| document("it names no jwks_uri"))?
            .to_string())
    }

    /// GETs a JSON document, following redirects.
    async fn json(&self, url: &str) -> Result<Value, FetchError> {
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            match self.get(&current).await? {
                Answer::Body(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|e| FetchError::Document {
                        url: current,
                        why: format!("not JSON: {e}"),
                    });
                }
                Answer::Redirect(location) => current = resolve(&current, &location)?,
            }
        }
        Err(FetchError::TooManyRedirects {
            url: url.to_string(),
        })
    }

    /// One GET over a fresh connection.
    async fn get(&self, url: &str) -> Result<Answer, FetchError> {
        let target = Target::parse(url)?;
        let stream = self.connect(&target, url).await?;
        let name = ServerName::try_from(target.host.clone()).map_err(|e| FetchError::Url {
            url: url.to_string(),
            why: e.to_string(),
        })?;
        let connect_error = |why: String| FetchError::Connect {
            url: url.to_string(),
            why,
        };
        let tls = self
            .tls
            .connect(name, stream)
            .await
            .map_err(|e| connect_error(format!("TLS: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let request = hyper::Request::get(target.path_and_query.as_str())
            .header(hyper::header::HOST, target.authority.as_str())
            .header(
                hyper::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .header(hyper::header::USER_AGENT, "gatehouse")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Url {
                url: url.to_string(),
                why: e.to_string(),
            })?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| connect_error(e.to_string()));
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                driver.abort();
                return Err(e);
            }
        };
        let status = response.status();
        let answer = if status.is_redirection() {
            let location = response
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| FetchError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                })?;
            Ok(Answer::Redirect(location.to_string()))
        } else if status == hyper::StatusCode::OK {
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge {
                            url: url.to_string(),
                        }
                    } else {
                        connect_error(e.to_string())
                    }
                })?;
            Ok(Answer::Body(body.to_bytes()))
        } else {
            Err(FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            })
        };
        driver.abort();
        answer
    }

    /// Resolves the host and connects to the first address allowed.
    async fn connect(
        &self,
        target: &Target,
        url: &str,
    ) -> Result<tokio::net::TcpStream, FetchError> {
        let connect_error = |why: String| FetchError::Connect {
            url: url.to_string(),
            why,
        };
        let addresses: Vec<SocketAddr> =
            tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|e| connect_error(format!("resolving {}: {e}", target.host)))?
                .collect();
        let mut last = None;
        for address in addresses {
            if !self.allow_private && !is_public(address.ip()) {
                last = Some(FetchError::PrivateAddress {
                    url: url.to_string(),
                    address: address.ip(),
                });
                continue;
            }
            match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
                .await
            {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last = Some(connect_error(format!("connecting to {address}: {e}"))),
                Err(_) => {
                    last = Some(connect_error(format!(
                        "connecting to {address}: no answer within {CONNECT_TIMEOUT:?}"
                    )));
                }
            }
        }
        Err(last.unwrap_or_else(|| connect_error(format!("{} has no address", target.host))))
    }
}

enum Answer {
    Body(Bytes),
    Redirect(String),
}

/// The parts of an `https` URL a request needs.
struct Target {
    host: String,
    port: u16,
    authority: String,
    path_and_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Self, FetchError> {
        let bad = |why: &str| FetchError::Url {
            url: url.to_string(),
            why: why.to_string(),
        };
        let uri: hyper::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("only https URLs are read"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information is not allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        Ok(Target {
            host,
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_string(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

/// A redirect's `Location`, absolute or relative to `base`; only `https`.
fn resolve(base: &str, location: &str) -> Result<String, FetchError> {
    let absolute = if location.starts_with("https://") || location.starts_with("http://") {
        location.to_string()
    } else if location.starts_with('/') {
        let target = Target::parse(base)?;
        format!("https://{}{location}", target.authority)
    } else {
        return Err(FetchError::Url {
            url: location.to_string(),
            why: "a redirect must be absolute or absolute-path".to_string(),
        });
    };
    if !absolute.starts_with("https://") {
        return Err(FetchError::Url {
            url: absolute,
            why: "redirect to a URL that is not https".to_string(),
        });
    }
    Ok(absolute)
}

/// The signing keys of a JWK Set that Gatehouse can verify with: a set of at most
/// [`MAX_KEYS`] keys, each an object with a `kty` and no private half. Encryption keys (`use`:
/// `enc`), symmetric keys and keys of algorithms Gatehouse does not verify are left out, so
/// that every bound client's registration carries only what can verify a token.
fn signing_keys(jwks: &Value) -> Result<Value, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWK Set (no keys array)")?;
    if keys.len() > MAX_KEYS {
        return Err(format!("more than {MAX_KEYS} keys"));
    }
    if keys
        .iter()
        .any(|k| k.get("kty").and_then(Value::as_str).is_none())
    {
        return Err("a key without kty".to_string());
    }
    if keys.iter().any(|k| k.get("d").is_some()) {
        return Err("it holds a private key".to_string());
    }
    let usable: Vec<Value> = keys
        .iter()
        .filter(|k| k.get("use").and_then(Value::as_str) != Some("enc"))
        .filter(|k| gatehouse_core::assertion::unusable_public_jwk(k).is_none())
        .cloned()
        .collect();
    if usable.is_empty() && !keys.is_empty() {
        return Err(
            "no key Gatehouse can verify tokens with (ES256, ES384, EdDSA, RS256, PS256 public keys)"
                .to_string(),
        );
    }
    Ok(serde_json::json!({ "keys": usable }))
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, unique
/// local), link-local (cloud metadata services live there), shared (RFC 6598), unspecified,
/// broadcast, multicast or documentation.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            let first = seg[0];
            // IPv4 inside IPv6: NAT64 (64:ff9b::/96), 6to4 (2002::/16), IPv4-compatible (::a.b.c.d).
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    (hi & 0xff) as u8,
                    (lo >> 8) as u8,
                    (lo & 0xff) as u8,
                ))
            };
            if first == 0x0064 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
                return is_public(embedded(seg[6], seg[7]));
            }
            if first == 0x2002 {
                return is_public(embedded(seg[1], seg[2]));
            }
            if seg[..6] == [0, 0, 0, 0, 0, 0] {
                return false;
            }
            !(v6.is_loopback()
                || (first & 0xffc0) == 0xfec0
                || (first == 0x0100 && seg[1..4] == [0, 0, 0])
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_testkit::https::{HttpsServer, Reply};
    use serde_json::json;

    fn jwks() -> Value {
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "AA", "y": "AA"}]})
    }

    /// An issuer at the server's root with discovery and keys.
    fn issuer() -> (HttpsServer, String) {
        let server = HttpsServer::start();
        let issuer = server.url("");
        server.set(
            "/.well-known/openid-configuration",
            Reply::json(&json!({"issuer": issuer, "jwks_uri": server.url("/keys")})),
        );
        server.set("/keys", Reply::json(&jwks()));
        (server, issuer)
    }

    fn fetcher(server: &HttpsServer) -> Fetcher {
        Fetcher::new(Some(&server.ca_file()), true).unwrap()
    }

    #[tokio::test]
    async fn keys_are_read_through_discovery_or_from_the_named_jwks_uri() {
        let (server, issuer) = issuer();
        let f = fetcher(&server);
        let read = f.keys(&issuer, None).await.unwrap();
        assert_eq!(read.jwks_uri, server.url("/keys"));
        assert_eq!(read.jwks, jwks());
        server.set("/other", Reply::json(&jwks()));
        let read = f.keys(&issuer, Some(&server.url("/other"))).await.unwrap();
        assert_eq!(read.jwks_uri, server.url("/other"));
    }

    #[tokio::test]
    async fn a_private_address_needs_the_operators_permission() {
        let (server, issuer) = issuer();
        let strict = Fetcher::new(Some(&server.ca_file()), false).unwrap();
        let e = strict.keys(&issuer, None).await.unwrap_err();
        assert!(matches!(e, FetchError::PrivateAddress { .. }), "{e}");
        assert!(
            e.to_string().contains("--allow-private-issuer-addresses"),
            "{e}"
        );
        assert_eq!(server.hits("/.well-known/openid-configuration"), 0);
    }

    #[tokio::test]
    async fn an_unknown_ca_plain_http_and_wrong_documents_are_refused() {
        let (server, issuer) = issuer();
        // The public roots only: the test CA is nobody.
        let public_only = Fetcher::new(None, true).unwrap();
        let e = public_only.keys(&issuer, None).await.unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        let f = fetcher(&server);
        let plain = issuer.replace("https://", "http://");
        assert!(matches!(
            f.keys(&plain, Some(&format!("{plain}/keys")))
                .await
                .unwrap_err(),
            FetchError::Url { .. }
        ));
        // Discovery naming another issuer.
        server.set(
            "/.well-known/openid-configuration",
            Reply::json(
                &json!({"issuer": "https://evil.example", "jwks_uri": server.url("/keys")}),
            ),
        );
        let e = f.keys(&issuer, None).await.unwrap_err();
        assert!(e.to_string().contains("not the trusted issuer's"), "{e}");
        // Not a JWK Set, a private key, an error status, not JSON.
        for (reply, says) in [
            (Reply::json(&json!({"key": []})), "no keys array"),
            (
                Reply::json(&json!({"keys": [{"kty": "EC", "d": "x"}]})),
                "private key",
            ),
            (Reply::status(500), "HTTP 500"),
            (
                Reply {
                    body: b"<html>".to_vec(),
                    ..Reply::status(200)
                },
                "not JSON",
            ),
        ] {
            server.set("/bad", reply);
            let e = f
                .keys(&issuer, Some(&server.url("/bad")))
                .await
                .unwrap_err();
            assert!(e.to_string().contains(says), "{e} (wanted {says})");
        }
    }

    #[tokio::test]
    async fn redirects_are_followed_on_https_only_and_not_forever() {
        let (server, issuer) = issuer();
        let f = fetcher(&server);
        server.set("/moved", Reply::redirect("/keys"));
        let read = f.keys(&issuer, Some(&server.url("/moved"))).await.unwrap();
        assert_eq!(read.jwks, jwks());
        server.set(
            "/downgrade",
            Reply::redirect(&server.url("/keys").replace("https", "http")),
        );
        let e = f
            .keys(&issuer, Some(&server.url("/downgrade")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not https"), "{e}");
        server.set("/loop", Reply::redirect("/loop"));
        assert!(matches!(
            f.keys(&issuer, Some(&server.url("/loop")))
                .await
                .unwrap_err(),
            FetchError::TooManyRedirects { .. }
        ));
        assert_eq!(server.hits("/loop"), MAX_REDIRECTS + 1);
    }

    #[tokio::test]
    async fn huge_and_slow_answers_are_cut() {
        let (server, issuer) = issuer();
        let f = fetcher(&server).with_timeout(Duration::from_millis(500));
        let huge = json!({"keys": [], "padding": "x".repeat(MAX_BODY)});
        server.set("/huge", Reply::json(&huge));
        assert!(matches!(
            f.keys(&issuer, Some(&server.url("/huge")))
                .await
                .unwrap_err(),
            FetchError::TooLarge { .. }
        ));
        server.set("/slow", Reply::json(&jwks()).after(Duration::from_secs(3)));
        let started = std::time::Instant::now();
        assert!(matches!(
            f.keys(&issuer, Some(&server.url("/slow")))
                .await
                .unwrap_err(),
            FetchError::Timeout(_)
        ));
        assert!(started.elapsed() < Duration::from_secs(2));
        server.set_down(true);
        assert!(f.keys(&issuer, None).await.is_err());
    }

    #[test]
    fn private_loopback_link_local_and_mapped_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a00:1::1",
            "::10.0.0.1",
            "fec0::1",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "140.82.112.3",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn redirects_stay_on_https() {
        assert_eq!(
            resolve("https://a.example/x", "/jwks").unwrap(),
            "https://a.example/jwks"
        );
        assert!(resolve("https://a.example/x", "http://a.example/jwks").is_err());
        assert!(resolve("https://a.example/x", "jwks").is_err());
    }

    #[test]
    fn a_jwk_set_is_checked_for_shape_and_keeps_only_signing_keys() {
        use serde_json::json;
        let ec = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "a",
            "x": "WbbxTWsp0Qdp7EdMkPw2ci6yl7LqKxhuS7jsxh6EJ8k",
            "y": "mzZoZhKZqW_FbNGQaqqgh-Iau8JyXc0vD7U6m1BSDIo"});
        let enc = json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"});
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        let odd = json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"});
        assert_eq!(
            signing_keys(&json!({"keys": [ec, enc, oct, odd]})).unwrap(),
            json!({"keys": [ec]})
        );
        assert_eq!(
            signing_keys(&json!({"keys": []})).unwrap(),
            json!({"keys": []})
        );
        assert!(
            signing_keys(&json!({"keys": [enc]}))
                .unwrap_err()
                .contains("no key")
        );
        assert!(signing_keys(&json!({"key": []})).is_err());
        assert!(signing_keys(&json!({"keys": [{"x": 1}]})).is_err());
        assert!(signing_keys(&json!({"keys": [{"kty": "EC", "d": "secret"}]})).is_err());
    }
}
