//! Temporary ("kiosk") OMEMO devices that leave no dead devices behind.
//!
//! A browser on a public computer creates a fresh OMEMO device for each session. Contacts'
//! clients encrypt to every device in our device list, so a device that vanishes without
//! leaving the list costs them forever. [`TemporaryDevices`] gives such a device a lifecycle:
//!
//! 1. **Record before publish.** After login, before our device id reaches the OMEMO device
//!    list, it is added to a private PEP node [`NODE`] (access model `whitelist`, XEP-0223:
//!    only we can read it), sealed with [`sotto_vault::PassphraseBox`] under the account
//!    password with a context naming the node and the account, so the server stores only an
//!    opaque blob. The [`Omemo`] manager is held back ([`Omemo::hold_publication`]) until the
//!    record is written ([`TemporaryEvent::Recorded`]); if it cannot be written the device is
//!    not published at all ([`TemporaryEvent::RecordFailed`]).
//! 2. **Retire at logout.** [`TemporaryDevices::retire`] stops the manager from re-adding our
//!    id ([`Omemo::retire`]), removes it from the device list, deletes our bundle node and
//!    removes our id from the record, then reports [`TemporaryEvent::Retired`] (or
//!    [`TemporaryEvent::RetireFailed`], also after a bounded time): then close the session.
//! 3. **Clean up at the next login, in any mode.** Every device (temporary or not, role
//!    [`Role::Permanent`]) reads the record after login; each listed id other than its own is a
//!    temporary device that never retired (its tab died): it is removed from the device list,
//!    its bundle node deleted, and the record rewritten without it. A record that does not
//!    open with the password (changed since) is reported ([`TemporaryEvent::RecordUnreadable`])
//!    and left alone: nothing in it can be identified. A temporary device overwrites it, since
//!    it must record itself.
//!
//! # Polling order
//!
//! Create the [`Omemo`] manager, then [`TemporaryDevices::new`] (which holds the manager's
//! publication), both before connecting. For every session event: first
//! [`TemporaryDevices::handle_event`]; if it hands the event back, [`Omemo::handle_event`];
//! then drain [`TemporaryDevices::poll_event`] and [`Omemo::poll_event`], then the session's
//! `poll_transmit`. Arm a timer for [`TemporaryDevices::poll_timeout`] besides the session's,
//! and call [`TemporaryDevices::handle_timeout`] when it fires.
//!
//! # Limits
//!
//! The record holds at most [`MAX_RECORDED`] ids (the oldest is dropped past that). The device
//! list is read, changed and written back (OMEMO 0.3 has no atomic update), so two of our
//! devices changing it at the same instant can undo each other's change; a device that loses
//! its id this way puts it back when it sees the list (XEP-0384). Two temporary devices of one
//! account alive at the same time: the second one's login takes the first for a dead one and
//! removes it (the first puts its id back in the list when it sees the change, but its bundle
//! and record entry are gone).

use core::time::Duration;
use std::collections::{HashMap, VecDeque};

use crate::jid::BareJid;
use base64::Engine as _;
use minidom::Element;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use sotto_vault::PassphraseBox;
use zeroize::Zeroizing;

use super::{current_device_list, xml, Omemo, PUBLISH_OPTIONS};
use crate::event::Event;
use crate::session::{PepItem, RequestId, Session};
use crate::time::Instant;

/// The Argon2id parameters of the record (re-exported from `sotto-vault`).
pub use sotto_vault::KdfParams;

/// The private PEP node that lists our temporary devices not yet retired.
pub const NODE: &str = "urn:sotto:kiosk-devices:0";
/// The namespace of its payload, `<devices xmlns='urn:sotto:kiosk-devices:0'>BASE64</devices>`.
pub const NS: &str = "urn:sotto:kiosk-devices:0";
/// Most device ids the record holds.
pub const MAX_RECORDED: usize = 32;
/// A sensible bound for [`TemporaryDevices::retire`].
pub const DEFAULT_RETIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most expensive key derivation a stored record may ask of us (64 MiB, 4 passes): the
/// server holds the record, and a larger cost would only let it stall or exhaust the browser.
pub const MAX_RECORD_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    iterations: 4,
    parallelism: 4,
};

