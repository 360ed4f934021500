//! Where a client connects: XMPP-over-WebSocket service URLs (RFC 7395 §3.1, §3.6.1).

use core::fmt;

/// The longest service URL we accept; anything longer is not a real deployment.
pub const MAX_SERVICE_URL_LEN: usize = 2048;

/// A validated `ws://` or `wss://` URL of an XMPP WebSocket endpoint.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ServiceUrl {
    secure: bool,
    authority: String,
    path: String,
}

/// Why a string is not a usable service URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceUrlError {
    /// The URL is longer than [`MAX_SERVICE_URL_LEN`].
    #[error("the service address is too long")]
    TooLong,
    /// The scheme is neither `ws` nor `wss`.
    #[error("the service address must start with wss:// (or ws:// for a local server)")]
    Scheme,
    /// There is no host, or the authority holds characters no host may hold.
    #[error("the service address has no valid host")]
    Host,
    /// A fragment or whitespace makes the URL ambiguous.
    #[error("the service address contains characters that are not allowed")]
    Characters,
}

impl ServiceUrl {
    /// Parses and validates a service URL.
    pub fn parse(input: &str) -> Result<Self, ServiceUrlError> {
        if input.len() > MAX_SERVICE_URL_LEN {
            return Err(ServiceUrlError::TooLong);
        }
        if input
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            return Err(ServiceUrlError::Characters);
        }
        let (secure, rest) = if let Some(rest) = strip_prefix_ignore_case(input, "wss://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(input, "ws://") {
            (false, rest)
        } else {
            return Err(ServiceUrlError::Scheme);
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], "/"),
            None => (rest, "/"),
        };
        let valid_authority = !authority.is_empty()
            && !authority.contains('@')
            && authority
                .chars()
                .all(|c| c.is_alphanumeric() || "-._:[]".contains(c));
        if !valid_authority || authority.starts_with(':') {
            return Err(ServiceUrlError::Host);
        }
        Ok(Self {
            secure,
            authority: authority.to_ascii_lowercase(),
            path: path.to_owned(),
        })
    }

    /// The service at `path` on the same origin as a page loaded from `page_origin`
    /// (`https://host[:port]` → `wss://host[:port]path`, `http://` → `ws://`).
    pub fn same_origin(page_origin: &str, path: &str) -> Result<Self, ServiceUrlError> {
        let ws = if let Some(rest) = strip_prefix_ignore_case(page_origin, "https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = strip_prefix_ignore_case(page_origin, "http://") {
            format!("ws://{rest}")
        } else {
            return Err(ServiceUrlError::Scheme);
        };
        Self::parse(&format!("{}{path}", ws.trim_end_matches('/')))
    }

    /// Whether the connection is protected by TLS (`wss://`).
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Whether a `see-other-uri` redirect from this service to `target` may be followed:
    /// never from `wss://` to `ws://` (RFC 7395 §3.6.1).
    pub fn may_redirect_to(&self, target: &ServiceUrl) -> bool {
        target.secure || !self.secure
    }
}

impl fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.secure { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.authority, self.path)
    }
}

impl fmt::Debug for ServiceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServiceUrl({self})")
    }
}

fn strip_prefix_ignore_case<'a>(input: &'a str, prefix: &str) -> Option<&'a str> {
    let head = input.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &input[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_and_wss() {
        let url = ServiceUrl::parse("WSS://Chat.Example.org:5443/xmpp-websocket").unwrap();
        assert!(url.is_secure());
        assert_eq!(
            url.to_string(),
            "wss://chat.example.org:5443/xmpp-websocket"
        );
        let url = ServiceUrl::parse("ws://127.0.0.1:8080").unwrap();
        assert!(!url.is_secure());
        assert_eq!(url.to_string(), "ws://127.0.0.1:8080/");
    }

    #[test]
    fn rejects_other_schemes_and_bad_hosts() {
        for bad in [
            "http://example.org/",
            "example.org",
            "wss://",
            "wss://user@example.org/",
            "wss://:443/",
            "wss://exa mple.org/",
            "wss://example.org/#frag",
            "wss://exa<mple.org/",
        ] {
            assert!(ServiceUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ServiceUrl::parse(&format!("wss://a/{}", "x".repeat(MAX_SERVICE_URL_LEN))),
            Err(ServiceUrlError::TooLong)
        );
    }

    #[test]
    fn same_origin_maps_http_schemes() {
        assert_eq!(
            ServiceUrl::same_origin("https://example.org", "/xmpp-websocket")
                .unwrap()
                .to_string(),
            "wss://example.org/xmpp-websocket"
        );
        assert_eq!(
            ServiceUrl::same_origin("http://127.0.0.1:8080/", "/xmpp-websocket")
                .unwrap()
                .to_string(),
            "ws://127.0.0.1:8080/xmpp-websocket"
        );
        assert!(ServiceUrl::same_origin("file://x", "/").is_err());
    }

    #[test]
    fn never_downgrades_on_redirect() {
        let wss = ServiceUrl::parse("wss://a.example/ws").unwrap();
        let ws = ServiceUrl::parse("ws://b.example/ws").unwrap();
        assert!(!wss.may_redirect_to(&ws));
        assert!(wss.may_redirect_to(&wss));
        assert!(ws.may_redirect_to(&wss));
        assert!(ws.may_redirect_to(&ws));
    }
}
