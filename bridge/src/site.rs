//! The built client, served from memory with strict security headers.
//!
//! The site is small (a few hundred KB), so it is read once at start: no path from a request
//! ever reaches the file system, which rules out traversal bugs by construction.

use std::collections::HashMap;
use std::path::Path;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Files larger than this are not served from memory (the site has no business being larger).
pub const MAX_ASSET_BYTES: u64 = 32 * 1024 * 1024;
/// The most files the site may hold.
pub const MAX_ASSETS: usize = 1024;

/// The one policy template; only `connect-src` differs between the three policies below.
macro_rules! content_security_policy {
    ($connect_src:literal) => {
        concat!(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
img-src 'self' data: blob:; connect-src ",
            $connect_src,
            "; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'"
        )
    };
}

/// The Content-Security-Policy of every page: scripts and styles only from this origin, wasm
/// compilation allowed, no inline code, no plugins, no framing, WebSockets to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = content_security_policy!("'self'");

/// The policy when `[client] other_servers` lets users sign in to services this bridge does
/// not relay: the app then looks up their host-meta (XEP-0156) and opens their WebSocket, so
/// `connect-src` admits any https/wss origin. Everything else is as strict as above.
pub const CONTENT_SECURITY_POLICY_OTHER_SERVERS: &str =
    content_security_policy!("'self' https: wss:");

/// The same for a bridge that is itself not behind TLS (a local setup): plain http/ws too,
/// as the page is no better protected than they are.
pub const CONTENT_SECURITY_POLICY_OTHER_SERVERS_INSECURE: &str =
    content_security_policy!("'self' https: wss: http: ws:");

/// The browser features the client may use; everything else is switched off.
pub const PERMISSIONS_POLICY: &str = "camera=(), microphone=(), geolocation=(), payment=(), \
usb=(), serial=(), bluetooth=(), interest-cohort=()";

struct Asset {
    content_type: &'static str,
    identity: Bytes,
    gzip: Option<Bytes>,
    brotli: Option<Bytes>,
    immutable: bool,
}

/// The in-memory site.
#[derive(Default)]
pub struct Site {
    assets: HashMap<String, Asset>,
}

/// Why the site directory could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    /// Reading the directory or a file failed.
    #[error("cannot read the site: {0}")]
    Io(#[from] std::io::Error),
    /// The directory holds something that is not a plain, small file.
    #[error("the site directory is not a built client: {0}")]
    Unexpected(String),
}

impl Site {
    /// Loads every file of `dir` (one level; `cargo xtask dist` output is flat).
    pub fn load(dir: &Path) -> Result<Self, SiteError> {
        let mut files: HashMap<String, Bytes> = HashMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            if meta.len() > MAX_ASSET_BYTES || files.len() >= MAX_ASSETS {
                return Err(SiteError::Unexpected(format!(
                    "{} is too large or there are too many files",
                    entry.file_name().to_string_lossy()
                )));
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            files.insert(name, Bytes::from(std::fs::read(entry.path())?));
        }
        if !files.contains_key("index.html") {
            return Err(SiteError::Unexpected("no index.html".into()));
        }
        let mut assets = HashMap::new();
        for (name, body) in &files {
            if name.ends_with(".gz") || name.ends_with(".br") {
                continue;
            }
            assets.insert(
                name.clone(),
                Asset {
                    content_type: content_type(name),
                    identity: body.clone(),
                    gzip: files.get(&format!("{name}.gz")).cloned(),
                    brotli: files.get(&format!("{name}.br")).cloned(),
                    immutable: is_content_hashed(name),
                },
            );
        }
        Ok(Self { assets })
    }

    /// Whether any site is loaded.
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// The response for a request path.
    pub fn respond(&self, path: &str, request_headers: &HeaderMap) -> Response {
        let name = match path.trim_start_matches('/') {
            "" => "index.html",
            other => other,
        };
        let Some(asset) = self.assets.get(name) else {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        };
        let accepts = request_headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (body, encoding) = match (&asset.brotli, &asset.gzip) {
            (Some(br), _) if accepts_encoding(accepts, "br") => (br.clone(), Some("br")),
            (_, Some(gz)) if accepts_encoding(accepts, "gzip") => (gz.clone(), Some("gzip")),
            _ => (asset.identity.clone(), None),
        };
        let mut response = body.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if asset.immutable {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            }),
        );
        response
    }
}

fn accepts_encoding(header: &str, wanted: &str) -> bool {
    header.split(',').any(|part| {
        let mut pieces = part.split(';');
        let name = pieces.next().unwrap_or("").trim();
        let refused = pieces.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
        });
        name.eq_ignore_ascii_case(wanted) && !refused
    })
}

/// `name-0123456789abcdef.ext`: the content hash makes the file safe to cache forever.
fn is_content_hashed(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("");
    match stem.rsplit_once('-') {
        Some((_, hash)) => hash.len() >= 16 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        None => false,
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" | "webmanifest" => "application/json",
        "txt" | "SHA256SUMS" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_differ_only_in_connect_src() {
        assert_eq!(
            CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        assert_eq!(
            CONTENT_SECURITY_POLICY_OTHER_SERVERS,
            CONTENT_SECURITY_POLICY.replace("connect-src 'self'", "connect-src 'self' https: wss:")
        );
        assert_eq!(
            CONTENT_SECURITY_POLICY_OTHER_SERVERS_INSECURE,
            CONTENT_SECURITY_POLICY.replace(
                "connect-src 'self'",
                "connect-src 'self' https: wss: http: ws:"
            )
        );
    }

    #[test]
    fn encodings_and_hashes() {
        assert!(accepts_encoding("gzip, deflate, br, zstd", "br"));
        assert!(accepts_encoding("gzip;q=1.0", "gzip"));
        assert!(!accepts_encoding("br;q=0, gzip", "br"));
        assert!(!accepts_encoding("identity", "gzip"));
        assert!(is_content_hashed("app-0123456789abcdef.wasm"));
        assert!(!is_content_hashed("index.html"));
        assert!(!is_content_hashed("my-file.js"));
    }
}
