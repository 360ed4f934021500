//! A deliberately dumb RFC 7395 client for bridge tests: it sends exactly the frames a test
//! writes and returns exactly the frames it receives, so tests see the bridge's behaviour raw.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What a test receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One text message.
    Text(String),
    /// The WebSocket close, with its code.
    Closed(Option<u16>),
}

/// A raw XMPP-over-WebSocket connection.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pings: usize,
}

/// Default time to wait for a frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

impl RawClient {
    /// Connects with the `xmpp` subprotocol (and an optional Origin header).
    pub async fn connect(url: &str, origin: Option<&str>) -> Result<Self> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("Origin", HeaderValue::from_str(origin)?);
        }
        let (ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("WebSocket connect to {url}"))?;
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok());
        if protocol != Some("xmpp") {
            bail!("the server did not select the xmpp subprotocol: {protocol:?}");
        }
        Ok(Self { ws, pings: 0 })
    }

    /// WebSocket pings received so far (tungstenite answers each with a pong while this client
    /// is being read; a client that is not read answers nothing).
    pub fn pings_seen(&self) -> usize {
        self.pings
    }

    /// Sends one text message.
    pub async fn send(&mut self, text: &str) -> Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// Sends a binary message (which RFC 7395 forbids).
    pub async fn send_binary(&mut self, bytes: &[u8]) -> Result<()> {
        self.ws.send(Message::Binary(bytes.to_vec().into())).await?;
        Ok(())
    }

    /// The next frame (text or close), skipping pings.
    pub async fn recv(&mut self) -> Result<Frame> {
        self.recv_within(FRAME_TIMEOUT).await
    }

    /// The next frame within `timeout`.
    pub async fn recv_within(&mut self, timeout: Duration) -> Result<Frame> {
        loop {
            let next = tokio::time::timeout(timeout, self.ws.next())
                .await
                .map_err(|_| anyhow!("no frame within {timeout:?}"))?;
            match next {
                Some(Ok(Message::Text(t))) => return Ok(Frame::Text(t.to_string())),
                Some(Ok(Message::Ping(_))) => {
                    self.pings += 1;
                    continue;
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Frame::Closed(frame.map(|f| u16::from(f.code))))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) => return Ok(Frame::Closed(None)),
                None => return Ok(Frame::Closed(None)),
            }
        }
    }

    /// The next text frame; fails on close.
    pub async fn recv_text(&mut self) -> Result<String> {
        match self.recv().await? {
            Frame::Text(t) => Ok(t),
            Frame::Closed(code) => bail!("connection closed ({code:?}) while waiting for a frame"),
        }
    }

    /// Receives text frames until one contains `needle`, returning it.
    pub async fn recv_until(&mut self, needle: &str) -> Result<String> {
        loop {
            let text = self.recv_text().await?;
            if text.contains(needle) {
                return Ok(text);
            }
        }
    }

    /// `<open to=domain/>`, returns the server's `<open/>` and stream features.
    pub async fn open(&mut self, domain: &str) -> Result<(String, String)> {
        self.send(&format!(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>"
        ))
        .await?;
        let open = self.recv_text().await?;
        let features = self.recv_text().await?;
        Ok((open, features))
    }

    /// Authenticates with SASL PLAIN (fine for tests: the bridge→server hop is TLS), restarts
    /// the stream and binds a resource. Returns the bound full JID.
    pub async fn login_plain(
        &mut self,
        domain: &str,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Result<String> {
        use base64::Engine as _;
        let (_open, features) = self.open(domain).await?;
        if !features.contains("PLAIN") {
            bail!("no PLAIN mechanism offered: {features}");
        }
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await?;
        let outcome = self.recv_text().await?;
        if !outcome.contains("<success") {
            bail!("authentication failed: {outcome}");
        }
        let (_open, features) = self.open(domain).await?;
        if !features.contains("urn:ietf:params:xml:ns:xmpp-bind") {
            bail!("no bind feature after SASL: {features}");
        }
        self.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await?;
        let result = self.recv_until("bind1").await?;
        let jid = result
            .split("<jid>")
            .nth(1)
            .and_then(|rest| rest.split("</jid>").next())
            .ok_or_else(|| anyhow!("no jid in bind result: {result}"))?;
        Ok(jid.to_owned())
    }

    /// Drops the TCP connection without a WebSocket close or `<close/>`.
    pub fn vanish(self) {
        drop(self.ws);
    }
}
