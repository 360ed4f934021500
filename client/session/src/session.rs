//! The session state machine.
//!
//! Polling order for drivers, after every input (`handle_connected`, `handle_frame`,
//! `handle_timeout`, a command): drain [`Session::poll_transmit`] to the WebSocket (one string =
//! one text message), drain [`Session::poll_event`] to the UI, then arm a timer for
//! [`Session::poll_timeout`] and call [`Session::handle_timeout`] when it fires.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::jid::{BareJid, FullJid, Jid};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use minidom::Element;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use zeroize::Zeroizing;

use crate::error::{CommandError, LoginError, StreamError};
use crate::event::{
    Availability, ChatMessage, ChatState, Direction, Event, RosterItem, Subscription,
};
use crate::ns;
use crate::scram::{ScramClient, ScramHash};
use crate::service::ServiceUrl;
use crate::time::Instant;

mod extensions;

pub use extensions::{PepItem, RequestId};

/// Longest frame the session accepts (the bridge's default stanza limit).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;
/// Most stanzas kept for XEP-0198 resending; beyond this, sending is refused until acks arrive.
pub const MAX_UNACKED: usize = 1000;
/// Most messages queued while the connection is down.
pub const MAX_PENDING: usize = 500;
/// Longest message body we send.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest name we give a contact (servers limit roster items; Prosody to a few KB).
pub const MAX_NAME_BYTES: usize = 256;
/// The longest message id we name in a retraction (ids are short tokens; this is generous).
pub const MAX_ID_BYTES: usize = 256;
/// XEP-0424's fallback text, for clients that know no retraction.
const RETRACTION_FALLBACK: &str =
    "This person attempted to retract a previous message, but it's unsupported by your client.";
/// Roster entries kept (Converse.js freezes at 1,600; we render 10,000 fine, and a server
/// sending more is not one we can show usefully).
pub const MAX_ROSTER_ITEMS: usize = 10_000;
/// Longest roster version string accepted (RFC 6121 leaves it opaque; servers use short ones).
pub const MAX_ROSTER_VERSION_BYTES: usize = 1024;
/// Time allowed from transport connect to being online.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Quiet time after which we probe the connection.
pub const PING_INTERVAL: Duration = Duration::from_secs(60);
/// Time a probe may go unanswered before the connection is declared dead.
pub const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// The node of our XEP-0115 capabilities.
const CAPS_NODE: &str = "https://sotto.chat";

/// What a session needs to log in.
pub struct Config {
    /// The account.
    pub jid: BareJid,
    /// Its password (zeroized when dropped).
    pub password: Zeroizing<String>,
    /// The resource to ask for; the server picks one when `None`.
    pub resource: Option<String>,
    /// Allow SASL PLAIN. Off by default: with PLAIN the bridge (and anything between the
    /// browser and the server's TLS) would see the password.
    pub allow_plain: bool,
    /// The WebSocket URL in use, to judge redirects (never wss → ws).
    pub service: Option<ServiceUrl>,
}

impl core::fmt::Debug for Config {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Config")
            .field("jid", &self.jid)
            .field("resource", &self.resource)
            .field("allow_plain", &self.allow_plain)
            .finish_non_exhaustive()
    }
}

enum Mechanism {
    Scram(ScramClient),
    Plain,
}

enum Phase {
    /// No transport.
    Idle,
    /// We sent `<open/>` and wait for the server's.
    AwaitOpen { authenticated: bool },
    /// We wait for stream features.
    AwaitFeatures { authenticated: bool },
    /// SASL in progress.
    Authenticating(Mechanism),
    /// Resource binding in progress.
    Binding,
    /// `<resume/>` sent.
    Resuming,
    /// Bound and usable.
    Online,
    /// We sent `<close/>`.
    Closing,
    /// Over; a new transport starts a new login.
    Ended,
}

#[derive(Clone)]
enum PendingIq {
    Bind,
    Roster,
    Carbons,
    Ping,
    RosterSet,
    /// PEP, MAM and blocking requests (see the `extensions` module).
    Extension(Box<extensions::ExtensionIq>),
}

struct Unacked {
    frame: String,
    message_id: Option<String>,
}

/// XEP-0198 state.
#[derive(Default)]
struct StreamManagement {
    /// `<enable/>` was sent: the server counts our stanzas from there on, so we must too.
    requested: bool,
    enabled: bool,
    resume_id: Option<String>,
    /// Stanzas received since `<enabled/>` (the `h` we report).
    inbound: u32,
    /// Stanzas the server acknowledged.
    acked: u32,
    /// Sent, not yet acknowledged, oldest first.
    unacked: VecDeque<Unacked>,
}

/// The XMPP client session.
pub struct Session {
    config: Config,
    rng: ChaCha20Rng,
    phase: Phase,
    bound: Option<FullJid>,
    /// The JID of the session XEP-0198 may resume.
    last_bound: Option<FullJid>,
    transmit: VecDeque<String>,
    events: VecDeque<Event>,
    iqs: HashMap<String, PendingIq>,
    sm: StreamManagement,
    /// Messages accepted while offline, sent once online.
    pending: VecDeque<(Element, String)>,
    roster: HashMap<BareJid, RosterItem>,
    presence: (Availability, Option<String>),
    was_online: bool,
    login_deadline: Option<Instant>,
    last_inbound: Instant,
    probe_sent: Option<Instant>,
    next_id: u64,
    /// Features advertised on top of [`FEATURES`] (e.g. OMEMO's `+notify`).
    extra_features: Vec<String>,
    /// Open MAM queries: query id → request.
    mam_queries: HashMap<String, RequestId>,
    next_request: u64,
    /// The addressee of requests sent to other entities, by IQ id.
    iq_targets: HashMap<String, BareJid>,
    /// See [`Session::authenticated_with`].
    authenticated_with: Option<&'static str>,
    /// The roster version our roster corresponds to (RFC 6121 §2.6), when the server versions
    /// rosters; restored by the driver with [`Session::restore_roster`].
    roster_version: Option<String>,
    /// Whether the server advertised roster versioning in this stream's features.
    roster_versioning: bool,
}

