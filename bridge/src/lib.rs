//! sotto-bridge: serves the Sotto web client and relays XMPP-over-WebSocket (RFC 7395) sessions
//! to the XMPP servers its configuration names, over ordinary TCP with TLS (RFC 6120).
//!
//! What it does not do: take part in authentication (SASL passes through), store anything, log
//! JIDs, addresses or content, or connect anywhere its configuration does not name. An
//! organisation may add a policy on routing (`policy`) and an audit log of use (`audit`), which
//! record account names but never content.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let config = sotto_bridge::config::Config::load("bridge.toml".as_ref())?;
//! let bridge = sotto_bridge::Bridge::new(config)?;
//! let listener = tokio::net::TcpListener::bind(bridge.config().listen).await?;
//! bridge.serve(listener, sotto_bridge::shutdown_signal()).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// Untrusted bytes reach this crate: no indexing that could panic (tests excepted, clippy.toml).
#![deny(clippy::indexing_slicing)]
#![deny(missing_docs)]

pub mod admin;
pub mod audit;
pub mod config;
pub mod metrics;
pub mod policy;
pub mod relay;
pub mod site;
pub mod track;
pub mod upstream;
pub mod xml;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::audit::Audit;
use crate::config::{ClientMode, Config};
use crate::metrics::{Metrics, Refusal};
use crate::policy::Policy;
use crate::site::Site;
use crate::upstream::PreparedUpstream;

/// The version of this bridge.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A configured bridge, ready to serve.
pub struct Bridge {
    shared: Arc<Shared>,
}

struct Shared {
    config: Config,
    upstreams: Vec<PreparedUpstream>,
    site: Site,
    metrics: Metrics,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    shutdown: watch::Sender<bool>,
    policy: Policy,
    audit: Audit,
}

impl Bridge {
    /// Prepares TLS configurations and loads the site.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let upstreams = config
            .upstream
            .iter()
            .cloned()
            .map(PreparedUpstream::new)
            .collect::<Result<Vec<_>, _>>()?;
        let site = match &config.static_dir {
            Some(dir) => Site::load(dir)?,
            None => Site::default(),
        };
        let (shutdown, _) = watch::channel(false);
        let policy = Policy::new(&config.policy);
        let audit = Audit::start(&config.audit).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the audit log {}: {e}",
                config
                    .audit
                    .path
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            )
        })?;
        Ok(Self {
            shared: Arc::new(Shared {
                policy,
                audit,
                config,
                upstreams,
                site,
                metrics: Metrics::default(),
                per_ip: Mutex::new(HashMap::new()),
                shutdown,
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The HTTP routes, for serving or for `tower::ServiceExt::oneshot` in tests.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/xmpp-websocket", get(websocket))
            .route("/.well-known/host-meta", get(host_meta_xrd))
            .route("/.well-known/host-meta.json", get(host_meta_json))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .route("/config.json", get(client_config))
            .fallback(get(static_file))
            .layer(axum::middleware::map_response_with_state(
                self.shared.clone(),
                security_headers,
            ))
            .with_state(self.shared.clone())
    }

    /// Serves until `signal` completes, then shuts down gracefully: no new connections,
    /// WebSockets closed with 1001, upstreams dropped without `</stream:stream>` (so XEP-0198
    /// sessions stay resumable), all within the configured grace period.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let grace = Duration::from_secs(shared.config.shutdown_grace_secs);
        let service = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        let shutdown = shared.shutdown.clone();
        // TCP_NODELAY: a relay of small interactive messages must not let Nagle's algorithm
        // hold a frame back waiting for the client's (delayed) ACK of the previous one.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(listener, service).with_graceful_shutdown(async move {
            signal.await;
            tracing::info!("shutting down");
            let _ = shutdown.send(true);
        });
        let mut stopped = shared.shutdown.subscribe();
        let server = tokio::spawn(async move { server.await });
        // Wait for the shutdown signal, then give sessions the grace period to close.
        let _ = stopped.wait_for(|stop| *stop).await;
        match tokio::time::timeout(grace, server).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => {
                tracing::warn!("grace period over; dropping remaining sessions");
                Ok(())
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}

async fn security_headers(State(shared): State<Arc<Shared>>, mut response: Response) -> Response {
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    let behind_tls = shared.config.public_base().starts_with("https://");
    set(
        header::CONTENT_SECURITY_POLICY,
        match (shared.config.client.other_servers, behind_tls) {
            (false, _) => site::CONTENT_SECURITY_POLICY,
            (true, true) => site::CONTENT_SECURITY_POLICY_OTHER_SERVERS,
            (true, false) => site::CONTENT_SECURITY_POLICY_OTHER_SERVERS_INSECURE,
        },
    );
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(
        header::HeaderName::from_static("permissions-policy"),
        site::PERMISSIONS_POLICY,
    );
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    if behind_tls {
        set(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        );
    }
    response
}

async fn static_file(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    if shared.site.is_empty() {
        return (StatusCode::NOT_FOUND, "no client is configured here\n").into_response();
    }
    shared.site.respond(uri.path(), &headers)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        shared.metrics.render() + &shared.audit.render_metrics(),
    )
        .into_response()
}

