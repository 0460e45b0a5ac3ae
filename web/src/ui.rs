//! The browser UI, embedded in the binary so the server runs from any directory.
//!
//! Files are served with an ETag (so a phone on a weak link revalidates with a 304 instead of
//! downloading again) and pre-compressed with gzip once, at first use.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

static UI: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/ui");

/// One embedded file, ready to serve.
pub struct Asset {
    /// The MIME type.
    pub content_type: &'static str,
    /// The file as written.
    pub raw: &'static [u8],
    /// gzip of `raw`, when that is smaller.
    pub gzip: Option<Vec<u8>>,
    /// A strong validator of the content.
    pub etag: String,
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("webmanifest") => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

fn gzip(raw: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(raw).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < raw.len()).then_some(out)
}

/// Every embedded file, by path without the leading `/`.
pub fn assets() -> &'static HashMap<String, Asset> {
    static ASSETS: OnceLock<HashMap<String, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut map = HashMap::new();
        let mut stack = vec![&UI];
        while let Some(dir) = stack.pop() {
            stack.extend(dir.dirs());
            for f in dir.files() {
                let path = f.path().to_string_lossy().replace('\\', "/");
                if path.starts_with("tests/") || path.ends_with(".md") {
                    continue;
                }
                let raw = f.contents();
                let digest = Sha256::digest(raw);
                let etag = format!("\"{}\"", digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>());
                map.insert(path.clone(), Asset { content_type: content_type(&path), raw, gzip: gzip(raw), etag });
            }
        }
        map
    })
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|e| {
        let mut parts = e.trim().split(';');
        parts.next().is_some_and(|n| n.trim().eq_ignore_ascii_case("gzip")) && !parts.any(|p| p.trim().replace(' ', "") == "q=0")
    })
}

/// Serves `asset`, honouring `If-None-Match` and `Accept-Encoding`.
fn respond(asset: &Asset, headers: &HeaderMap) -> Response {
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag || t.trim() == "*"));
    let mut res = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        match (&asset.gzip, accepts_gzip(headers)) {
            (Some(gz), true) => {
                let mut r = Response::new(Body::from(gz.clone()));
                r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => Response::new(Body::from(asset.raw)),
        }
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // Revalidate every time: cheap with ETags, and a deploy is seen at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&asset.etag) {
        h.insert(header::ETAG, v);
    }
    res
}

/// The fallback handler: an embedded file, or the shell page for a client-side route.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    if path.starts_with("api/") || path == "api" {
        return ApiError::NotFound("no such API endpoint".into()).into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return ApiError::MethodNotAllowed("only GET and HEAD are served here".into()).into_response();
    }
    let assets = assets();
    if let Some(a) = assets.get(path) {
        return respond(a, &headers);
    }
    // A path with an extension is a file that does not exist; anything else is a page of the app.
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return ApiError::NotFound(format!("no such file: /{path}")).into_response();
    }
    match assets.get("index.html") {
        Some(index) => respond(index, &headers),
        None => ApiError::NotFound("the UI is not built into this binary".into()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use crate::accounts::{AccountRole, Locale};

    fn locale_keys(tag: &str) -> serde_json::Map<String, serde_json::Value> {
        let file = UI.get_file(format!("i18n/{tag}.json")).unwrap_or_else(|| panic!("ui/i18n/{tag}.json missing"));
        match serde_json::from_slice(file.contents()).unwrap_or_else(|e| panic!("{tag}.json: {e}")) {
            serde_json::Value::Object(m) => m,
            _ => panic!("{tag}.json is not an object"),
        }
    }

    fn placeholders(s: &str) -> BTreeSet<String> {
        s.split('{').skip(1).filter_map(|p| p.split_once('}')).map(|(name, _)| name.to_owned()).collect()
    }

    #[test]
    fn every_locale_has_every_key_with_the_same_placeholders() {
        let reference = locale_keys("zh-CN");
        for locale in Locale::ALL {
            let other = locale_keys(locale.as_str());
            let a: BTreeSet<_> = reference.keys().collect();
            let b: BTreeSet<_> = other.keys().collect();
            assert_eq!(a.difference(&b).collect::<Vec<_>>(), Vec::<&&String>::new(), "keys missing from {}", locale.as_str());
            assert_eq!(b.difference(&a).collect::<Vec<_>>(), Vec::<&&String>::new(), "extra keys in {}", locale.as_str());
            for (key, value) in &other {
                let text = value.as_str().unwrap_or_else(|| panic!("{}:{key} is not a string", locale.as_str()));
                assert!(!text.trim().is_empty(), "{}:{key} is empty", locale.as_str());
                let want = placeholders(reference[key].as_str().unwrap());
                assert_eq!(placeholders(text), want, "{}:{key} placeholders differ", locale.as_str());
            }
        }
    }

    #[test]
    fn every_key_the_ui_uses_exists() {
        let keys = locale_keys("zh-CN");
        let re = regex::Regex::new(r"\bt\('([a-z_.]+)'").unwrap();
        let mut used = 0;
        for file in ["app.js", "i18n.js"] {
            let text = std::str::from_utf8(UI.get_file(file).unwrap().contents()).unwrap();
            for cap in re.captures_iter(text) {
                used += 1;
                assert!(keys.contains_key(&cap[1]), "{file} uses missing key {}", &cap[1]);
            }
        }
        assert!(used > 20, "the key scanner found only {used} uses; is the regex still right?");
        for role in AccountRole::ALL {
            for prefix in ["role", "home.intro"] {
                let key = format!("{prefix}.{}", role.as_str());
                assert!(keys.contains_key(&key), "missing {key}");
            }
        }
    }

    #[test]
    fn the_shell_is_small_on_the_wire() {
        // Goal from the issue: the JS and CSS the shell loads stay under 100 KB gzipped.
        let total: usize = assets()
            .iter()
            .filter(|(p, _)| p.ends_with(".js") || p.ends_with(".css"))
            .map(|(_, a)| a.gzip.as_ref().map_or(a.raw.len(), Vec::len))
            .sum();
        assert!(total < 100 * 1024, "shell JS+CSS is {total} bytes gzipped");
    }

    #[test]
    fn gzip_acceptance() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.8"));
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, br"));
        assert!(!accepts_gzip(&h));
    }
}
