//! XML framing for the relay: validating RFC 7395 WebSocket messages from the browser, and cutting
//! the server's RFC 6120 TCP stream into standalone elements for the browser.
//!
//! No XML crate on purpose: XMPP allows only a small subset of XML (RFC 6120 §11.1: no DTD, no
//! comments, no processing instructions, only the predefined and numeric references), and a
//! hand-written tokenizer for that subset lets us bound memory and depth exactly and never build a
//! DOM. The bridge only needs to know *where* elements start and end, their names, namespaces and
//! root attributes; everything else is passed through byte for byte.
//!
//! Everything here handles untrusted input from both sides, so it never panics, never indexes
//! unchecked, and every scan is linear in the input (incremental feeding resumes where it stopped).

// Indexing is a panic path on attacker-controlled offsets; use `get` everywhere in this module.
#![deny(clippy::indexing_slicing)]

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// Content namespace of client-to-server streams (RFC 6120 §4.8.3).
pub const JABBER_CLIENT_NS: &str = "jabber:client";
/// Namespace of the RFC 7395 `<open/>` and `<close/>` framing elements.
pub const FRAMING_NS: &str = "urn:ietf:params:xml:ns:xmpp-framing";
/// Namespace of `<stream:stream>`, `<stream:features>` and `<stream:error>` (RFC 6120 §4.8.1).
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";
/// Namespace of the defined conditions inside `<stream:error>` (RFC 6120 §4.9.2).
pub const STREAM_ERRORS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// The `<close/>` frame that ends an RFC 7395 session (§3.6).
pub const CLOSE_FRAME: &str = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";
/// The end of a TCP XML stream (RFC 6120 §4.4).
pub const STREAM_END: &str = "</stream:stream>";

/// The namespace the `xml` prefix is permanently bound to (Namespaces in XML 1.0 §3).
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
/// The namespace of `xmlns` attributes themselves; nothing may be bound to it.
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// Bounds applied to every element, whichever direction it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Largest accepted element (a whole WebSocket message, or one depth-1 element of the TCP
    /// stream), in bytes of UTF-8.
    pub max_element_bytes: usize,
    /// Deepest accepted nesting, counting the top-level element (stanza) as depth 1.
    pub max_depth: usize,
}

impl Default for XmlLimits {
    /// 256 KiB matches the default stanza size limit of both Prosody and ejabberd, so anything the
    /// server would accept fits; 64 levels is far beyond any real stanza.
    fn default() -> Self {
        XmlLimits {
            max_element_bytes: 262_144,
            max_depth: 64,
        }
    }
}

/// Why a piece of XML was rejected.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum XmlError {
    /// The input is not well-formed (or not namespace-well-formed) XML; the text says why.
    #[error("not well-formed XML: {0}")]
    NotWellFormed(&'static str),
    /// An element is larger than [`XmlLimits::max_element_bytes`].
    #[error("element exceeds the size limit")]
    TooLarge,
    /// Elements are nested deeper than [`XmlLimits::max_depth`].
    #[error("elements nested deeper than the limit")]
    TooDeep,
    /// XML that is well-formed but forbidden in XMPP (RFC 6120 §11.1): DOCTYPE, comment,
    /// processing instruction, entity reference other than the predefined ones.
    #[error("XML feature not allowed in XMPP: {0}")]
    Restricted(&'static str),
    /// The element does not declare a namespace (RFC 7395 §3.3.3: every message declares its own).
    #[error("element does not declare a namespace")]
    MissingNamespace,
    /// An element that must be in a particular namespace is not (e.g. the stream header).
    #[error("wrong namespace: {0}")]
    InvalidNamespace(&'static str),
    /// A name uses a namespace prefix that no enclosing element declares.
    #[error("undeclared namespace prefix")]
    UndeclaredPrefix,
    /// The XML declaration names an encoding other than UTF-8 (RFC 6120 §11.6).
    #[error("unsupported encoding; XMPP is UTF-8 only")]
    UnsupportedEncoding,
    /// Valid XML that is not an acceptable WebSocket message, e.g. an unknown element in the
    /// framing namespace or a TCP-style `<stream:stream>` header.
    #[error("element not acceptable as a WebSocket message: {0}")]
    UnexpectedFrame(&'static str),
}

impl XmlError {
    /// The RFC 6120 §4.9.3 stream error condition to report for this error.
    pub fn stream_error_condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::TooLarge | XmlError::TooDeep => "policy-violation",
            XmlError::Restricted(_) => "restricted-xml",
            XmlError::MissingNamespace | XmlError::InvalidNamespace(_) => "invalid-namespace",
            XmlError::UndeclaredPrefix => "bad-namespace-prefix",
            XmlError::UnsupportedEncoding => "unsupported-encoding",
            XmlError::UnexpectedFrame(_) => "unsupported-stanza-type",
        }
    }
}

/// Summary of a well-formed element: what the bridge needs for routing/policy without a DOM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementInfo {
    /// Qualified name as written, e.g. `message` or `stream:features`.
    pub name: String,
    /// Local part of the name, e.g. `features`.
    pub local_name: String,
    /// Resolved namespace name (empty if the element is in no namespace).
    pub namespace: String,
    /// The element's own attributes in document order, names as written, values unescaped and
    /// normalised; namespace declarations (`xmlns`, `xmlns:*`) are left out.
    pub attributes: Vec<(String, String)>,
    /// `(namespace, local name)` of each direct child element, in document order.
    pub children: Vec<(String, String)>,
    /// The attributes of each direct child (same order as `children`), as for `attributes`.
    pub child_attributes: Vec<Vec<(String, String)>>,
}

impl ElementInfo {
    /// Value of the attribute written as `name` (e.g. `"type"` or `"xml:lang"`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a direct child with this namespace and local name exists.
    pub fn has_child(&self, namespace: &str, local_name: &str) -> bool {
        self.children
            .iter()
            .any(|(ns, name)| ns == namespace && name == local_name)
    }
}

/// One client→bridge WebSocket text message (RFC 7395: exactly one complete, standalone,
/// namespace-declaring element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' .../>`: start or restart the stream.
    Open {
        /// The `to` attribute: the domain the client wants to talk to.
        to: Option<String>,
        /// The `xml:lang` attribute.
        lang: Option<String>,
        /// The `version` attribute.
        version: Option<String>,
    },
    /// `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`: end the stream.
    Close {
        /// The `see-other-uri` attribute of a redirect (RFC 7395 §3.6.1).
        see_other_uri: Option<String>,
    },
    /// Any other element (stanza or nonza); the bridge forwards the message text unchanged.
    Element(ElementInfo),
}

/// Validates one WebSocket text message from the client and classifies it.
///
/// Checks, in order: size (before looking at a single byte), that the message starts with `<`
/// (no leading whitespace, no byte order mark), that it is exactly one well-formed element
/// followed by nothing but whitespace, within the depth limit, using only the XMPP subset of XML,
/// and that the element declares its own namespace. An XML declaration (`<?xml ...?>`) is
/// rejected as [`XmlError::Restricted`]: RFC 7395 §3.3.3 says messages carry none, and our own
/// client never sends one, so accepting it would only widen what the bridge must reason about.
pub fn parse_client_frame(frame: &str, limits: &XmlLimits) -> Result<ClientFrame, XmlError> {
    // Size first, so an oversized message costs nothing to refuse.
    if frame.len() > limits.max_element_bytes {
        return Err(XmlError::TooLarge);
    }
    if !frame.starts_with('<') {
        return Err(XmlError::NotWellFormed("message does not start with '<'"));
    }
    if frame.starts_with("<?xml") {
        return Err(XmlError::Restricted(
            "XML declaration in a WebSocket message",
        ));
    }
    let parsed = parse_element(frame, &[], limits)?;
    let trailing = frame.get(parsed.end..).unwrap_or("");
    let after = trailing.trim_start_matches(is_ws_char);
    if !after.is_empty() {
        return Err(if after.starts_with("<!--") {
            XmlError::Restricted("comment")
        } else if after.starts_with("<?") {
            XmlError::Restricted("processing instruction")
        } else if after.starts_with('<') {
            XmlError::NotWellFormed("more than one root element")
        } else {
            XmlError::NotWellFormed("content after the root element")
        });
    }
    let info = parsed.info;
    if info.namespace.is_empty() {
        return Err(XmlError::MissingNamespace);
    }
    match (info.namespace.as_str(), info.local_name.as_str()) {
        (FRAMING_NS, "open") => Ok(ClientFrame::Open {
            to: info.attr("to").map(str::to_owned),
            lang: info.attr("xml:lang").map(str::to_owned),
            version: info.attr("version").map(str::to_owned),
        }),
        (FRAMING_NS, "close") => Ok(ClientFrame::Close {
            see_other_uri: info.attr("see-other-uri").map(str::to_owned),
        }),
        (FRAMING_NS, _) => Err(XmlError::UnexpectedFrame("unknown framing element")),
        // A TCP stream header has no meaning over WebSocket (RFC 7395 §3.3.2 uses <open/>), and
        // forwarding one would confuse the server's parser.
        (STREAM_NS, "stream") => Err(XmlError::UnexpectedFrame("stream header over WebSocket")),
        _ => Ok(ClientFrame::Element(info)),
    }
}

/// Escapes a string for use inside a single- or double-quoted attribute value (and as text).
pub fn escape_attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The TCP stream header the bridge sends to the server (RFC 6120 §4.7), with an XML declaration.
pub fn stream_header(to: &str, lang: Option<&str>) -> String {
    let mut out = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{JABBER_CLIENT_NS}' xmlns:stream='{STREAM_NS}' to='{}' version='1.0'",
        escape_attr(to)
    );
    if let Some(lang) = lang {
        out.push_str(" xml:lang='");
        out.push_str(&escape_attr(lang));
        out.push('\'');
    }
    out.push('>');
    out
}

/// One event from the server's TCP stream, ready for the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// The `<stream:stream ...>` header, translated to an RFC 7395 `<open/>` element (string ready
    /// to send) plus its attributes.
    StreamOpen {
        /// `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' .../>` carrying from/id/version/xml:lang.
        open_frame: String,
        /// The header's `from` attribute.
        from: Option<String>,
        /// The header's `id` attribute (stream id).
        id: Option<String>,
        /// The header's `version` attribute.
        version: Option<String>,
        /// The header's `xml:lang` attribute.
        lang: Option<String>,
    },
    /// One depth-1 element, re-serialised as a standalone document: every namespace declaration
    /// in scope from the stream root that the element itself does not re-declare is added to its
    /// start tag (the default namespace always when the element has none; prefixed ones such as
    /// `xmlns:stream` only when the prefix is used inside the element). The element's bytes are
    /// otherwise passed through unchanged.
    Element {
        /// The standalone element.
        xml: String,
        /// Its summary.
        info: ElementInfo,
    },
    /// `</stream:stream>`: the server closed its stream. Bytes after it are ignored.
    StreamClose,
}

