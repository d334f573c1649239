//! Cross-site requests that would change something are refused. A page on
//! another site can make a visitor's browser send a plain form (a POST with
//! no JSON, or an empty one) to Guichet; browsers say where such a request
//! comes from (`Origin`, `Sec-Fetch-Site`), so the gateway refuses any
//! state-changing request a browser marks as coming from another site.
//! Software (call-centre and desk tools, scanning stations, curl) sends
//! neither header and is not affected; sign-in (#17) adds tokens on top.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Whether a request that changes something comes from another site, by
/// what the browser says of it.
pub fn is_cross_site(method: &Method, headers: &HeaderMap) -> bool {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        // same-origin, or none (typed in the address bar, a bookmark).
        return !matches!(site, "same-origin" | "none");
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => false,
        // An opaque origin (a sandboxed frame, a file) is another site.
        (Some("null"), _) => true,
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            !origin_host.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
    }
}

pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    if is_cross_site(request.method(), request.headers()) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            Some("Origin"),
            "a request from another site cannot change anything here",
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A method, the headers a browser (or a tool) sent, and whether the
    /// request is refused as cross-site.
    type Case = (&'static str, &'static [(&'static str, &'static str)], bool);

    #[test]
    fn cross_site_table() {
        let cases: [Case; 9] = [
            ("POST", &[], false),
            (
                "POST",
                &[
                    ("origin", "https://evil.example"),
                    ("host", "guichet.example"),
                ],
                true,
            ),
            (
                "POST",
                &[
                    ("origin", "https://guichet.example"),
                    ("host", "guichet.example"),
                ],
                false,
            ),
            (
                "POST",
                &[
                    ("origin", "http://127.0.0.1:8080"),
                    ("host", "127.0.0.1:8080"),
                ],
                false,
            ),
            (
                "POST",
                &[("origin", "null"), ("host", "guichet.example")],
                true,
            ),
            ("POST", &[("sec-fetch-site", "cross-site")], true),
            ("POST", &[("sec-fetch-site", "same-site")], true),
            (
                "POST",
                &[
                    ("sec-fetch-site", "same-origin"),
                    ("origin", "https://guichet.example"),
                ],
                false,
            ),
            (
                "GET",
                &[
                    ("origin", "https://evil.example"),
                    ("host", "guichet.example"),
                ],
                false,
            ),
        ];
        for (method, headers, expected) in cases {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
                    v.parse().expect("a header value"),
                );
            }
            let m = Method::from_bytes(method.as_bytes()).expect("a method");
            assert_eq!(is_cross_site(&m, &h), expected, "{method} {headers:?}");
        }
    }
}
