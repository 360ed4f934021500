//! sotto-bridge: serves the Sotto web client and relays XMPP-over-WebSocket (RFC 7395) sessions
//! to the XMPP servers its configuration names, over ordinary TCP with TLS (RFC 6120).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod xml;
