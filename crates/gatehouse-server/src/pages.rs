//! The HTML pages people see: sign-in, consent, errors and sign-out. Server-rendered, no
//! JavaScript, every value HTML-escaped, and each page says where to go next.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
 font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f3f4f6;color:#111827}
main{width:100%;max-width:24rem;margin:1rem;background:#fff;border-radius:.75rem;
 box-shadow:0 1px 3px rgba(0,0,0,.1),0 8px 24px rgba(0,0,0,.06);padding:2rem}
header p{margin:0;color:#6b7280;font-size:.875rem;text-transform:uppercase;letter-spacing:.05em}
h1{font-size:1.375rem;margin:.25rem 0 1.25rem}
label{display:block;font-weight:600;font-size:.875rem;margin:1rem 0 .25rem}
input[type=text],input[type=password]{width:100%;padding:.625rem .75rem;border:1px solid #d1d5db;
 border-radius:.5rem;font:inherit}
input:focus,button:focus{outline:3px solid #93c5fd;outline-offset:1px}
button{width:100%;margin-top:1.5rem;padding:.7rem;border:0;border-radius:.5rem;font:inherit;
 font-weight:600;background:#1d4ed8;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#374151;border:1px solid #d1d5db;margin-top:.75rem}
.error{background:#fef2f2;color:#991b1b;border:1px solid #fecaca;border-radius:.5rem;padding:.75rem;margin:0 0 1rem}
ul.scopes{padding-left:1.25rem}ul.scopes li{margin:.35rem 0}
.muted{color:#4b5563;font-size:.875rem}
a{color:#1d4ed8}ul.endpoints{padding-left:1.25rem;font-size:.875rem;overflow-wrap:anywhere}ul.endpoints li{margin:.5rem 0}
";

fn layout(tenant: &str, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · {tenant}</title><style>{STYLE}</style></head>\
         <body><main><header><p>{tenant}</p><h1>{title}</h1></header>{body}</main></body></html>",
        tenant = escape(tenant),
        title = escape(title),
    )
}

/// An HTML response that must not be cached or framed.
pub fn html(status: StatusCode, page: String) -> Response {
    let mut r = (status, page).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // No form-action: browsers apply it to the redirect that follows a form post, and the
    // sign-in and consent forms end in a redirect to the client (whose URI was checked
    // against its registration before any page was shown).
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    r
}

/// The fields tying a form to its pending sign-in: the request id and its CSRF token.
fn pending_fields(request: &str, csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"request\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(request),
        escape(csrf)
    )
}

pub struct LoginPage<'a> {
    pub tenant: &'a str,
    pub client: &'a str,
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub fn login(p: &LoginPage<'_>) -> String {
    let error = p
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<p class=\"muted\">to continue to <strong>{client}</strong></p>\
         <form method=\"post\" action=\"{action}\">\
         {pending}\
         <label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\" required{focus_user}>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required{focus_password}>\
         <button type=\"submit\">Sign in</button></form>",
        client = escape(p.client),
        action = escape(p.action),
        pending = pending_fields(p.request, p.csrf),
        username = escape(p.username),
        // Back after a wrong password, the cursor goes where the fix is.
        focus_user = if p.username.is_empty() {
            " autofocus"
        } else {
            ""
        },
        focus_password = if p.username.is_empty() {
            ""
        } else {
            " autofocus"
        },
    );
    layout(p.tenant, "Sign in", &body)
}

pub struct ConsentPage<'a> {
    pub tenant: &'a str,
    pub client: &'a str,
    pub username: &'a str,
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    /// (scope, description)
    pub scopes: Vec<(String, String)>,
    /// Extra hidden form fields (name, value).
    pub hidden: Vec<(String, String)>,
    /// The code of the device being connected, on a device confirmation.
    pub device_code: Option<&'a str>,
    /// Where someone who is not `username` signs out.
    pub sign_out: &'a str,
}

pub fn consent(p: &ConsentPage<'_>) -> String {
    let items = p
        .scopes
        .iter()
        .fold(String::new(), |mut out, (name, description)| {
            let _ = write!(
                out,
                "<li><strong>{}</strong> — {}</li>",
                escape(name),
                escape(description)
            );
            out
        });
    let list = if items.is_empty() {
        "<p>No particular access: only that you signed in.</p>".to_string()
    } else {
        format!("<ul class=\"scopes\">{items}</ul>")
    };
    // Against phishing: a code someone else started and sent over would connect their device
    // to this account.
    let warning = p
        .device_code
        .map(|code| {
            format!(
                "<p class=\"error\" role=\"note\">You are connecting <strong>{client}</strong> with the code \
                 <strong>{code}</strong>. Allow only if you started this yourself on a device in front of you \
                 and it shows this code. If someone sent you this link or code, deny.</p>",
                client = escape(p.client),
                code = escape(code),
            )
        })
        .unwrap_or_default();
    let body = format!(
        "{warning}<p><strong>{client}</strong> wants to access your account <strong>{user}</strong>:</p>{list}\
         <form method=\"post\" action=\"{action}\">\
         {pending}{hidden}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>\
         <p class=\"muted\">Not {user}? <a href=\"{sign_out}\">Sign out</a>, then start again from the application.</p>",
        client = escape(p.client),
        user = escape(p.username),
        sign_out = escape(p.sign_out),
        action = escape(p.action),
        pending = pending_fields(p.request, p.csrf),
        hidden = p.hidden.iter().fold(String::new(), |mut out, (k, v)| {
            let _ = write!(
                out,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            );
            out
        }),
    );
    layout(p.tenant, "Allow access?", &body)
}

pub fn error(tenant: &str, title: &str, message: &str) -> String {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{}</p><p class=\"muted\">Return to the application you came from and start again. \
         If this keeps happening, tell its operator what this page says.</p>",
        escape(message)
    );
    layout(tenant, title, &body)
}

pub struct DeviceEntryPage<'a> {
    pub tenant: &'a str,
    pub username: &'a str,
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    pub user_code: &'a str,
    pub error: Option<&'a str>,
}