/// Incremental splitter for the upstream (server→bridge) TCP byte stream.
///
/// Feeding is eager: [`Splitter::feed`] scans the new bytes at once (so it can enforce the size
/// limit on what is buffered) and queues complete events; [`Splitter::next_event`] hands them out.
/// Scanning resumes exactly where it stopped, so feeding an element in tiny pieces costs the same
/// as feeding it whole; each complete element is then parsed once more in full for validation.
/// Any error is final: every later call returns it again, even after [`Splitter::reset`].
#[derive(Debug)]
pub struct Splitter {
    limits: XmlLimits,
    /// Decoded input not yet discarded. Always whole characters: split UTF-8 waits in `utf8_tail`.
    buf: String,
    /// Up to 3 bytes of a UTF-8 sequence cut by the end of the last read.
    utf8_tail: Vec<u8>,
    /// Bytes of `buf` before this offset are finished with; dropped at the next `feed`.
    consumed: usize,
    /// Scan cursor: every byte before it has been looked at.
    pos: usize,
    /// Start of the markup token being scanned (`<` position).
    tok_start: usize,
    /// Start of the depth-1 element being scanned.
    elem_start: usize,
    /// Scanner state inside the current token.
    lex: Lex,
    phase: Phase,
    /// Elements open inside the stream root (0 = between stanzas).
    open: usize,
    /// The stream header's qualified name and namespace declarations (in document order).
    root: Option<StreamRoot>,
    queue: VecDeque<UpstreamEvent>,
    failed: Option<XmlError>,
}

#[derive(Debug)]
struct StreamRoot {
    qname: String,
    decls: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header. The XML declaration is allowed only as the very first thing
    /// (after an optional byte order mark), as XML 1.0 §2.8 requires.
    Prolog {
        decl_allowed: bool,
        bom_allowed: bool,
    },
    /// After the stream header.
    Stream,
    /// After `</stream:stream>`: everything is ignored.
    Closed,
}

/// Where the byte scanner is inside a token; enough state to resume after a cut at any byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// At a token boundary (text or whitespace may follow).
    Between,
    /// Just after `<`; the next bytes decide what kind of markup this is.
    Markup,
    /// Inside a start or end tag, looking for the `>` that is not inside a quoted value.
    /// `prev` is the byte before the cursor (a `/` before `>` means an empty-element tag).
    Tag {
        end_tag: bool,
        quote: Option<u8>,
        prev: u8,
    },
    /// Inside `<![CDATA[`, counting trailing `]` to find `]]>`.
    Cdata { brackets: u8 },
    /// Inside the XML declaration, looking for `?>`.
    Decl { question: bool },
}

impl Splitter {
    /// A splitter expecting a new stream (optional XML declaration, then the stream header).
    pub fn new(limits: XmlLimits) -> Self {
        Splitter {
            limits,
            buf: String::new(),
            utf8_tail: Vec::new(),
            consumed: 0,
            pos: 0,
            tok_start: 0,
            elem_start: 0,
            lex: Lex::Between,
            phase: Phase::Prolog {
                decl_allowed: true,
                bom_allowed: true,
            },
            open: 0,
            root: None,
            queue: VecDeque::new(),
            failed: None,
        }
    }

