//! Connecting to a configured upstream XMPP server: TCP, TLS (STARTTLS or direct) done by the
//! bridge itself, and the stream negotiation up to the point where the client takes over.
//!
//! The client never learns that STARTTLS happened: it sees the post-TLS stream header as its
//! `<open/>` and the post-TLS features, exactly as RFC 7395 §3.9 expects (TLS is the
//! WebSocket's business, and here the bridge's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{Limits, TlsMode, Upstream};
use crate::xml::{self, Splitter, UpstreamEvent, XmlError, XmlLimits};

/// How long TCP connect, TLS handshake and stream negotiation may take together.
pub const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(15);

const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// A byte stream to the upstream server, plain or TLS.
pub trait UpstreamIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> UpstreamIo for T {}

/// An upstream with its TLS configuration built once at start.
pub struct PreparedUpstream {
    /// The configuration entry.
    pub config: Upstream,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// Why an upstream connection failed. Shown to operators in logs, never to clients verbatim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// DNS resolution failed or gave no usable address.
    #[error("cannot resolve the upstream host: {0}")]
    Resolve(String),
    /// TCP connect failed.
    #[error("cannot connect to the upstream: {0}")]
    Connect(std::io::Error),
    /// TLS handshake or certificate verification failed.
    #[error("TLS with the upstream failed: {0}")]
    Tls(std::io::Error),
    /// Reading or writing failed mid-negotiation.
    #[error("upstream I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The upstream sent XML we cannot accept.
    #[error("the upstream sent bad XML: {0}")]
    Xml(#[from] XmlError),
    /// The upstream does not follow the protocol (e.g. no STARTTLS offered).
    #[error("the upstream is not usable: {0}")]
    Protocol(&'static str),
    /// Negotiation took longer than [`NEGOTIATION_TIMEOUT`].
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The TLS configuration is unusable (bad CA file, bad server name).
    #[error("bad TLS configuration: {0}")]
    Config(String),
}

impl PreparedUpstream {
    /// Builds the TLS client configuration: system roots plus the optional configured CA.
    pub fn new(config: Upstream) -> Result<Self, UpstreamError> {
        let tls = match config.tls {
            TlsMode::PlaintextLoopback => None,
            TlsMode::Starttls | TlsMode::Direct => {
                let mut roots = rustls::RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    // A single unparsable system certificate must not take the bridge down.
                    let _ = roots.add(cert);
                }
                if let Some(ca_file) = &config.ca_file {
                    let certs: Vec<CertificateDer<'static>> =
                        CertificateDer::pem_file_iter(ca_file)
                            .map_err(|e| {
                                UpstreamError::Config(format!("{}: {e}", ca_file.display()))
                            })?
                            .collect::<Result<_, _>>()
                            .map_err(|e| {
                                UpstreamError::Config(format!("{}: {e}", ca_file.display()))
                            })?;
                    if certs.is_empty() {
                        return Err(UpstreamError::Config(format!(
                            "{}: no certificate found",
                            ca_file.display()
                        )));
                    }
                    for cert in certs {
                        roots
                            .add(cert)
                            .map_err(|e| UpstreamError::Config(e.to_string()))?;
                    }
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let client = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| UpstreamError::Config(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = config
                    .tls_name
                    .clone()
                    .unwrap_or_else(|| config.domain.clone());
                let server_name =
                    ServerName::try_from(name).map_err(|e| UpstreamError::Config(e.to_string()))?;
                Some((TlsConnector::from(Arc::new(client)), server_name))
            }
        };
        Ok(Self { config, tls })
    }
}

/// An upstream stream negotiated up to the features the client must see.
pub struct Negotiated {
    /// The byte stream, TLS-protected unless the configuration says plaintext-loopback.
    pub io: Box<dyn UpstreamIo>,
    /// The splitter positioned after the frames below.
    pub splitter: Splitter,
    /// The frames to send to the client first: `<open/>` and the stream features.
    pub frames: Vec<String>,
    /// How long the connection took.
    pub elapsed: Duration,
}

/// The stream header the bridge sends upstream on behalf of the client.
pub fn stream_header(domain: &str, lang: Option<&str>) -> String {
    xml::stream_header(domain, Some(lang.unwrap_or("en")))
}

/// Connects and negotiates TLS, all within [`NEGOTIATION_TIMEOUT`].
pub async fn connect(
    upstream: &PreparedUpstream,
    lang: Option<&str>,
    limits: &Limits,
) -> Result<Negotiated, UpstreamError> {
    tokio::time::timeout(NEGOTIATION_TIMEOUT, connect_inner(upstream, lang, limits))
        .await
        .map_err(|_| UpstreamError::Timeout)?
}

async fn connect_inner(
    upstream: &PreparedUpstream,
    lang: Option<&str>,
    limits: &Limits,
) -> Result<Negotiated, UpstreamError> {
    let started = Instant::now();
    let config = &upstream.config;
    let tcp = dial(config).await?;
    let xml_limits = XmlLimits {
        max_element_bytes: limits.max_stanza_bytes,
        max_depth: limits.max_depth,
    };
    let mut splitter = Splitter::new(xml_limits);
    let header = stream_header(&config.domain, lang);
    let mut io: Box<dyn UpstreamIo> = match (&upstream.tls, config.tls) {
        (Some((connector, name)), TlsMode::Direct) => Box::new(
            connector
                .connect(name.clone(), tcp)
                .await
                .map_err(UpstreamError::Tls)?,
        ),
        (Some((connector, name)), TlsMode::Starttls) => {
            let mut tcp = tcp;
            tcp.write_all(header.as_bytes()).await?;
            let (_open, features) = read_open_and_features(&mut tcp, &mut splitter).await?;
            if !features
                .children
                .iter()
                .any(|(ns, name)| ns == TLS_NS && name == "starttls")
            {
                return Err(UpstreamError::Protocol(
                    "the server does not offer STARTTLS",
                ));
            }
            tcp.write_all(format!("<starttls xmlns='{TLS_NS}'/>").as_bytes())
                .await?;
            match next_event(&mut tcp, &mut splitter).await? {
                UpstreamEvent::Element { info, .. }
                    if info.namespace == TLS_NS && info.local_name == "proceed" => {}
                _ => return Err(UpstreamError::Protocol("the server refused STARTTLS")),
            }
            // Everything after <proceed/> is TLS; the old stream is gone (RFC 6120 §5.4.3.3).
            splitter.reset();
            Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(UpstreamError::Tls)?,
            )
        }
        _ => Box::new(tcp),
    };
    io.write_all(header.as_bytes()).await?;
    let (open, features) = read_open_and_features(&mut io, &mut splitter).await?;
    Ok(Negotiated {
        io,
        splitter,
        frames: vec![open, features.0],
        elapsed: started.elapsed(),
    })
}

async fn dial(config: &Upstream) -> Result<TcpStream, UpstreamError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .map_err(|e| UpstreamError::Resolve(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(UpstreamError::Resolve("no address".into()));
    }
    if config.tls == TlsMode::PlaintextLoopback && addrs.iter().any(|a| !a.ip().is_loopback()) {
        // The config check saw a loopback name; refuse if it resolves anywhere else.
        return Err(UpstreamError::Protocol(
            "plaintext upstream resolves to a non-loopback address",
        ));
    }
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(UpstreamError::Connect(last_error.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
    })))
}

