//! The native driver (feature `native`): a tokio + tokio-tungstenite shell around [`Session`],
//! used by the `sotto` CLI and the integration tests. All protocol decisions stay in the core;
//! this only moves bytes, keeps time and opens sockets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::service::ServiceUrl;
use crate::{Config, Event, Instant, Session, WEBSOCKET_SUBPROTOCOL};

/// Why the driver could not do its job (protocol outcomes arrive as [`Event`]s instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The service URL is unusable.
    #[error("{0}")]
    Service(#[from] crate::service::ServiceUrlError),
    /// The CA file could not be read.
    #[error("cannot use the CA file: {0}")]
    Ca(String),
    /// The WebSocket could not be opened.
    #[error("cannot reach the server: {0}")]
    Connect(String),
    /// The server did not accept the `xmpp` subprotocol.
    #[error("the server is not an XMPP WebSocket endpoint (no \"xmpp\" subprotocol)")]
    Subprotocol,
    /// The connection broke.
    #[error("the connection was lost")]
    ConnectionLost,
    /// Nothing happened in time.
    #[error("timed out")]
    Timeout,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A session connected through a WebSocket.
pub struct Client {
    session: Session,
    url: ServiceUrl,
    connector: Option<Connector>,
    ws: Option<Ws>,
    epoch: std::time::Instant,
}

impl Client {
    /// Opens the WebSocket and starts logging in. Progress arrives from [`Client::next_event`].
    pub async fn connect(
        url: &str,
        config: Config,
        ca_file: Option<&Path>,
    ) -> Result<Self, DriverError> {
        let url = ServiceUrl::parse(url)?;
        let connector = if url.is_secure() {
            Some(tls_connector(ca_file)?)
        } else {
            None
        };
        let mut rng = rand::rngs::OsRng;
        let config = Config {
            service: Some(url.clone()),
            ..config
        };
        let mut client = Self {
            session: Session::new(config, &mut rng),
            url,
            connector,
            ws: None,
            epoch: std::time::Instant::now(),
        };
        client.open().await?;
        Ok(client)
    }

    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    async fn open(&mut self) -> Result<(), DriverError> {
        let mut request = self
            .url
            .to_string()
            .into_client_request()
            .map_err(|e| DriverError::Connect(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(WEBSOCKET_SUBPROTOCOL),
        );
        let (ws, response) = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            self.connector.clone(),
        )
        .await
        .map_err(|e| DriverError::Connect(e.to_string()))?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if protocol != Some(WEBSOCKET_SUBPROTOCOL) {
            return Err(DriverError::Subprotocol);
        }
        self.ws = Some(ws);
        let now = self.now();
        self.session.handle_connected(now);
        self.flush().await
    }

    /// Opens a new WebSocket for the same session: XEP-0198 resumes it when possible.
    pub async fn reconnect(&mut self) -> Result<(), DriverError> {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
        self.open().await
    }

    /// Drops the WebSocket abruptly, without `<close/>` (for tests of resumption).
    pub fn drop_connection(&mut self) {
        self.ws = None;
        let now = self.now();
        self.session.handle_disconnected(now);
    }

    /// The session, for commands. Call [`Client::flush`] (or `next_event`) afterwards.
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Sends everything the session has queued.
    pub async fn flush(&mut self) -> Result<(), DriverError> {
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        while let Some(frame) = self.session.poll_transmit() {
            if ws.send(Message::Text(frame.into())).await.is_err() {
                self.ws = None;
                let now = self.now();
                self.session.handle_disconnected(now);
                return Err(DriverError::ConnectionLost);
            }
        }
        Ok(())
    }

    /// The next event, waiting at most `timeout`.
    pub async fn next_event_within(&mut self, timeout: Duration) -> Result<Event, DriverError> {
        tokio::time::timeout(timeout, self.next_event())
            .await
            .map_err(|_| DriverError::Timeout)?
    }

    /// The next event, driving the connection and timers meanwhile.
    pub async fn next_event(&mut self) -> Result<Event, DriverError> {
        loop {
            let _ = self.flush().await;
            if let Some(event) = self.session.poll_event() {
                let ended = matches!(event, Event::Disconnected { .. } | Event::LoginFailed(_));
                if ended && !self.session.is_connected() {
                    let _ = self.flush().await;
                    if let Some(mut ws) = self.ws.take() {
                        let _ = ws.close(None).await;
                    }
                }
                return Ok(event);
            }
            let Some(ws) = self.ws.as_mut() else {
                return Err(DriverError::ConnectionLost);
            };
            let deadline = self.session.poll_timeout().map(|at| {
                let now = self.epoch.elapsed();
                let at = Duration::from_millis(at.as_millis());
                tokio::time::Instant::now() + at.saturating_sub(now)
            });
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = ws.next() => {
                    let now = self.now();
                    match message {
                        Some(Ok(Message::Text(text))) => self.session.handle_frame(text.as_str(), now),
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                            self.ws = None;
                            self.session.handle_disconnected(now);
                        }
                        Some(Ok(_)) => {}
                    }
                }
                _ = sleep => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    /// Waits until online. Events before `Online` (there are none of interest) are consumed.
    pub async fn wait_online(&mut self, timeout: Duration) -> Result<crate::FullJid, WaitError> {
        loop {
            match self.next_event_within(timeout).await? {
                Event::Online { jid, .. } => return Ok(jid),
                Event::LoginFailed(e) => return Err(WaitError::Login(e)),
                Event::StreamError(e) => return Err(WaitError::Stream(e)),
                Event::Disconnected { .. } => {
                    return Err(WaitError::Driver(DriverError::ConnectionLost))
                }
                _ => {}
            }
        }
    }

    /// Ends the session cleanly and waits (briefly) for the server's `<close/>`.
    pub async fn close(mut self) -> Result<(), DriverError> {
        self.session.close();
        self.flush().await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(event) = self.next_event().await {
                if matches!(event, Event::Disconnected { .. }) {
                    break;
                }
            }
        })
        .await;
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
        Ok(())
    }
}

/// Why waiting for `Online` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// Login failed.
    #[error("{0}")]
    Login(crate::LoginError),
    /// The server ended the stream.
    #[error("{}", .0.user_message())]
    Stream(crate::StreamError),
    /// Transport trouble.
    #[error("{0}")]
    Driver(#[from] DriverError),
}

fn tls_connector(ca_file: Option<&Path>) -> Result<Connector, DriverError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(ca_file) = ca_file {
        let certs = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| DriverError::Ca(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| DriverError::Ca(e.to_string()))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| DriverError::Ca(e.to_string()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| DriverError::Ca(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}