    /// Appends bytes read from the socket and scans them, queueing every event they complete.
    ///
    /// Errors as soon as the input is invalid, including when the not-yet-complete element would
    /// exceed `max_element_bytes`, so at most the limit plus one read is ever buffered. Input must
    /// be UTF-8; a character may be split across calls. After `</stream:stream>` input is ignored.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), XmlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.phase == Phase::Closed {
            return Ok(());
        }
        let result = self
            .compact()
            .and_then(|()| self.append_utf8(bytes))
            .and_then(|()| self.process());
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.queue.clear();
            self.buf = String::new();
        }
        result
    }

    /// The next complete event, `Ok(None)` when more bytes are needed (or the stream is closed).
    pub fn next_event(&mut self) -> Result<Option<UpstreamEvent>, XmlError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        Ok(self.queue.pop_front())
    }

    /// Forgets the current stream: next expected is a new (optional `<?xml?>` declaration +)
    /// stream header. Called after STARTTLS `<proceed/>` and when the stream restarts after SASL.
    ///
    /// Discards everything buffered or queued: after `<proceed/>` the next bytes are TLS, and
    /// after a restart the server sends nothing until it has our new header, so anything buffered
    /// belongs to the old stream. An earlier error is *not* cleared: it ended the connection.
    pub fn reset(&mut self) {
        let failed = self.failed.take();
        *self = Splitter::new(self.limits);
        self.failed = failed;
    }

    /// Drops consumed bytes from the front of the buffer. Done once per `feed` rather than per
    /// event, so a read holding many stanzas is not shifted once per stanza.
    fn compact(&mut self) -> Result<(), XmlError> {
        let c = self.consumed.min(self.buf.len());
        if c == 0 {
            return Ok(());
        }
        // `consumed` only ever lands just after ASCII markup, so this holds; checking keeps
        // `drain` from ever panicking.
        if !self.buf.is_char_boundary(c) {
            return Err(XmlError::NotWellFormed(
                "internal: buffer offset inside a character",
            ));
        }
        self.buf.drain(..c);
        self.consumed = 0;
        self.pos = self.pos.saturating_sub(c);
        self.tok_start = self.tok_start.saturating_sub(c);
        self.elem_start = self.elem_start.saturating_sub(c);
        Ok(())
    }

    fn append_utf8(&mut self, bytes: &[u8]) -> Result<(), XmlError> {
        let joined;
        let data: &[u8] = if self.utf8_tail.is_empty() {
            bytes
        } else {
            let mut v = std::mem::take(&mut self.utf8_tail);
            v.extend_from_slice(bytes);
            joined = v;
            &joined
        };
        match std::str::from_utf8(data) {
            Ok(s) => self.buf.push_str(s),
            Err(e) => {
                if e.error_len().is_some() {
                    return Err(XmlError::NotWellFormed("invalid UTF-8"));
                }
                // Only an incomplete sequence at the very end: keep it for the next read.
                let (good, rest) = data
                    .split_at_checked(e.valid_up_to())
                    .ok_or(XmlError::NotWellFormed("invalid UTF-8"))?;
                let good = std::str::from_utf8(good)
                    .map_err(|_| XmlError::NotWellFormed("invalid UTF-8"))?;
                self.buf.push_str(good);
                self.utf8_tail = rest.to_vec();
            }
        }
        Ok(())
    }

    /// Runs the scanner until it needs more input.
    fn process(&mut self) -> Result<(), XmlError> {
        loop {
            if self.phase == Phase::Closed {
                return Ok(());
            }
            let progressed = match self.lex {
                Lex::Between => self.step_between()?,
                Lex::Markup => self.step_markup()?,
                Lex::Tag { .. } => self.step_tag()?,
                Lex::Cdata { .. } => self.step_cdata()?,
                Lex::Decl { .. } => self.step_decl()?,
            };
            if !progressed {
                break;
            }
        }
        // Everything available has been scanned; refuse to keep an incomplete element that is
        // already over the limit, so the buffer stays bounded by limit + one read.
        let pending_start = match self.phase {
            Phase::Stream if self.open > 0 || self.lex != Lex::Between => Some(self.elem_start),
            Phase::Prolog { .. } if self.lex != Lex::Between => Some(self.tok_start),
            _ => None,
        };
        if let Some(start) = pending_start {
            if self.buf.len().saturating_sub(start) > self.limits.max_element_bytes {
                return Err(XmlError::TooLarge);
            }
        }
        Ok(())
    }

    fn step_between(&mut self) -> Result<bool, XmlError> {
        let Some(&b) = self.buf.as_bytes().get(self.pos) else {
            return Ok(false);
        };
        if b == b'<' {
            self.tok_start = self.pos;
            if self.phase == Phase::Stream && self.open == 0 {
                self.elem_start = self.pos;
            }
            self.pos += 1;
            self.lex = Lex::Markup;
            return Ok(true);
        }
        match self.phase {
            Phase::Prolog { bom_allowed, .. } => {
                if bom_allowed
                    && self
                        .buf
                        .get(self.pos..)
                        .is_some_and(|s| s.starts_with('\u{FEFF}'))
                {
                    // XML 1.0 §4.3.3 allows a byte order mark; the declaration may still follow.
                    self.pos += '\u{FEFF}'.len_utf8();
                    self.phase = Phase::Prolog {
                        decl_allowed: true,
                        bom_allowed: false,
                    };
                } else if is_ws_byte(b) {
                    self.pos += 1;
                    self.phase = Phase::Prolog {
                        decl_allowed: false,
                        bom_allowed: false,
                    };
                } else {
                    return Err(XmlError::NotWellFormed("text before the stream header"));
                }
                self.consumed = self.pos;
            }
            Phase::Stream if self.open == 0 => {
                // Whitespace keepalives between stanzas (RFC 6120 §4.6.1) are dropped here:
                // RFC 7395 §3.8 has no whitespace on WebSocket.
                if !is_ws_byte(b) {
                    return Err(XmlError::NotWellFormed("text at stream level"));
                }
                self.pos += 1;
                self.consumed = self.pos;
            }
            Phase::Stream => {
                // Text inside a stanza: skip to the next markup; it is validated when the
                // element is complete.
                let rest = self.buf.as_bytes().get(self.pos..).unwrap_or(&[]);
                self.pos += rest.iter().position(|&c| c == b'<').unwrap_or(rest.len());
            }
            Phase::Closed => return Ok(false),
        }
        Ok(true)
    }

    fn step_markup(&mut self) -> Result<bool, XmlError> {
        let rest = self.buf.as_bytes().get(self.pos..).unwrap_or(&[]);
        let Some(&b) = rest.first() else {
            return Ok(false);
        };
        match b {
            b'/' => {
                if matches!(self.phase, Phase::Prolog { .. }) {
                    return Err(XmlError::NotWellFormed("end tag before the stream header"));
                }
                self.pos += 1;
                self.lex = Lex::Tag {
                    end_tag: true,
                    quote: None,
                    prev: b'/',
                };
                Ok(true)
            }
            b'?' => {
                if let Phase::Prolog {
                    decl_allowed: true, ..
                } = self.phase
                {
                    match prefix_match(rest, b"?xml") {
                        Prefix::Partial => return Ok(false),
                        Prefix::Full => match rest.get(4) {
                            None => return Ok(false),
                            Some(&c) if is_ws_byte(c) => {
                                self.pos += 4;
                                self.lex = Lex::Decl { question: false };
                                return Ok(true);
                            }
                            Some(_) => {}
                        },
                        Prefix::No => {}
                    }
                }
                Err(XmlError::Restricted("processing instruction"))
            }
            b'!' => match rest.get(1) {
                None => Ok(false),
                Some(b'-') => Err(XmlError::Restricted("comment")),
                Some(b'D') => Err(XmlError::Restricted("DOCTYPE")),
                Some(b'[') => match prefix_match(rest, b"![CDATA[") {
                    Prefix::Partial => Ok(false),
                    Prefix::Full if self.phase == Phase::Stream && self.open > 0 => {
                        self.pos += 8;
                        self.lex = Lex::Cdata { brackets: 0 };
                        Ok(true)
                    }
                    Prefix::Full => {
                        Err(XmlError::NotWellFormed("CDATA section outside an element"))
                    }
                    Prefix::No => Err(XmlError::NotWellFormed("malformed markup declaration")),
                },
                Some(_) => Err(XmlError::NotWellFormed("malformed markup declaration")),
            },
            _ => {
                self.lex = Lex::Tag {
                    end_tag: false,
                    quote: None,
                    prev: b'<',
                };
                Ok(true)
            }
        }
    }

    fn step_tag(&mut self) -> Result<bool, XmlError> {
        let Lex::Tag {
            end_tag,
            mut quote,
            mut prev,
        } = self.lex
        else {
            return Ok(false);
        };
        let bytes = self.buf.as_bytes();
        let start = self.pos;
        let mut found = None;
        for (i, &b) in bytes.get(start..).unwrap_or(&[]).iter().enumerate() {
            match quote {
                Some(q) => {
                    if b == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'\'' | b'"' => quote = Some(b),
                    b'>' => {
                        found = Some(start + i);
                        break;
                    }
                    // Can never be well-formed; failing now avoids scanning on to the limit.
                    b'<' => return Err(XmlError::NotWellFormed("'<' inside a tag")),
                    _ => {}
                },
            }
            prev = b;
        }
        match found {
            None => {
                self.pos = bytes.len();
                self.lex = Lex::Tag {
                    end_tag,
                    quote,
                    prev,
                };
                Ok(false)
            }
            Some(gt) => {
                self.pos = gt + 1;
                self.lex = Lex::Between;
                let empty = !end_tag && prev == b'/';
                self.complete_tag(end_tag, empty)?;
                Ok(true)
            }
        }
    }

    fn step_cdata(&mut self) -> Result<bool, XmlError> {
        let Lex::Cdata { mut brackets } = self.lex else {
            return Ok(false);
        };
        let bytes = self.buf.as_bytes();
        let start = self.pos;
        for (i, &b) in bytes.get(start..).unwrap_or(&[]).iter().enumerate() {
            if b == b'>' && brackets >= 2 {
                self.pos = start + i + 1;
                self.lex = Lex::Between;
                return Ok(true);
            }
            brackets = if b == b']' {
                brackets.saturating_add(1).min(2)
            } else {
                0
            };
        }
        self.pos = bytes.len();
        self.lex = Lex::Cdata { brackets };
        Ok(false)
    }

    fn step_decl(&mut self) -> Result<bool, XmlError> {
        let Lex::Decl { mut question } = self.lex else {
            return Ok(false);
        };
        let bytes = self.buf.as_bytes();
        let start = self.pos;
        let mut found = None;
        for (i, &b) in bytes.get(start..).unwrap_or(&[]).iter().enumerate() {
            if b == b'>' && question {
                found = Some(start + i);
                break;
            }
            question = b == b'?';
        }
        let Some(gt) = found else {
            self.pos = bytes.len();
            self.lex = Lex::Decl { question };
            return Ok(false);
        };
        self.pos = gt + 1;
        self.lex = Lex::Between;
        let text = self
            .buf
            .get(self.tok_start..self.pos)
            .ok_or(XmlError::NotWellFormed("internal: bad declaration offsets"))?;
        check_xml_decl(text)?;
        self.phase = Phase::Prolog {
            decl_allowed: false,
            bom_allowed: false,
        };
        self.consumed = self.pos;
        Ok(true)
    }

    /// A tag from `tok_start` to `pos` is complete.
    fn complete_tag(&mut self, end_tag: bool, empty: bool) -> Result<(), XmlError> {
        match self.phase {
            Phase::Prolog { .. } => self.open_stream(),
            Phase::Stream if end_tag => {
                if self.open == 0 {
                    return self.close_stream();
                }
                self.open -= 1;
                if self.open == 0 {
                    self.finish_element()?;
                }
                Ok(())
            }
            Phase::Stream => {
                let depth = self.open.saturating_add(1);
                if depth > self.limits.max_depth {
                    return Err(XmlError::TooDeep);
                }
                if !empty {
                    self.open = depth;
                } else if self.open == 0 {
                    self.finish_element()?;
                }
                Ok(())
            }
            Phase::Closed => Ok(()),
        }
    }

    fn open_stream(&mut self) -> Result<(), XmlError> {
        let text = self
            .buf
            .get(self.tok_start..self.pos)
            .ok_or(XmlError::NotWellFormed("internal: bad header offsets"))?;
        if text.len() > self.limits.max_element_bytes {
            return Err(XmlError::TooLarge);
        }
        let mut r = Reader::new(text);
        let tag = r.start_tag()?;
        if r.pos != text.len() {
            return Err(XmlError::NotWellFormed("malformed stream header"));
        }
        if tag.empty {
            return Err(XmlError::NotWellFormed("self-closing stream header"));
        }
        let mut scope = Scope::default();
        let mut used = BTreeSet::new();
        let opened = open_element(&tag, &mut scope, &mut used)?;
        if opened.namespace != STREAM_NS || opened.local != "stream" {
            return Err(XmlError::InvalidNamespace(
                "stream header is not a streams-namespace <stream>",
            ));
        }
        let get = |name: &str| {
            tag.attrs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        let (from, id, version, lang) = (get("from"), get("id"), get("version"), get("xml:lang"));
        let mut open_frame = format!("<open xmlns='{FRAMING_NS}'");
        for (name, value) in [
            ("from", &from),
            ("id", &id),
            ("version", &version),
            ("xml:lang", &lang),
        ] {
            if let Some(value) = value {
                open_frame.push(' ');
                open_frame.push_str(name);
                open_frame.push_str("='");
                open_frame.push_str(&escape_attr(value));
                open_frame.push('\'');
            }
        }
        open_frame.push_str("/>");
        self.root = Some(StreamRoot {
            qname: tag.qname.to_owned(),
            decls: opened.declared,
        });
        self.queue.push_back(UpstreamEvent::StreamOpen {
            open_frame,
            from,
            id,
            version,
            lang,
        });
        self.phase = Phase::Stream;
        self.open = 0;
        self.consumed = self.pos;
        Ok(())
    }

    fn close_stream(&mut self) -> Result<(), XmlError> {
        let text = self
            .buf
            .get(self.tok_start..self.pos)
            .ok_or(XmlError::NotWellFormed("internal: bad end tag offsets"))?;
        let mut r = Reader::new(text);
        let name = if r.eat("</") { r.qname()? } else { "" };
        r.skip_ws();
        if !r.eat(">") || r.pos != text.len() {
            return Err(XmlError::NotWellFormed("malformed end tag"));
        }
        if self.root.as_ref().map(|root| root.qname.as_str()) != Some(name) {
            return Err(XmlError::NotWellFormed("mismatched end tag for the stream"));
        }
        self.queue.push_back(UpstreamEvent::StreamClose);
        // Nothing after the end of the stream matters; drop it and stop scanning.
        self.phase = Phase::Closed;
        self.buf = String::new();
        self.utf8_tail.clear();
        self.consumed = 0;
        self.pos = 0;
        self.tok_start = 0;
        self.elem_start = 0;
        self.lex = Lex::Between;
        Ok(())
    }

    /// A depth-1 element spans `elem_start..pos`: validate it fully and queue it, standalone.
    fn finish_element(&mut self) -> Result<(), XmlError> {
        let (start, end) = (self.elem_start, self.pos);
        if end.saturating_sub(start) > self.limits.max_element_bytes {
            return Err(XmlError::TooLarge);
        }
        let text = self
            .buf
            .get(start..end)
            .ok_or(XmlError::NotWellFormed("internal: bad element offsets"))?;
        let inherited: &[(String, String)] = match &self.root {
            Some(root) => &root.decls,
            None => &[],
        };
        let parsed = parse_element(text, inherited, &self.limits)?;
        if parsed.end != text.len() {
            // The scanner and the parser disagree on where the element ends: only possible
            // for malformed input (e.g. quotes inside an end tag).
            return Err(XmlError::NotWellFormed("malformed element"));
        }
        if parsed.info.namespace.is_empty() {
            return Err(XmlError::MissingNamespace);
        }
        let xml = redeclare(text, &parsed, inherited)?;
        self.queue.push_back(UpstreamEvent::Element {
            xml,
            info: parsed.info,
        });
        self.consumed = end;
        Ok(())
    }
}

/// Inserts the stream root's namespace declarations the element relies on right after its name.
fn redeclare(
    text: &str,
    parsed: &ParsedElement,
    inherited: &[(String, String)],
) -> Result<String, XmlError> {
    let declares = |prefix: &str| parsed.declared.iter().any(|(p, _)| p == prefix);
    let mut extra = String::new();
    // Default namespace first, then prefixes in header order: stable output, easy to read.
    let defaults = inherited.iter().filter(|(p, _)| p.is_empty());
    let prefixed = inherited.iter().filter(|(p, _)| !p.is_empty());
    for (prefix, uri) in defaults.chain(prefixed) {
        let needed = if prefix.is_empty() {
            !uri.is_empty()
        } else {
            prefix != "xml" && parsed.used_prefixes.contains(prefix)
        };
        if !needed || declares(prefix) {
            continue;
        }
        extra.push_str(" xmlns");
        if !prefix.is_empty() {
            extra.push(':');
            extra.push_str(prefix);
        }
        extra.push_str("='");
        extra.push_str(&escape_attr(uri));
        extra.push('\'');
    }
    let (Some(head), Some(tail)) = (text.get(..parsed.name_end), text.get(parsed.name_end..))
    else {
        return Err(XmlError::NotWellFormed("internal: bad name offset"));
    };
    let mut out = String::with_capacity(text.len() + extra.len());
    out.push_str(head);
    out.push_str(&extra);
    out.push_str(tail);
    Ok(out)
}

