//! Finding an XMPP service's WebSocket endpoint from its domain (XEP-0156, HTTP lookup).
//!
//! Sans-IO: the caller fetches [`host_meta_xml_url`] (or [`host_meta_json_url`]) and hands the
//! body to [`websocket_from_host_meta`] (or the function for that one form). Only `wss://` endpoints are taken from a page served
//! over https (a browser would refuse `ws://` there anyway, and it would carry the password in
//! the clear); `ws://` is accepted only by an insecure page, i.e. a local test setup.

use crate::service::ServiceUrl;

/// The `rel` of a WebSocket endpoint in host-meta (XEP-0156 §3).
pub const WEBSOCKET_REL: &str = "urn:xmpp:alt-connections:websocket";
/// The namespace of the XML form (XRD 1.0).
pub const XRD_NS: &str = "http://docs.oasis-open.org/ns/xri/xrd-1.0";
/// A host-meta document larger than this is not read (real ones are a few hundred bytes).
pub const MAX_HOST_META_BYTES: usize = 64 * 1024;

/// Why no endpoint came out of a host-meta document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The document is larger than [`MAX_HOST_META_BYTES`].
    #[error("the service description is too large")]
    TooLarge,
    /// Neither JSON (JRD) nor XML (XRD) host-meta.
    #[error("the service description is not valid host-meta")]
    Malformed,
    /// Valid, but it names no WebSocket endpoint this page may use.
    #[error("the domain publishes no WebSocket address")]
    NoWebSocket,
}

/// `https://{domain}/.well-known/host-meta.json` (`http://` for an insecure page).
pub fn host_meta_json_url(domain: &str, secure: bool) -> String {
    format!(
        "{}://{domain}/.well-known/host-meta.json",
        http_scheme(secure)
    )
}

/// `https://{domain}/.well-known/host-meta` (`http://` for an insecure page).
pub fn host_meta_xml_url(domain: &str, secure: bool) -> String {
    format!("{}://{domain}/.well-known/host-meta", http_scheme(secure))
}

fn http_scheme(secure: bool) -> &'static str {
    if secure {
        "https"
    } else {
        "http"
    }
}

/// The first WebSocket endpoint of a host-meta document, JSON or XML, that a page served
/// over https (`secure_page`) or http may connect to: `wss://` first, `ws://` only for an
/// insecure page.
pub fn websocket_from_host_meta(
    body: &str,
    secure_page: bool,
) -> Result<ServiceUrl, DiscoveryError> {
    if body.trim_start().starts_with('{') {
        websocket_from_jrd(body, secure_page)
    } else {
        websocket_from_xrd(body, secure_page)
    }
}

/// [`websocket_from_host_meta`] for the XML form only (`/.well-known/host-meta`, the form RFC
/// 6415 requires every host-meta server to offer; the web app reads just this one, which spares
/// it a JSON parser).
pub fn websocket_from_xrd(body: &str, secure_page: bool) -> Result<ServiceUrl, DiscoveryError> {
    if body.len() > MAX_HOST_META_BYTES {
        return Err(DiscoveryError::TooLarge);
    }
    choose(&xrd_links(body)?, secure_page)
}

/// [`websocket_from_host_meta`] for the JSON form only (`/.well-known/host-meta.json`).
pub fn websocket_from_jrd(body: &str, secure_page: bool) -> Result<ServiceUrl, DiscoveryError> {
    if body.len() > MAX_HOST_META_BYTES {
        return Err(DiscoveryError::TooLarge);
    }
    choose(&jrd_links(body)?, secure_page)
}

/// The endpoint to use among the WebSocket links found: `wss://` first, `ws://` only for an
/// insecure page.
fn choose(links: &[String], secure_page: bool) -> Result<ServiceUrl, DiscoveryError> {
    let candidates: Vec<ServiceUrl> = links
        .iter()
        .filter_map(|href| ServiceUrl::parse(href).ok())
        .collect();
    candidates
        .iter()
        .find(|url| url.is_secure())
        .or_else(|| candidates.iter().find(|_| !secure_page))
        .cloned()
        .ok_or(DiscoveryError::NoWebSocket)
}

