//! One relayed session: a client's RFC 7395 WebSocket on one side, an RFC 6120 TCP/TLS stream
//! on the other, with framing translated both ways.
//!
//! The loop is generic over the WebSocket (`Stream` + `Sink` of messages) and the upstream
//! (`AsyncRead` + `AsyncWrite`), so tests can drive it with in-memory stand-ins.
//!
//! # Refusals and XEP-0198
//!
//! A stanza the policy refuses must not reach the server, yet the client has counted it as
//! sent, and will count the error stanza the bridge answers with as received. If the bridge
//! simply dropped one and injected the other, both XEP-0198 counters would drift: the server's
//! `<a h/>` would acknowledge the wrong stanzas in the client's queue (our session core would
//! re-send an already delivered message after a resume, and treat the refused one as
//! delivered), and the client's `<a h/>` would exceed what the server sent (Prosody ends the
//! stream for that). Rewriting `h` in both directions would need per-session offsets that a
//! resumption through another bridge, or after a restart, cannot know.
//!
//! So the bridge keeps the counts true instead: in place of the refused stanza it sends the
//! server one harmless stanza of its own, a XEP-0199 ping to the server
//! (`id='sotto-policy-…'`), and when the server's one answer comes back it is replaced by the
//! error stanza for the client. One stanza each way on both sides, nothing delivered to anyone,
//! nothing stored, `h` never touched. Where no error may be sent (a refused error stanza or IQ
//! result), the stand-in is an IQ result to the server, which it counts and discards without an
//! answer. If the connection drops between the ping and its answer, the server re-sends the
//! pong after a resumption: the client receives an IQ result it never asked for (ignored) and
//! no error for that one refusal; the refused stanza is still never delivered or duplicated.
//! Because the server counts the stand-in, a client may see the refused stanza acknowledged
//! (`<a h/>`) before or after its error: the error is what decides (our session core reports
//! `MessageAcked` and then `MessageError`; `tests/tests/bridge_policy.rs` checks that a
//! resumption afterwards re-sends exactly the stanzas the server has not counted).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::audit::{self, Audit};
use crate::config::{ClientMode, Limits};
use crate::metrics::{Metrics, Refusal};
use crate::policy::{self, Policy};
use crate::track::{Milestone, Tracker};
use crate::upstream::{self, UpstreamIo};
use crate::xml::{self, ClientFrame, Splitter, UpstreamEvent, XmlError, XmlLimits};

/// WebSocket close code for a normal end (RFC 6455 §7.4.1).
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code when the bridge shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a message too big to process.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// How long to wait for the server's `</stream:stream>` after the client's `<close/>`.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Payload of the bridge's keepalive pings (any short payload would do; the pong echoes it).
const PING_PAYLOAD: &[u8] = b"sotto";

/// Refused stanzas whose error is still waiting for the server's answer to the stand-in ping;
/// a client that keeps more than this in flight is misbehaving.
const MAX_PENDING_REFUSALS: usize = 64;

/// Prefix of the ids of the bridge's stand-in stanzas.
const REFUSAL_ID_PREFIX: &str = "sotto-policy-";

/// A fresh stand-in id, unique within this process and unlikely to repeat across restarts.
fn refusal_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static BOOT: OnceLock<u64> = OnceLock::new();
    let boot = BOOT.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    format!(
        "{REFUSAL_ID_PREFIX}{boot:x}-{}",
        COUNTER.fetch_add(1, Relaxed)
    )
}

/// Why a session ended; decides what each side is told.
#[derive(Debug)]
enum End {
    /// The client sent `<close/>` and the server answered (or did not in time).
    ClientClosed,
    /// The server ended the stream.
    ServerClosed,
    /// The WebSocket went away without `<close/>`: keep the server session resumable.
    ClientVanished,
    /// The client answered no ping (and sent nothing else) for two ping intervals, or could not
    /// take a frame for that long: treated like [`End::ClientVanished`].
    ClientUnresponsive,
    /// The server connection broke.
    UpstreamLost,
    /// A stream error sent to the client, with the reason to count.
    StreamError(&'static str, &'static str, Refusal),
    /// The bridge is shutting down.
    Shutdown,
}