/// Private, whitelist-only, one persistent item (XEP-0223). The `max_items` option is dropped
/// for servers that refuse it (see [`Session::pep_publish`]).
const RECORD_OPTIONS: &[(&str, &str)] = &[
    ("pubsub#access_model", "whitelist"),
    ("pubsub#persist_items", "true"),
    ("pubsub#max_items", "1"),
];
/// Version byte of the sealed plaintext: then the ids, four bytes little-endian each.
const RECORD_FORMAT: u8 = 1;
/// Longest base64 text accepted from the node.
const MAX_RECORD_TEXT: usize = 4096;
const CONDITION_NOT_FOUND: &str = "item-not-found";

/// How the OMEMO manager publishes our device; changed by the hooks below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Publication {
    /// As usual: publish at login, re-add our id when the list lacks it.
    Normal,
    /// Not yet: [`Omemo::release_publication`] publishes (`online`: a login happened).
    Held {
        /// Whether we logged in meanwhile.
        online: bool,
    },
    /// Never again: the device is being (or has been) removed.
    Retired,
}

impl Publication {
    /// On a fresh login: whether the manager must not publish now (remembering the login).
    pub(crate) fn defer_online(&mut self) -> bool {
        match self {
            Self::Normal => false,
            Self::Held { online } => {
                *online = true;
                true
            }
            Self::Retired => true,
        }
    }
}

/// Hooks of the OMEMO manager for temporary devices.
impl Omemo {
    /// Holds back the publication of this device (bundle and id in the device list) until
    /// [`Omemo::release_publication`]. Call before connecting; [`TemporaryDevices::new`] does.
    pub fn hold_publication(&mut self) {
        if self.publication == Publication::Normal {
            self.publication = Publication::Held { online: false };
        }
    }

    /// Publishes this device now if it was held back (at once when online, else at login).
    pub fn release_publication(&mut self, session: &mut Session) {
        if let Publication::Held { online } = self.publication {
            self.publication = Publication::Normal;
            if online && session.is_online() {
                let own = self.own.clone();
                self.fetch_device_list(session, &own);
                self.publish_bundle(session);
            }
        }
    }

    /// Whether publication is held back.
    pub fn is_publication_held(&self) -> bool {
        matches!(self.publication, Publication::Held { .. })
    }

    /// Stops publishing this device for good: its id is no longer re-added to our device list
    /// and its bundle no longer republished. Removing both from the server is
    /// [`TemporaryDevices::retire`]'s work.
    pub fn retire(&mut self) {
        self.publication = Publication::Retired;
    }

    /// Whether [`Omemo::retire`] was called.
    pub fn is_retired(&self) -> bool {
        self.publication == Publication::Retired
    }
}

/// What kind of device this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A device for this session only (public-computer mode): recorded before it is
    /// published, retired at logout.
    Temporary,
    /// A device that stays: it only cleans up after temporary devices that never retired.
    Permanent,
}

/// Why retiring did not complete. The device may still be in the list; the next login of the
/// account removes it if its id is in the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetireFailure {
    /// The session is not online.
    #[error("not online")]
    NotOnline,
    /// The server refused a step.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The steps took longer than allowed.
    #[error("timed out")]
    Timeout,
}

/// What [`TemporaryDevices`] reports. Polled with [`TemporaryDevices::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemporaryEvent {
    /// This temporary device is in the record; the OMEMO manager publishes it now.
    Recorded,
    /// The record could not be read or written. A temporary device is then not published
    /// (the manager stays held): say so, or release it knowingly.
    RecordFailed {
        /// The stanza error condition (or a local reason).
        condition: String,
    },
    /// The record does not open with this password (changed since it was written, or damaged):
    /// the devices it lists cannot be identified and stay in the device list.
    RecordUnreadable,
    /// Temporary devices that never retired were removed from the device list, their bundle
    /// nodes deleted.
    CleanedUp {
        /// Their ids.
        devices: Vec<u32>,
    },
    /// Some could not be removed; they stay in the record for the next login.
    CleanupFailed {
        /// Their ids.
        devices: Vec<u32>,
        /// The last stanza error condition.
        condition: String,
    },
    /// The work after login is over (whatever its outcome).
    Ready,
    /// This device left the device list, its bundle node is deleted and the record updated:
    /// close the session now.
    Retired,
    /// Retiring did not complete: close the session anyway.
    RetireFailed {
        /// Why.
        reason: RetireFailure,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Login,
    Ready,
    Retiring,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    FetchRecord,
    FetchList,
    PublishList,
    DeleteBundle(u32),
    WriteRecord,
}

