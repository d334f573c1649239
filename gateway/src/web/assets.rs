//! The State's design system (DSFR, `gateway/assets/dsfr`, vendored by
//! `scripts/fetch-dsfr.sh` from the pinned npm release) and Guichet's few
//! rules on top, served by the gateway itself: the pages need nothing else.
//!
//! The core and the components the pages use are served as one stylesheet
//! under a name that changes with its content, so browsers keep it for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub const DSFR_VERSION: &str = "1.15.3";

macro_rules! dsfr {
    ($path:literal) => {
        (
            $path,
            include_bytes!(concat!("../../assets/dsfr/dist/", $path)).as_slice(),
        )
    };
}

/// The stylesheets, in the order DSFR documents (core first).
const STYLESHEETS: &[(&str, &[u8])] = &[
    dsfr!("core/core.main.min.css"),
    dsfr!("component/link/link.main.min.css"),
    dsfr!("component/button/button.main.min.css"),
    dsfr!("component/skiplink/skiplink.main.min.css"),
    dsfr!("component/logo/logo.main.min.css"),
    dsfr!("component/header/header.main.min.css"),
    dsfr!("component/footer/footer.main.min.css"),
    dsfr!("component/breadcrumb/breadcrumb.main.min.css"),
    dsfr!("component/alert/alert.main.min.css"),
    dsfr!("component/notice/notice.main.min.css"),
    dsfr!("component/callout/callout.main.min.css"),
    dsfr!("component/badge/badge.main.min.css"),
    dsfr!("component/tag/tag.main.min.css"),
    dsfr!("component/stepper/stepper.main.min.css"),
    dsfr!("component/summary/summary.main.min.css"),
    dsfr!("component/table/table.main.min.css"),
    dsfr!("component/form/form.main.min.css"),
    dsfr!("component/input/input.main.min.css"),
    dsfr!("component/select/select.main.min.css"),
    dsfr!("component/radio/radio.main.min.css"),
    dsfr!("component/checkbox/checkbox.main.min.css"),
    dsfr!("component/upload/upload.main.min.css"),
];

/// The other files the stylesheets point to.
const FILES: &[(&str, &[u8])] = &[
    dsfr!("favicon/favicon.svg"),
    dsfr!("fonts/Marianne-Bold.woff2"),
    dsfr!("fonts/Marianne-Bold_Italic.woff2"),
    dsfr!("fonts/Marianne-Light.woff2"),
    dsfr!("fonts/Marianne-Light_Italic.woff2"),
    dsfr!("fonts/Marianne-Medium.woff2"),
    dsfr!("fonts/Marianne-Medium_Italic.woff2"),
    dsfr!("fonts/Marianne-Regular.woff2"),
    dsfr!("fonts/Marianne-Regular_Italic.woff2"),
    dsfr!("fonts/Spectral-ExtraBold.woff2"),
    dsfr!("fonts/Spectral-Regular.woff2"),
    dsfr!("icons/arrows/arrow-right-s-line.svg"),
    dsfr!("icons/arrows/arrow-up-down-line.svg"),
    dsfr!("icons/arrows/arrow-up-line.svg"),
    dsfr!("icons/business/briefcase-fill.svg"),
    dsfr!("icons/media/fullscreen-line.svg"),
    dsfr!("icons/system/checkbox-circle-line.svg"),
    dsfr!("icons/system/close-line.svg"),
    dsfr!("icons/system/download-line.svg"),
    dsfr!("icons/system/error-warning-fill.svg"),
    dsfr!("icons/system/external-link-line.svg"),
    dsfr!("icons/system/fr--alert-warning-2-fill.svg"),
    dsfr!("icons/system/fr--alert-warning-fill.svg"),
    dsfr!("icons/system/fr--error-fill.svg"),
    dsfr!("icons/system/fr--info-fill.svg"),
    dsfr!("icons/system/fr--success-fill.svg"),
    dsfr!("icons/system/fr--theme-fill.svg"),
    dsfr!("icons/system/fr--warning-fill.svg"),
    dsfr!("icons/system/menu-fill.svg"),
    dsfr!("icons/system/question-line.svg"),
    dsfr!("icons/system/search-line.svg"),
    dsfr!("icons/user/account-circle-fill.svg"),
    dsfr!("icons/user/team-line.svg"),
    dsfr!("icons/weather/flashlight-fill.svg"),
    dsfr!("icons/weather/heavy-showers-fill.svg"),
    dsfr!("icons/weather/typhoon-fill.svg"),
];

const GUICHET_CSS: &str = include_str!("../../assets/guichet.css");

pub struct Stylesheet {
    pub href: String,
    pub body: String,
}

/// One stylesheet: the DSFR parts with their relative addresses made
/// absolute, then Guichet's own rules.
pub static STYLESHEET: LazyLock<Stylesheet> = LazyLock::new(|| {
    let base = format!("/dsfr/{DSFR_VERSION}/");
    let mut body = String::new();
    for (path, bytes) in STYLESHEETS {
        let css = String::from_utf8_lossy(bytes);
        // core/ points to ../fonts, components/x/ to ../../icons.
        let css = css
            .replace("url(../../", &format!("url({base}"))
            .replace("url(../", &format!("url({base}"));
        body.push_str(&format!("/* @gouvfr/dsfr {DSFR_VERSION} {path} */\n"));
        body.push_str(&css);
        body.push('\n');
    }
    body.push_str(GUICHET_CSS);
    let digest = Sha256::digest(body.as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    Stylesheet {
        href: format!("/static/guichet-{short}.css"),
        body,
    }
});

fn kept_for_good(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

/// `GET /static/{file}`: the stylesheet, by the name the pages give it.
pub async fn static_file(Path(file): Path<String>) -> Response {
    let sheet = &*STYLESHEET;
    if sheet.href.strip_prefix("/static/") != Some(file.as_str()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    kept_for_good(
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            sheet.body.clone(),
        )
            .into_response(),
    )
}

/// `GET /dsfr/{version}/{*path}`: a font, icon or favicon of the release.
pub async fn dsfr_file(Path((version, path)): Path<(String, String)>) -> Response {
    let found = FILES.iter().find(|(p, _)| *p == path);
    match found {
        Some((p, bytes)) if version == DSFR_VERSION => {
            let kind = match p.rsplit('.').next() {
                Some("woff2") => "font/woff2",
                Some("svg") => "image/svg+xml",
                _ => "application/octet-stream",
            };
            kept_for_good(([(header::CONTENT_TYPE, kind)], *bytes).into_response())
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stylesheet_points_only_to_files_served() {
        let sheet = &*STYLESHEET;
        let mut missing = Vec::new();
        for part in sheet.body.split("url(").skip(1) {
            let target = part
                .split(')')
                .next()
                .unwrap_or_default()
                .trim_matches(['"', '\'']);
            if target.starts_with("data:") {
                continue;
            }
            let Some(path) = target.strip_prefix(&format!("/dsfr/{DSFR_VERSION}/")) else {
                missing.push(target.to_string());
                continue;
            };
            // woff2 is what browsers take first; the woff fallbacks are not served.
            if !FILES.iter().any(|(p, _)| *p == path) {
                missing.push(path.to_string());
            }
        }
        let unknown: Vec<_> = missing.iter().filter(|m| !m.ends_with(".woff")).collect();
        assert!(unknown.is_empty(), "not served: {unknown:?}");
    }
}