/// Token bucket for client→server stanzas. A burst of several seconds' worth is allowed
/// (logins fetch rosters, bundles and archives at once); sustained excess closes the session.
struct RateLimiter {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        let capacity = (per_second * 5.0).max(50.0);
        Self {
            tokens: capacity,
            capacity,
            per_second,
            last: Instant::now(),
        }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The frames that end a session with a stream error (RFC 7395 §3.5): the error, then `<close/>`.
pub fn stream_error_frames(condition: &str, text: &str) -> [String; 2] {
    let text = if text.is_empty() {
        String::new()
    } else {
        format!(
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>{}</text>",
            xml::escape_attr(text)
        )
    };
    [
        format!(
            "<stream:error xmlns:stream='{}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>{text}</stream:error>",
            xml::STREAM_NS
        ),
        close_frame(),
    ]
}

/// An RFC 7395 `<close/>`.
pub fn close_frame() -> String {
    xml::CLOSE_FRAME.to_owned()
}

/// An `<open/>` the bridge sends itself, before a stream error, when no upstream answered.
pub fn own_open_frame(from: Option<&str>) -> String {
    match from {
        Some(from) => format!(
            "<open xmlns='{}' from='{}' version='1.0'/>",
            xml::FRAMING_NS,
            xml::escape_attr(from)
        ),
        None => format!("<open xmlns='{}' version='1.0'/>", xml::FRAMING_NS),
    }
}

/// Everything a session needs from the bridge.
pub struct SessionContext<'a> {
    /// Configured upstreams.
    pub upstreams: &'a [upstream::PreparedUpstream],
    /// Limits.
    pub limits: &'a Limits,
    /// Metrics.
    pub metrics: &'a Metrics,
    /// Becomes `true` when the bridge shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// The organisation policy.
    pub policy: &'a Policy,
    /// The audit log (possibly disabled).
    pub audit: &'a Audit,
    /// The client's address (for the audit log only, and only with `log_ip`).
    pub peer: Option<IpAddr>,
    /// The mode the client announced (`?mode=` on the WebSocket URL), if any.
    pub mode: Option<ClientMode>,
}

/// Runs one session to its end. Never panics on anything either peer sends.
pub async fn run_session<W, E>(mut ws: W, mut ctx: SessionContext<'_>)
where
    W: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let limits = ctx.limits;
    let xml_limits = XmlLimits {
        max_element_bytes: limits.max_stanza_bytes,
        max_depth: limits.max_depth,
    };
    // 1. The client's <open/>, within the handshake timeout.
    let handshake = tokio::time::timeout(
        Duration::from_secs(limits.handshake_timeout_secs),
        first_open(&mut ws, &xml_limits),
    )
    .await;
    let (domain, lang) = match handshake {
        Err(_) => {
            ctx.metrics.refused(Refusal::HandshakeTimeout);
            let [error, close] = stream_error_frames("connection-timeout", "no <open/> received");
            finish(&mut ws, &[own_open_frame(None), error, close], CLOSE_NORMAL).await;
            return;
        }
        Ok(Err(Some((condition, text, reason)))) => {
            ctx.metrics.refused(reason);
            let [error, close] = stream_error_frames(condition, text);
            finish(&mut ws, &[own_open_frame(None), error, close], CLOSE_NORMAL).await;
            return;
        }
        Ok(Err(None)) => return,
        Ok(Ok(open)) => open,
    };
    // 2. Only configured domains; no connection attempt for anything else.
    let Some(upstream) = ctx
        .upstreams
        .iter()
        .find(|u| u.config.domain.eq_ignore_ascii_case(&domain))
    else {
        ctx.metrics.refused(Refusal::HostUnknown);
        let [error, close] =
            stream_error_frames("host-unknown", "this service does not serve that domain");
        finish(&mut ws, &[own_open_frame(None), error, close], CLOSE_NORMAL).await;
        return;
    };
    // 3. Upstream connection and TLS.
    let negotiated = match upstream::connect(upstream, lang.as_deref(), limits).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "upstream connection failed");
            ctx.metrics.refused(Refusal::UpstreamFailed);
            let [error, close] = stream_error_frames(
                "remote-connection-failed",
                "the chat server cannot be reached right now",
            );
            finish(
                &mut ws,
                &[own_open_frame(Some(&upstream.config.domain)), error, close],
                CLOSE_NORMAL,
            )
            .await;
            return;
        }
    };
    ctx.metrics.upstream_connected(negotiated.elapsed);
    for frame in &negotiated.frames {
        ctx.metrics.to_client(frame.len());
        if ws.send(Message::Text(frame.as_str().into())).await.is_err() {
            return;
        }
    }
    let end = relay(
        &mut ws,
        negotiated.io,
        negotiated.splitter,
        &upstream.config.domain,
        &xml_limits,
        &mut ctx,
    )
    .await;
    tracing::debug!(?end, "session ended");
}

