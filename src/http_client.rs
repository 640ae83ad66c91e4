//! The few HTTP calls the binary makes itself (the demo client's discovery, keys, token and
//! userinfo calls; trace export), over plain `http` or over `https` with the web's roots (plus
//! a CA file).

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Longest wait for one call.
const TIMEOUT: Duration = Duration::from_secs(15);

pub struct Http {
    tls: TlsConnector,
}

/// An answer: status and body.
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, or a message naming the call and what came back.
    pub fn json(&self, what: &str) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|_| {
            anyhow!(
                "{what}: status {} with a body that is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl Http {
    pub fn new(ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_file {
            for cert in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading --ca-file {}", path.display()))?
            {
                roots
                    .add(cert.with_context(|| format!("--ca-file {}", path.display()))?)
                    .with_context(|| format!("--ca-file {}", path.display()))?;
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Http {
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    pub async fn get(&self, url: &str, bearer: Option<&str>) -> anyhow::Result<Answer> {
        let mut request = Request::get(url).header(hyper::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(url, request.body(Full::new(Bytes::new()))?).await
    }

    pub async fn post_form(
        &self,
        url: &str,
        pairs: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> anyhow::Result<Answer> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            form.append_pair(k, v);
        }
        let mut request = Request::post(url)
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        if let Some((id, secret)) = basic {
            // RFC 6749 section 2.3.1: each part form-encoded before base64.
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{}", enc(id), enc(secret)),
            );
            request = request.header(hyper::header::AUTHORIZATION, format!("Basic {credentials}"));
        }
        self.send(url, request.body(Full::new(Bytes::from(form.finish())))?)
            .await
    }

    /// A JSON document POSTed with extra headers (trace export).
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        let mut request =
            Request::post(url).header(hyper::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = serde_json::to_vec(body)?;
        self.send(url, request.body(Full::new(Bytes::from(body)))?)
            .await
    }

    async fn send(&self, url: &str, mut request: Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        tokio::time::timeout(TIMEOUT, async {
            let uri = request.uri().clone();
            let host = uri.host().ok_or_else(|| anyhow!("{url}: no host"))?;
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => bail!("{url}: only http and https URLs"),
            };
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
            let path = uri
                .path_and_query()
                .map_or("/".to_string(), ToString::to_string);
            *request.uri_mut() = path.parse()?;
            request
                .headers_mut()
                .insert(hyper::header::HOST, authority.parse()?);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tcp = tokio::net::TcpStream::connect((host, port))
                .await
                .with_context(|| format!("connecting to {authority}"))?;
            let response = if https {
                let name = ServerName::try_from(host.to_string())?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS with {authority}"))?;
                exchange(TokioIo::new(tls), request).await?
            } else {
                exchange(TokioIo::new(tcp), request).await?
            };
            Ok(response)
        })
        .await
        .map_err(|_| anyhow!("{url}: no answer within {TIMEOUT:?}"))?
        .with_context(|| format!("calling {url}"))
    }
}

async fn exchange<T>(io: T, request: Request<Full<Bytes>>) -> anyhow::Result<Answer>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(connection);
    let response = sender.send_request(request).await;
    let answer = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok(Answer { status, body })
        }
        Err(e) => Err(e.into()),
    };
    driver.abort();
    answer
}
