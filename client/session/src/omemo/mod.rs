//! OMEMO 0.3 (`eu.siacs.conversations.axolotl`) on top of the session: PEP device lists and
//! bundles, lazily built sessions, encryption to all devices, decryption, key transport and
//! Blind Trust Before Verification (PROTOCOLS.md §3, §5). The cryptography is `sotto-omemo`'s.
//!
//! # Design
//!
//! [`Omemo`] is a sans-IO manager that sits *beside* the [`Session`] rather than inside it: it
//! owns the OMEMO state (our [`Account`], sessions per device, device lists, trust) and its own
//! CSPRNG (seeded from the RNG passed to [`Omemo::new`]), and it acts on the session through the
//! session's public commands (`pep_publish`, `pep_fetch`, `send_message_element`,
//! `advertise_feature`). Nothing here reads a clock, a socket or a global RNG.
//!
//! # Polling order
//!
//! Call [`Omemo::attach`] once before connecting (it advertises `…devicelist+notify`). Then, for
//! every event the session yields:
//!
//! 1. pass it to [`Omemo::handle_event`]; it consumes the events that are OMEMO's (PEP results
//!    and notifications it asked for, `<encrypted/>` messages) and hands every other event back;
//! 2. drain [`Omemo::poll_event`] (decrypted messages, failures, device-list and trust changes);
//! 3. drain the session's `poll_transmit` as usual — OMEMO's stanzas are queued there.
//!
//! Commands ([`Omemo::send_encrypted`], [`Omemo::verify`], …) take the session as an argument.
//!
//! # Limits
//!
//! Every cache is bounded by a named constant: [`MAX_TRACKED_CONTACTS`] device lists,
//! [`MAX_SESSIONS`] ratchet sessions, [`MAX_TRUST_RECORDS`] identities, [`MAX_QUEUED`] messages
//! waiting for device lists or bundles, [`MAX_REQUESTS`] PEP requests in flight.
//!
//! # Persistence
//!
//! [`Omemo::save`] / [`Omemo::restore`] ([`persist`]) turn the device into one versioned
//! document (identity, prekeys, identities, trust, sessions) that the caller encrypts and stores;
//! device lists are fetched afresh. [`Omemo::export_devices`] / [`Omemo::import_device`] are
//! the per-device parts of it.
//!
//! # Session upkeep
//!
//! - *Completion*: after accepting a prekey message we answer with an empty (key-transport)
//!   message, like Conversations' `completeSession`.
//! - *Heartbeat*: after [`HEARTBEAT_AFTER`] messages received from a device without our
//!   sending it anything, we send it an empty message so that its ratchet advances (the
//!   number python-omemo and Conversations use).
//! - *Repair*: a message from a device that we have no session with, whose MAC does not verify
//!   or whose prekey message cannot start a session makes us build a fresh session from the
//!   device's bundle and announce it with an empty prekey message, so that the device's next
//!   messages reach us. At most one repair per device is outstanding: the next one is allowed
//!   only after a message from that device decrypted again (no clock needed, and garbage cannot
//!   make us fetch bundles in a loop).
//!
//! - *Used prekeys*: a one-time prekey used by a peer leaves our bundle at once but is
//!   deleted only when the caller calls [`Omemo::catch_up_done`] after processing offline and
//!   archived messages (or when more than [`MAX_CONSUMED_PRE_KEYS_KEPT`] pile up).
//!
//! # Not done
//!
//! OMEMO 2.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::jid::BareJid;
use minidom::Element;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use sotto_omemo::account::{Account, InboundSessionError};
use sotto_omemo::fingerprint::Fingerprint;
use sotto_omemo::keys::IdentityKey;
use sotto_omemo::keys::KeyError;
use sotto_omemo::messages::{DecodeError, OmemoKeyMessage};
use sotto_omemo::payload::{self, KeyTransport, PayloadError};
use sotto_omemo::session::{
    DecryptionError, EncryptionError, PickleError, Session as Ratchet, SessionPickle,
};
use zeroize::Zeroizing;

use crate::error::CommandError;
use crate::event::{ChatMessage, Event};
use crate::session::{PepItem, RequestId, Session, MAX_BODY_BYTES};

pub mod persist;
pub mod temporary;
pub mod xml;

pub use xml::XmlError;

/// The OMEMO cryptography crate (accounts, pickles, fingerprints), for callers that store state.
pub use sotto_omemo as crypto;

/// Most contacts whose device lists are kept.
pub const MAX_TRACKED_CONTACTS: usize = 1000;
/// Most ratchet sessions kept.
pub const MAX_SESSIONS: usize = 4096;
/// Most identity keys (devices) with a trust record.
pub const MAX_TRUST_RECORDS: usize = 4096;
/// Most messages waiting for device lists or bundles.
pub const MAX_QUEUED: usize = 100;
/// Most PEP requests of ours in flight.
pub const MAX_REQUESTS: usize = 256;
/// Replenish one-time prekeys when fewer than this many remain unused.
pub const PRE_KEY_REFILL_THRESHOLD: usize = 80;
/// Most devices with a repair outstanding at once.
pub const MAX_REPAIRS: usize = 256;
/// Most used one-time prekeys kept for delayed copies of prekey messages before
/// [`Omemo::catch_up_done`]; past it they are deleted at once.
pub const MAX_CONSUMED_PRE_KEYS_KEPT: usize = 200;
/// Send an empty message to a device after this many messages received from it without
/// sending it anything (XEP-0384 v0.8 §7.2: 53, as python-omemo and Conversations).
pub const HEARTBEAT_AFTER: u32 = 53;

/// The publish options of both OMEMO nodes: readable by anyone (XEP-0384 v0.3 §4.2–4.3).
const PUBLISH_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#access_model", "open"),
    ("pubsub#persist_items", "true"),
];

/// How far we trust one device's identity key (BTBV, PROTOCOLS.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Trusted blindly: no device of this contact has been verified yet.
    Blind,
    /// Verified by the user.
    Verified,
    /// New key of a contact with verified devices: the user must decide. Not sent to.
    Undecided,
    /// Distrusted by the user. Not sent to.
    Distrusted,
}

