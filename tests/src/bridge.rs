//! The real bridge, run in-process on a free loopback port, relaying to a fixture Prosody.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use sotto_bridge::config::Config;
use sotto_bridge::Bridge;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::prosody::Prosody;

/// A running bridge; stop it with [`BridgeFixture::stop`] (dropping it aborts the task).
pub struct BridgeFixture {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// The configuration text for a bridge on `addr` in front of `prosody`; `extra` is appended
/// (e.g. a `[limits]` section) so tests can exercise any key.
pub fn config_text(
    addr: SocketAddr,
    prosody: &Prosody,
    static_dir: Option<&Path>,
    extra: &str,
) -> String {
    config_text_for(addr, prosody, prosody.domain(), static_dir, extra)
}

/// [`config_text`] with `domain` as the upstream's XMPP domain instead of Prosody's own (a
/// bridge that relays some other domain).
pub fn config_text_for(
    addr: SocketAddr,
    prosody: &Prosody,
    domain: &str,
    static_dir: Option<&Path>,
    extra: &str,
) -> String {
    let quote = |p: &Path| {
        format!(
            "\"{}\"",
            p.to_string_lossy()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
        )
    };
    let static_line = static_dir
        .map(|d| format!("static_dir = {}\n", quote(d)))
        .unwrap_or_default();
    // Top-level keys go before the `[[upstream]]` table, sections (lines starting with `[`)
    // after it.
    let section_start = if extra.starts_with('[') {
        Some(0)
    } else {
        extra.find("\n[").map(|i| i + 1)
    };
    let (top, sections) = match section_start {
        Some(i) => (&extra[..i], &extra[i..]),
        None => (extra, ""),
    };
    format!(
        "listen = \"{addr}\"\npublic_url = \"http://{addr}\"\nshutdown_grace_secs = 2\n{static_line}{top}\n\
[[upstream]]\ndomain = \"{}\"\nhost = \"{}\"\nport = {}\ntls = \"starttls\"\nca_file = {}\n\n{sections}",
        domain,
        prosody.c2s_addr().ip(),
        prosody.c2s_addr().port(),
        quote(prosody.ca_file()),
    )
}

impl BridgeFixture {
    /// Starts a bridge in front of `prosody`, optionally serving `static_dir`.
    pub async fn start(prosody: &Prosody, static_dir: Option<&Path>, extra: &str) -> Result<Self> {
        Self::start_for(prosody, prosody.domain(), static_dir, extra).await
    }

    /// [`BridgeFixture::start`] relaying the XMPP domain `domain` (to `prosody`'s listener)
    /// instead of Prosody's own domain.
    pub async fn start_for(
        prosody: &Prosody,
        domain: &str,
        static_dir: Option<&Path>,
        extra: &str,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let text = config_text_for(addr, prosody, domain, static_dir, extra);
        let config = Config::parse(&text).with_context(|| format!("bridge config:\n{text}"))?;
        let bridge = Bridge::new(config)?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bridge.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT/xmpp-websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/xmpp-websocket", self.addr)
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for BridgeFixture {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