/// Checks `<?xml version='1.x' [encoding='UTF-8'] [standalone='yes|no']?>`.
fn check_xml_decl(text: &str) -> Result<(), XmlError> {
    const BAD: XmlError = XmlError::NotWellFormed("malformed XML declaration");
    let inner = text
        .strip_prefix("<?xml")
        .and_then(|t| t.strip_suffix("?>"))
        .ok_or(BAD)?;
    let mut r = Reader::new(inner);
    let mut seen_version = false;
    loop {
        let had_ws = r.skip_ws();
        if r.rest().is_empty() {
            break;
        }
        if !had_ws {
            return Err(BAD);
        }
        let name = r.qname()?;
        r.skip_ws();
        if !r.eat("=") {
            return Err(BAD);
        }
        r.skip_ws();
        let quote = match r.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(BAD),
        };
        r.pos += 1;
        let rest = r.rest();
        let len = rest.find(quote).ok_or(BAD)?;
        let value = rest.get(..len).ok_or(BAD)?;
        r.pos += len + 1;
        match name {
            "version" if !seen_version => {
                if !value.starts_with("1.") {
                    return Err(BAD);
                }
                seen_version = true;
            }
            "encoding" if seen_version => {
                if !value.eq_ignore_ascii_case("utf-8") {
                    return Err(XmlError::UnsupportedEncoding);
                }
            }
            "standalone" if seen_version => {
                if value != "yes" && value != "no" {
                    return Err(BAD);
                }
            }
            _ => return Err(BAD),
        }
    }
    if seen_version {
        Ok(())
    } else {
        Err(BAD)
    }
}

enum Prefix {
    Full,
    Partial,
    No,
}

/// Whether `have` starts with `want`, or could once more bytes arrive.
fn prefix_match(have: &[u8], want: &[u8]) -> Prefix {
    if have.len() >= want.len() {
        if have.starts_with(want) {
            Prefix::Full
        } else {
            Prefix::No
        }
    } else if want.starts_with(have) {
        Prefix::Partial
    } else {
        Prefix::No
    }
}

fn is_ws_byte(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_ws_char(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// XML 1.0 `Char`: the characters a document may contain at all.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// XML 1.0 (5th ed.) `NameStartChar`, minus `:` (namespaces give the colon its own role).
fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// XML 1.0 `NameChar` (including `:`; qualified-name shape is checked separately).
fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, ':' | '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// A cursor over a complete piece of XML. All reads go through `get`, so no offset can panic.
struct Reader<'a> {
    src: &'a str,
    pos: usize,
}

/// A start tag as written: qualified names borrowed from the input, values unescaped.
struct RawStartTag<'a> {
    qname: &'a str,
    attrs: Vec<(&'a str, String)>,
    empty: bool,
}

impl<'a> Reader<'a> {
    fn new(src: &'a str) -> Self {
        Reader { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Skips whitespace; true if there was any.
    fn skip_ws(&mut self) -> bool {
        let rest = self.rest();
        let skipped = rest.len() - rest.trim_start_matches(is_ws_char).len();
        self.pos += skipped;
        skipped > 0
    }

    /// A namespace-valid qualified name: `NCName` or `NCName:NCName`.
    fn qname(&mut self) -> Result<&'a str, XmlError> {
        let rest = self.rest();
        let mut len = 0;
        for (i, c) in rest.char_indices() {
            let ok = if i == 0 {
                is_name_start(c)
            } else {
                is_name_char(c)
            };
            if !ok {
                break;
            }
            len = i + c.len_utf8();
        }
        let name = rest.get(..len).unwrap_or("");
        if name.is_empty() {
            return Err(XmlError::NotWellFormed("expected a name"));
        }
        if let Some((_, local)) = name.split_once(':') {
            if local.contains(':') || !local.starts_with(is_name_start) {
                return Err(XmlError::NotWellFormed("invalid qualified name"));
            }
        }
        self.pos += len;
        Ok(name)
    }

    /// After `&`: a predefined entity or a character reference, returning the character.
    fn reference(&mut self) -> Result<char, XmlError> {
        if self.eat("#x") {
            return self.char_ref(16);
        }
        if self.eat("#") {
            return self.char_ref(10);
        }
        let name = self
            .qname()
            .map_err(|_| XmlError::NotWellFormed("malformed entity reference"))?;
        if !self.eat(";") {
            return Err(XmlError::NotWellFormed("malformed entity reference"));
        }
        match name {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "apos" => Ok('\''),
            "quot" => Ok('"'),
            // Other entities need a DTD, which XMPP forbids (RFC 6120 §11.1); this is also what
            // makes entity-expansion attacks impossible.
            _ => Err(XmlError::Restricted("entity reference")),
        }
    }

    fn char_ref(&mut self, radix: u32) -> Result<char, XmlError> {
        const RANGE: XmlError =
            XmlError::NotWellFormed("character reference to a forbidden character");
        let mut value: u32 = 0;
        let mut digits = 0usize;
        while let Some(d) = self.peek().and_then(|c| c.to_digit(radix)) {
            value = value
                .checked_mul(radix)
                .and_then(|v| v.checked_add(d))
                .ok_or(RANGE)?;
            digits += 1;
            self.pos += 1;
        }
        if digits == 0 || !self.eat(";") {
            return Err(XmlError::NotWellFormed("malformed character reference"));
        }
        char::from_u32(value)
            .filter(|c| is_xml_char(*c))
            .ok_or(RANGE)
    }

    /// A quoted attribute value, unescaped and normalised (XML 1.0 §3.3.3: literal tab, CR, LF
    /// and CRLF become one space each; character references are kept as written).
    fn attr_value(&mut self) -> Result<String, XmlError> {
        let quote = match self.peek() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(XmlError::NotWellFormed("attribute value must be quoted")),
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(XmlError::NotWellFormed("unterminated attribute value"));
            };
            self.pos += c.len_utf8();
            match c {
                c if c == quote => return Ok(out),
                '<' => return Err(XmlError::NotWellFormed("'<' in attribute value")),
                '&' => out.push(self.reference()?),
                '\t' | '\n' => out.push(' '),
                '\r' => {
                    self.eat("\n");
                    out.push(' ');
                }
                c if !is_xml_char(c) => return Err(XmlError::NotWellFormed("invalid character")),
                c => out.push(c),
            }
        }
    }

    /// Character data up to the next `<` (or the end): validated, not collected.
    fn text(&mut self) -> Result<(), XmlError> {
        loop {
            let Some(c) = self.peek() else {
                return Ok(());
            };
            match c {
                '<' => return Ok(()),
                '&' => {
                    self.pos += 1;
                    self.reference()?;
                }
                ']' if self.rest().starts_with("]]>") => {
                    return Err(XmlError::NotWellFormed("']]>' in text"));
                }
                c if !is_xml_char(c) => return Err(XmlError::NotWellFormed("invalid character")),
                c => self.pos += c.len_utf8(),
            }
        }
    }

    /// `<name attr='v' ...>` or `.../>`, starting at `<`.
    fn start_tag(&mut self) -> Result<RawStartTag<'a>, XmlError> {
        if !self.eat("<") {
            return Err(XmlError::NotWellFormed("expected '<'"));
        }
        let qname = self.qname()?;
        let mut attrs = Vec::new();
        loop {
            let had_ws = self.skip_ws();
            if self.eat("/>") {
                return Ok(RawStartTag {
                    qname,
                    attrs,
                    empty: true,
                });
            }
            if self.eat(">") {
                return Ok(RawStartTag {
                    qname,
                    attrs,
                    empty: false,
                });
            }
            if self.rest().is_empty() {
                return Err(XmlError::NotWellFormed("unterminated start tag"));
            }
            if !had_ws {
                return Err(XmlError::NotWellFormed(
                    "attributes must be separated by whitespace",
                ));
            }
            let name = self.qname()?;
            self.skip_ws();
            if !self.eat("=") {
                return Err(XmlError::NotWellFormed("attribute without a value"));
            }
            self.skip_ws();
            let value = self.attr_value()?;
            attrs.push((name, value));
        }
    }
}

/// In-scope namespace bindings: prefix (`""` = default) → stack of `(URI, inherited)`, innermost
/// last. `inherited` marks bindings that come from outside the parsed element (the stream root),
/// which are the ones a standalone copy of the element must re-declare.
#[derive(Default)]
struct Scope {
    map: HashMap<String, Vec<(String, bool)>>,
}

impl Scope {
    fn bind(&mut self, prefix: &str, uri: &str) {
        self.push(prefix, uri, false);
    }

    fn inherit(&mut self, prefix: &str, uri: &str) {
        self.push(prefix, uri, true);
    }

    fn push(&mut self, prefix: &str, uri: &str, inherited: bool) {
        self.map
            .entry(prefix.to_owned())
            .or_default()
            .push((uri.to_owned(), inherited));
    }

    fn unbind_all(&mut self, declared: &[(String, String)]) {
        for (prefix, _) in declared {
            if let Some(stack) = self.map.get_mut(prefix) {
                stack.pop();
            }
        }
    }

    fn lookup(&self, prefix: &str) -> Option<&str> {
        self.map
            .get(prefix)
            .and_then(|stack| stack.last())
            .map(|(uri, _)| uri.as_str())
    }

    /// The namespace of a prefix used in a name (`xml` is predefined), noting in `used` the
    /// prefixes whose binding is inherited.
    fn resolve_prefix(
        &self,
        prefix: &str,
        used: &mut BTreeSet<String>,
    ) -> Result<String, XmlError> {
        match prefix {
            "xml" => Ok(XML_NS.to_owned()),
            "xmlns" => Err(XmlError::NotWellFormed("the xmlns prefix is reserved")),
            p => match self.map.get(p).and_then(|stack| stack.last()) {
                Some((uri, inherited)) if !uri.is_empty() => {
                    if *inherited {
                        used.insert(p.to_owned());
                    }
                    Ok(uri.clone())
                }
                _ => Err(XmlError::UndeclaredPrefix),
            },
        }
    }
}

/// Namespace declarations, `(prefix, uri)`, prefix `""` for the default namespace.
type Decls = Vec<(String, String)>;

/// What [`open_element`] learned about a start tag.
struct OpenedElement<'a> {
    namespace: String,
    local: &'a str,
    /// Namespace declarations on this element, `(prefix, uri)`, prefix `""` for the default.
    declared: Vec<(String, String)>,
}

