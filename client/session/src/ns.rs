//! Namespaces the session speaks, in one place.

pub const CLIENT: &str = "jabber:client";
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const STREAMS_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const ROSTER: &str = "jabber:iq:roster";
pub const ROSTER_VERSIONING: &str = "urn:xmpp:features:rosterver";
pub const SM: &str = "urn:xmpp:sm:3";
pub const CARBONS: &str = "urn:xmpp:carbons:2";
pub const FORWARD: &str = "urn:xmpp:forward:0";
pub const DELAY: &str = "urn:xmpp:delay";
pub const RECEIPTS: &str = "urn:xmpp:receipts";
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub const SID: &str = "urn:xmpp:sid:0";
/// XEP-0308 Last Message Correction.
pub const CORRECT: &str = "urn:xmpp:message-correct:0";
/// XEP-0424 Message Retraction, and its version 0 (inside an XEP-0422 `<apply-to/>`).
pub const RETRACT: &str = "urn:xmpp:message-retract:1";
pub const RETRACT_0: &str = "urn:xmpp:message-retract:0";
pub const FASTEN: &str = "urn:xmpp:fasten:0";
/// XEP-0428 Fallback Indication: which part of a message is only for clients without a feature.
pub const FALLBACK: &str = "urn:xmpp:fallback:0";
pub const PING: &str = "urn:xmpp:ping";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const CAPS: &str = "http://jabber.org/protocol/caps";
pub const HINTS: &str = "urn:xmpp:hints";