type HandshakeFailure = Option<(&'static str, &'static str, Refusal)>;

/// Waits for the client's first `<open/>`; `Err(None)` when the client left silently.
async fn first_open<W, E>(
    ws: &mut W,
    limits: &XmlLimits,
) -> Result<(String, Option<String>), HandshakeFailure>
where
    W: Stream<Item = Result<Message, E>> + Unpin,
{
    loop {
        let message = match ws.next().await {
            Some(Ok(m)) => m,
            _ => return Err(None),
        };
        match message {
            Message::Text(text) => {
                return match xml::parse_client_frame(text.as_str(), limits) {
                    Ok(ClientFrame::Open {
                        to: Some(to), lang, ..
                    }) => Ok((to, lang)),
                    Ok(ClientFrame::Open { to: None, .. }) => Err(Some((
                        "host-unknown",
                        "the <open/> names no domain",
                        Refusal::HostUnknown,
                    ))),
                    Ok(_) => Err(Some((
                        "not-authorized",
                        "the stream must start with <open/>",
                        Refusal::BadXml,
                    ))),
                    Err(e) => Err(Some(xml_refusal(&e))),
                };
            }
            Message::Binary(_) => {
                return Err(Some((
                    "unsupported-encoding",
                    "binary WebSocket messages are not XMPP",
                    Refusal::BadXml,
                )))
            }
            Message::Close(_) => return Err(None),
            Message::Ping(_) | Message::Pong(_) => continue,
        }
    }
}

fn xml_refusal(e: &XmlError) -> (&'static str, &'static str, Refusal) {
    let reason = match e {
        XmlError::TooLarge => Refusal::TooLarge,
        _ => Refusal::BadXml,
    };
    (
        e.stream_error_condition(),
        "the message is not acceptable XML",
        reason,
    )
}

/// Sends one message to the client, giving up after `limit` (a client that takes no data for
/// that long is as dead as one that answers no ping).
async fn send_within<W>(ws: &mut W, message: Message, limit: Duration) -> Result<(), End>
where
    W: Sink<Message> + Unpin,
{
    match tokio::time::timeout(limit, ws.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::ClientVanished),
        Err(_) => Err(End::ClientUnresponsive),
    }
}

/// Queues one message for the client without writing it yet ([`flush_within`] writes), with
/// the same time limit and outcomes as [`send_within`].
async fn feed_within<W>(ws: &mut W, message: Message, limit: Duration) -> Result<(), End>
where
    W: Sink<Message> + Unpin,
{
    match tokio::time::timeout(limit, ws.feed(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::ClientVanished),
        Err(_) => Err(End::ClientUnresponsive),
    }
}

/// Writes the queued messages to the client, as [`send_within`].
async fn flush_within<W>(ws: &mut W, limit: Duration) -> Result<(), End>
where
    W: Sink<Message> + Unpin,
{
    match tokio::time::timeout(limit, ws.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::ClientVanished),
        Err(_) => Err(End::ClientUnresponsive),
    }
}