/// The lifecycle of a temporary device, and the clean-up after earlier ones. See the module
/// documentation for the polling order.
pub struct TemporaryDevices {
    own: BareJid,
    device: u32,
    role: Role,
    password: Zeroizing<String>,
    params: KdfParams,
    rng: ChaCha20Rng,
    phase: Phase,
    requests: HashMap<RequestId, Req>,
    events: VecDeque<TemporaryEvent>,
    /// The ids read from the record at login.
    recorded: Vec<u32>,
    /// Ids of dead devices being removed at login.
    stale: Vec<u32>,
    /// Those whose removal failed, and the last condition.
    failed: Vec<u32>,
    condition: String,
    unreadable: bool,
    deadline: Option<Instant>,
}

impl core::fmt::Debug for TemporaryDevices {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TemporaryDevices")
            .field("own", &self.own)
            .field("device", &self.device)
            .field("role", &self.role)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl TemporaryDevices {
    /// The manager for `omemo`'s device in `role`, with the account `password` (which seals
    /// the record; `params` is the Argon2id cost of new seals, [`KdfParams::BROWSER`] in the
    /// browser). Holds `omemo`'s publication until the work after login is done. Call before
    /// connecting.
    pub fn new(
        role: Role,
        omemo: &mut Omemo,
        password: &str,
        params: KdfParams,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        omemo.hold_publication();
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self {
            own: omemo.own_jid().clone(),
            device: omemo.device_id(),
            role,
            password: Zeroizing::new(password.to_owned()),
            params,
            rng: ChaCha20Rng::from_seed(*seed),
            phase: Phase::Idle,
            requests: HashMap::new(),
            events: VecDeque::new(),
            recorded: Vec::new(),
            stale: Vec::new(),
            failed: Vec::new(),
            condition: String::new(),
            unreadable: false,
            deadline: None,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the work after login is over.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TemporaryEvent> {
        self.events.pop_front()
    }

    /// When [`TemporaryDevices::handle_timeout`] must be called (while retiring).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.phase == Phase::Retiring)
    }

    /// Time passed: ends a retirement that took too long with
    /// [`TemporaryEvent::RetireFailed`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Retiring && self.deadline.is_some_and(|d| d <= now) {
            self.retire_failed(RetireFailure::Timeout);
        }
    }

    /// Feeds one session event (before [`Omemo::handle_event`]). Returns it back unless it
    /// was an answer to one of our requests.
    pub fn handle_event(
        &mut self,
        session: &mut Session,
        omemo: &mut Omemo,
        event: Event,
    ) -> Option<Event> {
        match event {
            Event::Online { resumed: false, .. } => {
                match self.phase {
                    Phase::Idle | Phase::Login => self.start_login(session, omemo),
                    // The answers of the lost connection will not come: start over.
                    Phase::Retiring => self.start_retire(session),
                    Phase::Ready | Phase::Done => {}
                }
                Some(event)
            }
            Event::PepItems {
                request,
                from,
                node,
                items,
            } => match self.requests.remove(&request) {
                Some(req) => {
                    self.on_answer(session, omemo, req, Ok(&items));
                    None
                }
                None => Some(Event::PepItems {
                    request,
                    from,
                    node,
                    items,
                }),
            },
            Event::RequestDone { request } => match self.requests.remove(&request) {
                Some(req) => {
                    self.on_answer(session, omemo, req, Ok(&[]));
                    None
                }
                None => Some(Event::RequestDone { request }),
            },
            Event::RequestFailed { request, condition } => match self.requests.remove(&request) {
                Some(req) => {
                    self.on_answer(session, omemo, req, Err(&condition));
                    None
                }
                None => Some(Event::RequestFailed { request, condition }),
            },
            // Notifications of our own record (should the server send them) are ours.
            Event::PepNotification { ref node, .. } if node == NODE => None,
            other => Some(other),
        }
    }

    /// Retires this device (at logout): [`Omemo::retire`], then our id leaves the device list,
    /// our bundle node is deleted and (for a temporary device) our id leaves the record.
    /// [`TemporaryEvent::Retired`] or [`TemporaryEvent::RetireFailed`] follows, at the latest
    /// `timeout` after `now`; close the session then. Also usable by a permanent device that
    /// is being forgotten.
    pub fn retire(
        &mut self,
        session: &mut Session,
        omemo: &mut Omemo,
        now: Instant,
        timeout: Duration,
    ) {
        omemo.retire();
        self.deadline = Some(now + timeout);
        self.phase = Phase::Retiring;
        self.start_retire(session);
    }

