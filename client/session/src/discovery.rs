//! Finding an XMPP service's WebSocket endpoint from its domain (XEP-0156, HTTP lookup).
//!
//! Sans-IO: the caller fetches [`host_meta_xml_url`] and hands the body to
//! [`websocket_from_xrd`]. Only the XML form (XRD) is read: RFC 6415 requires every host-meta
//! server to offer it (the JSON form is optional), and it spares the browser a JSON parser.
//! Only `wss://` endpoints are taken from a page served over https (a browser would refuse
//! `ws://` there anyway, and it would carry the password in the clear); `ws://` is accepted only
//! by an insecure page, i.e. a local test setup.

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
    /// Not XML host-meta (XRD).
    #[error("the service description is not valid host-meta")]
    Malformed,
    /// Valid, but it names no WebSocket endpoint this page may use.
    #[error("the domain publishes no WebSocket address")]
    NoWebSocket,
}

/// `https://{domain}/.well-known/host-meta` (`http://` for an insecure page).
pub fn host_meta_xml_url(domain: &str, secure: bool) -> String {
    let scheme = if secure { "https" } else { "http" };
    format!("{scheme}://{domain}/.well-known/host-meta")
}

/// The first WebSocket endpoint of an XRD host-meta document that a page served over https
/// (`secure_page`) or http may connect to: `wss://` first, `ws://` only for an insecure page.
pub fn websocket_from_xrd(body: &str, secure_page: bool) -> Result<ServiceUrl, DiscoveryError> {
    if body.len() > MAX_HOST_META_BYTES {
        return Err(DiscoveryError::TooLarge);
    }
    let candidates: Vec<ServiceUrl> = xrd_links(body)?
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

    /// An XRD document with these `(rel, href)` links.
    fn xrd(links: &[(&str, &str)]) -> String {
        let links: String = links
            .iter()
            .map(|(rel, href)| format!("<Link rel='{rel}' href='{href}'/>"))
            .collect();
        format!("<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='{XRD_NS}'>{links}</XRD>")
    }

    #[test]
    fn lookup_url() {
        assert_eq!(
            host_meta_xml_url("example.org", true),
            "https://example.org/.well-known/host-meta"
        );
        assert_eq!(
            host_meta_xml_url("example.org", false),
            "http://example.org/.well-known/host-meta"
        );
    }

    #[test]
    fn prefers_wss_and_ignores_bosh() {
        // As Prosody's mod_http_host_meta and the bridge serve it, in any order.
        let body = xrd(&[
            (
                "urn:xmpp:alt-connections:xbosh",
                "https://example.org/http-bind",
            ),
            (WEBSOCKET_REL, "ws://example.org/ws"),
            (WEBSOCKET_REL, "wss://Example.org:5443/ws"),
        ]);
        let url = websocket_from_xrd(&body, true).unwrap();
        assert_eq!(url.to_string(), "wss://example.org:5443/ws");
        let url = websocket_from_xrd(&body, false).unwrap();
        assert_eq!(url.to_string(), "wss://example.org:5443/ws");
    }

    #[test]
    fn plain_ws_only_for_an_insecure_page() {
        let body = xrd(&[(WEBSOCKET_REL, "ws://127.0.0.1:5280/xmpp-websocket")]);
        assert_eq!(
            websocket_from_xrd(&body, true),
            Err(DiscoveryError::NoWebSocket)
        );
        assert_eq!(
            websocket_from_xrd(&body, false).unwrap().to_string(),
            "ws://127.0.0.1:5280/xmpp-websocket"
        );
    }

    #[test]
    fn bad_documents_are_errors() {
        for body in [
            "",
            "<XRD",
            "<html><body>not found</body></html>",
            "<XRD xmlns='urn:other'/>",
            r#"{"links":[{"rel":"urn:xmpp:alt-connections:websocket","href":"wss://x/ws"}]}"#,
        ] {
            assert_eq!(
                websocket_from_xrd(body, true),
                Err(DiscoveryError::Malformed),
                "{body:?}"
            );
        }
        for body in [
            xrd(&[]),
            xrd(&[(WEBSOCKET_REL, "javascript:alert(1)")]),
            xrd(&[(WEBSOCKET_REL, "https://example.org/ws")]),
            xrd(&[("urn:other", "wss://example.org/ws")]),
        ] {
            assert_eq!(
                websocket_from_xrd(&body, true),
                Err(DiscoveryError::NoWebSocket),
                "{body:?}"
            );
        }
        let huge = xrd(&[(WEBSOCKET_REL, &"a".repeat(MAX_HOST_META_BYTES))]);
        assert_eq!(
            websocket_from_xrd(&huge, true),
            Err(DiscoveryError::TooLarge)
        );
    }
}