pub fn device_entry(p: &DeviceEntryPage<'_>) -> String {
    let error = p
        .error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "{error}<p>Signed in as <strong>{user}</strong>. Enter the code your device shows.</p>\
         <form method=\"post\" action=\"{action}\">\
         {pending}\
         <label for=\"user_code\">Code</label>\
         <input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{code}\" autocomplete=\"off\" \
         autocapitalize=\"characters\" spellcheck=\"false\" required autofocus>\
         <button type=\"submit\">Continue</button></form>",
        user = escape(p.username),
        action = escape(p.action),
        pending = pending_fields(p.request, p.csrf),
        code = escape(p.user_code),
    );
    layout(p.tenant, "Connect a device", &body)
}

/// `/{tenant}`: what a person (or a developer with a browser) finds at the issuer URL: the
/// tenant's name and its endpoints as links. Clients read the JSON metadata instead.
pub fn landing(tenant: &str, issuer: &str, links: &[(&str, String)], grants: &[String]) -> String {
    let items = links.iter().fold(String::new(), |mut out, (label, url)| {
        let _ = write!(
            out,
            "<li>{}<br><a href=\"{url}\">{url}</a></li>",
            escape(label),
            url = escape(url)
        );
        out
    });
    let body = format!(
        "<p class=\"muted\">The sign-in service of {tenant}. Its issuer is <code>{issuer}</code>; \
         applications find everything below in its metadata.</p>\
         <ul class=\"endpoints\">{items}</ul>\
         <p class=\"muted\">Grants: {grants}</p>",
        tenant = escape(tenant),
        issuer = escape(issuer),
        grants = escape(&grants.join(", ")),
    );
    layout(tenant, "Endpoints", &body)
}

/// A final page with a message and nothing left to do here.
pub fn notice(tenant: &str, title: &str, message: &str) -> String {
    layout(tenant, title, &format!("<p>{}</p>", escape(message)))
}

/// Asks before signing out: a sign-out link anyone could have sent must not end the session.
pub fn confirm_sign_out(tenant: &str, action: &str, fields: &[(String, String)]) -> String {
    let hidden = fields.iter().fold(String::new(), |mut out, (k, v)| {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(k),
            escape(v)
        );
        out
    });
    let body = format!(
        "<p>Do you want to sign out of {tenant}?</p>\
         <form method=\"post\" action=\"{action}\">{hidden}\
         <button type=\"submit\" autofocus>Sign out</button></form>",
        tenant = escape(tenant),
        action = escape(action),
    );
    layout(tenant, "Sign out?", &body)
}

pub fn signed_out(tenant: &str) -> String {
    layout(
        tenant,
        "Signed out",
        "<p>You are signed out. You can close this window.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_escaped() {
        let page = login(&LoginPage {
            tenant: "<acme>",
            client: "\"evil\" & co",
            action: "/a",
            request: "r",
            csrf: "c",
            username: "'><script>",
            error: Some("<b>bad</b>"),
        });
        assert!(!page.contains("<script>") && !page.contains("<b>bad") && !page.contains("<acme>"));
        assert!(page.contains("&lt;acme&gt;") && page.contains("&quot;evil&quot; &amp; co"));
        assert!(page.contains("name=\"username\"") && page.contains("name=\"password\""));
    }
}