    // ----- internals -----

    fn context(&self) -> Vec<u8> {
        format!("{NODE} {}", self.own).into_bytes()
    }

    fn send(&mut self, result: Result<RequestId, crate::CommandError>, req: Req) -> bool {
        match result {
            Ok(id) => {
                self.requests.insert(id, req);
                true
            }
            Err(_) => false,
        }
    }

    fn start_login(&mut self, session: &mut Session, omemo: &mut Omemo) {
        self.phase = Phase::Login;
        self.requests.clear();
        self.recorded.clear();
        self.stale.clear();
        self.failed.clear();
        self.unreadable = false;
        let own = self.own.clone();
        let result = session.pep_fetch(&own, NODE);
        if !self.send(result, Req::FetchRecord) {
            self.record_failed(session, omemo, "not-online");
        }
    }

    fn start_retire(&mut self, session: &mut Session) {
        self.requests.clear();
        if !session.is_online() {
            self.retire_failed(RetireFailure::NotOnline);
            return;
        }
        let own = self.own.clone();
        let result = session.pep_fetch(&own, xml::DEVICE_LIST_NODE);
        if !self.send(result, Req::FetchList) {
            self.retire_failed(RetireFailure::NotOnline);
        }
    }

    fn on_answer(
        &mut self,
        session: &mut Session,
        omemo: &mut Omemo,
        req: Req,
        answer: Result<&[PepItem], &str>,
    ) {
        match self.phase {
            Phase::Login => self.on_login_answer(session, omemo, req, answer),
            Phase::Retiring => self.on_retire_answer(session, req, answer),
            Phase::Idle | Phase::Ready | Phase::Done => {}
        }
    }

    fn on_login_answer(
        &mut self,
        session: &mut Session,
        omemo: &mut Omemo,
        req: Req,
        answer: Result<&[PepItem], &str>,
    ) {
        match (req, answer) {
            (Req::FetchRecord, Ok(items)) => {
                match self.open_record(items) {
                    Some(ids) => self.recorded = ids,
                    None => {
                        self.unreadable = true;
                        self.events.push_back(TemporaryEvent::RecordUnreadable);
                    }
                }
                self.after_record_read(session, omemo);
            }
            (Req::FetchRecord, Err(CONDITION_NOT_FOUND)) => self.after_record_read(session, omemo),
            (Req::FetchRecord, Err(condition)) => self.record_failed(session, omemo, condition),
            (Req::FetchList, Ok(items)) => {
                let devices = current_device_list(items).unwrap_or_default();
                let keep: Vec<u32> = devices
                    .iter()
                    .copied()
                    .filter(|id| !self.stale.contains(id))
                    .collect();
                if keep.len() == devices.len() {
                    self.delete_stale_bundles(session, omemo);
                } else {
                    let result = session.pep_publish(
                        xml::DEVICE_LIST_NODE,
                        xml::CURRENT,
                        xml::device_list(&keep),
                        PUBLISH_OPTIONS,
                    );
                    if !self.send(result, Req::PublishList) {
                        self.stale_failed("not-online");
                        self.write_login_record(session, omemo);
                    }
                }
            }
            (Req::FetchList, Err(CONDITION_NOT_FOUND)) | (Req::PublishList, Ok(_)) => {
                self.delete_stale_bundles(session, omemo);
            }
            (Req::FetchList | Req::PublishList, Err(condition)) => {
                self.stale_failed(condition);
                self.write_login_record(session, omemo);
            }
            (Req::DeleteBundle(id), result) => {
                match result {
                    Ok(_) | Err(CONDITION_NOT_FOUND) => {}
                    Err(condition) => {
                        self.failed.push(id);
                        condition.clone_into(&mut self.condition);
                    }
                }
                let pending = self
                    .requests
                    .values()
                    .any(|r| matches!(r, Req::DeleteBundle(_)));
                if !pending {
                    self.write_login_record(session, omemo);
                }
            }
            (Req::WriteRecord, Ok(_)) => {
                if self.role == Role::Temporary {
                    self.events.push_back(TemporaryEvent::Recorded);
                }
                self.finish_login(session, omemo, true);
            }
            (Req::WriteRecord, Err(condition)) => self.record_failed(session, omemo, condition),
        }
    }