/// Sends frames, then closes the WebSocket with `code`. Errors mean the client is gone already.
async fn finish<W>(ws: &mut W, frames: &[String], code: u16)
where
    W: Sink<Message> + Unpin,
{
    for frame in frames {
        if ws.send(Message::Text(frame.as_str().into())).await.is_err() {
            return;
        }
    }
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        })))
        .await;
    let _ = ws.close().await;
}

async fn relay<W, E>(
    ws: &mut W,
    mut io: Box<dyn UpstreamIo>,
    mut splitter: Splitter,
    domain: &str,
    xml_limits: &XmlLimits,
    ctx: &mut SessionContext<'_>,
) -> End
where
    W: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let limits = ctx.limits;
    let metrics = ctx.metrics;
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let mut rate = RateLimiter::new(limits.stanzas_per_second);
    let mut buf = vec![0u8; 16 * 1024];
    let mut idle_deadline = Instant::now() + idle;
    let mut client_closing: Option<Instant> = None;
    // Keepalive (RFC 7395 §3.8: WebSocket pings, never whitespace). `unanswered_since` is when
    // the oldest ping still without an answer went out; any message from the client clears it.
    let ping_every = Duration::from_secs(limits.ping_interval_secs.max(1));
    let dead_after = ping_every.saturating_mul(2);
    let mut next_ping = Instant::now() + ping_every;
    let mut unanswered_since: Option<Instant> = None;
    let mut tracker = Tracker::default();
    // Stand-in id → the error stanza that replaces the server's answer to it.
    let mut pending_errors: HashMap<String, String> = HashMap::new();
    let policy_active = ctx.policy.is_active();
    let end = loop {
        let close_deadline = client_closing.unwrap_or(idle_deadline);
        tokio::select! {
            biased;
            _ = ctx.shutdown.changed() => break End::Shutdown,
            message = ws.next() => {
                // Any message shows the client is alive; only real traffic counts against the
                // idle timeout, so keepalive pongs do not keep an idle session open forever.
                unanswered_since = None;
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Binary(_))) => break End::StreamError(
                        "unsupported-encoding",
                        "binary WebSocket messages are not XMPP",
                        Refusal::BadXml,
                    ),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                        if client_closing.is_some() {
                            break End::ClientClosed;
                        }
                        break End::ClientVanished;
                    }
                };
                idle_deadline = Instant::now() + idle;
                if client_closing.is_some() {
                    // Nothing may follow <close/>; ignore rather than forward.
                    continue;
                }
                match xml::parse_client_frame(text.as_str(), xml_limits) {
                    Ok(ClientFrame::Element(info)) => {
                        if !rate.allow() {
                            break End::StreamError(
                                "policy-violation",
                                "too many stanzas; slow down",
                                Refusal::RateLimited,
                            );
                        }
                        tracker.client_element(&info, text.as_str());
                        // Every stanza, from the first: before the login completes the server
                        // refuses stanzas anyway, and no login method (SASL2 with Bind 2, say)
                        // can slip past a rule by not looking like the bind the tracker knows.
                        let refused = if policy_active {
                            ctx.policy.check(tracker.account(), &info)
                        } else {
                            None
                        };
                        let forward = match refused {
                            None => None,
                            Some(refused) => {
                                if refused.answer && pending_errors.len() >= MAX_PENDING_REFUSALS {
                                    break End::StreamError(
                                        "policy-violation",
                                        "too many refused stanzas",
                                        Refusal::RateLimited,
                                    );
                                }
                                metrics.policy_refused(refused.rule);
                                if let Some(account) = tracker.account() {
                                    ctx.audit.record(audit::Event::Refusal {
                                        account,
                                        resource: tracker.resource(),
                                        rule: refused.rule.label(),
                                        stanza: refused.stanza,
                                        target_domain: refused.target_domain.as_deref(),
                                        group: refused.group.as_deref(),
                                    });
                                }
                                let id = refusal_id();
                                let stand_in = if refused.answer {
                                    let own = tracker.full_jid();
                                    pending_errors.insert(
                                        id.clone(),
                                        policy::error_stanza(&info, own.as_deref(), refused.rule),
                                    );
                                    format!(
                                        "<iq xmlns='jabber:client' type='get' id='{id}' to='{}'><ping xmlns='urn:xmpp:ping'/></iq>",
                                        xml::escape_attr(domain)
                                    )
                                } else {
                                    format!(
                                        "<iq xmlns='jabber:client' type='result' id='{id}' to='{}'/>",
                                        xml::escape_attr(domain)
                                    )
                                };
                                Some(stand_in)
                            }
                        };
                        let out = forward.as_deref().unwrap_or(text.as_str());
                        metrics.to_upstream(out.len());
                        if io.write_all(out.as_bytes()).await.is_err() {
                            break End::UpstreamLost;
                        }
                    }
                    Ok(ClientFrame::Open { to, lang, .. }) => {
                        // Stream restart (after SASL): same domain only.
                        if !to.as_deref().is_some_and(|to| to.eq_ignore_ascii_case(domain)) {
                            break End::StreamError(
                                "host-unknown",
                                "a restarted stream must keep its domain",
                                Refusal::HostUnknown,
                            );
                        }
                        splitter.reset();
                        let header = upstream::stream_header(domain, lang.as_deref());
                        if io.write_all(header.as_bytes()).await.is_err() {
                            break End::UpstreamLost;
                        }
                    }
                    Ok(ClientFrame::Close { .. }) => {
                        if io.write_all(b"</stream:stream>").await.is_err() {
                            break End::ClientClosed;
                        }
                        client_closing = Some(Instant::now() + CLOSE_WAIT);
                    }
                    Err(e) => {
                        let (condition, text, reason) = xml_refusal(&e);
                        break End::StreamError(condition, text, reason);
                    }
                }
            }
            read = io.read(&mut buf) => {
                idle_deadline = Instant::now() + idle;
                let n = match read {
                    Ok(0) | Err(_) => break End::UpstreamLost,
                    Ok(n) => n,
                };
                if let Err(e) = splitter.feed(buf.get(..n).unwrap_or_default()) {
                    tracing::warn!(error = %e, "upstream sent unacceptable XML");
                    break End::UpstreamLost;
                }
                let mut ended = None;
                loop {
                    match splitter.next_event() {
                        Ok(None) => break,
                        Ok(Some(UpstreamEvent::Element { xml, info })) => {
                            match tracker.server_element(&info, &xml, domain) {
                                None => {}
                                Some(Milestone::Login) => {
                                    if let Some(account) = tracker.account() {
                                        ctx.audit.record(audit::Event::Login {
                                            account,
                                            resource: tracker.resource(),
                                            mode: ctx.mode.map(ClientMode::as_str),
                                            ip: ctx.peer,
                                        });
                                    }
                                }
                                Some(Milestone::ResumableEnabled { id }) => {
                                    if let Some(full) = tracker.full_jid() {
                                        ctx.audit.remember_resumable(&id, &full);
                                    }
                                }
                                Some(Milestone::Resumed { previd }) => {
                                    if let Some(full) = ctx.audit.resumable(&previd) {
                                        tracker.set_full_jid(&full);
                                    }
                                    if let Some(account) = tracker.account() {
                                        ctx.audit.record(audit::Event::Resume {
                                            account,
                                            resource: tracker.resource(),
                                            mode: ctx.mode.map(ClientMode::as_str),
                                            ip: ctx.peer,
                                        });
                                    }
                                }
                            }
                            let replaced = if info.local_name == "iq"
                                && !pending_errors.is_empty()
                                && info.attr("id").is_some_and(|id| id.starts_with(REFUSAL_ID_PREFIX))
                            {
                                info.attr("id").and_then(|id| pending_errors.remove(id))
                            } else {
                                None
                            };
                            let frame = if let Some(error) = replaced {
                                error
                            } else if info.namespace == xml::STREAM_NS && info.local_name == "features" {
                                upstream::strip_channel_binding(&xml, &info)
                            } else {
                                xml
                            };
                            metrics.to_client(frame.len());
                            if let Err(end) = feed_within(ws, Message::Text(frame.into()), dead_after).await {
                                ended = Some(end);
                                break;
                            }
                        }
                        Ok(Some(UpstreamEvent::StreamOpen { open_frame, .. })) => {
                            metrics.to_client(open_frame.len());
                            if let Err(end) = feed_within(ws, Message::Text(open_frame.into()), dead_after).await {
                                ended = Some(end);
                                break;
                            }
                        }
                        Ok(Some(UpstreamEvent::StreamClose)) => {
                            ended = Some(End::ServerClosed);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "upstream sent unacceptable XML");
                            ended = Some(End::UpstreamLost);
                            break;
                        }
                    }
                }
                // Every element above is its own WebSocket message, but they leave in one write
                // (on the ending paths, the closing frames' send flushes them).
                if ended.is_none() {
                    if let Err(end) = flush_within(ws, dead_after).await {
                        ended = Some(end);
                    }
                }
                if let Some(end) = ended {
                    break end;
                }
            }
            _ = tokio::time::sleep_until(next_ping) => {
                let now = Instant::now();
                if unanswered_since.is_some_and(|since| now.duration_since(since) >= dead_after) {
                    break End::ClientUnresponsive;
                }
                unanswered_since.get_or_insert(now);
                next_ping = now + ping_every;
                let ping = Message::Ping(bytes::Bytes::from_static(PING_PAYLOAD));
                if let Err(end) = send_within(ws, ping, dead_after).await {
                    break end;
                }
            }
            _ = tokio::time::sleep_until(close_deadline) => {
                if client_closing.is_some() {
                    break End::ClientClosed;
                }
                break End::StreamError("connection-timeout", "the session was idle too long", Refusal::Idle);
            }
        }
    };
    if tracker.bound() {
        if let Some(account) = tracker.account() {
            let how = match &end {
                // The server's </stream:stream> answering the client's <close/> is a logout.
                End::ClientClosed => "close",
                End::ServerClosed if client_closing.is_some() => "close",
                End::ServerClosed => "server",
                End::ClientVanished | End::ClientUnresponsive | End::UpstreamLost => {
                    "connection_lost"
                }
                End::StreamError(_, _, Refusal::Idle) => "idle",
                End::StreamError(..) => "error",
                End::Shutdown => "shutdown",
            };
            ctx.audit.record(audit::Event::Logout {
                account,
                resource: tracker.resource(),
                how,
            });
        }
    }
    match &end {
        End::ClientClosed | End::ServerClosed => {
            if matches!(end, End::ServerClosed) && client_closing.is_none() {
                // Answer the server's close (RFC 6120 §4.4) before dropping the socket.
                let _ = io.write_all(b"</stream:stream>").await;
            }
            let _ = io.shutdown().await;
            finish(ws, &[close_frame()], CLOSE_NORMAL).await;
        }
        End::ClientVanished => {
            // Drop the TCP connection without </stream:stream>: the server keeps the XEP-0198
            // session so the client can resume it through any bridge.
            drop(io);
        }
        End::ClientUnresponsive => {
            // As above: the client may come back (through any bridge) and resume. Its WebSocket
            // is not closed politely; it is dropped when the session returns.
            metrics.refused(Refusal::PingTimeout);
            drop(io);
        }
        End::UpstreamLost => {
            drop(io);
            metrics.refused(Refusal::UpstreamFailed);
            let frames = stream_error_frames(
                "remote-connection-failed",
                "the connection to the chat server was lost",
            );
            finish(ws, &frames, CLOSE_NORMAL).await;
        }
        End::StreamError(condition, text, reason) => {
            metrics.refused(*reason);
            if *reason == Refusal::Idle {
                // Idle is not misbehaviour: leave the server session resumable.
                drop(io);
            } else {
                let _ = io.write_all(b"</stream:stream>").await;
                let _ = io.shutdown().await;
            }
            let code = if *reason == Refusal::TooLarge {
                CLOSE_TOO_BIG
            } else {
                CLOSE_NORMAL
            };
            finish(ws, &stream_error_frames(condition, text), code).await;
        }
        End::Shutdown => {
            // Upstream dropped without </stream:stream>, so sessions can resume elsewhere.
            drop(io);
            finish(ws, &[], CLOSE_GOING_AWAY).await;
        }
    }
    end
}