impl core::fmt::Debug for Session {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("jid", &self.config.jid)
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

fn serialize(element: &Element) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = element.write_to(&mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn availability_of(show: Option<&str>) -> Availability {
    match show {
        Some("away") => Availability::Away,
        Some("dnd") => Availability::DoNotDisturb,
        Some("xa") => Availability::ExtendedAway,
        Some("chat") => Availability::Chat,
        _ => Availability::Available,
    }
}

fn chat_state_name(state: ChatState) -> &'static str {
    match state {
        ChatState::Active => "active",
        ChatState::Composing => "composing",
        ChatState::Paused => "paused",
        ChatState::Inactive => "inactive",
        ChatState::Gone => "gone",
    }
}

fn chat_state_of(name: &str) -> Option<ChatState> {
    Some(match name {
        "active" => ChatState::Active,
        "composing" => ChatState::Composing,
        "paused" => ChatState::Paused,
        "inactive" => ChatState::Inactive,
        "gone" => ChatState::Gone,
        _ => return None,
    })
}

fn roster_item(element: &Element) -> Option<RosterItem> {
    let jid: BareJid = element.attr("jid")?.parse().ok()?;
    let subscription = match element.attr("subscription") {
        Some("to") => Subscription::To,
        Some("from") => Subscription::From,
        Some("both") => Subscription::Both,
        _ => Subscription::None,
    };
    Some(RosterItem {
        jid,
        name: element.attr("name").map(str::to_owned),
        subscription,
        pending_out: element.attr("ask") == Some("subscribe"),
        groups: element
            .children()
            .filter(|c| c.is("group", ns::ROSTER))
            .map(Element::text)
            .take(64)
            .collect(),
    })
}

fn stanza_error_condition(stanza: &Element) -> String {
    stanza
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.children().find(|c| c.ns() == ns::STANZAS))
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned())
}

impl Session {
    /// A session for `config`. The RNG seeds the session's own CSPRNG (for SCRAM nonces and
    /// stanza ids), so the core never reaches for a global one.
    pub fn new(config: Config, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self {
            config,
            rng: ChaCha20Rng::from_seed(*seed),
            phase: Phase::Idle,
            bound: None,
            last_bound: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            iqs: HashMap::new(),
            sm: StreamManagement::default(),
            pending: VecDeque::new(),
            roster: HashMap::new(),
            presence: (Availability::Available, None),
            was_online: false,
            login_deadline: None,
            last_inbound: Instant::default(),
            probe_sent: None,
            next_id: 0,
            extra_features: Vec::new(),
            mam_queries: HashMap::new(),
            next_request: 0,
            iq_targets: HashMap::new(),
            authenticated_with: None,
            roster_version: None,
            roster_versioning: false,
        }
    }

    // ----- getters -----

    /// Our full JID once bound.
    pub fn bound_jid(&self) -> Option<&FullJid> {
        self.bound.as_ref()
    }