    fn on_retire_answer(
        &mut self,
        session: &mut Session,
        req: Req,
        answer: Result<&[PepItem], &str>,
    ) {
        match (req, answer) {
            (Req::FetchList, Ok(items)) => {
                let devices = current_device_list(items).unwrap_or_default();
                if devices.contains(&self.device) {
                    let keep: Vec<u32> = devices
                        .iter()
                        .copied()
                        .filter(|id| *id != self.device)
                        .collect();
                    let result = session.pep_publish(
                        xml::DEVICE_LIST_NODE,
                        xml::CURRENT,
                        xml::device_list(&keep),
                        PUBLISH_OPTIONS,
                    );
                    if !self.send(result, Req::PublishList) {
                        self.retire_failed(RetireFailure::NotOnline);
                    }
                } else {
                    self.delete_own_bundle(session);
                }
            }
            (Req::FetchList, Err(CONDITION_NOT_FOUND)) | (Req::PublishList, Ok(_)) => {
                self.delete_own_bundle(session);
            }
            (Req::DeleteBundle(_), Ok(_) | Err(CONDITION_NOT_FOUND)) => {
                if self.role == Role::Temporary {
                    let own = self.own.clone();
                    let result = session.pep_fetch(&own, NODE);
                    if !self.send(result, Req::FetchRecord) {
                        // Off the list and without a bundle: what matters is done; the next
                        // login finds the id in the record and finds nothing left to remove.
                        self.retired();
                    }
                } else {
                    self.retired();
                }
            }
            (Req::FetchRecord, Ok(items)) => {
                let Some(mut ids) = self.open_record(items) else {
                    self.retired();
                    return;
                };
                if !ids.contains(&self.device) {
                    self.retired();
                    return;
                }
                ids.retain(|id| *id != self.device);
                if !self.write_record(session, &ids) {
                    self.retired();
                }
            }
            // No record, or it could not be rewritten: the device itself is gone already.
            (Req::FetchRecord | Req::WriteRecord, _) => self.retired(),
            (Req::FetchList | Req::PublishList | Req::DeleteBundle(_), Err(condition)) => {
                self.retire_failed(RetireFailure::Refused(condition.to_owned()));
            }
        }
    }

    fn after_record_read(&mut self, session: &mut Session, omemo: &mut Omemo) {
        self.stale = self
            .recorded
            .iter()
            .copied()
            .filter(|id| *id != self.device)
            .collect();
        if self.stale.is_empty() {
            self.write_login_record(session, omemo);
            return;
        }
        let own = self.own.clone();
        let result = session.pep_fetch(&own, xml::DEVICE_LIST_NODE);
        if !self.send(result, Req::FetchList) {
            self.stale_failed("not-online");
            self.write_login_record(session, omemo);
        }
    }

    fn stale_failed(&mut self, condition: &str) {
        self.failed = self.stale.clone();
        condition.clone_into(&mut self.condition);
    }

    fn delete_stale_bundles(&mut self, session: &mut Session, omemo: &mut Omemo) {
        for id in self.stale.clone() {
            let result = session.pep_delete(&xml::bundle_node(id));
            if !self.send(result, Req::DeleteBundle(id)) {
                self.failed.push(id);
            }
        }
        if !self
            .requests
            .values()
            .any(|r| matches!(r, Req::DeleteBundle(_)))
        {
            self.write_login_record(session, omemo);
        }
    }

    fn delete_own_bundle(&mut self, session: &mut Session) {
        let result = session.pep_delete(&xml::bundle_node(self.device));
        if !self.send(result, Req::DeleteBundle(self.device)) {
            self.retire_failed(RetireFailure::NotOnline);
        }
    }