/// The hrefs of the WebSocket links of a JRD document.
fn jrd_links(body: &str) -> Result<Vec<String>, DiscoveryError> {
    #[derive(serde::Deserialize)]
    struct Jrd {
        #[serde(default)]
        links: Vec<Link>,
    }
    #[derive(serde::Deserialize)]
    struct Link {
        #[serde(default)]
        rel: String,
        #[serde(default)]
        href: String,
    }
    let jrd: Jrd = serde_json::from_str(body).map_err(|_| DiscoveryError::Malformed)?;
    Ok(jrd
        .links
        .into_iter()
        .filter(|l| l.rel == WEBSOCKET_REL)
        .map(|l| l.href)
        .collect())
}

/// The hrefs of the WebSocket links of an XRD document.
fn xrd_links(body: &str) -> Result<Vec<String>, DiscoveryError> {
    let root: minidom::Element = body.parse().map_err(|_| DiscoveryError::Malformed)?;
    if !root.is("XRD", XRD_NS) {
        return Err(DiscoveryError::Malformed);
    }
    Ok(root
        .children()
        .filter(|l| l.is("Link", XRD_NS) && l.attr("rel") == Some(WEBSOCKET_REL))
        .filter_map(|l| l.attr("href").map(str::to_owned))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_urls() {
        assert_eq!(
            host_meta_json_url("example.org", true),
            "https://example.org/.well-known/host-meta.json"
        );
        assert_eq!(
            host_meta_xml_url("example.org", false),
            "http://example.org/.well-known/host-meta"
        );
    }

    #[test]
    fn json_prefers_wss_and_ignores_bosh() {
        let body = r#"{"links":[
            {"rel":"urn:xmpp:alt-connections:xbosh","href":"https://example.org/http-bind"},
            {"rel":"urn:xmpp:alt-connections:websocket","href":"ws://example.org/ws"},
            {"rel":"urn:xmpp:alt-connections:websocket","href":"wss://Example.org:5443/ws"}]}"#;
        let url = websocket_from_host_meta(body, true).unwrap();
        assert_eq!(url.to_string(), "wss://example.org:5443/ws");
        let url = websocket_from_host_meta(body, false).unwrap();
        assert_eq!(url.to_string(), "wss://example.org:5443/ws");
    }

    #[test]
    fn plain_ws_only_for_an_insecure_page() {
        let body = r#"{"links":[{"rel":"urn:xmpp:alt-connections:websocket","href":"ws://127.0.0.1:5280/xmpp-websocket"}]}"#;
        assert_eq!(
            websocket_from_host_meta(body, true),
            Err(DiscoveryError::NoWebSocket)
        );
        assert_eq!(
            websocket_from_host_meta(body, false).unwrap().to_string(),
            "ws://127.0.0.1:5280/xmpp-websocket"
        );
    }

    #[test]
    fn xml_form() {
        // As Prosody's mod_http_host_meta and the bridge serve it.
        let body = "<?xml version='1.0' encoding='utf-8'?>\n\
            <XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\
            <Link rel='urn:xmpp:alt-connections:xbosh' href='https://example.org/http-bind'/>\
            <Link rel='urn:xmpp:alt-connections:websocket' href='wss://example.org/xmpp-websocket'/>\
            </XRD>";
        assert_eq!(
            websocket_from_host_meta(body, true).unwrap().to_string(),
            "wss://example.org/xmpp-websocket"
        );
    }

    #[test]
    fn bad_documents_are_errors() {
        for body in [
            "",
            "{",
            "<html><body>not found</body></html>",
            "<XRD xmlns='urn:other'/>",
            r#"{"links":"no"}"#,
        ] {
            assert_eq!(
                websocket_from_host_meta(body, true),
                Err(DiscoveryError::Malformed),
                "{body:?}"
            );
        }
        for body in [
            r#"{"links":[]}"#,
            r#"{"subject":"x"}"#,
            r#"{"links":[{"rel":"urn:xmpp:alt-connections:websocket","href":"javascript:alert(1)"}]}"#,
            r#"{"links":[{"rel":"urn:xmpp:alt-connections:websocket","href":"https://example.org/ws"}]}"#,
        ] {
            assert_eq!(
                websocket_from_host_meta(body, true),
                Err(DiscoveryError::NoWebSocket),
                "{body:?}"
            );
        }
        let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_HOST_META_BYTES));
        assert_eq!(
            websocket_from_host_meta(&huge, true),
            Err(DiscoveryError::TooLarge)
        );
    }
}
