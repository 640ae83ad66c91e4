//! Building requests, and a small sequential client with a cookie jar for setting things up
//! (signing alice in once).

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A POST of a form, with HTTP Basic when `auth` is given.
pub fn post(path: &str, body: Bytes, auth: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(Full::new(body)).unwrap_or_default()
}

pub fn get(path: &str, cookie: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "127.0.0.1")
        .header("cookie", cookie)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// One keep-alive connection used one request at a time, keeping cookies.
pub struct Browser {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    pub cookies: BTreeMap<String, String>,
}

impl Browser {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Browser> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Browser {
            sender,
            cookies: BTreeMap::new(),
        })
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, mut request: Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        if !self.cookies.is_empty() {
            request
                .headers_mut()
                .insert("cookie", self.cookie_header().parse()?);
        }
        let response = self.sender.send_request(request).await?;
        for v in response.headers().get_all("set-cookie") {
            let text = v.to_str()?;
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((k, val)) = pair.split_once('=') {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(String::from);
        let body =
            String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes()).into_owned();
        Ok(Answer {
            status,
            location,
            body,
        })
    }
}

/// The value of a hidden form field in a page.
pub fn field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    Some(page[start..start + page[start..].find('"')?].replace("&amp;", "&"))
}

/// A query parameter of a URL.
pub fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once(['?', '#'])?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A string member of a JSON body.
pub fn json_str(body: &[u8], member: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(member)?.as_str().map(String::from)
}