    /// The SASL mechanism of the last successful authentication (e.g. `SCRAM-SHA-256`), for
    /// diagnostics and tests; `None` before the first one.
    pub fn authenticated_with(&self) -> Option<&'static str> {
        self.authenticated_with
    }

    /// Gives the session a roster saved from an earlier session, with the version the server
    /// gave it. When the server versions rosters (RFC 6121 §2.6) the next login asks only for
    /// changes since then, and a server answering "unchanged" costs one small IQ instead of the
    /// whole roster. Call before connecting; the saved roster is reported in
    /// [`Event::Roster`] once the server confirms or replaces it.
    pub fn restore_roster(&mut self, version: String, items: Vec<RosterItem>) {
        if version.len() > MAX_ROSTER_VERSION_BYTES {
            return;
        }
        self.roster_version = Some(version);
        self.roster = items
            .into_iter()
            .take(MAX_ROSTER_ITEMS)
            .map(|item| (item.jid.clone(), item))
            .collect();
    }

    /// The version of the roster as it stands (to save with [`Session::roster`] after
    /// [`Event::Roster`], [`Event::RosterItemUpdated`] and [`Event::RosterItemRemoved`]), if
    /// the server versions rosters.
    pub fn roster_version(&self) -> Option<&str> {
        self.roster_version.as_deref()
    }

    /// Whether stanzas can be sent right now.
    pub fn is_online(&self) -> bool {
        matches!(self.phase, Phase::Online)
    }

    /// Advertises an extra feature in disco#info and caps (XEP-0030, XEP-0115), e.g.
    /// `eu.siacs.conversations.axolotl.devicelist+notify` to receive contacts' OMEMO device
    /// lists by PEP notification (XEP-0163 §4). Takes effect with the next presence.
    pub fn advertise_feature(&mut self, feature: &str) {
        if !FEATURES.contains(&feature) && !self.extra_features.iter().any(|f| f == feature) {
            self.extra_features.push(feature.to_owned());
            self.extra_features.sort();
        }
    }

    /// Whether the session is using a transport (logging in, online or closing). When an
    /// event says `Disconnected` and this is false, the driver should close the transport.
    pub fn is_connected(&self) -> bool {
        !matches!(self.phase, Phase::Idle | Phase::Ended)
    }

    /// Whether a new transport can resume this session (XEP-0198).
    pub fn is_resumable(&self) -> bool {
        self.sm.resume_id.is_some()
    }

    /// The roster as last received.
    pub fn roster(&self) -> impl Iterator<Item = &RosterItem> {
        self.roster.values()
    }

    // ----- pollers -----

    /// The next WebSocket text message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmit.pop_front()
    }

    /// The next event for the UI.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle | Phase::Ended => None,
            Phase::Online => Some(match self.probe_sent {
                Some(sent) => sent + PING_TIMEOUT,
                None => self.last_inbound + PING_INTERVAL,
            }),
            _ => self.login_deadline,
        }
    }

    // ----- transport inputs -----

    /// The WebSocket is open: start (or resume) the session.
    pub fn handle_connected(&mut self, now: Instant) {
        self.transmit.clear();
        self.iqs.clear();
        self.iq_targets.clear();
        self.mam_queries.clear();
        self.probe_sent = None;
        self.last_inbound = now;
        self.login_deadline = Some(now + LOGIN_TIMEOUT);
        self.send_open(false);
    }

    /// The WebSocket closed or failed without a clean `<close/>`.
    pub fn handle_disconnected(&mut self, _now: Instant) {
        let was = core::mem::replace(&mut self.phase, Phase::Idle);
        self.transmit.clear();
        self.bound = None;
        if !matches!(was, Phase::Idle | Phase::Ended) {
            self.events.push_back(Event::Disconnected {
                resumable: self.is_resumable(),
            });
        }
        if matches!(was, Phase::Ended) {
            self.phase = Phase::Ended;
        }
    }

    /// Time passed: login timeout, keepalive probes, dead-connection detection.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Idle | Phase::Ended => {}
            Phase::Online => {
                if let Some(sent) = self.probe_sent {
                    if now >= sent + PING_TIMEOUT {
                        // Dead: keep XEP-0198 state so the next connection can resume.
                        self.phase = Phase::Idle;
                        self.bound = None;
                        self.events.push_back(Event::Disconnected {
                            resumable: self.is_resumable(),
                        });
                    }
                } else if now >= self.last_inbound + PING_INTERVAL {
                    self.probe_sent = Some(now);
                    if self.sm.enabled {
                        self.push_element(&Element::bare("r", ns::SM));
                    } else {
                        let id = self.new_id();
                        let ping = Element::builder("iq", ns::CLIENT)
                            .attr(rxml::xml_ncname!("type").into(), "get")
                            .attr(rxml::xml_ncname!("id").into(), id.as_str())
                            .append(Element::bare("ping", ns::PING))
                            .build();
                        self.iqs.insert(id, PendingIq::Ping);
                        self.push_element(&ping);
                    }
                }
            }
            _ => {
                if self.login_deadline.is_some_and(|d| now >= d) {
                    self.fail_login(LoginError::Timeout);
                }
            }
        }
    }

    /// One WebSocket text message from the server.
    pub fn handle_frame(&mut self, frame: &str, now: Instant) {
        self.last_inbound = now;
        self.probe_sent = None;
        if frame.len() > MAX_FRAME_BYTES {
            self.protocol_violation("policy-violation");
            return;
        }
        let element: Element = match frame.parse() {
            Ok(e) => e,
            Err(_) => {
                self.protocol_violation("not-well-formed");
                return;
            }
        };
        let (name, namespace) = (element.name().to_owned(), element.ns());
        match (namespace.as_str(), name.as_str()) {
            (ns::FRAMING, "open") => self.on_open(),
            (ns::FRAMING, "close") => self.on_close(&element),
            (ns::STREAM, "features") => self.on_features(&element),
            (ns::STREAM, "error") => self.on_stream_error(&element),
            (ns::SASL, _) => self.on_sasl(&element),
            (ns::SM, _) => self.on_sm(&element),
            (ns::CLIENT, "message" | "presence" | "iq") => {
                if self.sm.enabled {
                    self.sm.inbound = self.sm.inbound.wrapping_add(1);
                }
                match name.as_str() {
                    "message" => self.on_message(element),
                    "presence" => self.on_presence(&element),
                    _ => self.on_iq(&element),
                }
            }
            _ => {}
        }
    }

    // ----- commands -----

    /// Sends a chat message; returns its id (used for receipts and acks).
    pub fn send_chat(&mut self, to: &BareJid, body: &str) -> Result<String, CommandError> {
        if body.is_empty() || body.len() > MAX_BODY_BYTES {
            return Err(CommandError::BadBody);
        }
        let id = self.new_id();
        let message = Element::builder("message", ns::CLIENT)
            .attr(rxml::xml_ncname!("to").into(), to.to_string())
            .attr(rxml::xml_ncname!("type").into(), "chat")
            .attr(rxml::xml_ncname!("id").into(), id.as_str())
            .append(Element::builder("body", ns::CLIENT).append(body).build())
            .append(
                Element::builder("origin-id", ns::SID)
                    .attr(rxml::xml_ncname!("id").into(), id.as_str())
                    .build(),
            )
            .append(Element::bare("request", ns::RECEIPTS))
            .append(Element::bare("active", ns::CHATSTATES))
            .build();
        self.send_message_element(message, id.clone())?;
        Ok(id)
    }

    /// Retracts our message `retracted` to `to` (XEP-0424, "delete for everyone"); returns the
    /// retraction's own id. Plain, not encrypted: it carries no text, only the id, which the
    /// server has seen already. It names the message both ways, version 1 and version 0 (in
    /// an XEP-0422 `<apply-to/>`), because deployed clients read one or the other; the body is
    /// the fallback XEP-0424 gives for clients with neither, marked as such (XEP-0428), and
    /// the store hint keeps it in the archive so that our other devices and later sessions
    /// apply it too.
    pub fn send_retraction(
        &mut self,
        to: &BareJid,
        retracted: &str,
    ) -> Result<String, CommandError> {
        if retracted.is_empty() || retracted.len() > MAX_ID_BYTES {
            return Err(CommandError::BadId);
        }
        let id = self.new_id();
        let message = Element::builder("message", ns::CLIENT)
            .attr(rxml::xml_ncname!("to").into(), to.to_string())
            .attr(rxml::xml_ncname!("type").into(), "chat")
            .attr(rxml::xml_ncname!("id").into(), id.as_str())
            .append(
                Element::builder("retract", ns::RETRACT)
                    .attr(rxml::xml_ncname!("id").into(), retracted)
                    .build(),
            )
            .append(
                Element::builder("apply-to", ns::FASTEN)
                    .attr(rxml::xml_ncname!("id").into(), retracted)
                    .append(Element::bare("retract", ns::RETRACT_0))
                    .build(),
            )
            .append(
                Element::builder("fallback", ns::FALLBACK)
                    .attr(rxml::xml_ncname!("for").into(), ns::RETRACT)
                    .build(),
            )
            .append(
                Element::builder("body", ns::CLIENT)
                    .append(RETRACTION_FALLBACK)
                    .build(),
            )
            .append(Element::bare("store", ns::HINTS))
            .append(
                Element::builder("origin-id", ns::SID)
                    .attr(rxml::xml_ncname!("id").into(), id.as_str())
                    .build(),
            )
            .build();
        self.send_message_element(message, id.clone())?;
        Ok(id)
    }

    /// Sends a message element built by a layer above (OMEMO); `id` must be its id.
    pub fn send_message_element(
        &mut self,
        message: Element,
        id: String,
    ) -> Result<(), CommandError> {
        if self.is_online() {
            self.send_stanza(&message, Some(id))
        } else if self.was_online {
            if self.pending.len() >= MAX_PENDING {
                return Err(CommandError::QueueFull);
            }
            self.pending.push_back((message, id));
            Ok(())
        } else {
            Err(CommandError::NotOnline)
        }
    }

    /// Tells a contact we are typing, paused, etc. Dropped silently while offline.
    pub fn send_chat_state(&mut self, to: &BareJid, state: ChatState) {
        if !self.is_online() {
            return;
        }
        let message = Element::builder("message", ns::CLIENT)
            .attr(rxml::xml_ncname!("to").into(), to.to_string())
            .attr(rxml::xml_ncname!("type").into(), "chat")
            .append(Element::bare(chat_state_name(state), ns::CHATSTATES))
            .append(Element::bare("no-store", ns::HINTS))
            .build();
        let _ = self.send_stanza(&message, None);
    }

    /// Sets our presence for all contacts.
    pub fn set_presence(&mut self, availability: Availability, status: Option<&str>) {
        self.presence = (availability, status.map(str::to_owned));
        if self.is_online() {
            let presence = self.presence_element();
            let _ = self.send_stanza(&presence, None);
        }
    }

    /// Adds a contact to the roster and asks to see their presence.
    pub fn add_contact(&mut self, jid: &BareJid, name: Option<&str>) -> Result<(), CommandError> {
        self.require_online()?;
        let mut item = Element::builder("item", ns::ROSTER)
            .attr(rxml::xml_ncname!("jid").into(), jid.to_string());
        if let Some(name) = name {
            item = item.attr(rxml::xml_ncname!("name").into(), name);
        }
        let query = Element::builder("query", ns::ROSTER)
            .append(item.build())
            .build();
        self.send_iq("set", query, PendingIq::RosterSet)?;
        self.send_presence_to(jid, "subscribe")
    }

    /// Removes a contact (which also cancels subscriptions both ways, RFC 6121 §2.5).
    pub fn remove_contact(&mut self, jid: &BareJid) -> Result<(), CommandError> {
        self.require_online()?;
        let item = Element::builder("item", ns::ROSTER)
            .attr(rxml::xml_ncname!("jid").into(), jid.to_string())
            .attr(rxml::xml_ncname!("subscription").into(), "remove")
            .build();
        let query = Element::builder("query", ns::ROSTER).append(item).build();
        self.send_iq("set", query, PendingIq::RosterSet)
    }

    /// Gives a contact in the roster the name we know them by (`None` or empty: none, the
    /// address is shown). Their groups stay: a roster set replaces the whole item (RFC 6121
    /// §2.1.2), so they are sent again.
    pub fn rename_contact(
        &mut self,
        jid: &BareJid,
        name: Option<&str>,
    ) -> Result<(), CommandError> {
        self.require_online()?;
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.len() > MAX_NAME_BYTES || n.chars().any(char::is_control)) {
            return Err(CommandError::BadName);
        }
        let Some(current) = self.roster.get(jid) else {
            return Err(CommandError::NotInRoster);
        };
        let mut item = Element::builder("item", ns::ROSTER)
            .attr(rxml::xml_ncname!("jid").into(), jid.to_string());
        if let Some(name) = name {
            item = item.attr(rxml::xml_ncname!("name").into(), name);
        }
        for group in &current.groups {
            item = item.append(
                Element::builder("group", ns::ROSTER)
                    .append(group.as_str())
                    .build(),
            );
        }
        let query = Element::builder("query", ns::ROSTER)
            .append(item.build())
            .build();
        self.send_iq("set", query, PendingIq::RosterSet)
    }

    /// Asks to see a contact's presence.
    pub fn request_subscription(&mut self, jid: &BareJid) -> Result<(), CommandError> {
        self.send_presence_to(jid, "subscribe")
    }

    /// Lets a contact see our presence (approve their request).
    pub fn approve_subscription(&mut self, jid: &BareJid) -> Result<(), CommandError> {
        self.send_presence_to(jid, "subscribed")
    }

    /// Refuses a request, or revokes a contact's permission to see our presence.
    pub fn deny_subscription(&mut self, jid: &BareJid) -> Result<(), CommandError> {
        self.send_presence_to(jid, "unsubscribed")
    }

    /// Stops seeing a contact's presence.
    pub fn unsubscribe(&mut self, jid: &BareJid) -> Result<(), CommandError> {
        self.send_presence_to(jid, "unsubscribe")
    }

    /// Ends the session cleanly (`<close/>`); the server's `<close/>` ends it.
    pub fn close(&mut self) {
        if matches!(self.phase, Phase::Idle | Phase::Ended | Phase::Closing) {
            self.phase = Phase::Ended;
            return;
        }
        if self.sm.enabled {
            // Acknowledge everything we received, so the server does not bounce stanzas we
            // already handled as undelivered when the stream ends (XEP-0198 §4).
            let a = Element::builder("a", ns::SM)
                .attr(rxml::xml_ncname!("h").into(), self.sm.inbound.to_string())
                .build();
            self.push_element(&a);
        }
        if self.is_online() {
            let unavailable = Element::builder("presence", ns::CLIENT)
                .attr(rxml::xml_ncname!("type").into(), "unavailable")
                .build();
            let _ = self.send_stanza(&unavailable, None);
        }
        self.push_element(&Element::bare("close", ns::FRAMING));
        self.sm = StreamManagement::default();
        self.phase = Phase::Closing;
    }

    // ----- internals: sending -----

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        let mut random = [0u8; 9];
        self.rng.fill_bytes(&mut random);
        let alphabet: Vec<char> =
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
                .chars()
                .collect();
        let mut id: String = random
            .iter()
            .map(|b| alphabet.get(usize::from(b & 63)).copied().unwrap_or('x'))
            .collect();
        id.push_str(&format!("{:x}", self.next_id));
        id
    }

    fn push_element(&mut self, element: &Element) {
        self.transmit.push_back(serialize(element));
    }

    fn send_open(&mut self, authenticated: bool) {
        let open = Element::builder("open", ns::FRAMING)
            .attr(rxml::xml_ncname!("to").into(), self.config.jid.domain())
            .attr(rxml::xml_ncname!("version").into(), "1.0")
            .build();
        self.push_element(&open);
        self.phase = Phase::AwaitOpen { authenticated };
    }

    fn require_online(&self) -> Result<(), CommandError> {
        if self.is_online() {
            Ok(())
        } else {
            Err(CommandError::NotOnline)
        }
    }

    /// Sends a stanza, tracking it for XEP-0198.
    fn send_stanza(
        &mut self,
        stanza: &Element,
        message_id: Option<String>,
    ) -> Result<(), CommandError> {
        let tracking = self.sm.requested;
        if tracking && self.sm.unacked.len() >= MAX_UNACKED {
            return Err(CommandError::QueueFull);
        }
        let frame = serialize(stanza);
        self.transmit.push_back(frame.clone());
        if tracking {
            let is_message = message_id.is_some();
            self.sm.unacked.push_back(Unacked { frame, message_id });
            if is_message && self.sm.enabled {
                self.push_element(&Element::bare("r", ns::SM));
            }
        }
        Ok(())
    }

    fn send_iq(
        &mut self,
        kind: &str,
        payload: Element,
        pending: PendingIq,
    ) -> Result<(), CommandError> {
        let id = self.new_id();
        let iq = Element::builder("iq", ns::CLIENT)
            .attr(rxml::xml_ncname!("type").into(), kind)
            .attr(rxml::xml_ncname!("id").into(), id.as_str())
            .append(payload)
            .build();
        self.iqs.insert(id, pending);
        self.send_stanza(&iq, None)
    }

    fn send_presence_to(&mut self, jid: &BareJid, kind: &str) -> Result<(), CommandError> {
        self.require_online()?;
        let presence = Element::builder("presence", ns::CLIENT)
            .attr(rxml::xml_ncname!("to").into(), jid.to_string())
            .attr(rxml::xml_ncname!("type").into(), kind)
            .build();
        self.send_stanza(&presence, None)
    }

    fn presence_element(&self) -> Element {
        let (availability, status) = &self.presence;
        let mut presence = Element::builder("presence", ns::CLIENT);
        let show = match availability {
            Availability::Away => Some("away"),
            Availability::DoNotDisturb => Some("dnd"),
            Availability::ExtendedAway => Some("xa"),
            Availability::Chat => Some("chat"),
            Availability::Available | Availability::Unavailable => None,
        };
        if *availability == Availability::Unavailable {
            presence = presence.attr(rxml::xml_ncname!("type").into(), "unavailable");
        }
        if let Some(show) = show {
            presence = presence.append(Element::builder("show", ns::CLIENT).append(show).build());
        }
        if let Some(status) = status {
            presence = presence.append(
                Element::builder("status", ns::CLIENT)
                    .append(status.as_str())
                    .build(),
            );
        }
        presence
            .append(
                Element::builder("c", ns::CAPS)
                    .attr(rxml::xml_ncname!("hash").into(), "sha-1")
                    .attr(rxml::xml_ncname!("node").into(), CAPS_NODE)
                    .attr(
                        rxml::xml_ncname!("ver").into(),
                        caps_ver(&self.extra_features),
                    )
                    .build(),
            )
            .build()
    }

    // ----- internals: receiving -----

    fn protocol_violation(&mut self, condition: &str) {
        let error = Element::builder("error", ns::STREAM)
            .append(Element::bare(condition, ns::STREAMS_ERRORS))
            .build();
        self.push_element(&error);
        self.push_element(&Element::bare("close", ns::FRAMING));
        self.events.push_back(Event::StreamError(StreamError {
            condition: condition.to_owned(),
            text: Some("the server sent something this app cannot read".to_owned()),
        }));
        self.end(false);
    }

    fn end(&mut self, resumable: bool) {
        if !resumable {
            self.sm = StreamManagement::default();
        }
        self.phase = Phase::Ended;
        self.bound = None;
        self.events.push_back(Event::Disconnected { resumable });
    }

    fn fail_login(&mut self, error: LoginError) {
        self.events.push_back(Event::LoginFailed(error));
        self.push_element(&Element::bare("close", ns::FRAMING));
        self.sm = StreamManagement::default();
        self.phase = Phase::Ended;
    }

    fn on_open(&mut self) {
        if let Phase::AwaitOpen { authenticated } = self.phase {
            self.phase = Phase::AwaitFeatures { authenticated };
        }
    }

    fn on_close(&mut self, close: &Element) {
        if let Some(target) = close.attr("see-other-uri") {
            let allowed = match (ServiceUrl::parse(target), &self.config.service) {
                (Ok(target), Some(current)) => current.may_redirect_to(&target),
                (Ok(target), None) => target.is_secure(),
                (Err(_), _) => false,
            };
            self.events.push_back(Event::StreamError(StreamError {
                condition: "see-other-uri".to_owned(),
                text: Some(if allowed {
                    format!("the server moved to {target}")
                } else {
                    "the server tried to redirect to an insecure address; refused".to_owned()
                }),
            }));
            self.end(false);
            return;
        }
        if !matches!(self.phase, Phase::Closing) {
            // The server closes: answer with our own <close/> (RFC 7395 §3.6).
            self.push_element(&Element::bare("close", ns::FRAMING));
        }
        self.end(false);
    }

    fn on_stream_error(&mut self, error: &Element) {
        let condition = error
            .children()
            .find(|c| c.ns() == ns::STREAMS_ERRORS && c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| "undefined-condition".to_owned());
        let text = error
            .get_child("text", ns::STREAMS_ERRORS)
            .map(Element::text);
        self.events
            .push_back(Event::StreamError(StreamError { condition, text }));
        self.end(false);
    }

    fn on_features(&mut self, features: &Element) {
        let Phase::AwaitFeatures { authenticated } = self.phase else {
            return;
        };
        if !authenticated {
            self.start_sasl(features);
            return;
        }
        self.roster_versioning = features.has_child("ver", ns::ROSTER_VERSIONING);
        let offers_sm = features.has_child("sm", ns::SM);
        if let (true, Some(previd)) = (offers_sm, self.sm.resume_id.clone()) {
            let resume = Element::builder("resume", ns::SM)
                .attr(rxml::xml_ncname!("previd").into(), previd)
                .attr(rxml::xml_ncname!("h").into(), self.sm.inbound.to_string())
                .build();
            self.push_element(&resume);
            self.phase = Phase::Resuming;
            return;
        }
        if self.sm.resume_id.is_some() {
            self.resume_failed(None);
        }
        self.start_bind();
        if offers_sm {
            self.request_sm();
        }
    }

    fn start_sasl(&mut self, features: &Element) {
        let offered: Vec<String> = features
            .get_child("mechanisms", ns::SASL)
            .map(|m| {
                m.children()
                    .filter(|c| c.is("mechanism", ns::SASL))
                    .map(Element::text)
                    .take(32)
                    .collect()
            })
            .unwrap_or_default();
        let has = |name: &str| offered.iter().any(|m| m.eq_ignore_ascii_case(name));
        let username = self
            .config
            .jid
            .node()
            .map(|n| n.to_owned())
            .unwrap_or_default();
        let scram = if has("SCRAM-SHA-256") {
            Some(ScramHash::Sha256)
        } else if has("SCRAM-SHA-1") {
            Some(ScramHash::Sha1)
        } else {
            None
        };
        let (mechanism, initial) = match scram {
            Some(hash) => {
                match ScramClient::new(hash, &username, &self.config.password, &mut self.rng) {
                    Ok(mut client) => {
                        let first = client.client_first();
                        (Mechanism::Scram(client), first)
                    }
                    Err(e) => {
                        self.fail_login(LoginError::Scram(e));
                        return;
                    }
                }
            }
            None if has("PLAIN") && self.config.allow_plain => {
                let mut token = Zeroizing::new(Vec::new());
                token.push(0);
                token.extend_from_slice(username.as_bytes());
                token.push(0);
                token.extend_from_slice(self.config.password.as_bytes());
                (Mechanism::Plain, token.to_vec())
            }
            None => {
                self.fail_login(LoginError::NoSupportedMechanism {
                    offered: offered.join(", "),
                });
                return;
            }
        };
        let name = match &mechanism {
            Mechanism::Scram(c) => c.mechanism(),
            Mechanism::Plain => "PLAIN",
        };
        let auth = Element::builder("auth", ns::SASL)
            .attr(rxml::xml_ncname!("mechanism").into(), name)
            .append(BASE64.encode(&initial))
            .build();
        self.push_element(&auth);
        self.phase = Phase::Authenticating(mechanism);
    }

    fn on_sasl(&mut self, element: &Element) {
        let Phase::Authenticating(mechanism) = &mut self.phase else {
            return;
        };
        let data = match BASE64.decode(element.text().trim()) {
            Ok(d) => d,
            Err(_) if element.text().trim() == "=" => Vec::new(),
            Err(_) => {
                self.fail_login(LoginError::Sasl("malformed server message".into()));
                return;
            }
        };
        match element.name() {
            "challenge" => {
                let Mechanism::Scram(scram) = mechanism else {
                    self.fail_login(LoginError::Sasl("unexpected challenge".into()));
                    return;
                };
                let response = if scram.is_done() {
                    Err(crate::scram::ScramError::State)
                } else if matches!(scram.handle_server_final(&data), Ok(())) {
                    // Some servers send the verifier in a last challenge (RFC 6120 §6.4.6).
                    Ok(Vec::new())
                } else {
                    scram.handle_server_first(&data)
                };
                match response {
                    Ok(response) => {
                        let response = Element::builder("response", ns::SASL)
                            .append(BASE64.encode(response))
                            .build();
                        self.push_element(&response);
                    }
                    Err(e) => self.fail_login(LoginError::Scram(e)),
                }
            }
            "success" => {
                if let Mechanism::Scram(scram) = mechanism {
                    if !scram.is_done() {
                        if let Err(e) = scram.handle_server_final(&data) {
                            self.fail_login(LoginError::Scram(e));
                            return;
                        }
                    }
                }
                self.authenticated_with = Some(match mechanism {
                    Mechanism::Scram(scram) => scram.mechanism(),
                    Mechanism::Plain => "PLAIN",
                });
                self.send_open(true);
            }
            "failure" => {
                let condition = element
                    .children()
                    .find(|c| c.name() != "text")
                    .map(|c| c.name().to_owned())
                    .unwrap_or_default();
                let error = match condition.as_str() {
                    "not-authorized" | "credentials-expired" => LoginError::WrongPassword,
                    "account-disabled" => LoginError::AccountDisabled,
                    other => LoginError::Sasl(other.to_owned()),
                };
                self.fail_login(error);
            }
            _ => {}
        }
    }

    fn start_bind(&mut self) {
        let mut bind = Element::builder("bind", ns::BIND);
        if let Some(resource) = &self.config.resource {
            bind = bind.append(
                Element::builder("resource", ns::BIND)
                    .append(resource.as_str())
                    .build(),
            );
        }
        let id = self.new_id();
        let iq = Element::builder("iq", ns::CLIENT)
            .attr(rxml::xml_ncname!("type").into(), "set")
            .attr(rxml::xml_ncname!("id").into(), id.as_str())
            .append(bind.build())
            .build();
        self.iqs.insert(id, PendingIq::Bind);
        self.push_element(&iq);
        self.phase = Phase::Binding;
    }

    fn resume_failed(&mut self, acked: Option<u32>) {
        if let Some(h) = acked {
            self.ack_up_to(h);
        }
        // Stanzas the old session never confirmed: messages are sent again in the new session
        // (same ids, so receivers can de-duplicate); presence and IQs are re-created anyway.
        let unacked = core::mem::take(&mut self.sm.unacked);
        let mut requeue: VecDeque<(Element, String)> = unacked
            .into_iter()
            .filter_map(|u| {
                let id = u.message_id?;
                u.frame.parse::<Element>().ok().map(|e| (e, id))
            })
            .collect();
        requeue.append(&mut self.pending);
        self.pending = requeue;
        self.sm = StreamManagement::default();
        self.events.push_back(Event::ResumeFailed);
    }

    fn on_sm(&mut self, element: &Element) {
        match element.name() {
            "enabled" => {
                self.sm.enabled = true;
                self.sm.inbound = 0;
                let resumable = matches!(element.attr("resume"), Some("true" | "1"));
                self.sm.resume_id = element.attr("id").filter(|_| resumable).map(str::to_owned);
                if self.sm.unacked.iter().any(|u| u.message_id.is_some()) {
                    self.push_element(&Element::bare("r", ns::SM));
                }
            }
            "r" => {
                let a = Element::builder("a", ns::SM)
                    .attr(rxml::xml_ncname!("h").into(), self.sm.inbound.to_string())
                    .build();
                self.push_element(&a);
            }
            "a" => {
                if let Some(h) = element.attr("h").and_then(|h| h.parse().ok()) {
                    self.ack_up_to(h);
                }
            }
            "resumed" => {
                if !matches!(self.phase, Phase::Resuming) {
                    return;
                }
                if let Some(h) = element.attr("h").and_then(|h| h.parse().ok()) {
                    self.ack_up_to(h);
                }
                // Re-send what the server did not get, exactly once, in order.
                let frames: Vec<String> = self.sm.unacked.iter().map(|u| u.frame.clone()).collect();
                self.transmit.extend(frames);
                if !self.sm.unacked.is_empty() {
                    self.push_element(&Element::bare("r", ns::SM));
                }
                self.phase = Phase::Online;
                self.login_deadline = None;
                if let Some(jid) = self.last_bound.clone() {
                    self.bound = Some(jid.clone());
                    self.events.push_back(Event::Online { jid, resumed: true });
                }
                self.flush_pending();
            }
            "failed" => {
                if matches!(self.phase, Phase::Resuming) {
                    let h = element.attr("h").and_then(|h| h.parse().ok());
                    self.resume_failed(h);
                    self.start_bind();
                    self.request_sm();
                } else {
                    // <enable/> refused: carry on without stream management; anything we
                    // queued for acknowledgement will never be acknowledged.
                    self.sm = StreamManagement::default();
                }
            }
            _ => {}
        }
    }

    fn request_sm(&mut self) {
        self.push_element(
            &Element::builder("enable", ns::SM)
                .attr(rxml::xml_ncname!("resume").into(), "true")
                .build(),
        );
        self.sm.requested = true;
        self.sm.acked = 0;
        self.sm.unacked.clear();
    }

    fn ack_up_to(&mut self, h: u32) {
        // h counts modulo 2^32; the number newly acknowledged is the wrapping difference.
        let newly = h.wrapping_sub(self.sm.acked) as usize;
        if newly > self.sm.unacked.len() {
            // The server claims more than we sent (XEP-0198 §4 handled-count-too-high): ignore.
            return;
        }
        for _ in 0..newly {
            if let Some(Unacked {
                message_id: Some(id),
                ..
            }) = self.sm.unacked.pop_front()
            {
                self.events.push_back(Event::MessageAcked { id });
            }
        }
        self.sm.acked = h;
    }

    fn flush_pending(&mut self) {
        while let Some((message, id)) = self.pending.pop_front() {
            if self.send_stanza(&message, Some(id.clone())).is_err() {
                self.pending.push_front((message, id));
                break;
            }
        }
    }

    fn on_iq(&mut self, iq: &Element) {
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let from_server_or_self = match iq.attr("from") {
            None => true,
            Some(from) => from.parse::<Jid>().is_ok_and(|j| {
                j.to_bare() == self.config.jid || j.to_bare().as_str() == self.config.jid.domain()
            }),
        };
        match iq.attr("type") {
            Some("result") | Some("error") => {
                // Only the entity we asked may answer (RFC 6120 §8.1.2.1): the server or our
                // own account, or the contact a request was addressed to.
                let target = self.iq_targets.get(&id);
                let from_target = target.is_some_and(|target| {
                    iq.attr("from")
                        .and_then(|f| f.parse::<Jid>().ok())
                        .is_some_and(|f| f.to_bare() == *target)
                });
                let allowed = if target.is_some() {
                    from_target
                } else {
                    from_server_or_self
                };
                if !allowed {
                    return;
                }
                self.iq_targets.remove(&id);
                let Some(kind) = self.iqs.remove(&id) else {
                    return;
                };
                self.on_iq_response(kind, iq);
            }
            Some("set") if iq.has_child("query", ns::ROSTER) && from_server_or_self => {
                if let Some(query) = iq.get_child("query", ns::ROSTER) {
                    self.note_roster_version(query);
                    for item in query.children().filter(|c| c.is("item", ns::ROSTER)) {
                        if item.attr("subscription") == Some("remove") {
                            if let Some(jid) =
                                item.attr("jid").and_then(|j| j.parse::<BareJid>().ok())
                            {
                                self.roster.remove(&jid);
                                self.events.push_back(Event::RosterItemRemoved(jid));
                            }
                        } else if let Some(item) = roster_item(item) {
                            if self.roster.len() >= MAX_ROSTER_ITEMS
                                && !self.roster.contains_key(&item.jid)
                            {
                                continue;
                            }
                            self.roster.insert(item.jid.clone(), item.clone());
                            self.events.push_back(Event::RosterItemUpdated(item));
                        }
                    }
                }
                self.reply_result(iq, None);
            }
            Some("set") if from_server_or_self && self.on_extension_push(iq) => {
                self.reply_result(iq, None)
            }
            Some("get") if iq.has_child("ping", ns::PING) => self.reply_result(iq, None),
            Some("get") if iq.has_child("query", ns::DISCO_INFO) => {
                let node = iq
                    .get_child("query", ns::DISCO_INFO)
                    .and_then(|q| q.attr("node"))
                    .map(str::to_owned);
                let info = disco_info(node.as_deref(), &self.extra_features);
                self.reply_result(iq, Some(info));
            }
            Some("get") | Some("set") => {
                // RFC 6120 §8.2.3: an IQ we do not understand gets service-unavailable.
                let mut reply = Element::builder("iq", ns::CLIENT)
                    .attr(rxml::xml_ncname!("type").into(), "error")
                    .attr(rxml::xml_ncname!("id").into(), id.as_str());
                if let Some(from) = iq.attr("from") {
                    reply = reply.attr(rxml::xml_ncname!("to").into(), from);
                }
                let reply = reply
                    .append(
                        Element::builder("error", ns::CLIENT)
                            .attr(rxml::xml_ncname!("type").into(), "cancel")
                            .append(Element::bare("service-unavailable", ns::STANZAS))
                            .build(),
                    )
                    .build();
                let _ = self.send_stanza(&reply, None);
            }
            _ => {}
        }
    }

    fn reply_result(&mut self, iq: &Element, payload: Option<Element>) {
        let mut reply = Element::builder("iq", ns::CLIENT)
            .attr(rxml::xml_ncname!("type").into(), "result")
            .attr(
                rxml::xml_ncname!("id").into(),
                iq.attr("id").unwrap_or_default(),
            );
        if let Some(from) = iq.attr("from") {
            reply = reply.attr(rxml::xml_ncname!("to").into(), from);
        }
        if let Some(payload) = payload {
            reply = reply.append(payload);
        }
        let _ = self.send_stanza(&reply.build(), None);
    }

    fn on_iq_response(&mut self, kind: PendingIq, iq: &Element) {
        let ok = iq.attr("type") == Some("result");
        match kind {
            PendingIq::Bind => {
                let jid = iq
                    .get_child("bind", ns::BIND)
                    .and_then(|b| b.get_child("jid", ns::BIND))
                    .and_then(|j| j.text().parse::<FullJid>().ok())
                    .filter(|j| j.to_bare() == self.config.jid);
                match (ok, jid) {
                    (true, Some(jid)) => self.on_bound(jid),
                    _ => self.fail_login(LoginError::Bind(stanza_error_condition(iq))),
                }
            }
            PendingIq::Roster => {
                if let Some(query) = iq.get_child("query", ns::ROSTER) {
                    self.roster = query
                        .children()
                        .filter(|c| c.is("item", ns::ROSTER))
                        .filter_map(roster_item)
                        .take(MAX_ROSTER_ITEMS)
                        .map(|item| (item.jid.clone(), item))
                        .collect();
                    self.note_roster_version(query);
                } else if iq.attr("type") != Some("result") || self.roster_version.is_none() {
                    // An empty result means "your version is current" only if we sent one.
                    return;
                }
                let mut items: Vec<RosterItem> = self.roster.values().cloned().collect();
                items.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
                self.events.push_back(Event::Roster(items));
            }
            PendingIq::Extension(request) => self.on_extension_response(*request, iq),
            PendingIq::Carbons | PendingIq::RosterSet | PendingIq::Ping => {}
        }
    }

    /// Takes the `ver` of a roster result or push, when the server versions rosters.
    fn note_roster_version(&mut self, query: &Element) {
        if !self.roster_versioning {
            return;
        }
        if let Some(ver) = query
            .attr("ver")
            .filter(|v| v.len() <= MAX_ROSTER_VERSION_BYTES)
        {
            self.roster_version = Some(ver.to_owned());
        }
    }

    fn on_bound(&mut self, jid: FullJid) {
        self.bound = Some(jid.clone());
        self.last_bound = Some(jid.clone());
        self.phase = Phase::Online;
        self.login_deadline = None;
        self.was_online = true;
        let _ = self.send_iq(
            "set",
            Element::bare("enable", ns::CARBONS),
            PendingIq::Carbons,
        );
        let mut query = Element::builder("query", ns::ROSTER);
        if self.roster_versioning {
            // An empty ver asks for the whole roster and for versions from now on.
            query = query.attr(
                rxml::xml_ncname!("ver").into(),
                self.roster_version.clone().unwrap_or_default(),
            );
        } else {
            self.roster_version = None;
        }
        let _ = self.send_iq("get", query.build(), PendingIq::Roster);
        let presence = self.presence_element();
        let _ = self.send_stanza(&presence, None);
        self.events.push_back(Event::Online {
            jid,
            resumed: false,
        });
        self.flush_pending();
    }

    fn on_presence(&mut self, presence: &Element) {
        let Some(from) = presence.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return;
        };
        match presence.attr("type") {
            None => {
                let show = presence.get_child("show", ns::CLIENT).map(Element::text);
                let status = presence.get_child("status", ns::CLIENT).map(Element::text);
                self.events.push_back(Event::Presence {
                    from,
                    availability: availability_of(show.as_deref()),
                    status,
                });
            }
            Some("unavailable") => {
                let status = presence.get_child("status", ns::CLIENT).map(Element::text);
                self.events.push_back(Event::Presence {
                    from,
                    availability: Availability::Unavailable,
                    status,
                });
            }
            Some("subscribe") => {
                self.events.push_back(Event::SubscriptionRequest {
                    from: from.to_bare(),
                });
            }
            _ => {}
        }
    }

    fn on_message(&mut self, message: Element) {
        let own = self.config.jid.clone();
        let from = message.attr("from").and_then(|f| f.parse::<Jid>().ok());
        if message.attr("type") == Some("error") {
            self.events.push_back(Event::MessageError {
                id: message.attr("id").map(str::to_owned),
                condition: stanza_error_condition(&message),
            });
            return;
        }
        if self.on_extension_message(&message, from.as_ref()) {
            return;
        }
        // XEP-0280: carbons are accepted only from our own bare JID (§11: anyone else could
        // forge "messages we sent").
        let carbon = ["received", "sent"]
            .into_iter()
            .find_map(|kind| message.get_child(kind, ns::CARBONS).map(|c| (kind, c)));
        if let Some((kind, wrapper)) = carbon {
            let from_own = from.as_ref().is_none_or(|f| f.to_bare() == own);
            if !from_own {
                return;
            }
            let inner = wrapper
                .get_child("forwarded", ns::FORWARD)
                .and_then(|f| f.get_child("message", ns::CLIENT))
                .cloned();
            if let Some(inner) = inner {
                let direction = if kind == "sent" {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                self.deliver_message(inner, direction, true);
            }
            return;
        }
        let Some(from) = from else {
            return;
        };
        if let Some(receipt) = message.get_child("received", ns::RECEIPTS) {
            if let Some(id) = receipt.attr("id") {
                self.events.push_back(Event::Receipt {
                    from: from.clone(),
                    id: id.to_owned(),
                });
            }
        }
        self.deliver_message(message, Direction::Incoming, false);
    }

    fn deliver_message(&mut self, message: Element, direction: Direction, carbon: bool) {
        let Some(from) = message.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return;
        };
        let to = message.attr("to").and_then(|t| t.parse::<Jid>().ok());
        let peer = match direction {
            Direction::Incoming => from.to_bare(),
            Direction::Outgoing => match &to {
                Some(to) => to.to_bare(),
                None => return,
            },
        };
        if let Some(state) = message
            .children()
            .find(|c| c.ns() == ns::CHATSTATES)
            .and_then(|c| chat_state_of(c.name()))
        {
            if direction == Direction::Incoming {
                self.events.push_back(Event::ChatState {
                    from: from.clone(),
                    state,
                });
            }
        }
        let body = message.get_child("body", ns::CLIENT).map(Element::text);
        let retracts = retracted_id(&message);
        let has_payload = body.is_some()
            || retracts.is_some()
            || message.has_child("encrypted", "eu.siacs.conversations.axolotl");
        if !has_payload {
            return;
        }
        let receipt_requested = message.has_child("request", ns::RECEIPTS);
        let id = message
            .get_child("origin-id", ns::SID)
            .and_then(|o| o.attr("id"))
            .or_else(|| message.attr("id"))
            .map(str::to_owned);
        if receipt_requested && direction == Direction::Incoming && !carbon {
            if let Some(id) = &id {
                self.send_receipt(&from, id);
            }
        }
        let delayed = message
            .get_child("delay", ns::DELAY)
            .and_then(|d| d.attr("stamp"))
            .map(str::to_owned);
        let replaces = replaced_id(&message);
        self.events.push_back(Event::Message(ChatMessage {
            id,
            from,
            to,
            peer,
            direction,
            carbon,
            body,
            receipt_requested,
            delayed,
            replaces,
            retracts,
            stanza: message,
        }));
    }

    fn send_receipt(&mut self, to: &Jid, id: &str) {
        // XEP-0184 §8: only to contacts who may see our presence anyway, so receipts do not
        // reveal to strangers that we are online.
        let known = self.roster.get(&to.to_bare()).is_some_and(|item| {
            matches!(item.subscription, Subscription::From | Subscription::Both)
        });
        if !known {
            return;
        }
        let receipt = Element::builder("message", ns::CLIENT)
            .attr(rxml::xml_ncname!("to").into(), to.to_string())
            .attr(rxml::xml_ncname!("id").into(), self.new_id())
            .append(
                Element::builder("received", ns::RECEIPTS)
                    .attr(rxml::xml_ncname!("id").into(), id)
                    .build(),
            )
            .build();
        let _ = self.send_stanza(&receipt, None);
    }
}

