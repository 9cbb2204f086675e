//! The page's files, embedded in the binary (no CDN, works offline): plain
//! HTML, CSS and JavaScript from `web/assets/`, no build step.

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const SEARCH_JS: &str = include_str!("assets/search.js");
const VERSIONS_JS: &str = include_str!("assets/versions.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// The page, with this session's CSRF token in its `csrf` meta tag.
pub fn index_html(csrf: &str) -> String {
    INDEX_HTML.replace("{{CSRF}}", csrf)
}

/// The content type and bytes of an asset at `path`.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        "/assets/app.js" => ("text/javascript; charset=utf-8", APP_JS.as_bytes()),
        "/assets/search.js" => ("text/javascript; charset=utf-8", SEARCH_JS.as_bytes()),
        "/assets/versions.js" => ("text/javascript; charset=utf-8", VERSIONS_JS.as_bytes()),
        "/assets/app.css" => ("text/css; charset=utf-8", APP_CSS.as_bytes()),
        "/assets/icon.svg" | "/favicon.ico" => ("image/svg+xml", ICON_SVG.as_bytes()),
        _ => return None,
    })
}