/// The stream features of a freshly opened stream: `(frame, summary)`.
pub struct Features(pub String, xml::ElementInfo);

impl std::ops::Deref for Features {
    type Target = xml::ElementInfo;
    fn deref(&self) -> &xml::ElementInfo {
        &self.1
    }
}

async fn read_open_and_features<S: AsyncRead + Unpin>(
    io: &mut S,
    splitter: &mut Splitter,
) -> Result<(String, Features), UpstreamError> {
    let open = match next_event(io, splitter).await? {
        UpstreamEvent::StreamOpen { open_frame, .. } => open_frame,
        _ => return Err(UpstreamError::Protocol("expected a stream header")),
    };
    match next_event(io, splitter).await? {
        UpstreamEvent::Element { xml, info }
            if info.namespace == xml::STREAM_NS && info.local_name == "features" =>
        {
            Ok((open, Features(strip_channel_binding(&xml, &info), info)))
        }
        UpstreamEvent::Element { info, .. }
            if info.namespace == xml::STREAM_NS && info.local_name == "error" =>
        {
            Err(UpstreamError::Protocol("the server sent a stream error"))
        }
        _ => Err(UpstreamError::Protocol("expected stream features")),
    }
}

/// Reads until the splitter yields the next event.
pub async fn next_event<S: AsyncRead + Unpin>(
    io: &mut S,
    splitter: &mut Splitter,
) -> Result<UpstreamEvent, UpstreamError> {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(event) = splitter.next_event()? {
            return Ok(event);
        }
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Err(UpstreamError::Protocol("the server closed the connection"));
        }
        splitter.feed(buf.get(..n).unwrap_or_default())?;
    }
}

/// Removes `*-PLUS` SASL mechanisms from stream features: channel binding binds to the TLS
/// channel between bridge and server, which the browser cannot see, so a client choosing one
/// would fail (or worse, bind to the wrong channel).
pub fn strip_channel_binding(features: &str, info: &xml::ElementInfo) -> String {
    let offers_sasl = info.children.iter().any(|(ns, name)| {
        (ns == "urn:ietf:params:xml:ns:xmpp-sasl" && name == "mechanisms")
            || (ns == "urn:xmpp:sasl:2" && name == "authentication")
    });
    if !offers_sasl {
        return features.to_owned();
    }
    const OPEN: &str = "<mechanism>";
    const CLOSE: &str = "</mechanism>";
    let mut out = String::with_capacity(features.len());
    let mut rest = features;
    while let Some(start) = rest.find(OPEN) {
        let Some(len) = rest[start..].find(CLOSE) else {
            break;
        };
        let end = start + len + CLOSE.len();
        let name = rest[start + OPEN.len()..start + len].trim();
        out.push_str(&rest[..start]);
        if !name.to_ascii_uppercase().ends_with("-PLUS") {
            out.push_str(&rest[start..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escapes_attributes() {
        let header = stream_header("example.org", Some("en'x"));
        assert!(header.contains("to='example.org'"));
        assert!(header.contains("xml:lang='en&apos;x'") || header.contains("xml:lang='en&#39;x'"));
    }

    #[test]
    fn plus_mechanisms_are_removed() {
        let features = "<stream:features xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
        let info = match xml::parse_client_frame(features, &XmlLimits::default()).unwrap() {
            xml::ClientFrame::Element(info) => info,
            _ => unreachable!(),
        };
        let stripped = strip_channel_binding(features, &info);
        assert!(!stripped.contains("PLUS"));
        assert!(stripped.contains("<mechanism>SCRAM-SHA-1</mechanism>"));
        assert!(stripped.contains("<mechanism>PLAIN</mechanism>"));
        assert!(matches!(
            xml::parse_client_frame(&stripped, &XmlLimits::default()),
            Ok(xml::ClientFrame::Element(_))
        ));
    }
}