/// Applies a start tag's namespace declarations to `scope` and resolves its names, checking
/// Namespaces in XML 1.0 (reserved prefixes, no undeclared prefixes, no duplicate expanded
/// attribute names). Prefixes resolved through inherited bindings go into `used`.
fn open_element<'a>(
    tag: &RawStartTag<'a>,
    scope: &mut Scope,
    used: &mut BTreeSet<String>,
) -> Result<OpenedElement<'a>, XmlError> {
    const BAD_DECL: XmlError = XmlError::NotWellFormed("invalid namespace declaration");
    let mut seen = HashSet::new();
    let mut declared = Vec::new();
    for (name, value) in &tag.attrs {
        if !seen.insert(*name) {
            return Err(XmlError::NotWellFormed("duplicate attribute"));
        }
        if *name == "xmlns" {
            if value == XML_NS || value == XMLNS_NS {
                return Err(BAD_DECL);
            }
            declared.push((String::new(), value.clone()));
        } else if let Some(prefix) = name.strip_prefix("xmlns:") {
            let bad = prefix == "xmlns"
                || value.is_empty()
                || value == XMLNS_NS
                || ((prefix == "xml") != (value == XML_NS));
            if bad {
                return Err(BAD_DECL);
            }
            declared.push((prefix.to_owned(), value.clone()));
        }
    }
    // Declarations apply to the element that carries them, so bind before resolving.
    for (prefix, uri) in &declared {
        scope.bind(prefix, uri);
    }
    let (namespace, local) = match tag.qname.split_once(':') {
        Some((prefix, local)) => (scope.resolve_prefix(prefix, used)?, local),
        None => (scope.lookup("").unwrap_or("").to_owned(), tag.qname),
    };
    let mut expanded = HashSet::new();
    for (name, _) in &tag.attrs {
        if *name == "xmlns" || name.starts_with("xmlns:") {
            continue;
        }
        // Unprefixed attributes are in no namespace; only prefixed ones can clash by expansion.
        if let Some((prefix, local)) = name.split_once(':') {
            let ns = scope.resolve_prefix(prefix, used)?;
            if !expanded.insert((ns, local)) {
                return Err(XmlError::NotWellFormed("duplicate attribute"));
            }
        }
    }
    Ok(OpenedElement {
        namespace,
        local,
        declared,
    })
}

/// One fully parsed element.
struct ParsedElement {
    info: ElementInfo,
    /// Offset just past the element's end.
    end: usize,
    /// Namespace declarations on the root start tag.
    declared: Vec<(String, String)>,
    /// Prefixes used in element or attribute names inside the element that resolve to an
    /// inherited binding (never `xml`, which is predefined).
    used_prefixes: BTreeSet<String>,
    /// Offset just past the root's name in its start tag, where declarations can be inserted.
    name_end: usize,
}