impl Trust {
    /// Whether messages are encrypted to a device with this trust.
    pub fn may_send(self) -> bool {
        matches!(self, Self::Blind | Self::Verified)
    }
}

/// One device of a contact (or of ours), as [`Omemo::devices`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id.
    pub id: u32,
    /// Its identity fingerprint, once we have seen its bundle or a message from it.
    pub fingerprint: Option<Fingerprint>,
    /// Our trust in it, once we know its identity key.
    pub trust: Option<Trust>,
    /// Whether we have a session with it.
    pub has_session: bool,
}

/// Why a received OMEMO message could not be read. The session state is unchanged by it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptFailure {
    /// The `<encrypted/>` element is malformed.
    #[error("malformed OMEMO element: {0}")]
    Malformed(#[from] XmlError),
    /// The message has no key for this device.
    #[error("the message was not encrypted for this device")]
    NotForThisDevice,
    /// The message claims to come from this very device.
    #[error("the message claims to come from this device")]
    FromThisDevice,
    /// The key could not be decoded.
    #[error("malformed OMEMO key: {0}")]
    Decode(#[from] DecodeError),
    /// A normal message arrived from a device we have no session with.
    #[error("no session with the sender's device")]
    NoSession,
    /// A prekey message could not start a session.
    #[error("cannot start a session: {0}")]
    Inbound(#[from] InboundSessionError),
    /// The ratchet rejected the key (bad MAC, duplicate, too far ahead…).
    #[error("cannot decrypt: {0}")]
    Decryption(#[from] DecryptionError),
    /// The body did not decrypt with the transported key.
    #[error("cannot decrypt the body: {0}")]
    Payload(#[from] PayloadError),
    /// The body is not UTF-8.
    #[error("the decrypted body is not text")]
    NotText,
    /// We keep too many sessions to start another one.
    #[error("too many OMEMO sessions")]
    TooManySessions,
}

impl DecryptFailure {
    /// Whether the failure suggests that our session with the sender is missing or broken, so
    /// that a fresh session should be offered to it (not for duplicates, garbage or messages
    /// that were never meant for us).
    pub fn calls_for_repair(&self) -> bool {
        match self {
            Self::NoSession => true,
            Self::Decryption(e) | Self::Inbound(InboundSessionError::Decryption(e)) => matches!(
                e,
                DecryptionError::InvalidMac
                    | DecryptionError::InvalidCiphertext
                    | DecryptionError::SessionMismatch
                    | DecryptionError::ChainExhausted
            ),
            Self::Inbound(
                InboundSessionError::UnknownOneTimePreKey(_)
                | InboundSessionError::UnknownSignedPreKey(_),
            ) => true,
            _ => false,
        }
    }
}

/// Why a message could not be sent encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The recipient publishes no OMEMO device.
    #[error("{0} has no OMEMO device")]
    NoDevices(BareJid),
    /// The recipient has devices, but none we could build a trusted session with.
    #[error("none of {0}'s OMEMO devices is usable (no valid bundle, or not trusted)")]
    NoUsableDevices(BareJid),
    /// The body is empty or too long.
    #[error("the message is empty or too long")]
    BadBody,
    /// Too many messages are waiting for device lists or bundles.
    #[error("too many messages are waiting to be encrypted")]
    QueueFull,
    /// A ratchet is exhausted (2³² messages).
    #[error("cannot encrypt: {0}")]
    Encryption(#[from] EncryptionError),
    /// The session refused the stanza.
    #[error(transparent)]
    Session(#[from] CommandError),
}

/// One known device of a contact (or of ours) for the caller's storage: its identity, our
/// trust in it and our session with it. Encrypt it at rest (it holds ratchet secrets).
#[derive(Debug, Clone)]
pub struct StoredDevice {
    /// Whose device.
    pub jid: BareJid,
    /// The device id.
    pub device: u32,
    /// Its identity key (33 bytes, `05 || key`).
    pub identity: [u8; 33],
    /// Our trust in it.
    pub trust: Trust,
    /// Our session with it, if any.
    pub session: Option<SessionPickle>,
}

/// Why a stored device was not restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The identity key is invalid.
    #[error("invalid identity key: {0}")]
    Identity(#[from] KeyError),
    /// The session pickle is unusable.
    #[error("invalid session: {0}")]
    Session(#[from] PickleError),
    /// The session belongs to another identity than the record.
    #[error("the session does not match the identity")]
    Mismatch,
    /// The caches are full.
    #[error("too many devices")]
    Full,
}

/// Misuse of the trust API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// We have not seen this device's identity key.
    #[error("unknown device {1} of {0}")]
    UnknownDevice(BareJid, u32),
}

/// What the OMEMO manager reports. Polled with [`Omemo::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OmemoEvent {
    /// Our device is in our device list and our bundle is published: others can reach us.
    Published,
    /// Publishing our device list or bundle failed.
    PublishFailed {
        /// The stanza error condition.
        condition: String,
    },
    /// A contact's (or our) device list changed.
    DeviceList {
        /// Whose.
        jid: BareJid,
        /// The device ids.
        devices: Vec<u32>,
    },
    /// A message decrypted. `message.body` holds the plaintext.
    Message {
        /// The message (incoming, or a carbon of one our other device sent).
        message: ChatMessage,
        /// The sender's device.
        device: u32,
        /// The sender device's fingerprint.
        fingerprint: Fingerprint,
        /// Our trust in that device.
        trust: Trust,
    },
    /// A key-transport (empty) message arrived: the session with that device is confirmed.
    KeyTransport {
        /// The sender.
        from: BareJid,
        /// The sender's device.
        device: u32,
    },
    /// A message could not be decrypted; `message.body` is its fallback text (if any).
    DecryptionFailed {
        /// The message.
        message: ChatMessage,
        /// The sender's device, when the element names one.
        device: Option<u32>,
        /// Why.
        reason: DecryptFailure,
    },
    /// A message was encrypted and handed to the session.
    Sent {
        /// The recipient.
        to: BareJid,
        /// The message id.
        id: String,
        /// How many devices (theirs and our others) it was encrypted to.
        devices: usize,
    },
    /// A queued message could not be sent.
    SendFailed {
        /// The recipient.
        to: BareJid,
        /// The message id [`Omemo::send_encrypted`] returned.
        id: String,
        /// Why.
        reason: SendError,
    },
    /// A message from an archive query (XEP-0313) decrypted; only with
    /// [`Omemo::set_archive_decryption`]. `message.body` holds the plaintext.
    ArchivedMessage {
        /// The archive query.
        request: RequestId,
        /// The message's id in the archive.
        archive_id: String,
        /// The message (incoming, or sent by another of our devices).
        message: ChatMessage,
        /// The sender's device.
        device: u32,
        /// The sender device's fingerprint.
        fingerprint: Fingerprint,
        /// Our trust in that device.
        trust: Trust,
    },
    /// A message from an archive query could not be decrypted; only with
    /// [`Omemo::set_archive_decryption`]. A message this device already read when it arrived
    /// fails as a duplicate ([`DecryptionError::Duplicate`]): its plaintext is the caller's
    /// to keep. `message.body` is the fallback text.
    ArchivedDecryptionFailed {
        /// The archive query.
        request: RequestId,
        /// The message's id in the archive.
        archive_id: String,
        /// The message.
        message: ChatMessage,
        /// The sender's device, when the element names one.
        device: Option<u32>,
        /// Why.
        reason: DecryptFailure,
    },
    /// We learnt a new identity key of a contact (or of ours). When the contact has verified
    /// devices, its trust is [`Trust::Undecided`] and the UI must ask the user.
    NewDevice {
        /// Whose.
        jid: BareJid,
        /// The device.
        device: u32,
        /// Its fingerprint.
        fingerprint: Fingerprint,
        /// The trust it was given.
        trust: Trust,
    },
}

#[derive(Debug, Clone)]
enum Request {
    OwnDeviceList,
    DeviceList(BareJid),
    Bundle(BareJid, u32),
    PublishDeviceList,
    PublishBundle,
}

struct Queued {
    to: BareJid,
    id: String,
    body: Zeroizing<String>,
    /// The id of the message this one corrects (XEP-0308).
    replaces: Option<String>,
}

#[derive(Clone, Copy)]
struct TrustRecord {
    identity: IdentityKey,
    trust: Trust,
}

/// The OMEMO manager. See the module documentation for the polling order.
pub struct Omemo {
    own: BareJid,
    device_id: u32,
    account: Account,
    rng: ChaCha20Rng,
    device_lists: HashMap<BareJid, Vec<u32>>,
    sessions: HashMap<(BareJid, u32), Ratchet>,
    trust: HashMap<(BareJid, u32), TrustRecord>,
    /// Devices whose bundle could not be fetched or was invalid; retried when their list changes.
    broken: HashSet<(BareJid, u32)>,
    requests: HashMap<RequestId, Request>,
    queue: VecDeque<Queued>,
    events: VecDeque<OmemoEvent>,
    published_list: bool,
    published_bundle: bool,
    next_id: u64,
    /// Devices whose messages arrived without a session: a new session is being built and
    /// announced with a key-transport message.
    repairing: HashSet<(BareJid, u32)>,
    /// Devices repaired since their last message that decrypted (not repaired again before
    /// one does, so garbage cannot make us fetch forever).
    repaired: HashSet<(BareJid, u32)>,
    /// Messages received per device since we last sent it one (for heartbeats).
    unanswered: HashMap<(BareJid, u32), u32>,
    /// Whether encrypted archive results are decrypted here.
    archive: bool,
    /// Whether our device is published as usual, held back or retired ([`temporary`]).
    publication: temporary::Publication,
}

impl core::fmt::Debug for Omemo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Omemo")
            .field("own", &self.own)
            .field("device_id", &self.device_id)
            .field("fingerprint", &self.account.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Omemo {
    /// A new OMEMO device for `own`: fresh identity and prekeys, random device id.
    pub fn new(own: BareJid, rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let account = Account::new(rng);
        let device_id = (rng.next_u32() & 0x7FFF_FFFF).max(1);
        Self::with_account(own, device_id, account, rng)
    }

    /// The manager for an existing device (its account restored from a pickle).
    pub fn with_account(
        own: BareJid,
        device_id: u32,
        account: Account,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self {
            own,
            device_id,
            account,
            rng: ChaCha20Rng::from_seed(*seed),
            device_lists: HashMap::new(),
            sessions: HashMap::new(),
            trust: HashMap::new(),
            broken: HashSet::new(),
            requests: HashMap::new(),
            queue: VecDeque::new(),
            events: VecDeque::new(),
            published_list: false,
            published_bundle: false,
            next_id: 0,
            repairing: HashSet::new(),
            repaired: HashSet::new(),
            unanswered: HashMap::new(),
            archive: false,
            publication: temporary::Publication::Normal,
        }
    }

    // ----- getters -----

    /// Our account's bare JID.
    pub fn own_jid(&self) -> &BareJid {
        &self.own
    }

    /// Our device id.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// Our fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.account.fingerprint()
    }

    /// Our account (to pickle it).
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The devices we know of `jid` (ours too), from its device list and the identities seen.
    pub fn devices(&self, jid: &BareJid) -> Vec<DeviceInfo> {
        let mut ids: Vec<u32> = self.device_lists.get(jid).cloned().unwrap_or_default();
        for (j, id) in self.trust.keys() {
            if j == jid && !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| {
                let key = (jid.clone(), id);
                let record = self.trust.get(&key);
                let own_device = *jid == self.own && id == self.device_id;
                DeviceInfo {
                    id,
                    fingerprint: if own_device {
                        Some(self.fingerprint())
                    } else {
                        record.map(|r| r.identity.fingerprint())
                    },
                    trust: if own_device {
                        Some(Trust::Verified)
                    } else {
                        record.map(|r| r.trust)
                    },
                    has_session: self.sessions.contains_key(&key),
                }
            })
            .collect()
    }

    /// Every device whose identity we know, with trust and session, for the caller to store.
    pub fn export_devices(&self) -> Vec<StoredDevice> {
        self.trust
            .iter()
            .map(|((jid, device), record)| StoredDevice {
                jid: jid.clone(),
                device: *device,
                identity: record.identity.to_bytes(),
                trust: record.trust,
                session: self
                    .sessions
                    .get(&(jid.clone(), *device))
                    .map(Ratchet::pickle),
            })
            .collect()
    }

    /// Restores a device saved by [`Omemo::export_devices`] (call before connecting).
    pub fn import_device(&mut self, stored: &StoredDevice) -> Result<(), ImportError> {
        let identity = IdentityKey::from_bytes(&stored.identity)?;
        let key = (stored.jid.clone(), stored.device);
        let session = match &stored.session {
            Some(pickle) => {
                let ratchet = Ratchet::from_pickle(pickle)?;
                if ratchet.remote_identity() != identity {
                    return Err(ImportError::Mismatch);
                }
                Some(ratchet)
            }
            None => None,
        };
        if !self.trust.contains_key(&key)
            && (self.trust.len() >= MAX_TRUST_RECORDS || self.sessions.len() >= MAX_SESSIONS)
        {
            return Err(ImportError::Full);
        }
        self.trust.insert(
            key.clone(),
            TrustRecord {
                identity,
                trust: stored.trust,
            },
        );
        match session {
            Some(ratchet) => {
                self.sessions.insert(key, ratchet);
            }
            None => {
                self.sessions.remove(&key);
            }
        }
        Ok(())
    }

    /// Whether our device list and bundle are published.
    pub fn is_published(&self) -> bool {
        self.published_list && self.published_bundle
    }

    // ----- pollers -----

    /// The next OMEMO event for the UI.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<OmemoEvent> {
        self.events.pop_front()
    }

    // ----- inputs -----

    /// Prepares the session: advertises `eu.siacs.conversations.axolotl.devicelist+notify`
    /// so that the server sends us contacts' device lists. Call before connecting.
    pub fn attach(&self, session: &mut Session) {
        session.advertise_feature(xml::DEVICE_LIST_NOTIFY);
    }

    /// Feeds one session event. Returns it back unless it was OMEMO's.
    pub fn handle_event(&mut self, session: &mut Session, event: Event) -> Option<Event> {
        match event {
            // A resumed stream keeps its requests in flight and our publications.
            Event::Online { resumed: false, .. } => {
                self.on_online(session);
                Some(event)
            }
            Event::PepItems {
                request,
                from,
                node,
                items,
            } => match self.requests.remove(&request) {
                Some(kind) => {
                    self.on_items(session, kind, &from, &items);
                    None
                }
                None => Some(Event::PepItems {
                    request,
                    from,
                    node,
                    items,
                }),
            },
            Event::RequestFailed { request, condition } => match self.requests.remove(&request) {
                Some(kind) => {
                    self.on_failed(session, kind, &condition);
                    None
                }
                None => Some(Event::RequestFailed { request, condition }),
            },
            Event::RequestDone { request } => match self.requests.remove(&request) {
                Some(kind) => {
                    self.on_done(kind);
                    None
                }
                None => Some(Event::RequestDone { request }),
            },
            Event::PepNotification {
                from,
                node,
                items,
                retracted,
            } => {
                if node != xml::DEVICE_LIST_NODE {
                    return Some(Event::PepNotification {
                        from,
                        node,
                        items,
                        retracted,
                    });
                }
                let devices = current_device_list(&items);
                self.on_device_list(session, &from, devices.unwrap_or_default());
                None
            }
            Event::Message(message) if message.stanza.has_child("encrypted", xml::NS) => {
                self.on_encrypted(session, message);
                None
            }
            Event::ArchivedMessage {
                request,
                archive_id,
                message,
            } if self.archive && message.stanza.has_child("encrypted", xml::NS) => {
                self.on_archived(request, archive_id, message);
                None
            }
            other => Some(other),
        }
    }

    // ----- commands -----

    /// Encrypts `body` to all trusted devices of `to` and our own other devices, fetching
    /// device lists and bundles first when needed (the message waits meanwhile). Returns the
    /// message id; [`OmemoEvent::Sent`] or [`OmemoEvent::SendFailed`] follows. Fails at once
    /// when `to` is known to have no device.
    pub fn send_encrypted(
        &mut self,
        session: &mut Session,
        to: &BareJid,
        body: &str,
    ) -> Result<String, SendError> {
        self.queue_encrypted(session, to, body, None)
    }

    /// As [`Omemo::send_encrypted`], a correction (XEP-0308) of our message `replaces` to `to`:
    /// the new text is encrypted like any message, the `<replace/>` naming the original is
    /// outside the encrypted element, where other OMEMO clients look for it.
    pub fn send_encrypted_correction(
        &mut self,
        session: &mut Session,
        to: &BareJid,
        body: &str,
        replaces: &str,
    ) -> Result<String, SendError> {
        self.queue_encrypted(session, to, body, Some(replaces))
    }

    fn queue_encrypted(
        &mut self,
        session: &mut Session,
        to: &BareJid,
        body: &str,
        replaces: Option<&str>,
    ) -> Result<String, SendError> {
        if body.is_empty() || body.len() > MAX_BODY_BYTES {
            return Err(SendError::BadBody);
        }
        if self.device_lists.get(to).is_some_and(Vec::is_empty) {
            return Err(SendError::NoDevices(to.clone()));
        }
        if self.queue.len() >= MAX_QUEUED {
            return Err(SendError::QueueFull);
        }
        let id = self.new_id();
        self.queue.push_back(Queued {
            to: to.clone(),
            id: id.clone(),
            body: Zeroizing::new(body.to_owned()),
            replaces: replaces.map(str::to_owned),
        });
        self.pump(session);
        Ok(id)
    }

    /// Tells the manager that the messages stored for us while we were away (offline storage,
    /// archive catch-up) have been processed: the one-time prekeys that peers used are deleted
    /// now (XEP-0384: delete a used prekey only after catching up, so that delayed copies of a
    /// prekey message still decrypt). Returns how many were deleted.
    pub fn catch_up_done(&mut self) -> usize {
        self.account.remove_consumed_one_time_pre_keys()
    }

    /// Decrypt encrypted results of archive queries (XEP-0313) here: they then arrive as
    /// [`OmemoEvent::ArchivedMessage`] or [`OmemoEvent::ArchivedDecryptionFailed`] instead of
    /// [`Event::ArchivedMessage`]. Off by default. Archived messages are read passively: they
    /// may start a session (a prekey message this device missed) but never trigger key
    /// transports, heartbeats or repairs, since they may be long superseded.
    pub fn set_archive_decryption(&mut self, on: bool) {
        self.archive = on;
    }

    /// Fetches `jid`'s device list again; [`OmemoEvent::DeviceList`] follows (an empty list
    /// when it has none).
    pub fn refresh_devices(&mut self, session: &mut Session, jid: &BareJid) {
        self.fetch_device_list(session, jid);
    }

    /// Marks a device as verified by the user. From now on, new devices of this contact need
    /// a decision.
    pub fn verify(&mut self, jid: &BareJid, device: u32) -> Result<(), TrustError> {
        self.set_trust(jid, device, Trust::Verified)
    }

    /// Marks a device as distrusted: nothing is encrypted to it any more.
    pub fn distrust(&mut self, jid: &BareJid, device: u32) -> Result<(), TrustError> {
        self.set_trust(jid, device, Trust::Distrusted)
    }

    /// Accepts an undecided device without verifying it (trust it like a blindly trusted one).
    pub fn accept(&mut self, jid: &BareJid, device: u32) -> Result<(), TrustError> {
        self.set_trust(jid, device, Trust::Blind)
    }

    fn set_trust(&mut self, jid: &BareJid, device: u32, trust: Trust) -> Result<(), TrustError> {
        let record = self
            .trust
            .get_mut(&(jid.clone(), device))
            .ok_or_else(|| TrustError::UnknownDevice(jid.clone(), device))?;
        record.trust = trust;
        Ok(())
    }

    // ----- internals -----

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("omemo-{:08x}{}", self.rng.next_u32(), self.next_id)
    }

    fn request(&mut self, result: Result<RequestId, CommandError>, kind: Request) -> bool {
        match result {
            Ok(id) => {
                self.requests.insert(id, kind);
                true
            }
            Err(_) => false,
        }
    }

    fn fetch_device_list(&mut self, session: &mut Session, jid: &BareJid) {
        let kind = if *jid == self.own {
            Request::OwnDeviceList
        } else {
            Request::DeviceList(jid.clone())
        };
        let pending = self.requests.values().any(|r| match (r, &kind) {
            (Request::OwnDeviceList, Request::OwnDeviceList) => true,
            (Request::DeviceList(a), Request::DeviceList(b)) => a == b,
            _ => false,
        });
        if pending || self.requests.len() >= MAX_REQUESTS {
            return;
        }
        let result = session.pep_fetch(jid, xml::DEVICE_LIST_NODE);
        self.request(result, kind);
    }

    fn on_online(&mut self, session: &mut Session) {
        // Requests of a previous connection will not be answered.
        self.requests.clear();
        self.published_list = false;
        self.published_bundle = false;
        if self.publication.defer_online() {
            return;
        }
        let own = self.own.clone();
        self.fetch_device_list(session, &own);
        self.publish_bundle(session);
    }

    fn publish_bundle(&mut self, session: &mut Session) {
        if self.publication != temporary::Publication::Normal {
            return;
        }
        let node = xml::bundle_node(self.device_id);
        let payload = xml::bundle(&self.account.bundle());
        let result = session.pep_publish(&node, xml::CURRENT, payload, PUBLISH_OPTIONS);
        self.request(result, Request::PublishBundle);
    }

    fn publish_device_list(&mut self, session: &mut Session, devices: &[u32]) {
        let payload = xml::device_list(devices);
        let result = session.pep_publish(
            xml::DEVICE_LIST_NODE,
            xml::CURRENT,
            payload,
            PUBLISH_OPTIONS,
        );
        self.request(result, Request::PublishDeviceList);
    }

    fn on_items(
        &mut self,
        session: &mut Session,
        kind: Request,
        from: &BareJid,
        items: &[PepItem],
    ) {
        match kind {
            Request::OwnDeviceList | Request::DeviceList(_) => {
                let devices = current_device_list(items).unwrap_or_default();
                self.on_device_list(session, from, devices);
            }
            Request::Bundle(jid, device) => {
                let bundle = items
                    .iter()
                    .find_map(|i| i.payload.as_ref())
                    .ok_or(XmlError::Malformed("bundle (no item)"))
                    .and_then(xml::parse_bundle);
                match bundle {
                    Ok(bundle) if self.sessions.len() < MAX_SESSIONS => {
                        let identity = bundle.identity_key();
                        if self.record_identity(&jid, device, identity) {
                            let ratchet =
                                self.account.create_outbound_session(&bundle, &mut self.rng);
                            self.sessions.insert((jid.clone(), device), ratchet);
                            if self.repairing.remove(&(jid.clone(), device)) {
                                self.send_key_transport(session, &jid, device);
                            }
                        } else {
                            self.broken.insert((jid, device));
                        }
                    }
                    _ => {
                        self.broken.insert((jid, device));
                    }
                }
                self.pump(session);
            }
            Request::PublishDeviceList | Request::PublishBundle => {}
        }
    }

    fn on_failed(&mut self, session: &mut Session, kind: Request, condition: &str) {
        match kind {
            Request::OwnDeviceList => {
                // No list yet (item-not-found) or unreadable: start one with our device.
                let own = self.own.clone();
                self.on_device_list(session, &own, Vec::new());
            }
            Request::DeviceList(jid) => {
                self.on_device_list(session, &jid, Vec::new());
            }
            Request::Bundle(jid, device) => {
                self.repairing.remove(&(jid.clone(), device));
                self.broken.insert((jid, device));
                self.pump(session);
            }
            Request::PublishDeviceList | Request::PublishBundle => {
                self.events.push_back(OmemoEvent::PublishFailed {
                    condition: condition.to_owned(),
                });
            }
        }
    }

    fn on_done(&mut self, kind: Request) {
        let was = self.is_published();
        match kind {
            Request::PublishDeviceList => self.published_list = true,
            Request::PublishBundle => self.published_bundle = true,
            _ => {}
        }
        if !was && self.is_published() {
            self.events.push_back(OmemoEvent::Published);
        }
    }

    fn on_device_list(&mut self, session: &mut Session, jid: &BareJid, mut devices: Vec<u32>) {
        if *jid == self.own && self.publication == temporary::Publication::Normal {
            // Re-add our device whenever our list lacks it (XEP-0384 v0.3 §4.2).
            if !devices.contains(&self.device_id) {
                devices.push(self.device_id);
                self.publish_device_list(session, &devices);
            } else if !self.published_list {
                self.published_list = true;
                if self.published_bundle {
                    self.events.push_back(OmemoEvent::Published);
                }
            }
        }
        if !self.device_lists.contains_key(jid) && self.device_lists.len() >= MAX_TRACKED_CONTACTS {
            let victim = self
                .device_lists
                .keys()
                .find(|k| **k != self.own && !self.queue.iter().any(|q| q.to == **k))
                .cloned();
            if let Some(victim) = victim {
                self.device_lists.remove(&victim);
            }
        }
        self.broken.retain(|(j, _)| j != jid);
        self.device_lists.insert(jid.clone(), devices.clone());
        self.events.push_back(OmemoEvent::DeviceList {
            jid: jid.clone(),
            devices,
        });
        self.pump(session);
    }

    /// Records the identity key of a device; returns whether it may be used (it is not a
    /// replaced key that the user distrusted). A changed key starts over as a new device.
    fn record_identity(&mut self, jid: &BareJid, device: u32, identity: IdentityKey) -> bool {
        let key = (jid.clone(), device);
        if let Some(record) = self.trust.get(&key) {
            if record.identity == identity {
                return true;
            }
        } else if self.trust.len() >= MAX_TRUST_RECORDS {
            return false;
        }
        let any_verified = self
            .trust
            .iter()
            .any(|((j, _), r)| j == jid && r.trust == Trust::Verified);
        let trust = if any_verified {
            Trust::Undecided
        } else {
            Trust::Blind
        };
        self.trust
            .insert(key.clone(), TrustRecord { identity, trust });
        self.sessions.remove(&key);
        self.unanswered.remove(&key);
        self.events.push_back(OmemoEvent::NewDevice {
            jid: jid.clone(),
            device,
            fingerprint: identity.fingerprint(),
            trust,
        });
        true
    }

    /// The devices a message to `to` goes to, or what is still missing.
    fn targets(&self, to: &BareJid) -> Targets {
        let (Some(theirs), Some(ours)) =
            (self.device_lists.get(to), self.device_lists.get(&self.own))
        else {
            return Targets::Waiting;
        };
        let mut missing = Vec::new();
        let mut ready = Vec::new();
        let candidates = theirs.iter().map(|d| (to.clone(), *d)).chain(
            ours.iter()
                .filter(|d| **d != self.device_id)
                .map(|d| (self.own.clone(), *d)),
        );
        for key in candidates {
            if self.broken.contains(&key) {
                continue;
            }
            match self.trust.get(&key) {
                Some(r) if !r.trust.may_send() => continue,
                _ => {}
            }
            if self.sessions.contains_key(&key) {
                ready.push(key);
            } else {
                missing.push(key);
            }
        }
        if missing.is_empty() {
            Targets::Ready(ready)
        } else {
            Targets::Missing(missing)
        }
    }

    /// Sends every queued message whose device lists and bundles are known; fetches what is
    /// missing for the others.
    fn pump(&mut self, session: &mut Session) {
        let mut waiting = VecDeque::new();
        while let Some(queued) = self.queue.pop_front() {
            match self.targets(&queued.to) {
                Targets::Waiting => {
                    let to = queued.to.clone();
                    let own = self.own.clone();
                    if !self.device_lists.contains_key(&own) {
                        self.fetch_device_list(session, &own);
                    }
                    if !self.device_lists.contains_key(&to) {
                        self.fetch_device_list(session, &to);
                    }
                    waiting.push_back(queued);
                }
                Targets::Missing(missing) => {
                    for (jid, device) in missing {
                        let pending = self.requests.values().any(
                            |r| matches!(r, Request::Bundle(j, d) if *j == jid && *d == device),
                        );
                        if pending || self.requests.len() >= MAX_REQUESTS {
                            continue;
                        }
                        let result = session.pep_fetch(&jid, &xml::bundle_node(device));
                        self.request(result, Request::Bundle(jid, device));
                    }
                    waiting.push_back(queued);
                }
                Targets::Ready(devices) => {
                    if let Err(reason) = self.encrypt_and_send(session, &queued, &devices) {
                        self.events.push_back(OmemoEvent::SendFailed {
                            to: queued.to.clone(),
                            id: queued.id.clone(),
                            reason,
                        });
                    }
                }
            }
        }
        self.queue = waiting;
    }

    fn encrypt_and_send(
        &mut self,
        session: &mut Session,
        queued: &Queued,
        devices: &[(BareJid, u32)],
    ) -> Result<(), SendError> {
        if !devices.iter().any(|(j, _)| *j == queued.to) {
            let none = self.device_lists.get(&queued.to).is_none_or(Vec::is_empty);
            return Err(if none {
                SendError::NoDevices(queued.to.clone())
            } else {
                SendError::NoUsableDevices(queued.to.clone())
            });
        }
        let body = payload::encrypt(queued.body.as_bytes(), &mut self.rng);
        let mut keys = Vec::with_capacity(devices.len());
        for key in devices {
            let Some(ratchet) = self.sessions.get_mut(key) else {
                continue;
            };
            let message = ratchet.encrypt(body.key_material.as_bytes())?;
            self.unanswered.remove(key);
            keys.push(xml::KeyElement {
                rid: key.1,
                prekey: message.is_prekey(),
                data: message.as_bytes().to_vec(),
            });
        }
        let count = keys.len();
        let element = xml::EncryptedElement {
            sid: self.device_id,
            keys,
            iv: body.iv.to_vec(),
            payload: Some(body.ciphertext),
        };
        let stanza = xml::message(
            &queued.to.to_string(),
            &queued.id,
            &element,
            queued.replaces.as_deref(),
        );
        session.send_message_element(stanza, queued.id.clone())?;
        self.events.push_back(OmemoEvent::Sent {
            to: queued.to.clone(),
            id: queued.id.clone(),
            devices: count,
        });
        Ok(())
    }

    /// Sends an empty (key-transport) message to one device, e.g. to answer a prekey message.
    fn send_key_transport(&mut self, session: &mut Session, jid: &BareJid, device: u32) {
        let transport = KeyTransport::generate(&mut self.rng);
        let Some(ratchet) = self.sessions.get_mut(&(jid.clone(), device)) else {
            return;
        };
        let Ok(message) = ratchet.encrypt(transport.as_bytes()) else {
            return;
        };
        self.unanswered.remove(&(jid.clone(), device));
        let mut iv = [0u8; payload::IV_LENGTH];
        self.rng.fill_bytes(&mut iv);
        let element = xml::EncryptedElement {
            sid: self.device_id,
            keys: vec![xml::KeyElement {
                rid: device,
                prekey: message.is_prekey(),
                data: message.as_bytes().to_vec(),
            }],
            iv: iv.to_vec(),
            payload: None,
        };
        let id = self.new_id();
        let stanza = xml::message(&jid.to_string(), &id, &element, None);
        let _ = session.send_message_element(stanza, id);
    }

    fn on_encrypted(&mut self, session: &mut Session, message: ChatMessage) {
        let parsed = match xml::parse_encrypted(&message.stanza) {
            Some(Ok(parsed)) => parsed,
            Some(Err(e)) => {
                self.fail(message, None, e.into());
                return;
            }
            None => return,
        };
        let sender = message.from.to_bare();
        let device = parsed.sid;
        if sender == self.own && device == self.device_id && parsed.payload.is_none() {
            // Our own key-transport message to our other devices, which the server also
            // delivers back to us (it is addressed to our bare JID): nothing to read or report.
            return;
        }
        match self.decrypt(&sender, &parsed) {
            Ok(Decrypted {
                plaintext,
                fresh_session,
            }) => {
                let body = match &parsed.payload {
                    None => None,
                    Some(ciphertext) => {
                        match payload::decrypt(&plaintext, &parsed.iv, ciphertext) {
                            Ok(text) => match String::from_utf8(text.to_vec()) {
                                Ok(text) => Some(text),
                                Err(_) => {
                                    self.fail(message, Some(device), DecryptFailure::NotText);
                                    return;
                                }
                            },
                            Err(e) => {
                                self.fail(message, Some(device), e.into());
                                return;
                            }
                        }
                    }
                };
                let record = self.trust.get(&(sender.clone(), device)).copied();
                match (body, record) {
                    (Some(body), Some(record)) => {
                        self.events.push_back(OmemoEvent::Message {
                            message: ChatMessage {
                                body: Some(body),
                                ..message
                            },
                            device,
                            fingerprint: record.identity.fingerprint(),
                            trust: record.trust,
                        });
                    }
                    (Some(_), None) => {
                        self.fail(message, Some(device), DecryptFailure::TooManySessions);
                    }
                    (None, _) => self.events.push_back(OmemoEvent::KeyTransport {
                        from: sender.clone(),
                        device,
                    }),
                }
                let slot = (sender.clone(), device);
                // The device reaches us again: a later breakage may be repaired again.
                self.repaired.remove(&slot);
                let unanswered = self.unanswered.get(&slot).copied().unwrap_or(0) + 1;
                if fresh_session {
                    // Complete the session (Conversations' `completeSession`) and replace the
                    // used prekey.
                    self.send_key_transport(session, &sender, device);
                    // The used prekey is no longer published, but kept until the caller says
                    // the archive is caught up (`catch_up_done`): a delayed copy of the same
                    // prekey message must still decrypt. Past a bound, it goes anyway.
                    if self.account.consumed_one_time_pre_keys() > MAX_CONSUMED_PRE_KEYS_KEPT {
                        self.account.remove_consumed_one_time_pre_keys();
                    }
                    self.account
                        .replenish_one_time_pre_keys(PRE_KEY_REFILL_THRESHOLD, &mut self.rng);
                    self.publish_bundle(session);
                } else if unanswered >= HEARTBEAT_AFTER {
                    // Heartbeat: let the device's ratchet advance.
                    self.send_key_transport(session, &sender, device);
                } else if self.sessions.contains_key(&slot) {
                    self.unanswered.insert(slot, unanswered);
                }
            }
            Err(DecryptFailure::NotForThisDevice) if parsed.payload.is_none() => {
                // A key transport for another of our devices (e.g. a contact completing its
                // session with it): nothing for the user to see.
            }
            Err(reason) => {
                if reason.calls_for_repair() {
                    self.repair(session, &sender, device);
                }
                self.fail(message, Some(device), reason);
            }
        }
    }

    fn on_archived(&mut self, request: RequestId, archive_id: String, message: ChatMessage) {
        let failed = |reason: DecryptFailure, device: Option<u32>, message: ChatMessage| {
            OmemoEvent::ArchivedDecryptionFailed {
                request,
                archive_id: archive_id.clone(),
                message,
                device,
                reason,
            }
        };
        let parsed = match xml::parse_encrypted(&message.stanza) {
            Some(Ok(parsed)) => parsed,
            Some(Err(e)) => {
                self.events.push_back(failed(e.into(), None, message));
                return;
            }
            None => return,
        };
        let sender = message.from.to_bare();
        let device = parsed.sid;
        // An old prekey message must not replace the session we use now.
        let ours = parsed.keys.iter().find(|k| k.rid == self.device_id);
        if let Some(Ok(OmemoKeyMessage::PreKey(pre_key))) =
            ours.map(|k| OmemoKeyMessage::from_bytes(&k.data, k.prekey))
        {
            let current = self.sessions.get(&(sender.clone(), device));
            if current.is_some_and(|r| r.base_key() != Some(pre_key.base_key())) {
                let reason = DecryptFailure::Decryption(DecryptionError::SessionMismatch);
                self.events.push_back(failed(reason, Some(device), message));
                return;
            }
        }
        let opened = self
            .decrypt(&sender, &parsed)
            .and_then(|d| open_body(&d.plaintext, &parsed));
        let record = self.trust.get(&(sender, device)).copied();
        let event = match (opened, record) {
            // An archived key transport (ours, or for another device): nothing to show.
            (Ok(None), _) => return,
            (Err(_), _) if parsed.payload.is_none() => return,
            (Ok(Some(body)), Some(record)) => OmemoEvent::ArchivedMessage {
                request,
                archive_id: archive_id.clone(),
                message: ChatMessage {
                    body: Some(body),
                    ..message
                },
                device,
                fingerprint: record.identity.fingerprint(),
                trust: record.trust,
            },
            (Ok(Some(_)), None) => failed(DecryptFailure::TooManySessions, Some(device), message),
            (Err(reason), _) => failed(reason, Some(device), message),
        };
        self.events.push_back(event);
    }

    /// A device sent a message that our session cannot read (we lost our state, or the
    /// sessions diverged): build a new one from its bundle and announce it with a key-transport
    /// (prekey) message, so its next messages reach us. Once per device until a message from
    /// it decrypts again.
    fn repair(&mut self, session: &mut Session, jid: &BareJid, device: u32) {
        let key = (jid.clone(), device);
        if self.repaired.contains(&key)
            || self.repaired.len() >= MAX_REPAIRS
            || self.requests.len() >= MAX_REQUESTS
        {
            return;
        }
        let result = session.pep_fetch(jid, &xml::bundle_node(device));
        if self.request(result, Request::Bundle(jid.clone(), device)) {
            self.repaired.insert(key.clone());
            self.repairing.insert(key);
        }
    }

    fn fail(&mut self, message: ChatMessage, device: Option<u32>, reason: DecryptFailure) {
        self.events.push_back(OmemoEvent::DecryptionFailed {
            message,
            device,
            reason,
        });
    }

    fn decrypt(
        &mut self,
        sender: &BareJid,
        parsed: &xml::EncryptedElement,
    ) -> Result<Decrypted, DecryptFailure> {
        if *sender == self.own && parsed.sid == self.device_id {
            return Err(DecryptFailure::FromThisDevice);
        }
        let key = parsed
            .keys
            .iter()
            .find(|k| k.rid == self.device_id)
            .ok_or(DecryptFailure::NotForThisDevice)?;
        let message = OmemoKeyMessage::from_bytes(&key.data, key.prekey)?;
        let slot = (sender.clone(), parsed.sid);
        match &message {
            OmemoKeyMessage::PreKey(pre_key) => {
                if let Some(ratchet) = self.sessions.get_mut(&slot) {
                    if ratchet.base_key() == Some(pre_key.base_key()) {
                        let plaintext = ratchet.decrypt(&message, &mut self.rng)?;
                        return Ok(Decrypted {
                            plaintext,
                            fresh_session: false,
                        });
                    }
                }
                if !self.sessions.contains_key(&slot) && self.sessions.len() >= MAX_SESSIONS {
                    return Err(DecryptFailure::TooManySessions);
                }
                let created = self
                    .account
                    .create_inbound_session(pre_key, &mut self.rng)?;
                if !self.record_identity(sender, parsed.sid, pre_key.identity_key()) {
                    return Err(DecryptFailure::TooManySessions);
                }
                self.sessions.insert(slot, created.session);
                Ok(Decrypted {
                    plaintext: created.plaintext,
                    fresh_session: true,
                })
            }
            OmemoKeyMessage::Normal(_) => {
                let ratchet = self
                    .sessions
                    .get_mut(&slot)
                    .ok_or(DecryptFailure::NoSession)?;
                let plaintext = ratchet.decrypt(&message, &mut self.rng)?;
                Ok(Decrypted {
                    plaintext,
                    fresh_session: false,
                })
            }
        }
    }
}

/// The body of a decrypted element: `None` for a key transport (no payload).
fn open_body(
    key_material: &[u8],
    parsed: &xml::EncryptedElement,
) -> Result<Option<String>, DecryptFailure> {
    let Some(ciphertext) = &parsed.payload else {
        return Ok(None);
    };
    let text = payload::decrypt(key_material, &parsed.iv, ciphertext)?;
    String::from_utf8(text.to_vec())
        .map(Some)
        .map_err(|_| DecryptFailure::NotText)
}

struct Decrypted {
    plaintext: Zeroizing<Vec<u8>>,
    fresh_session: bool,
}

enum Targets {
    /// A device list is not known yet.
    Waiting,
    /// Bundles to fetch first.
    Missing(Vec<(BareJid, u32)>),
    /// Every usable device has a session.
    Ready(Vec<(BareJid, u32)>),
}

/// The device ids in item `current` (or the only item) of a device-list node.
fn current_device_list(items: &[PepItem]) -> Option<Vec<u32>> {
    let item = items
        .iter()
        .find(|i| i.id.as_deref() == Some(xml::CURRENT))
        .or_else(|| items.first())?;
    let payload: &Element = item.payload.as_ref()?;
    xml::parse_device_list(payload).ok()
}