    /// Reports the clean-up and writes the record: the ids whose removal failed, and ours when
    /// temporary.
    fn write_login_record(&mut self, session: &mut Session, omemo: &mut Omemo) {
        let removed: Vec<u32> = self
            .stale
            .iter()
            .copied()
            .filter(|id| !self.failed.contains(id))
            .collect();
        if !removed.is_empty() {
            self.events
                .push_back(TemporaryEvent::CleanedUp { devices: removed });
        }
        if !self.failed.is_empty() {
            self.events.push_back(TemporaryEvent::CleanupFailed {
                devices: self.failed.clone(),
                condition: self.condition.clone(),
            });
        }
        let mut ids = self.failed.clone();
        if self.role == Role::Temporary {
            ids.retain(|id| *id != self.device);
            ids.push(self.device);
        } else if self.unreadable || ids == self.recorded {
            // Nothing to change (or nothing we could read: leave it as it is).
            self.finish_login(session, omemo, true);
            return;
        }
        if ids.len() > MAX_RECORDED {
            let excess = ids.len() - MAX_RECORDED;
            ids.drain(..excess);
        }
        if !self.write_record(session, &ids) {
            self.record_failed(session, omemo, "cannot-seal");
        }
    }

    /// Seals `ids` and publishes them to the record; false when it could not be sent.
    fn write_record(&mut self, session: &mut Session, ids: &[u32]) -> bool {
        let mut plain = Zeroizing::new(Vec::with_capacity(1 + 4 * ids.len()));
        plain.push(RECORD_FORMAT);
        for id in ids {
            plain.extend_from_slice(&id.to_le_bytes());
        }
        let context = self.context();
        let Ok(sealed) = PassphraseBox::seal(
            self.password.as_bytes(),
            self.params,
            &context,
            &plain,
            &mut self.rng,
        ) else {
            return false;
        };
        let text = base64::engine::general_purpose::STANDARD.encode(sealed.to_bytes());
        let payload = Element::builder("devices", NS).append(text).build();
        let result = session.pep_publish(NODE, xml::CURRENT, payload, RECORD_OPTIONS);
        self.send(result, Req::WriteRecord)
    }

    /// The ids in the record; `None` when it exists but cannot be read with our password.
    /// An empty node is an empty record.
    fn open_record(&self, items: &[PepItem]) -> Option<Vec<u32>> {
        let item = items
            .iter()
            .find(|i| i.id.as_deref() == Some(xml::CURRENT))
            .or_else(|| items.first());
        let Some(item) = item else {
            return Some(Vec::new());
        };
        let payload = item.payload.as_ref()?;
        if !payload.is("devices", NS) {
            return None;
        }
        let text = payload.text();
        let text = text.trim();
        if text.len() > MAX_RECORD_TEXT {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?;
        let sealed = PassphraseBox::from_bytes(&bytes).ok()?;
        let params = sealed.params();
        if params.memory_kib > MAX_RECORD_KDF.memory_kib
            || params.iterations > MAX_RECORD_KDF.iterations
            || params.parallelism > MAX_RECORD_KDF.parallelism
        {
            return None;
        }
        let plain = sealed
            .open(self.password.as_bytes(), &self.context())
            .ok()?;
        let (format, rest) = plain.split_first()?;
        if *format != RECORD_FORMAT || rest.len() % 4 != 0 {
            return None;
        }
        let mut ids = Vec::new();
        for chunk in rest.chunks_exact(4) {
            let id = u32::from_le_bytes(chunk.try_into().ok()?);
            if (1..=0x7FFF_FFFF).contains(&id) && !ids.contains(&id) && ids.len() < MAX_RECORDED {
                ids.push(id);
            }
        }
        Some(ids)
    }

    fn record_failed(&mut self, session: &mut Session, omemo: &mut Omemo, condition: &str) {
        self.events.push_back(TemporaryEvent::RecordFailed {
            condition: condition.to_owned(),
        });
        // A temporary device that is not recorded is not published; a permanent one is.
        let release = self.role == Role::Permanent;
        self.finish_login(session, omemo, release);
    }

    fn finish_login(&mut self, session: &mut Session, omemo: &mut Omemo, release: bool) {
        self.phase = Phase::Ready;
        self.requests.clear();
        if release {
            omemo.release_publication(session);
        }
        self.events.push_back(TemporaryEvent::Ready);
    }

    fn retired(&mut self) {
        self.phase = Phase::Done;
        self.requests.clear();
        self.deadline = None;
        self.events.push_back(TemporaryEvent::Retired);
    }

    fn retire_failed(&mut self, reason: RetireFailure) {
        self.phase = Phase::Done;
        self.requests.clear();
        self.deadline = None;
        self.events
            .push_back(TemporaryEvent::RetireFailed { reason });
    }
}