/// Parses exactly one element starting at offset 0 of `src` (which must begin with `<`), with
/// `inherited` namespace bindings in scope. Iterative, so depth costs no stack.
fn parse_element(
    src: &str,
    inherited: &[(String, String)],
    limits: &XmlLimits,
) -> Result<ParsedElement, XmlError> {
    let mut r = Reader::new(src);
    let mut scope = Scope::default();
    for (prefix, uri) in inherited {
        scope.inherit(prefix, uri);
    }
    let mut stack: Vec<(&str, Vec<(String, String)>)> = Vec::new();
    let mut used = BTreeSet::new();
    // The root's summary, its namespace declarations and where its name ends.
    let mut root: Option<(ElementInfo, Decls, usize)> = None;
    loop {
        let rest = r.rest();
        if rest.is_empty() {
            return Err(XmlError::NotWellFormed("unexpected end inside an element"));
        }
        if !rest.starts_with('<') {
            if stack.is_empty() {
                return Err(XmlError::NotWellFormed("expected '<'"));
            }
            r.text()?;
            continue;
        }
        if rest.starts_with("</") {
            r.pos += 2;
            let name = r.qname()?;
            r.skip_ws();
            if !r.eat(">") {
                return Err(XmlError::NotWellFormed("malformed end tag"));
            }
            let Some((open_name, declared)) = stack.pop() else {
                return Err(XmlError::NotWellFormed("end tag without a start tag"));
            };
            if open_name != name {
                return Err(XmlError::NotWellFormed("mismatched end tag"));
            }
            scope.unbind_all(&declared);
            if stack.is_empty() {
                break;
            }
            continue;
        }
        if rest.starts_with("<!--") {
            return Err(XmlError::Restricted("comment"));
        }
        if rest.starts_with("<![CDATA[") {
            if stack.is_empty() {
                return Err(XmlError::NotWellFormed("CDATA section outside an element"));
            }
            r.pos += "<![CDATA[".len();
            let body = r.rest();
            let len = body
                .find("]]>")
                .ok_or(XmlError::NotWellFormed("unterminated CDATA section"))?;
            let content = body.get(..len).unwrap_or("");
            if !content.chars().all(is_xml_char) {
                return Err(XmlError::NotWellFormed("invalid character"));
            }
            r.pos += len + "]]>".len();
            continue;
        }
        if rest.starts_with("<!DOCTYPE") {
            return Err(XmlError::Restricted("DOCTYPE"));
        }
        if rest.starts_with("<!") {
            return Err(XmlError::NotWellFormed("malformed markup declaration"));
        }
        if rest.starts_with("<?") {
            return Err(XmlError::Restricted("processing instruction"));
        }
        if stack.len() >= limits.max_depth {
            return Err(XmlError::TooDeep);
        }
        let tag_start = r.pos;
        let tag = r.start_tag()?;
        let opened = open_element(&tag, &mut scope, &mut used)?;
        if root.is_none() {
            let info = ElementInfo {
                name: tag.qname.to_owned(),
                local_name: opened.local.to_owned(),
                namespace: opened.namespace.clone(),
                attributes: tag
                    .attrs
                    .iter()
                    .filter(|(n, _)| *n != "xmlns" && !n.starts_with("xmlns:"))
                    .map(|(n, v)| ((*n).to_owned(), v.clone()))
                    .collect(),
                children: Vec::new(),
                child_attributes: Vec::new(),
            };
            let name_end = tag_start + 1 + tag.qname.len();
            root = Some((info, opened.declared.clone(), name_end));
        } else if stack.len() == 1 {
            if let Some((info, _, _)) = root.as_mut() {
                info.children
                    .push((opened.namespace.clone(), opened.local.to_owned()));
                info.child_attributes.push(
                    tag.attrs
                        .iter()
                        .filter(|(n, _)| *n != "xmlns" && !n.starts_with("xmlns:"))
                        .map(|(n, v)| ((*n).to_owned(), v.clone()))
                        .collect(),
                );
            }
        }
        if tag.empty {
            scope.unbind_all(&opened.declared);
            if stack.is_empty() {
                break;
            }
        } else {
            stack.push((tag.qname, opened.declared));
        }
    }
    let Some((info, declared, name_end)) = root else {
        return Err(XmlError::NotWellFormed("no element"));
    };
    Ok(ParsedElement {
        info,
        end: r.pos,
        declared,
        used_prefixes: used,
        name_end,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
    const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

    fn limits() -> XmlLimits {
        XmlLimits::default()
    }

    fn frame(s: &str) -> Result<ClientFrame, XmlError> {
        parse_client_frame(s, &limits())
    }

    fn element(s: &str) -> ElementInfo {
        match frame(s) {
            Ok(ClientFrame::Element(info)) => info,
            other => panic!("expected an element from {s:?}, got {other:?}"),
        }
    }

    // ---- client frames -------------------------------------------------------------------

    #[test]
    fn open_frame_attributes() {
        let f = frame("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0' xml:lang='en'/>");
        assert_eq!(
            f,
            Ok(ClientFrame::Open {
                to: Some("example.com".into()),
                lang: Some("en".into()),
                version: Some("1.0".into()),
            })
        );
        // Prefixed framing namespace works too, and double quotes.
        let f = frame("<f:open xmlns:f=\"urn:ietf:params:xml:ns:xmpp-framing\" to=\"a&amp;b\"/>");
        assert_eq!(
            f,
            Ok(ClientFrame::Open {
                to: Some("a&b".into()),
                lang: None,
                version: None
            })
        );
    }

    #[test]
    fn close_frame_with_and_without_redirect() {
        assert_eq!(
            frame("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            Ok(ClientFrame::Close {
                see_other_uri: None
            })
        );
        assert_eq!(
            frame(CLOSE_FRAME),
            Ok(ClientFrame::Close {
                see_other_uri: None
            })
        );
        assert_eq!(
            frame("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://other.example/ws'/>  \n"),
            Ok(ClientFrame::Close {
                see_other_uri: Some("wss://other.example/ws".into())
            })
        );
    }

    #[test]
    fn open_and_close_only_in_framing_namespace() {
        let info = element("<open xmlns='urn:example'/>");
        assert_eq!(info.namespace, "urn:example");
        assert_eq!(
            frame("<opne xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"),
            Err(XmlError::UnexpectedFrame("unknown framing element"))
        );
        assert!(matches!(
            frame("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"),
            Err(XmlError::UnexpectedFrame(_))
        ));
    }

    #[test]
    fn stanzas_with_children_and_unescaped_attributes() {
        let info = element(
            "<message xmlns='jabber:client' to='bob@example.com/r&amp;1' type='chat' id='a&lt;&gt;&quot;&apos;&#65;&#x42;'>\
             <body>hi &lt;there&gt; &#x1F600;</body>\
             <encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted>\
             <store xmlns='urn:xmpp:hints'/></message>",
        );
        assert_eq!(info.name, "message");
        assert_eq!(info.local_name, "message");
        assert_eq!(info.namespace, JABBER_CLIENT_NS);
        assert_eq!(info.attr("to"), Some("bob@example.com/r&1"));
        assert_eq!(info.attr("id"), Some("a<>\"'AB"));
        assert_eq!(info.attr("xmlns"), None, "declarations are not attributes");
        assert_eq!(
            info.children,
            vec![
                (JABBER_CLIENT_NS.to_owned(), "body".to_owned()),
                (
                    "eu.siacs.conversations.axolotl".to_owned(),
                    "encrypted".to_owned()
                ),
                ("urn:xmpp:hints".to_owned(), "store".to_owned()),
            ]
        );
        assert!(info.has_child("urn:xmpp:hints", "store"));

        let iq = element("<iq xmlns='jabber:client' type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
        assert_eq!(iq.attr("type"), Some("set"));
        assert_eq!(
            iq.children,
            vec![(
                "urn:ietf:params:xml:ns:xmpp-bind".to_owned(),
                "bind".to_owned()
            )]
        );

        let p = element("<presence xmlns='jabber:client'/>");
        assert_eq!(p.name, "presence");
        assert!(p.children.is_empty());

        // Attribute value normalisation: literal whitespace becomes spaces, references do not.
        let n = element("<x xmlns='urn:x' a='1\t2\r\n3&#10;4'/>");
        assert_eq!(n.attr("a"), Some("1 2 3\n4"));

        // CDATA is text; `]]>`-free brackets inside are fine.
        let c = element("<x xmlns='urn:x'><![CDATA[<not a tag> & ]] ]>]]></x>");
        assert!(c.children.is_empty());
    }

    #[test]
    fn stream_error_frame_recognised() {
        let info = element(&format!("<stream:error xmlns:stream='{STREAM_NS}'><policy-violation xmlns='{STREAM_ERRORS_NS}'/></stream:error>"));
        assert_eq!(info.name, "stream:error");
        assert_eq!(info.local_name, "error");
        assert_eq!(info.namespace, STREAM_NS);
        assert_eq!(
            info.children,
            vec![(STREAM_ERRORS_NS.to_owned(), "policy-violation".to_owned())]
        );
    }

    #[test]
    fn stream_header_helper_is_escaped() {
        let h = stream_header("a'b", Some("en"));
        assert!(h.starts_with("<?xml version='1.0'?><stream:stream xmlns='jabber:client'"));
        assert!(h.contains("to='a&apos;b'"));
        assert!(h.ends_with("xml:lang='en'>"));
        let mut s = Splitter::new(limits());
        s.feed(h.as_bytes()).unwrap();
        assert!(matches!(
            s.next_event(),
            Ok(Some(UpstreamEvent::StreamOpen { .. }))
        ));
    }

    #[test]
    fn frame_errors() {
        use XmlError::*;
        let nwf = |s: &str| match frame(s) {
            Err(NotWellFormed(_)) => {}
            other => panic!("{s:?} should be not-well-formed, got {other:?}"),
        };
        nwf("hello");
        nwf(" <presence xmlns='jabber:client'/>");
        nwf("\u{FEFF}<presence xmlns='jabber:client'/>");
        nwf("");
        nwf("<a xmlns='x'/><b xmlns='x'/>");
        nwf("<a xmlns='x'/>junk");
        nwf("<a xmlns='x'></b>");
        nwf("<a xmlns='x'><b></a></b>");
        nwf("<a xmlns='x'>");
        nwf("<a xmlns='x' b=c/>");
        nwf("<a xmlns='x' b='1' b='2'/>");
        nwf("<a xmlns='x' xmlns:p='urn:p' xmlns:q='urn:p' p:b='1' q:b='2'/>");
        nwf("<a xmlns='x' b='<'/>");
        nwf("<a xmlns='x' b='&'/>");
        nwf("<a xmlns='x' b='1'c='2'/>");
        nwf("<a xmlns='x'>&#0;</a>");
        nwf("<a xmlns='x'>&#xD800;</a>");
        nwf("<a xmlns='x'>&#x110000;</a>");
        nwf("<a xmlns='x'>&#99999999999999999999;</a>");
        nwf("<a xmlns='x'>&#X41;</a>");
        nwf("<a xmlns='x'>a ]]> b</a>");
        nwf("<a xmlns='x'>\u{1}</a>");
        nwf("<1a xmlns='x'/>");
        nwf("<a:b:c xmlns:a='x'/>");
        nwf("<a xmlns='x' xmlns:p=''/>");
        nwf("<a xmlns='http://www.w3.org/XML/1998/namespace'/>");
        nwf("<a xmlns='x'><![CDATA[unterminated</a>");
        assert_eq!(frame("<p:a xmlns='x'/>"), Err(UndeclaredPrefix));
        assert_eq!(frame("<a xmlns='x' p:b='1'/>"), Err(UndeclaredPrefix));
        assert_eq!(frame("<a xmlns='x'><p:b/></a>"), Err(UndeclaredPrefix));
        // A prefix declared on a sibling is out of scope.
        assert_eq!(
            frame("<a xmlns='x'><b xmlns:p='y'/><p:c/></a>"),
            Err(UndeclaredPrefix)
        );
        assert_eq!(frame("<message><body/></message>"), Err(MissingNamespace));
        assert_eq!(frame("<message xmlns=''/>"), Err(MissingNamespace));
        // A namespace declared only on a child does not count for the root.
        assert_eq!(
            frame("<message><body xmlns='jabber:client'/></message>"),
            Err(MissingNamespace)
        );
        assert_eq!(
            frame("<!DOCTYPE a><a xmlns='x'/>"),
            Err(Restricted("DOCTYPE"))
        );
        assert_eq!(
            frame("<!-- hi --><a xmlns='x'/>"),
            Err(Restricted("comment"))
        );
        assert_eq!(
            frame("<a xmlns='x'><!-- hi --></a>"),
            Err(Restricted("comment"))
        );
        assert_eq!(
            frame("<a xmlns='x'/><!-- hi -->"),
            Err(Restricted("comment"))
        );
        assert_eq!(
            frame("<?pi data?><a xmlns='x'/>"),
            Err(Restricted("processing instruction"))
        );
        assert_eq!(
            frame("<a xmlns='x'><?pi?></a>"),
            Err(Restricted("processing instruction"))
        );
        assert!(matches!(
            frame("<?xml version='1.0'?><a xmlns='x'/>"),
            Err(Restricted(_))
        ));
        assert_eq!(
            frame("<a xmlns='x'>&custom;</a>"),
            Err(Restricted("entity reference"))
        );
        assert_eq!(
            frame("<a xmlns='x' b='&custom;'/>"),
            Err(Restricted("entity reference"))
        );
    }

    #[test]
    fn error_conditions() {
        assert_eq!(
            XmlError::TooLarge.stream_error_condition(),
            "policy-violation"
        );
        assert_eq!(
            XmlError::TooDeep.stream_error_condition(),
            "policy-violation"
        );
        assert_eq!(
            XmlError::Restricted("x").stream_error_condition(),
            "restricted-xml"
        );
        assert_eq!(
            XmlError::NotWellFormed("x").stream_error_condition(),
            "not-well-formed"
        );
        assert_eq!(
            XmlError::MissingNamespace.stream_error_condition(),
            "invalid-namespace"
        );
        assert_eq!(
            XmlError::UndeclaredPrefix.stream_error_condition(),
            "bad-namespace-prefix"
        );
        assert_eq!(
            XmlError::UnsupportedEncoding.stream_error_condition(),
            "unsupported-encoding"
        );
    }

    const LAUGHS_DTD: &str = "<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n \
        <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n \
        <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n \
        <!ENTITY lol9 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n]>\n";

    #[test]
    fn billion_laughs_rejected() {
        let with_decl =
            format!("<?xml version=\"1.0\"?>\n{LAUGHS_DTD}<lolz xmlns='x'>&lol9;</lolz>");
        assert!(matches!(frame(&with_decl), Err(XmlError::Restricted(_))));
        let without = format!("{LAUGHS_DTD}<lolz xmlns='x'>&lol9;</lolz>");
        assert_eq!(frame(&without), Err(XmlError::Restricted("DOCTYPE")));
        assert_eq!(
            frame("<lolz xmlns='x'>&lol9;</lolz>"),
            Err(XmlError::Restricted("entity reference"))
        );
        // Upstream too, with the declaration the splitter otherwise accepts.
        let mut s = Splitter::new(limits());
        assert_eq!(
            s.feed(with_decl.as_bytes()),
            Err(XmlError::Restricted("DOCTYPE"))
        );
        let mut s = Splitter::new(limits());
        s.feed(HEADER.as_bytes()).unwrap();
        assert_eq!(
            s.feed(LAUGHS_DTD.as_bytes()),
            Err(XmlError::Restricted("DOCTYPE"))
        );
    }

    fn nested(depth: usize) -> String {
        let mut s = "<a xmlns='x'>".to_owned();
        for _ in 1..depth {
            s.push_str("<b>");
        }
        for _ in 1..depth {
            s.push_str("</b>");
        }
        s.push_str("</a>");
        s
    }

    #[test]
    fn depth_limit() {
        assert!(frame(&nested(64)).is_ok());
        assert_eq!(frame(&nested(65)), Err(XmlError::TooDeep));
        assert_eq!(frame(&nested(100)), Err(XmlError::TooDeep));
        // Upstream the same element depth counts, stanza = depth 1.
        let mut s = Splitter::new(limits());
        s.feed(HEADER.as_bytes()).unwrap();
        s.feed(nested(64).as_bytes()).unwrap();
        assert_eq!(s.feed(nested(100).as_bytes()), Err(XmlError::TooDeep));
    }

    #[test]
    fn size_limit_checked_before_scanning() {
        let small = XmlLimits {
            max_element_bytes: 64,
            max_depth: 8,
        };
        // Garbage that would be not-well-formed: size wins, so nothing was scanned.
        let garbage = "x".repeat(65);
        assert_eq!(
            parse_client_frame(&garbage, &small),
            Err(XmlError::TooLarge)
        );
        let ok = format!("<a xmlns='x'>{}</a>", "y".repeat(64 - 17));
        assert_eq!(ok.len(), 64);
        assert!(parse_client_frame(&ok, &small).is_ok());
        let big = format!("<a xmlns='x'>{}</a>", "y".repeat(64 - 16));
        assert_eq!(parse_client_frame(&big, &small), Err(XmlError::TooLarge));
        assert_eq!(
            frame(&format!("<a xmlns='x'>{}</a>", "y".repeat(300_000))),
            Err(XmlError::TooLarge)
        );
    }

    #[test]
    fn escape_attr_escapes_all_five() {
        assert_eq!(
            escape_attr("a&b<c>d\"e'f"),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f"
        );
        assert_eq!(escape_attr("héllo 😀"), "héllo 😀");
        let info = element(&format!("<x xmlns='urn:x' v='{}'/>", escape_attr("<&'\">")));
        assert_eq!(info.attr("v"), Some("<&'\">"));
    }

    // ---- splitter ------------------------------------------------------------------------

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0' xml:lang='en'>";

    /// A Prosody-style session in three streams (before TLS, before SASL success, after), each
    /// a separate segment because the caller resets the splitter between them.
    fn transcript() -> Vec<String> {
        vec![
            "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en' id='0d7f' from='localhost' version='1.0' xmlns='jabber:client'>\
             <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>\
             <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_owned(),
            "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en' id='8a&amp;c' from='localhost' version='1.0' xmlns='jabber:client'>\n\
             <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>\
             <challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtvK2QybGJiRmdPTlJ2OXFreGRhd0wzcnZjTkhZSkFORkVSTkxWSlRsYTNpcl9yPSwyMAo=</challenge>\
             <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj1ybUY5cHFWOFM3c3VBb1pXamE0ZEpSa0ZzS1E9</success>".to_owned(),
            "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en' id='c9e1' from='localhost' version='1.0' xmlns='jabber:client'>\
             <stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/></stream:features>\
             <iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/web</jid></bind></iq>\n \t\
             <enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='600'/>\
             <message from='bob@localhost/phone' to='alice@localhost/web' type='chat' id='m&apos;1' xml:lang='en'>\
             <body>2 &lt; 3 &amp;&amp; héllo 😀 <![CDATA[<b>raw</b> & ]] stuff]]></body>\
             <stream:error-ish xmlns:stream='urn:not-streams'/>\
             <thread>t1</thread></message>   \
             <presence from='bob@localhost/phone' xml:lang='en'><show>away</show><status>out</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v'/></presence>\
             \n\n   \
             <stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced</text></stream:error>\
             </stream:stream>trailing bytes ignored <<<".to_owned(),
        ]
    }

    /// Feeds each segment with `chunker` choosing the piece sizes, resetting in between.
    fn run_segments(
        segments: &[String],
        mut chunk: impl FnMut() -> usize,
    ) -> Vec<Vec<UpstreamEvent>> {
        let mut s = Splitter::new(limits());
        let mut out = Vec::new();
        for seg in segments {
            let mut events = Vec::new();
            let mut bytes = seg.as_bytes();
            while !bytes.is_empty() {
                let n = chunk().clamp(1, bytes.len());
                let (head, tail) = bytes.split_at(n);
                s.feed(head).unwrap();
                while let Some(ev) = s.next_event().unwrap() {
                    events.push(ev);
                }
                bytes = tail;
            }
            out.push(events);
            s.reset();
        }
        out
    }

    /// Tiny deterministic PRNG so chunking tests are reproducible without extra dependencies.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn assert_standalone(events: &[UpstreamEvent]) {
        for ev in events {
            if let UpstreamEvent::Element { xml, info } = ev {
                match parse_client_frame(xml, &limits()) {
                    Ok(ClientFrame::Element(again)) => assert_eq!(&again, info, "{xml}"),
                    other => panic!("not standalone: {xml}: {other:?}"),
                }
            }
        }
    }

    fn element_xml(events: &[UpstreamEvent], local: &str) -> String {
        events
            .iter()
            .find_map(|e| match e {
                UpstreamEvent::Element { xml, info } if info.local_name == local => {
                    Some(xml.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {local}"))
    }

    #[test]
    fn transcript_whole_bytewise_and_random_chunks_agree() {
        let segs = transcript();
        let whole = run_segments(&segs, || usize::MAX);
        let bytewise = run_segments(&segs, || 1);
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20 {
            let chunked = run_segments(&segs, || (rng.next() % 40) as usize + 1);
            assert_eq!(chunked, whole);
        }
        assert_eq!(bytewise, whole);

        let names: Vec<Vec<&str>> = whole
            .iter()
            .map(|evs| {
                evs.iter()
                    .map(|e| match e {
                        UpstreamEvent::StreamOpen { .. } => "open",
                        UpstreamEvent::Element { info, .. } => info.name.as_str(),
                        UpstreamEvent::StreamClose => "close",
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            vec![
                vec!["open", "stream:features", "proceed"],
                vec!["open", "stream:features", "challenge", "success"],
                vec![
                    "open",
                    "stream:features",
                    "iq",
                    "enabled",
                    "message",
                    "presence",
                    "stream:error",
                    "close"
                ],
            ]
        );
        for evs in &whole {
            assert_standalone(evs);
        }

        // The header became an <open/>, attribute values re-escaped.
        assert_eq!(
            whole[1][0],
            UpstreamEvent::StreamOpen {
                open_frame: "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='localhost' id='8a&amp;c' version='1.0' xml:lang='en'/>".into(),
                from: Some("localhost".into()),
                id: Some("8a&c".into()),
                version: Some("1.0".into()),
                lang: Some("en".into()),
            }
        );
        let UpstreamEvent::StreamOpen { open_frame, .. } = &whole[0][0] else {
            panic!()
        };
        assert_eq!(
            frame(open_frame),
            Ok(ClientFrame::Open {
                to: None,
                lang: Some("en".into()),
                version: Some("1.0".into())
            })
        );

        // stream:features gets both declarations.
        let features = element_xml(&whole[0], "features");
        assert_eq!(
            features,
            "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
        );
        let UpstreamEvent::Element { info, .. } = &whole[0][1] else {
            panic!()
        };
        assert!(info.has_child(TLS_NS, "starttls"));
        let UpstreamEvent::Element { info, .. } = &whole[1][1] else {
            panic!()
        };
        assert!(info.has_child(SASL_NS, "mechanisms"));

        // Elements declaring their own default namespace keep it, with nothing added.
        assert_eq!(
            element_xml(&whole[0], "proceed"),
            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        );
        assert_eq!(
            element_xml(&whole[2], "enabled"),
            "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='600'/>"
        );

        // Stanzas get the default namespace only; a stream-prefixed child that redeclares
        // `stream` itself needs no xmlns:stream on the message. Content passes through unchanged.
        let message = element_xml(&whole[2], "message");
        assert!(
            message.starts_with("<message xmlns='jabber:client' from='bob@localhost/phone'"),
            "{message}"
        );
        assert!(!message.contains("xmlns:stream='http"), "{message}");
        assert!(message.contains(
            "<body>2 &lt; 3 &amp;&amp; héllo 😀 <![CDATA[<b>raw</b> & ]] stuff]]></body>"
        ));
        assert!(message.contains("id='m&apos;1'"));
        let UpstreamEvent::Element { info, .. } = &whole[2][4] else {
            panic!()
        };
        assert_eq!(info.attr("id"), Some("m'1"));
        assert_eq!(info.attr("xml:lang"), Some("en"));

        let error = element_xml(&whole[2], "error");
        assert!(error.starts_with("<stream:error xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><conflict"));
    }

    #[test]
    fn prefix_used_only_inside_gets_declared() {
        let mut s = Splitter::new(limits());
        s.feed(HEADER.as_bytes()).unwrap();
        s.feed(b"<message><stream:x/></message><iq xmlns='jabber:server'><stream:y a='1'/></iq><a xmlns='urn:a' xmlns:stream='urn:other'><stream:z/></a>").unwrap();
        let mut xmls = Vec::new();
        while let Some(ev) = s.next_event().unwrap() {
            if let UpstreamEvent::Element { xml, .. } = ev {
                xmls.push(xml);
            }
        }
        assert_eq!(
            xmls,
            vec![
                "<message xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:x/></message>",
                "<iq xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:server'><stream:y a='1'/></iq>",
                "<a xmlns='urn:a' xmlns:stream='urn:other'><stream:z/></a>",
            ]
        );
    }

    #[test]
    fn custom_stream_prefix_and_no_declaration() {
        // Any prefix may name the streams namespace; no XML declaration is needed.
        let mut s = Splitter::new(limits());
        s.feed(b"\n<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client' from='x'><s:features/></s:stream>").unwrap();
        let ev: Vec<_> = std::iter::from_fn(|| s.next_event().unwrap()).collect();
        assert_eq!(ev.len(), 3);
        assert!(matches!(&ev[1], UpstreamEvent::Element { xml, .. }
            if xml == "<s:features xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'/>"));
        assert_eq!(ev[2], UpstreamEvent::StreamClose);
        // After close everything is ignored, even garbage.
        assert_eq!(s.feed(&[0xff, b'x']), Ok(()));
        assert_eq!(s.next_event(), Ok(None));
    }

    #[test]
    fn bad_stream_headers() {
        let bad = |input: &str| {
            let mut s = Splitter::new(limits());
            s.feed(input.as_bytes()).err()
        };
        assert!(matches!(
            bad("<stream xmlns='jabber:client'>"),
            Some(XmlError::InvalidNamespace(_))
        ));
        assert!(matches!(
            bad("<stream:stream xmlns:stream='urn:wrong'>"),
            Some(XmlError::InvalidNamespace(_))
        ));
        assert_eq!(bad("<stream:stream>"), Some(XmlError::UndeclaredPrefix));
        assert!(matches!(
            bad("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert_eq!(
            bad("<?xml version='1.0' encoding='ISO-8859-1'?>"),
            Some(XmlError::UnsupportedEncoding)
        );
        assert!(matches!(
            bad("<?xml encoding='UTF-8'?>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert_eq!(
            bad(" <?xml version='1.0'?>"),
            Some(XmlError::Restricted("processing instruction"))
        );
        assert_eq!(
            bad("<?php ?>"),
            Some(XmlError::Restricted("processing instruction"))
        );
        assert_eq!(bad("<!-- c -->"), Some(XmlError::Restricted("comment")));
        assert!(matches!(bad("hello"), Some(XmlError::NotWellFormed(_))));
        assert!(matches!(
            bad("</stream:stream>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert_eq!(
            bad(&format!("{HEADER}</stream:streamx>")),
            Some(XmlError::NotWellFormed("mismatched end tag for the stream"))
        );
        // BOM and declaration with encoding are fine.
        assert_eq!(
            bad(&format!(
                "\u{FEFF}<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n{}",
                &HEADER[21..]
            )),
            None
        );
    }

    #[test]
    fn stream_level_rejections() {
        let after_header = |input: &str| {
            let mut s = Splitter::new(limits());
            s.feed(HEADER.as_bytes()).unwrap();
            s.feed(input.as_bytes()).err()
        };
        assert!(matches!(
            after_header("text"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            after_header("&#32;"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            after_header("<![CDATA[x]]>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert_eq!(
            after_header("<!-- x -->"),
            Some(XmlError::Restricted("comment"))
        );
        assert_eq!(
            after_header("<?pi x?>"),
            Some(XmlError::Restricted("processing instruction"))
        );
        assert_eq!(
            after_header("<?xml version='1.0'?>"),
            Some(XmlError::Restricted("processing instruction"))
        );
        assert_eq!(
            after_header("<!DOCTYPE x>"),
            Some(XmlError::Restricted("DOCTYPE"))
        );
        assert_eq!(
            after_header("<m xmlns='x'><!-- x --></m>"),
            Some(XmlError::Restricted("comment"))
        );
        assert_eq!(
            after_header("<m xmlns='x'>&ent;</m>"),
            Some(XmlError::Restricted("entity reference"))
        );
        assert!(matches!(
            after_header("<m xmlns='x'>&#0;</m>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            after_header("<m xmlns='x'></n>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            after_header("<m xmlns='x' a='1' a='2'/>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            after_header("<m xmlns='x' a=1/>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            after_header("<m <n>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert_eq!(
            after_header("<m xmlns='x'><p:n/></m>"),
            Some(XmlError::UndeclaredPrefix)
        );
        assert_eq!(
            after_header("<m xmlns=''/>"),
            Some(XmlError::MissingNamespace)
        );
        assert!(matches!(
            after_header("<m xmlns='x'>a]]>b</m>"),
            Some(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            after_header("<m xmlns='x'>\u{0}</m>"),
            Some(XmlError::NotWellFormed(_))
        ));
        // Whitespace keepalives are fine and produce nothing.
        assert_eq!(after_header(" \n\t\r "), None);
    }

    #[test]
    fn multibyte_utf8_split_across_feeds() {
        let stanza = "<message><body>héllo 😀</body></message>";
        let bytes = stanza.as_bytes();
        let emoji_at = stanza.find('😀').unwrap();
        for cut in [
            stanza.find('é').unwrap() + 1,
            emoji_at + 1,
            emoji_at + 2,
            emoji_at + 3,
        ] {
            let mut s = Splitter::new(limits());
            s.feed(HEADER.as_bytes()).unwrap();
            s.feed(&bytes[..cut]).unwrap();
            s.feed(&bytes[cut..]).unwrap();
            let _open = s.next_event().unwrap();
            let Some(UpstreamEvent::Element { xml, .. }) = s.next_event().unwrap() else {
                panic!()
            };
            assert_eq!(
                xml,
                "<message xmlns='jabber:client'><body>héllo 😀</body></message>"
            );
        }
        let mut s = Splitter::new(limits());
        s.feed(HEADER.as_bytes()).unwrap();
        assert_eq!(
            s.feed(b"<m xmlns='x'>\xff</m>"),
            Err(XmlError::NotWellFormed("invalid UTF-8"))
        );
        let mut s = Splitter::new(limits());
        s.feed(HEADER.as_bytes()).unwrap();
        s.feed(b"<m xmlns='x'>\xf0\x9f").unwrap();
        assert_eq!(s.feed(b"x"), Err(XmlError::NotWellFormed("invalid UTF-8")));
    }

    #[test]
    fn oversized_element_bounded_and_error_sticky() {
        let lim = XmlLimits {
            max_element_bytes: 4096,
            max_depth: 8,
        };
        let chunk = 100;
        let mut s = Splitter::new(lim);
        s.feed(HEADER.as_bytes()).unwrap();
        let mut huge = "<message><body>".to_owned();
        huge.push_str(&"a".repeat(100_000));
        huge.push_str("</body></message>");
        let mut fed = 0;
        let mut err = None;
        for piece in huge.as_bytes().chunks(chunk) {
            fed += piece.len();
            match s.feed(piece) {
                Ok(()) => assert!(s.buf.len() - s.consumed <= lim.max_element_bytes + chunk),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert_eq!(err, Some(XmlError::TooLarge));
        assert!(
            fed <= lim.max_element_bytes + chunk,
            "stopped after {fed} bytes"
        );
        // Sticky, including across reset.
        assert_eq!(s.next_event(), Err(XmlError::TooLarge));
        assert_eq!(s.feed(b"<presence/>"), Err(XmlError::TooLarge));
        s.reset();
        assert_eq!(s.feed(HEADER.as_bytes()), Err(XmlError::TooLarge));

        // An element that completes within one big read but is over the limit is refused too.
        let mut s = Splitter::new(lim);
        s.feed(HEADER.as_bytes()).unwrap();
        assert_eq!(s.feed(huge.as_bytes()), Err(XmlError::TooLarge));
        // Many small stanzas in one big read are fine even if the read exceeds the limit.
        let mut s = Splitter::new(lim);
        s.feed(HEADER.as_bytes()).unwrap();
        let many = "<presence/> ".repeat(2000);
        s.feed(many.as_bytes()).unwrap();
        assert_eq!(std::iter::from_fn(|| s.next_event().unwrap()).count(), 2001);
        // An oversized stream header or unterminated declaration is bounded too.
        let mut s = Splitter::new(lim);
        assert_eq!(
            s.feed(format!("<stream:stream a='{}", "x".repeat(5000)).as_bytes()),
            Err(XmlError::TooLarge)
        );
        let mut s = Splitter::new(lim);
        assert_eq!(
            s.feed(format!("<?xml version='1.0' {}", " ".repeat(5000)).as_bytes()),
            Err(XmlError::TooLarge)
        );
    }

    #[test]
    fn keepalives_do_not_accumulate() {
        let mut s = Splitter::new(limits());
        s.feed(HEADER.as_bytes()).unwrap();
        for _ in 0..10_000 {
            s.feed(b" ").unwrap();
        }
        assert!(
            s.buf.len() <= 1,
            "whitespace is consumed, buffer {}",
            s.buf.len()
        );
        assert_eq!(
            s.next_event()
                .unwrap()
                .map(|e| matches!(e, UpstreamEvent::StreamOpen { .. })),
            Some(true)
        );
        assert_eq!(s.next_event(), Ok(None));
    }

    #[test]
    fn byte_by_byte_256k_is_linear() {
        let bodies = [
            format!("<message><body>{}</body></message>", "a".repeat(262_000)),
            format!(
                "<message><x xmlns='urn:x' v='{}'/></message>",
                "b>".repeat(130_000)
            ),
            format!(
                "<message><body><![CDATA[{}]]></body></message>",
                "]>".repeat(130_000)
            ),
        ];
        for body in &bodies {
            assert!(body.len() <= 262_144);
            let start = Instant::now();
            let mut s = Splitter::new(limits());
            s.feed(HEADER.as_bytes()).unwrap();
            for b in body.as_bytes() {
                s.feed(std::slice::from_ref(b)).unwrap();
            }
            let events: Vec<_> = std::iter::from_fn(|| s.next_event().unwrap()).collect();
            assert_eq!(events.len(), 2);
            assert!(
                matches!(&events[1], UpstreamEvent::Element { xml, .. } if xml.len() == body.len() + " xmlns='jabber:client'".len())
            );
            let elapsed = start.elapsed();
            // Quadratic rescanning would take minutes here; linear takes well under a second.
            assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
        }
    }

    // ---- properties ----------------------------------------------------------------------

    fn arb_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                Just("hi".to_owned()),
                Just("a &lt; b &amp; c &gt; d".to_owned()),
                Just("héllo 😀".to_owned()),
                Just("<![CDATA[<x> & ]] ]>]]>".to_owned()),
                Just("&#x1F600;&#233;&quot;&apos;".to_owned()),
                Just(" \n\t".to_owned()),
                Just("'\"> ]".to_owned()),
                "[a-zé ]{0,6}",
            ],
            0..4,
        )
        .prop_map(|v| v.concat())
    }

    fn arb_child() -> impl Strategy<Value = String> {
        let leaf = (0..4u8, arb_text()).prop_map(|(k, t)| match k {
            0 => format!("<body>{t}</body>"),
            1 => format!("<x:item xmlns:x='urn:x' v='1&amp;2' x:w=\"&quot;\">{t}</x:item>"),
            2 => format!("<stream:text>{t}</stream:text>"),
            _ => "<empty a='b'/>".to_owned(),
        });
        leaf.prop_recursive(3, 16, 3, |inner| {
            (prop::collection::vec(inner, 0..3), arb_text()).prop_map(|(kids, t)| {
                format!(
                    "<group a=\"q'&quot;&#x9;\" xml:lang='en'>{t}{}</group>",
                    kids.concat()
                )
            })
        })
    }

    fn arb_stanza() -> impl Strategy<Value = String> {
        (0..6u8, prop::collection::vec(arb_child(), 0..3)).prop_map(|(k, kids)| {
            let c = kids.concat();
            match k {
                0 => format!("<message to='a@b' type='chat'>{c}</message>"),
                1 => format!("<iq xmlns='jabber:client' type='get' id='1'>{c}</iq>"),
                2 => format!("<stream:features>{c}</stream:features>"),
                3 => "<presence/>".to_owned(),
                4 => format!("<p:q xmlns:p='urn:p'>{c}</p:q>"),
                _ => "<r xmlns='urn:xmpp:sm:3'/>".to_owned(),
            }
        })
    }

    fn arb_stream() -> impl Strategy<Value = String> {
        (
            prop::collection::vec((arb_stanza(), "[ \n\t]{0,3}"), 0..6),
            any::<bool>(),
        )
            .prop_map(|(stanzas, close)| {
                let mut s = HEADER.to_owned();
                for (stanza, ws) in stanzas {
                    s.push_str(&ws);
                    s.push_str(&stanza);
                }
                if close {
                    s.push_str("</stream:stream>");
                }
                s
            })
    }

    fn feed_chunked(
        s: &mut Splitter,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<UpstreamEvent>, XmlError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        let mut i = 0;
        while !rest.is_empty() {
            let n = cuts
                .get(i % cuts.len().max(1))
                .copied()
                .unwrap_or(1)
                .clamp(1, rest.len());
            i += 1;
            let (head, tail) = rest.split_at(n);
            s.feed(head)?;
            while let Some(ev) = s.next_event()? {
                events.push(ev);
            }
            rest = tail;
        }
        Ok(events)
    }

    proptest! {
        #[test]
        fn chunking_never_changes_events(stream in arb_stream(), cuts in prop::collection::vec(1usize..40, 1..12)) {
            let mut whole = Splitter::new(limits());
            let expected = feed_chunked(&mut whole, stream.as_bytes(), &[usize::MAX]).unwrap();
            let mut chunked = Splitter::new(limits());
            let got = feed_chunked(&mut chunked, stream.as_bytes(), &cuts).unwrap();
            prop_assert_eq!(&got, &expected);
            let opened = matches!(expected.first(), Some(UpstreamEvent::StreamOpen { .. }));
            prop_assert!(opened);
            assert_standalone(&expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), cuts in prop::collection::vec(1usize..20, 1..8)) {
            let small = XmlLimits { max_element_bytes: 300, max_depth: 4 };
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_client_frame(&text, &small);
            let _ = parse_client_frame(&text, &limits());
            let mut s = Splitter::new(small);
            let _ = feed_chunked(&mut s, &bytes, &cuts);
            // The same bytes after a valid header reach the in-stream states.
            let mut s = Splitter::new(small);
            let mut input = HEADER.as_bytes().to_vec();
            input.extend_from_slice(&bytes);
            let _ = feed_chunked(&mut s, &input, &cuts);
        }

        #[test]
        fn mutated_streams_never_panic(stream in arb_stream(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cuts in prop::collection::vec(1usize..30, 1..8)) {
            let mut bytes = stream.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let small = XmlLimits { max_element_bytes: 400, max_depth: 4 };
            for lim in [small, limits()] {
                let mut s = Splitter::new(lim);
                if let Ok(events) = feed_chunked(&mut s, &bytes, &cuts) {
                    // Whatever survives mutation must still be standalone.
                    for ev in &events {
                        if let UpstreamEvent::Element { xml, .. } = ev {
                            prop_assert!(parse_client_frame(xml, &limits()).is_ok(), "{}", xml);
                        }
                    }
                }
                let text = String::from_utf8_lossy(bytes.get(HEADER.len()..).unwrap_or(&[]));
                let _ = parse_client_frame(&text, &lim);
            }
        }
    }
}