/// The features we advertise (XEP-0030), also hashed into our XEP-0115 caps.
pub const FEATURES: [&str; 9] = [
    ns::CHATSTATES,
    ns::CORRECT,
    ns::RETRACT,
    ns::DISCO_INFO,
    ns::CAPS,
    ns::CARBONS,
    ns::PING,
    ns::RECEIPTS,
    ns::SID,
];

/// The id a message's XEP-0308 `<replace/>` names, if it has a usable one.
pub(crate) fn replaced_id(message: &Element) -> Option<String> {
    message
        .get_child("replace", ns::CORRECT)
        .and_then(|r| r.attr("id"))
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The id of the message a retraction (XEP-0424, version 1 or 0) names, if it is one.
pub(crate) fn retracted_id(message: &Element) -> Option<String> {
    let id = match message.get_child("retract", ns::RETRACT) {
        Some(retract) => retract.attr("id"),
        None => message
            .get_child("apply-to", ns::FASTEN)
            .filter(|a| a.has_child("retract", ns::RETRACT_0))
            .and_then(|a| a.attr("id")),
    };
    id.filter(|id| !id.is_empty()).map(str::to_owned)
}

fn disco_info(node: Option<&str>, extra: &[String]) -> Element {
    let mut query = Element::builder("query", ns::DISCO_INFO);
    if let Some(node) = node {
        query = query.attr(rxml::xml_ncname!("node").into(), node);
    }
    query = query.append(
        Element::builder("identity", ns::DISCO_INFO)
            .attr(rxml::xml_ncname!("category").into(), "client")
            .attr(rxml::xml_ncname!("type").into(), "web")
            .attr(rxml::xml_ncname!("name").into(), "Sotto")
            .build(),
    );
    for feature in FEATURES
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
    {
        query = query.append(
            Element::builder("feature", ns::DISCO_INFO)
                .attr(rxml::xml_ncname!("var").into(), feature)
                .build(),
        );
    }
    query.build()
}

/// XEP-0115 §5.1 verification string of [`disco_info`].
fn caps_ver(extra: &[String]) -> String {
    use sha1::Digest as _;
    let mut features: Vec<&str> = FEATURES.to_vec();
    features.extend(extra.iter().map(String::as_str));
    features.sort_unstable();
    features.dedup();
    let mut s = String::from("client/web//Sotto<");
    for feature in features {
        s.push_str(feature);
        s.push('<');
    }
    BASE64.encode(sha1::Sha1::digest(s.as_bytes()))
}