/// `/config.json`: what the web app needs to know about this deployment (audit on or off, the
/// kiosk settings, the XMPP domains relayed here and whether others may be used). Never cached,
/// so a change of configuration reaches the next page load.
async fn client_config(State(shared): State<Arc<Shared>>) -> Response {
    let client = &shared.config.client;
    let domains: Vec<String> = shared
        .config
        .upstream
        .iter()
        .map(|u| json_string(&u.domain.to_ascii_lowercase()))
        .collect();
    let body = format!(
        "{{\"audit\":{},\"domains\":[{}],\"client\":{{\"default_mode\":{},\"kiosk_idle_secs\":{},\"force_kiosk\":{},\"other_servers\":{}}}}}\n",
        shared.audit.enabled(),
        domains.join(","),
        json_string(client.default_mode.as_str()),
        client.kiosk_idle_secs,
        client.force_kiosk,
        client.other_servers
    );
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The `mode` query parameter of the WebSocket URL (`?mode=kiosk` or `?mode=personal`).
fn client_mode(uri: &Uri) -> Option<ClientMode> {
    uri.query()?.split('&').find_map(|pair| match pair {
        "mode=kiosk" => Some(ClientMode::Kiosk),
        "mode=personal" => Some(ClientMode::Personal),
        _ => None,
    })
}

fn cors(body: String, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=3600"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn host_meta_xrd(State(shared): State<Arc<Shared>>) -> Response {
    let href = xml::escape_attr(&shared.config.websocket_url());
    cors(
        format!(
            "<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n  <Link rel='urn:xmpp:alt-connections:websocket' href='{href}'/>\n</XRD>\n"
        ),
        "application/xrd+xml; charset=utf-8",
    )
}

async fn host_meta_json(State(shared): State<Arc<Shared>>) -> Response {
    let href = json_string(&shared.config.websocket_url());
    cors(
        format!(
            "{{\"links\":[{{\"rel\":\"urn:xmpp:alt-connections:websocket\",\"href\":{href}}}]}}\n"
        ),
        "application/json",
    )
}

fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Releases a per-IP connection slot when a session ends, however it ends.
struct ConnectionSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Ok(mut per_ip) = self.shared.per_ip.lock() {
            if let Some(count) = per_ip.get_mut(&self.ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
        self.shared.metrics.session_closed();
    }
}

fn origin_allowed(config: &Config, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        // Non-browser clients send no Origin; the check exists to stop other web pages.
        return true;
    };
    if !config.allowed_origins.is_empty() {
        return config.allowed_origins.iter().any(|o| o == origin);
    }
    let own = config.public_base();
    let own_origin = match own.find("://").map(|i| i + 3) {
        Some(start) => match own[start..].find('/') {
            Some(end) => &own[..start + end],
            None => own.as_str(),
        },
        None => own.as_str(),
    };
    if origin == own_origin {
        return true;
    }
    // Same origin as the page that made the request: scheme of the public URL, host as asked.
    let scheme = if own.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|host| origin == format!("{scheme}://{host}"))
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mode = client_mode(&uri);
    let metrics = &shared.metrics;
    if !origin_allowed(&shared.config, &headers) {
        metrics.refused(Refusal::Origin);
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    let upgrade = upgrade.protocols([sotto_subprotocol()]);
    if upgrade.selected_protocol().is_none() {
        metrics.refused(Refusal::Subprotocol);
        return (
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol \"xmpp\" is required (RFC 7395)\n",
        )
            .into_response();
    }
    let limits = &shared.config.limits;
    if metrics.open_sessions() >= limits.max_connections as u64 {
        metrics.refused(Refusal::MaxConnections);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    }
    {
        let Ok(mut per_ip) = shared.per_ip.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let count = per_ip.entry(peer.ip()).or_insert(0);
        if *count >= limits.max_connections_per_ip {
            metrics.refused(Refusal::MaxConnectionsPerIp);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections from here\n",
            )
                .into_response();
        }
        *count += 1;
    }
    metrics.session_opened();
    let slot = ConnectionSlot {
        shared: shared.clone(),
        ip: peer.ip(),
    };
    // Room for the largest allowed stanza plus framing; bigger messages are cut off by the
    // WebSocket layer before they are buffered whole.
    let max_message = limits.max_stanza_bytes.saturating_add(64 * 1024);
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        // tungstenite's default 128 KiB read buffer is zero-filled on the first read, so it
        // would cost every session 128 KiB of RAM; stanzas are small and a bigger frame still
        // gets room for all of itself. Measured with `cargo xtask bench bridge` (figure c).
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            let shared = slot.shared.clone();
            let ctx = relay::SessionContext {
                upstreams: &shared.upstreams,
                limits: &shared.config.limits,
                metrics: &shared.metrics,
                shutdown: shared.shutdown.subscribe(),
                policy: &shared.policy,
                audit: &shared.audit,
                peer: Some(peer.ip()),
                mode,
            };
            relay::run_session(socket, ctx).await;
            drop(slot);
        })
}

/// Bytes tungstenite reads from a client socket at a time (see the comment at its use).
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

fn sotto_subprotocol() -> &'static str {
    "xmpp"
}
