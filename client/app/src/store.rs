//! The app's state store: everything the screens show, built from the session's events.
//!
//! The UI is a view over this and nothing else: it never sees XML, sockets or keys. The store
//! is plain data (no browser APIs), so its rules are unit-tested natively.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use crate::time::{self, Millis};
use sotto_session::omemo::{DeviceInfo, OmemoEvent, SendError, Trust};
use sotto_session::{
    Availability, BareJid, ChatMessage, ChatState, Direction, Event, RequestId, RosterItem,
    Subscription,
};

/// Most messages kept per conversation in memory; older ones are dropped first.
pub const MAX_MESSAGES_PER_CONVERSATION: usize = 2000;
/// Most ids of corrections (XEP-0308) remembered per message; the oldest are forgotten first.
pub const MAX_EDIT_IDS: usize = 16;
/// Most pending subscription requests shown.
pub const MAX_REQUESTS: usize = 200;
/// Most unanswered "new device" warnings kept.
pub const MAX_TRUST_ALERTS: usize = 100;
/// Most desktop notifications waiting to be shown.
pub const MAX_ALERTS: usize = 20;

/// Desktop notifications, as the user chose them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// None.
    #[default]
    Off,
    /// Who wrote, never what.
    Private,
    /// Who wrote and the message text (the user allowed it).
    WithText,
}

/// A new message to announce with a desktop notification (the app drains these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Whose conversation.
    pub peer: BareJid,
    /// The sender's name.
    pub from: String,
    /// The text; `None` when it could not be decrypted.
    pub body: Option<String>,
}

/// The connection as the user sees it. `label` is the exact text of the `connection-state` hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// No session.
    Offline,
    /// Signing in for the first time.
    Connecting,
    /// Signed in.
    Online,
    /// The connection dropped; trying again.
    Reconnecting,
}

impl Connection {
    /// The one-word state shown to users and test harnesses.
    pub fn label(self) -> &'static str {
        match self {
            Connection::Offline => crate::text::STATE_OFFLINE,
            Connection::Connecting => crate::text::STATE_CONNECTING,
            Connection::Online => crate::text::STATE_ONLINE,
            Connection::Reconnecting => crate::text::STATE_RECONNECTING,
        }
    }
}

/// Where one of our messages is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Handed to the session; the server has not confirmed it.
    Sending,
    /// The server confirmed it (XEP-0198).
    Sent,
    /// The recipient's device confirmed it (XEP-0184).
    Delivered,
    /// It bounced.
    Failed,
    /// A message we received.
    Received,
}

impl DeliveryState {
    /// The value of the `data-state` hook.
    pub fn attr(self) -> &'static str {
        match self {
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Received => "received",
        }
    }
}

/// One message in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The id (ours for outgoing messages; the sender's for incoming ones).
    pub id: Option<String>,
    /// In or out.
    pub direction: Direction,
    /// The text, shown as text only.
    pub body: String,
    /// Whether it was end-to-end encrypted (OMEMO).
    pub encrypted: bool,
    /// Delivery state.
    pub state: DeliveryState,
    /// Why it could not be decrypted (then `body` is empty).
    pub error: Option<String>,
    /// Unique in this store, in arrival order: the key of the message's list item.
    pub seq: u64,
    /// When it was sent: its delay or archive stamp, else when this device sent or received
    /// it. `None` only in history saved before times were kept.
    pub at: Option<Millis>,
    /// The sender corrected it (XEP-0308): `body` is the latest text.
    pub edited: bool,
    /// Other ids that name this message: its corrections', or, for a correction or a
    /// retraction whose original was never seen, the original's (so that a later copy of that
    /// is not shown).
    pub edit_ids: Vec<String>,
    /// The sender retracted it (XEP-0424): its text is gone, only that fact is shown.
    pub retracted: bool,
}

impl Message {
    /// Whether `id` names this message (its own id or one of its corrections').
    fn is_named(&self, id: &str) -> bool {
        self.id.as_deref() == Some(id) || self.edit_ids.iter().any(|e| e == id)
    }

    /// The id of the latest stanza that carried this message's text (its last correction's,
    /// if it has one): acks, receipts and errors of that one tell where the text is.
    fn latest_id(&self) -> Option<&str> {
        self.edit_ids
            .last()
            .or(self.id.as_ref())
            .map(String::as_str)
    }
}

/// The id of the original a correction stands in for when that original is not in
/// `messages` (it was never received, or is in an archive page not loaded yet).
fn unseen_original(
    messages: &[Message],
    direction: Direction,
    replaces: Option<String>,
) -> Option<String> {
    let replaces = replaces?;
    let seen = messages
        .iter()
        .any(|m| m.direction == direction && m.is_named(&replaces));
    (!seen).then_some(replaces)
}

/// Applies `message` to the message already in `messages` that it corrects or retracts, if
/// it is one of those and that message is there. Returns whether it was applied (then it is
/// not a message of its own).
fn amend(
    messages: &mut [Message],
    message: &ChatMessage,
    body: &str,
    encrypted: bool,
    error: Option<&str>,
) -> bool {
    if let Some(target) = &message.retracts {
        return apply_retraction(messages, message.direction, target);
    }
    match &message.replaces {
        Some(replaces) if error.is_none() => apply_correction(
            messages,
            message.direction,
            replaces,
            message.id.as_deref(),
            body,
            encrypted,
        )
        .is_some(),
        _ => false,
    }
}

impl Message {
    /// A message that arrived (live, as a carbon, or from the archive) and did not [`amend`]
    /// one in `messages`: a correction or retraction of a message not seen stands in for it
    /// (a retraction as a note without text).
    fn arrived(
        message: ChatMessage,
        body: String,
        encrypted: bool,
        error: Option<String>,
        seq: u64,
        now: Millis,
        messages: &[Message],
    ) -> Self {
        let retracted = message.retracts.is_some();
        let stands_for =
            unseen_original(messages, message.direction, message.replaces).or(message.retracts);
        Self {
            id: message.id,
            direction: message.direction,
            body: if retracted { String::new() } else { body },
            encrypted,
            state: if message.direction == Direction::Incoming {
                DeliveryState::Received
            } else {
                DeliveryState::Sent
            },
            error: if retracted { None } else { error },
            seq,
            at: Some(time::sent_at(message.delayed.as_deref(), now)),
            edited: stands_for.is_some() && !retracted,
            edit_ids: stands_for.into_iter().collect(),
            retracted,
        }
    }
}

/// Retracts (XEP-0424) the message `target` names, from the same side of the conversation:
/// its text is wiped and only the fact is kept. Returns whether it was there. Unlike a
/// correction, an unencrypted retraction may retract encrypted text: it can only take away.
fn apply_retraction(messages: &mut [Message], direction: Direction, target: &str) -> bool {
    let Some(message) = messages
        .iter_mut()
        .rev()
        .find(|m| m.direction == direction && m.is_named(target))
    else {
        return false;
    };
    zeroize::Zeroize::zeroize(&mut message.body);
    message.error = None;
    message.edited = false;
    message.retracted = true;
    true
}

/// Applies a correction of the message `replaces` names, from the same side of the
/// conversation, to that message in `messages`. Returns the message corrected.
fn apply_correction<'a>(
    messages: &'a mut [Message],
    direction: Direction,
    replaces: &str,
    correction_id: Option<&str>,
    body: &str,
    encrypted: bool,
) -> Option<&'a mut Message> {
    let original = messages
        .iter_mut()
        .rev()
        .find(|m| m.direction == direction && m.is_named(replaces))?;
    // Text that was not end-to-end encrypted never replaces text that was: anyone on the path
    // could write it.
    if (original.encrypted && !encrypted) || original.retracted {
        return None;
    }
    original.body = body.to_owned();
    original.error = None;
    original.edited = true;
    if let Some(id) = correction_id {
        if !original.is_named(id) {
            if original.edit_ids.len() >= MAX_EDIT_IDS {
                original.edit_ids.remove(0);
            }
            original.edit_ids.push(id.to_owned());
        }
    }
    Some(original)
}

/// How far the conversation has been loaded from the server's archive (XEP-0313).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// A page was asked for at least once.
    pub started: bool,
    /// The page being loaded.
    pub loading: Option<RequestId>,
    /// The archive id of the oldest message loaded (the next page ends before it).
    pub before: Option<String>,
    /// Nothing older exists.
    pub complete: bool,
    /// Where the next message of the page in flight goes (pages arrive oldest first).
    insert_at: usize,
}

/// One conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// The peer is typing.
    pub typing: bool,
    /// Scroll-back from the archive.
    pub history: History,
    /// The first message that was unread when the conversation was opened: a "new messages"
    /// line stands above it until another conversation is opened.
    pub first_unread: Option<u64>,
}

/// One roster entry with what we know of its presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Address.
    pub jid: BareJid,
    /// The name we gave them.
    pub name: Option<String>,
    /// Who sees whose presence.
    pub subscription: Subscription,
    /// We asked to see their presence; no answer yet.
    pub pending_out: bool,
    /// Each online resource's availability and status.
    pub resources: BTreeMap<String, (Availability, Option<String>)>,
    /// Messages not yet seen.
    pub unread: u32,
}

impl Contact {
    fn new(item: RosterItem) -> Self {
        Self {
            jid: item.jid,
            name: item.name,
            subscription: item.subscription,
            pending_out: item.pending_out,
            resources: BTreeMap::new(),
            unread: 0,
        }
    }

    /// The name to show.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| self.jid.to_string())
    }

    /// The most available of the contact's resources.
    pub fn availability(&self) -> Availability {
        self.resources
            .values()
            .map(|(a, _)| *a)
            .min_by_key(|a| rank(*a))
            .unwrap_or(Availability::Unavailable)
    }

    /// The status text of the most available resource.
    pub fn status(&self) -> Option<&str> {
        self.resources
            .values()
            .min_by_key(|(a, _)| rank(*a))
            .and_then(|(_, s)| s.as_deref())
            .filter(|s| !s.trim().is_empty())
    }
}

fn rank(a: Availability) -> u8 {
    match a {
        Availability::Chat => 0,
        Availability::Available => 1,
        Availability::Away => 2,
        Availability::ExtendedAway => 3,
        Availability::DoNotDisturb => 4,
        Availability::Unavailable => 5,
    }
}

/// What we know of a contact's end-to-end encryption, for the lock in the chat header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// The contact's device list has not arrived yet.
    Checking,
    /// Messages are encrypted to the contact's devices.
    Encrypted,
    /// The contact publishes no OMEMO device: only plaintext (after confirmation) is possible.
    Unavailable,
}

/// This device's identity, as shown on the trust screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnDevice {
    /// The device id.
    pub id: u32,
    /// The fingerprint, eight groups of eight hex digits.
    pub fingerprint: String,
    /// The fingerprint as 64 hex digits (for the `xmpp:` URI).
    pub hex: String,
}

/// One device of a contact (or one of our others), as the trust screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// The device id.
    pub id: u32,
    /// The fingerprint in groups of eight, once known.
    pub fingerprint: Option<String>,
    /// Our trust in it, once its key is known.
    pub trust: Option<Trust>,
}

impl From<DeviceInfo> for DeviceView {
    fn from(d: DeviceInfo) -> Self {
        Self {
            id: d.id,
            fingerprint: d.fingerprint.map(|f| f.to_string()),
            trust: d.trust,
        }
    }
}

/// A message waiting for the user's permission to go out unencrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaintextPrompt {
    /// To whom.
    pub peer: BareJid,
    /// The text.
    pub body: String,
    /// The encrypted attempt that failed, replaced by the plaintext message if confirmed.
    pub failed_id: Option<String>,
}

/// Our own status, as contacts see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnStatus {
    /// How available we are.
    pub availability: Availability,
    /// A line of text, if any.
    pub text: Option<String>,
}

impl Default for OwnStatus {
    fn default() -> Self {
        Self {
            availability: Availability::Available,
            text: None,
        }
    }
}

/// Everything the screens show.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Bumped on every change, so views compare cheaply.
    revision: u64,
    /// Our address, once signed in.
    pub me: Option<BareJid>,
    /// Personal mode: this device keeps its data (and can be forgotten).
    pub persistent: bool,
    /// The connection.
    pub connection: Option<Connection>,
    /// The roster.
    pub contacts: HashMap<BareJid, Contact>,
    /// People asking to see our presence, oldest first.
    pub requests: Vec<BareJid>,
    /// Addresses we block (XEP-0191): the server drops everything between us and them.
    pub blocked: BTreeSet<BareJid>,
    /// Conversations by peer.
    pub conversations: HashMap<BareJid, Conversation>,
    /// The open conversation.
    pub active: Option<BareJid>,
    /// The latest line for the screen reader live region.
    pub announcement: String,
    /// A problem to show (a failed command, a bounced message).
    pub notice: Option<String>,
    /// This device's OMEMO identity.
    pub own_device: Option<OwnDevice>,
    /// Published device lists by contact (ours too); an empty list: no OMEMO.
    pub device_lists: HashMap<BareJid, Vec<u32>>,
    /// Devices with fingerprints and trust, refreshed from the OMEMO manager.
    pub devices: HashMap<BareJid, Vec<DeviceView>>,
    /// New devices of verified contacts that wait for a decision, oldest first.
    pub trust_alerts: Vec<(BareJid, u32)>,
    /// The "send unencrypted?" question, when open.
    pub plaintext_prompt: Option<PlaintextPrompt>,
    /// Whether the trust screen is open.
    pub trust_open: bool,
    /// The last message sequence number handed out.
    last_seq: u64,
    /// Bumped whenever a conversation's messages change (what personal mode saves).
    messages_rev: u64,
    /// Bumped whenever the roster's entries change (not their presence or unread counts):
    /// the contact list's order and search results depend only on this.
    roster_rev: u64,
    /// Our own status (sent with every presence of ours).
    pub own_status: OwnStatus,
    /// Contacts' pictures (XEP-0084), as object URLs the messenger made: it revokes each when
    /// it is replaced here, and all of them at sign-out.
    pub avatars: HashMap<BareJid, Rc<str>>,
    /// Desktop notifications.
    pub notify: NotifyMode,
    /// The browser refused permission for notifications.
    pub notify_blocked: bool,
    /// New incoming messages not yet offered as notifications.
    pub alerts: Vec<Alert>,
    /// The wall clock, as the app last set it: the store reads no clock of its own.
    now: Millis,
}

impl PartialEq for Store {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision
    }
}

/// What the store asks the app to do in answer to an event (it has no session of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowUp {
    /// Approve a subscription request automatically: we asked to see them first.
    Approve(BareJid),
}

impl Store {
    /// The store for a user who is signing in.
    pub fn signing_in(me: BareJid) -> Self {
        Self {
            me: Some(me),
            connection: Some(Connection::Connecting),
            ..Self::default()
        }
    }

    /// Shows `url` as `jid`'s picture (`None`: none). Returns the URL it replaces, for the
    /// messenger to revoke.
    pub fn set_avatar(&mut self, jid: BareJid, url: Option<Rc<str>>) -> Option<Rc<str>> {
        let old = match url {
            Some(url) => self.avatars.insert(jid, url),
            None => self.avatars.remove(&jid),
        };
        // The contact rows show it: their memoised list must be made again.
        self.roster_rev += 1;
        self.touch();
        old
    }

    /// Records the status we just set.
    pub fn set_own_status(&mut self, status: OwnStatus) {
        self.own_status = status;
        self.touch();
    }

    fn touch(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }

    /// Sets the wall clock: the time of what is applied next (messages sent and received
    /// without a stamp of their own).
    pub fn set_clock(&mut self, now: Millis) {
        self.now = now;
    }

    /// The wall clock as last set (day headings are relative to it).
    pub fn now(&self) -> Millis {
        self.now
    }

    fn next_seq(&mut self) -> u64 {
        self.last_seq = self.last_seq.wrapping_add(1);
        self.last_seq
    }

    /// The connection state shown (offline when there is no session).
    pub fn connection(&self) -> Connection {
        self.connection.unwrap_or(Connection::Offline)
    }

    /// Sets the connection state.
    pub fn set_connection(&mut self, connection: Connection) {
        self.connection = Some(connection);
        self.touch();
    }

    /// A revision of the roster's entries (names, addresses, membership): it changes whenever
    /// the order or the search results of [`Store::sorted_contacts`] may.
    pub fn roster_revision(&self) -> u64 {
        self.roster_rev
    }

    /// The roster sorted by name (case-insensitive), then address; filtered by `query`.
    pub fn sorted_contacts(&self, query: &str) -> Vec<&Contact> {
        let query = query.trim().to_lowercase();
        let mut list: Vec<&Contact> = self
            .contacts
            .values()
            .filter(|c| {
                query.is_empty()
                    || c.jid.as_str().to_lowercase().contains(&query)
                    || c.name
                        .as_deref()
                        .is_some_and(|n| n.to_lowercase().contains(&query))
            })
            .collect();
        // Recent conversations first, newest on top, as in every messenger; then everyone
        // else by name.
        list.sort_by_cached_key(|c| {
            (
                std::cmp::Reverse(self.last_activity(&c.jid)),
                c.display_name().to_lowercase(),
                c.jid.to_string(),
            )
        });
        list
    }

    /// When the latest message with `peer` was sent, if there is one.
    fn last_activity(&self, peer: &BareJid) -> Option<Millis> {
        self.conversations
            .get(peer)
            .and_then(|c| c.messages.last())
            .and_then(|m| m.at)
    }

    /// How many messages are unread, in all conversations (the page's title shows it).
    pub fn unread_total(&self) -> u32 {
        self.contacts
            .values()
            .fold(0u32, |total, c| total.saturating_add(c.unread))
    }

    /// The open conversation's messages and typing state.
    pub fn conversation(&self, peer: &BareJid) -> Option<&Conversation> {
        self.conversations.get(peer)
    }

    /// Opens a conversation and marks it read.
    pub fn open(&mut self, peer: BareJid) {
        let unread = self
            .contacts
            .get_mut(&peer)
            .map_or(0, |contact| std::mem::take(&mut contact.unread));
        if let Some(previous) = self.active.take() {
            if let Some(conversation) = self.conversations.get_mut(&previous) {
                conversation.first_unread = None;
            }
        }
        if let Some(conversation) = self.conversations.get_mut(&peer) {
            // The unread ones are the newest messages received.
            conversation.first_unread = (unread > 0)
                .then(|| {
                    conversation
                        .messages
                        .iter()
                        .rev()
                        .filter(|m| m.direction == Direction::Incoming)
                        .take(unread as usize)
                        .last()
                        .map(|m| m.seq)
                })
                .flatten();
        }
        self.active = Some(peer);
        self.touch();
    }

    /// Closes the open conversation (phone layout: back to the list).
    pub fn close_conversation(&mut self) {
        self.active = None;
        self.touch();
    }

    /// Shows a notice.
    pub fn set_notice(&mut self, notice: Option<String>) {
        self.notice = notice;
        self.touch();
    }

    /// Records a message we just handed to the session (or to OMEMO when `encrypted`).
    pub fn sent(&mut self, peer: &BareJid, id: String, body: String, encrypted: bool) {
        let seq = self.next_seq();
        let conversation = self.conversations.entry(peer.clone()).or_default();
        push_bounded(
            &mut conversation.messages,
            Message {
                id: Some(id),
                direction: Direction::Outgoing,
                body,
                encrypted,
                state: DeliveryState::Sending,
                error: None,
                seq,
                at: Some(self.now),
                edited: false,
                edit_ids: Vec::new(),
                retracted: false,
            },
        );
        self.messages_rev += 1;
        // The conversation moves to the top of the list.
        self.roster_rev += 1;
        self.touch();
    }

    /// Records a correction of our message `replaces` that we just handed to OMEMO: the
    /// message shows the new text and is on its way again. Returns whether it was there.
    pub fn corrected(&mut self, peer: &BareJid, replaces: &str, id: String, body: String) -> bool {
        self.touch();
        let Some(conversation) = self.conversations.get_mut(peer) else {
            return false;
        };
        let Some(message) = apply_correction(
            &mut conversation.messages,
            Direction::Outgoing,
            replaces,
            Some(&id),
            &body,
            true,
        ) else {
            return false;
        };
        message.state = DeliveryState::Sending;
        self.messages_rev += 1;
        true
    }

    /// Whether our message `id` to `peer` can be deleted for everyone (XEP-0424): it is ours,
    /// here, and not deleted already.
    pub fn deletable(&self, peer: &BareJid, id: &str) -> bool {
        self.conversations.get(peer).is_some_and(|c| {
            c.messages.iter().any(|m| {
                m.direction == Direction::Outgoing && !m.retracted && m.id.as_deref() == Some(id)
            })
        })
    }

    /// Records that we retracted our message `id` to `peer`: its text goes from here at once,
    /// as it will from the contact's and our other devices'. Returns whether it was there.
    pub fn retracted_own(&mut self, peer: &BareJid, id: &str) -> bool {
        self.touch();
        let Some(conversation) = self.conversations.get_mut(peer) else {
            return false;
        };
        let done = apply_retraction(&mut conversation.messages, Direction::Outgoing, id);
        if done {
            self.messages_rev += 1;
        }
        done
    }

    /// Our last message to `peer` if it can be corrected: sent encrypted (a correction goes
    /// the same way) and not failed. Its original id (XEP-0308: every correction names the
    /// original) and its text.
    pub fn last_correctable(&self, peer: &BareJid) -> Option<(String, String)> {
        let message = self
            .conversations
            .get(peer)?
            .messages
            .iter()
            .rev()
            .find(|m| m.direction == Direction::Outgoing)?;
        (message.encrypted
            && !message.retracted
            && message.state != DeliveryState::Failed
            && message.error.is_none())
        .then(|| Some((message.id.clone()?, message.body.clone())))
        .flatten()
    }

    /// The lock state of a conversation.
    pub fn lock(&self, peer: &BareJid) -> Lock {
        match self.device_lists.get(peer) {
            None => Lock::Checking,
            Some(list) if list.is_empty() => Lock::Unavailable,
            Some(_) => Lock::Encrypted,
        }
    }

    /// Records this device's identity.
    pub fn set_own_device(&mut self, own: OwnDevice) {
        self.own_device = Some(own);
        self.touch();
    }

    /// Replaces what the trust screen shows of `jid`'s devices.
    pub fn set_devices(&mut self, jid: BareJid, devices: Vec<DeviceView>) {
        // Decided devices no longer need a warning.
        self.trust_alerts.retain(|(j, d)| {
            *j != jid
                || devices
                    .iter()
                    .any(|v| v.id == *d && v.trust == Some(Trust::Undecided))
        });
        self.devices.insert(jid, devices);
        self.touch();
    }

    /// Asks whether to send `body` to `peer` unencrypted.
    pub fn ask_plaintext(&mut self, peer: BareJid, body: String, failed_id: Option<String>) {
        self.plaintext_prompt = Some(PlaintextPrompt {
            peer,
            body,
            failed_id,
        });
        self.touch();
    }

    /// Takes the open "send unencrypted?" question (answered either way). When `confirmed`,
    /// the failed encrypted attempt is dropped from the conversation: the plaintext message
    /// replaces it.
    pub fn take_plaintext_prompt(&mut self, confirmed: bool) -> Option<PlaintextPrompt> {
        let prompt = self.plaintext_prompt.take()?;
        if confirmed {
            if let (Some(id), Some(conversation)) =
                (&prompt.failed_id, self.conversations.get_mut(&prompt.peer))
            {
                conversation
                    .messages
                    .retain(|m| m.direction != Direction::Outgoing || m.id.as_ref() != Some(id));
                self.messages_rev += 1;
            }
        }
        self.touch();
        Some(prompt)
    }

    /// Sets the notification mode (and whether the browser blocked them).
    pub fn set_notify(&mut self, mode: NotifyMode, blocked: bool) {
        self.notify = mode;
        self.notify_blocked = blocked;
        self.alerts.clear();
        self.touch();
    }

    /// Takes the messages waiting to be announced (no re-render needed).
    pub fn take_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.alerts)
    }

    /// Opens or closes the trust screen.
    pub fn set_trust_open(&mut self, open: bool) {
        self.trust_open = open;
        self.touch();
    }

    /// Applies one OMEMO event. Returns the contact whose devices changed (the app then asks
    /// the OMEMO manager for the new picture) — or `None`.
    pub fn apply_omemo(&mut self, event: OmemoEvent) -> Option<BareJid> {
        self.touch();
        match event {
            OmemoEvent::DeviceList { jid, devices } => {
                self.device_lists.insert(jid.clone(), devices);
                Some(jid)
            }
            OmemoEvent::Message { message, .. } => {
                // The sender's device may be new to us (a prekey message).
                let from = message.from.to_bare();
                let body = message.body.clone();
                self.add_message(message, body, true, None);
                Some(from)
            }
            OmemoEvent::DecryptionFailed {
                message, reason, ..
            } => {
                let why = crate::text::decrypt_failure(&reason);
                self.add_message(message, None, true, Some(why));
                None
            }
            OmemoEvent::SendFailed { to, id, reason } => {
                let body = self.update_outgoing(&id, |_| DeliveryState::Failed);
                match reason {
                    SendError::NoDevices(_) => {
                        self.device_lists.insert(to.clone(), Vec::new());
                        if let Some(body) = body {
                            self.ask_plaintext(to, body, Some(id));
                        }
                    }
                    other => self.notice = Some(crate::text::send_error(&other)),
                }
                None
            }
            OmemoEvent::NewDevice {
                jid, device, trust, ..
            } => {
                if trust == Trust::Undecided
                    && !self.trust_alerts.contains(&(jid.clone(), device))
                    && self.trust_alerts.len() < MAX_TRUST_ALERTS
                {
                    self.trust_alerts.push((jid.clone(), device));
                }
                Some(jid)
            }
            OmemoEvent::PublishFailed { condition } => {
                self.notice = Some(crate::text::publish_failed(&condition));
                None
            }
            OmemoEvent::KeyTransport { from, .. } => Some(from),
            OmemoEvent::ArchivedMessage {
                request, message, ..
            } => {
                self.add_archived(request, message, true, None);
                None
            }
            OmemoEvent::ArchivedDecryptionFailed {
                request,
                message,
                reason,
                ..
            } => {
                let why = crate::text::decrypt_failure(&reason);
                self.add_archived(request, message, true, Some(why));
                None
            }
            // Published, Sent: nothing to show (acks and receipts tell the message's fate).
            _ => None,
        }
    }

    /// Forgets a request (approved or denied).
    pub fn forget_request(&mut self, jid: &BareJid) {
        self.requests.retain(|r| r != jid);
        self.touch();
    }

    /// The `before` of the next archive page to ask for `peer`, or `None` when no page should
    /// be asked for now (one is loading, or nothing older exists).
    pub fn next_history_page(&self, peer: &BareJid) -> Option<Option<String>> {
        let history = self
            .conversations
            .get(peer)
            .map(|c| c.history.clone())
            .unwrap_or_default();
        if history.loading.is_some() || history.complete {
            return None;
        }
        Some(history.before)
    }

    /// Whether no archive page was asked for `peer` yet.
    pub fn history_untouched(&self, peer: &BareJid) -> bool {
        self.conversations
            .get(peer)
            .is_none_or(|c| !c.history.started)
    }

    /// Records that an archive page for `peer` is on its way.
    pub fn history_requested(&mut self, peer: &BareJid, request: RequestId) {
        let history = &mut self.conversations.entry(peer.clone()).or_default().history;
        history.started = true;
        history.loading = Some(request);
        history.insert_at = 0;
        self.touch();
    }

    /// An archive page could not be asked for (offline): let the user try again.
    pub fn history_failed(&mut self, peer: &BareJid) {
        if let Some(c) = self.conversations.get_mut(peer) {
            c.history.loading = None;
        }
        self.touch();
    }

    /// Adds a message of the page in flight `request` in front of what the conversation holds
    /// (after the page's earlier messages). Returns whether a page was waiting for it.
    fn add_archived(
        &mut self,
        request: RequestId,
        mut message: ChatMessage,
        encrypted: bool,
        error: Option<String>,
    ) -> bool {
        let seq = self.next_seq();
        let Some(conversation) = self
            .conversations
            .values_mut()
            .find(|c| c.history.loading == Some(request))
        else {
            return false;
        };
        let body = message
            .body
            .take()
            .filter(|b| !b.is_empty())
            .unwrap_or_default();
        if body.is_empty() && error.is_none() && message.retracts.is_none() {
            return true;
        }
        // Messages that arrived live (or were sent from here) are in the archive too; so are
        // originals whose correction or retraction is already shown.
        if let Some(id) = &message.id {
            if conversation
                .messages
                .iter()
                .any(|m| m.direction == message.direction && m.is_named(id))
            {
                return true;
            }
        }
        // A correction or retraction of a message of this page (pages arrive oldest first) or
        // of a later one.
        if amend(
            &mut conversation.messages,
            &message,
            &body,
            encrypted,
            error.as_deref(),
        ) {
            self.messages_rev += 1;
            return true;
        }
        if conversation.messages.len() >= MAX_MESSAGES_PER_CONVERSATION {
            conversation.history.complete = true;
            return true;
        }
        let at = conversation
            .history
            .insert_at
            .min(conversation.messages.len());
        let arrived = Message::arrived(
            message,
            body,
            encrypted,
            error,
            seq,
            self.now,
            &conversation.messages,
        );
        conversation.messages.insert(at, arrived);
        conversation.history.insert_at = at + 1;
        self.messages_rev += 1;
        true
    }

    /// Whether [`Store::apply`] does anything with `event` (the others leave it untouched).
    pub fn affects(event: &Event) -> bool {
        matches!(
            event,
            Event::Online { .. }
                | Event::ResumeFailed
                | Event::Roster(_)
                | Event::RosterItemUpdated(_)
                | Event::RosterItemRemoved(_)
                | Event::Presence { .. }
                | Event::SubscriptionRequest { .. }
                | Event::Message(_)
                | Event::MessageAcked { .. }
                | Event::Receipt { .. }
                | Event::ChatState { .. }
                | Event::MessageError { .. }
                | Event::ArchivedMessage { .. }
                | Event::ArchiveFinished { .. }
                | Event::BlockList(_)
                | Event::BlockChanged { .. }
        )
    }

    /// Applies one session event.
    pub fn apply(&mut self, event: Event) -> Option<FollowUp> {
        self.touch();
        match event {
            Event::Online { .. } => {
                self.connection = Some(Connection::Online);
                self.notice = None;
            }
            Event::ResumeFailed => {
                // A new session: what we knew of presence is stale; fresh presence follows.
                for contact in self.contacts.values_mut() {
                    contact.resources.clear();
                }
            }
            Event::Roster(items) => {
                self.roster_rev = self.roster_rev.wrapping_add(1);
                let old = std::mem::take(&mut self.contacts);
                for item in items {
                    let mut contact = Contact::new(item);
                    if let Some(previous) = old.get(&contact.jid) {
                        contact.resources = previous.resources.clone();
                        contact.unread = previous.unread;
                    }
                    self.contacts.insert(contact.jid.clone(), contact);
                }
            }
            Event::RosterItemUpdated(item) => {
                self.roster_rev = self.roster_rev.wrapping_add(1);
                match self.contacts.get_mut(&item.jid) {
                    Some(contact) => {
                        contact.name = item.name;
                        contact.subscription = item.subscription;
                        contact.pending_out = item.pending_out;
                    }
                    None => {
                        self.contacts.insert(item.jid.clone(), Contact::new(item));
                    }
                }
            }
            Event::RosterItemRemoved(jid) => {
                self.roster_rev = self.roster_rev.wrapping_add(1);
                self.contacts.remove(&jid);
            }
            Event::Presence {
                from,
                availability,
                status,
            } => {
                let bare = from.to_bare();
                if let Some(contact) = self.contacts.get_mut(&bare) {
                    let resource = from.resource().map(|r| r.to_owned()).unwrap_or_default();
                    if availability == Availability::Unavailable {
                        contact.resources.remove(&resource);
                        if resource.is_empty() {
                            contact.resources.clear();
                        }
                    } else {
                        contact.resources.insert(resource, (availability, status));
                    }
                }
            }
            Event::SubscriptionRequest { from } => {
                let asked_first = self
                    .contacts
                    .get(&from)
                    .is_some_and(|c| c.pending_out || matches!(c.subscription, Subscription::To));
                if asked_first {
                    return Some(FollowUp::Approve(from));
                }
                let already_approved = self.contacts.get(&from).is_some_and(|c| {
                    matches!(c.subscription, Subscription::From | Subscription::Both)
                });
                if !already_approved
                    && !self.requests.contains(&from)
                    && self.requests.len() < MAX_REQUESTS
                {
                    self.requests.push(from);
                }
            }
            Event::Message(message) => self.on_message(message),
            Event::MessageAcked { id } => {
                self.update_outgoing(&id, |state| {
                    if state == DeliveryState::Sending {
                        DeliveryState::Sent
                    } else {
                        state
                    }
                });
            }
            Event::Receipt { from, id } => {
                let peer = from.to_bare();
                if let Some(conversation) = self.conversations.get_mut(&peer) {
                    for message in conversation.messages.iter_mut().rev() {
                        if message.direction == Direction::Outgoing
                            && message.latest_id() == Some(id.as_str())
                        {
                            message.state = DeliveryState::Delivered;
                            self.messages_rev += 1;
                            break;
                        }
                    }
                }
            }
            Event::ChatState { from, state } => {
                let typing = state == ChatState::Composing;
                if let Some(conversation) = self.conversations.get_mut(&from.to_bare()) {
                    conversation.typing = typing;
                } else if typing {
                    self.conversations.entry(from.to_bare()).or_default().typing = true;
                }
            }
            Event::MessageError { id, condition } => {
                if let Some(id) = id {
                    self.update_outgoing(&id, |_| DeliveryState::Failed);
                }
                self.notice = Some(crate::text::message_error(&condition));
            }
            Event::ArchivedMessage {
                request, message, ..
            } => {
                self.add_archived(request, message, false, None);
            }
            Event::ArchiveFinished {
                request,
                complete,
                first,
            } => {
                if let Some(c) = self
                    .conversations
                    .values_mut()
                    .find(|c| c.history.loading == Some(request))
                {
                    c.history.loading = None;
                    c.history.complete |= complete || first.is_none();
                    if first.is_some() {
                        c.history.before = first;
                    }
                }
            }
            Event::BlockList(jids) => {
                self.blocked = jids.into_iter().collect();
            }
            Event::BlockChanged { jid, blocked } => {
                if blocked {
                    self.requests.retain(|r| *r != jid);
                    self.blocked.insert(jid);
                } else {
                    self.blocked.remove(&jid);
                }
            }
            // Connection changes are reported by the driver, which knows about the transport.
            _ => {}
        }
        None
    }

    /// Changes an outgoing message's state; returns its text.
    fn update_outgoing(
        &mut self,
        id: &str,
        f: impl Fn(DeliveryState) -> DeliveryState,
    ) -> Option<String> {
        for conversation in self.conversations.values_mut() {
            if let Some(message) = conversation
                .messages
                .iter_mut()
                .rev()
                .find(|m| m.direction == Direction::Outgoing && m.latest_id() == Some(id))
            {
                message.state = f(message.state);
                self.messages_rev += 1;
                return Some(message.body.clone());
            }
        }
        None
    }

    fn on_message(&mut self, message: ChatMessage) {
        let body = message.body.clone();
        self.add_message(message, body, false, None);
    }

    /// Adds a received message (or a carbon of one we sent elsewhere): the decrypted or plain
    /// `body`, or the reason it could not be decrypted. A correction or retraction (XEP-0308,
    /// XEP-0424) changes the message it names instead, quietly: no unread count, no
    /// notification.
    fn add_message(
        &mut self,
        message: ChatMessage,
        body: Option<String>,
        encrypted: bool,
        error: Option<String>,
    ) {
        let body = body.filter(|b| !b.is_empty()).unwrap_or_default();
        if body.is_empty() && error.is_none() && message.retracts.is_none() {
            return;
        }
        let seq = self.next_seq();
        let peer = message.peer.clone();
        let active = self.active.as_ref() == Some(&peer);
        let conversation = self.conversations.entry(peer.clone()).or_default();
        // XEP-0198 resends and carbons may bring a message twice: the same id counts once.
        if let Some(id) = &message.id {
            if conversation
                .messages
                .iter()
                .rev()
                .take(200)
                .any(|m| m.direction == message.direction && m.is_named(id))
            {
                return;
            }
        }
        if amend(
            &mut conversation.messages,
            &message,
            &body,
            encrypted,
            error.as_deref(),
        ) {
            self.messages_rev += 1;
            if message.retracts.is_some() {
                // Nothing of a deleted text stays behind: not in the live region a screen
                // reader reads, nor in a notification not shown yet.
                zeroize::Zeroize::zeroize(&mut self.announcement);
                self.alerts.retain(|alert| alert.peer != peer);
            }
            return;
        }
        // Shown as a message of its own; a note of a retraction is not news.
        let incoming = message.direction == Direction::Incoming && message.retracts.is_none();
        if incoming {
            conversation.typing = false;
        }
        let arrived = Message::arrived(
            message,
            body.clone(),
            encrypted,
            error.clone(),
            seq,
            self.now,
            &conversation.messages,
        );
        push_bounded(&mut conversation.messages, arrived);
        self.messages_rev += 1;
        self.roster_rev += 1;
        if incoming {
            let name = self
                .contacts
                .get(&peer)
                .map(Contact::display_name)
                .unwrap_or_else(|| peer.to_string());
            self.announcement = match &error {
                Some(_) => crate::text::new_undecryptable(&name),
                None => crate::text::new_message(&name, &body),
            };
            // "Do not disturb" means it: no desktop notification (the unread count and the
            // live region still tell).
            let quiet = self.own_status.availability == Availability::DoNotDisturb;
            if self.notify != NotifyMode::Off && !quiet && self.alerts.len() < MAX_ALERTS {
                self.alerts.push(Alert {
                    peer: peer.clone(),
                    from: name,
                    body: error.is_none().then(|| body.clone()),
                });
            }
            if !active {
                if let Some(contact) = self.contacts.get_mut(&peer) {
                    contact.unread = contact.unread.saturating_add(1);
                }
            }
        }
    }

    /// A revision of the conversations' messages: it changes whenever one does.
    pub fn messages_revision(&self) -> u64 {
        self.messages_rev
    }

    /// Every conversation's messages, for personal mode's storage.
    pub fn history(&self) -> Vec<(BareJid, Vec<Message>)> {
        self.conversations
            .iter()
            .filter(|(_, c)| !c.messages.is_empty())
            .map(|(peer, c)| (peer.clone(), c.messages.clone()))
            .collect()
    }

    /// Puts back what personal mode saved: the roster (until the server's arrives) and the
    /// conversations (before anything else arrived). The archive adds what is missing when a
    /// conversation is opened; messages already here are not shown twice (same id).
    pub fn restore(&mut self, roster: Vec<RosterItem>, history: Vec<(BareJid, Vec<Message>)>) {
        self.roster_rev = self.roster_rev.wrapping_add(1);
        for item in roster {
            self.contacts
                .entry(item.jid.clone())
                .or_insert_with(|| Contact::new(item));
        }
        for (peer, messages) in history {
            let mut restored = Vec::with_capacity(messages.len());
            for mut message in messages {
                message.seq = self.next_seq();
                restored.push(message);
            }
            let conversation = self.conversations.entry(peer).or_default();
            restored.append(&mut conversation.messages);
            let excess = restored.len().saturating_sub(MAX_MESSAGES_PER_CONVERSATION);
            restored.drain(..excess);
            conversation.messages = restored;
        }
        self.touch();
    }

    /// Unread messages from people who are not in the roster (shown as a notice line).
    pub fn strangers(&self) -> Vec<&BareJid> {
        let mut list: Vec<&BareJid> = self
            .conversations
            .iter()
            .filter(|(peer, c)| !self.contacts.contains_key(*peer) && !c.messages.is_empty())
            .map(|(peer, _)| peer)
            .collect();
        list.sort();
        list
    }
}

fn push_bounded(messages: &mut Vec<Message>, message: Message) {
    if messages.len() >= MAX_MESSAGES_PER_CONVERSATION {
        messages.remove(0);
    }
    messages.push(message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sotto_session::Jid;

    fn jid(s: &str) -> BareJid {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    fn item(s: &str, name: Option<&str>, subscription: Subscription) -> RosterItem {
        RosterItem {
            jid: jid(s),
            name: name.map(str::to_owned),
            subscription,
            pending_out: false,
            groups: vec![],
        }
    }

    fn chat(from: &str, id: &str, body: &str) -> ChatMessage {
        let from: Jid = from.parse().unwrap_or_else(|_| unreachable!());
        ChatMessage {
            id: Some(id.into()),
            peer: from.to_bare(),
            from,
            to: None,
            direction: Direction::Incoming,
            carbon: false,
            body: Some(body.into()),
            receipt_requested: true,
            delayed: None,
            replaces: None,
            retracts: None,
            stanza: minidom::Element::bare("message", "jabber:client"),
        }
    }

    #[test]
    fn roster_sorted_and_searchable() {
        let mut store = Store::signing_in(jid("me@x"));
        store.apply(Event::Roster(vec![
            item("zed@x", Some("Anna"), Subscription::Both),
            item("bob@x", None, Subscription::Both),
            item("carol@x", Some("carol"), Subscription::To),
        ]));
        let names: Vec<String> = store
            .sorted_contacts("")
            .iter()
            .map(|c| c.display_name())
            .collect();
        assert_eq!(names, ["Anna", "bob@x", "carol"]);
        assert_eq!(store.sorted_contacts("ZED").len(), 1);
        assert_eq!(store.sorted_contacts("car").len(), 1);

        // The order is cached by roster revision: presence leaves it, roster changes move it.
        let revision = store.roster_revision();
        store.apply(Event::Presence {
            from: "bob@x/phone".parse().unwrap_or_else(|_| unreachable!()),
            availability: Availability::Available,
            status: None,
        });
        assert_eq!(store.roster_revision(), revision);
        store.apply(Event::RosterItemUpdated(item(
            "bob@x",
            Some("Bea"),
            Subscription::Both,
        )));
        assert_ne!(store.roster_revision(), revision);
        let revision = store.roster_revision();
        store.apply(Event::RosterItemRemoved(jid("carol@x")));
        assert_ne!(store.roster_revision(), revision);

        // Conversations go first, the latest on top; a message moves its conversation up.
        store.apply(Event::Roster(vec![
            item("zed@x", Some("Anna"), Subscription::Both),
            item("bob@x", None, Subscription::Both),
            item("carol@x", Some("carol"), Subscription::To),
        ]));
        store.set_clock(1_000);
        store.sent(&jid("carol@x"), "c1".into(), "hi".into(), true);
        store.set_clock(2_000);
        let revision = store.roster_revision();
        store.apply(Event::Message(chat("bob@x/phone", "b1", "hello")));
        assert_ne!(store.roster_revision(), revision, "the order is made again");
        let order = |s: &Store| -> Vec<String> {
            s.sorted_contacts("")
                .iter()
                .map(|c| c.jid.to_string())
                .collect()
        };
        assert_eq!(order(&store), ["bob@x", "carol@x", "zed@x"]);
        store.set_clock(3_000);
        store.sent(&jid("carol@x"), "c2".into(), "again".into(), true);
        assert_eq!(order(&store), ["carol@x", "bob@x", "zed@x"]);
        assert_eq!(store.unread_total(), 1);
    }

    #[test]
    fn message_states_and_unread() {
        let mut store = Store::signing_in(jid("me@x"));
        store.apply(Event::Roster(vec![item("bob@x", None, Subscription::Both)]));
        store.sent(&jid("bob@x"), "m1".into(), "hi".into(), true);
        store.apply(Event::MessageAcked { id: "m1".into() });
        let state = |s: &Store| s.conversations[&jid("bob@x")].messages[0].state;
        assert_eq!(state(&store), DeliveryState::Sent);
        store.apply(Event::Receipt {
            from: "bob@x/phone".parse().unwrap_or_else(|_| unreachable!()),
            id: "m1".into(),
        });
        assert_eq!(state(&store), DeliveryState::Delivered);
        // A late ack does not move it back.
        store.apply(Event::MessageAcked { id: "m1".into() });
        assert_eq!(state(&store), DeliveryState::Delivered);

        store.apply(Event::Message(chat("bob@x/phone", "b1", "hello")));
        store.apply(Event::Message(chat("bob@x/phone", "b1", "hello")));
        assert_eq!(store.conversations[&jid("bob@x")].messages.len(), 2);
        assert_eq!(store.contacts[&jid("bob@x")].unread, 1);
        store.open(jid("bob@x"));
        assert_eq!(store.contacts[&jid("bob@x")].unread, 0);
        // "New messages" stands above the one that was unread.
        let first_unread = |s: &Store| s.conversations[&jid("bob@x")].first_unread;
        let hello = store.conversations[&jid("bob@x")].messages[1].seq;
        assert_eq!(first_unread(&store), Some(hello));
        store.apply(Event::Message(chat("bob@x/phone", "b2", "again")));
        assert_eq!(store.contacts[&jid("bob@x")].unread, 0);
        assert_eq!(first_unread(&store), Some(hello), "it stays while open");
        store.open(jid("carol@x"));
        assert_eq!(first_unread(&store), None, "gone once another is opened");
        store.open(jid("bob@x"));
        assert_eq!(first_unread(&store), None, "nothing was unread");
    }

    #[test]
    fn message_times_are_stamps_or_the_clock() {
        let at = |s: &str| time::parse_datetime(s).unwrap_or_else(|| unreachable!());
        let mut store = Store::signing_in(jid("me@x"));
        let bob = jid("bob@x");
        store.set_clock(at("2026-12-07T10:00:00Z"));
        store.sent(&bob, "m1".into(), "hi".into(), true);
        // Stored offline by the server: its delay stamp.
        let mut offline = chat("bob@x/phone", "b1", "while you were away");
        offline.delayed = Some("2026-12-06T22:30:00Z".into());
        store.apply(Event::Message(offline));
        store.set_clock(at("2026-12-07T10:05:00Z"));
        store.apply(Event::Message(chat("bob@x/phone", "b2", "live")));
        // A stamp in the future is a wrong clock, not a time.
        let mut future = chat("bob@x/phone", "b3", "from the future");
        future.delayed = Some("2030-01-01T00:00:00Z".into());
        store.apply(Event::Message(future));
        store.history_requested(&bob, RequestId(1));
        let mut archived = chat("bob@x/phone", "b0", "last week");
        archived.delayed = Some("2026-11-30T08:00:00.250Z".into());
        store.apply(Event::ArchivedMessage {
            request: RequestId(1),
            archive_id: "a-b0".into(),
            message: archived,
        });
        let times: Vec<(&str, Option<Millis>)> = store.conversations[&bob]
            .messages
            .iter()
            .map(|m| (m.body.as_str(), m.at))
            .collect();
        assert_eq!(
            times,
            [
                ("last week", Some(at("2026-11-30T08:00:00.250Z"))),
                ("hi", Some(at("2026-12-07T10:00:00Z"))),
                ("while you were away", Some(at("2026-12-06T22:30:00Z"))),
                ("live", Some(at("2026-12-07T10:05:00Z"))),
                ("from the future", Some(at("2026-12-07T10:05:00Z"))),
            ]
        );
    }

    #[test]
    fn corrections_replace_the_text_they_name_quietly() {
        let mut store = Store::signing_in(jid("me@x"));
        let bob = jid("bob@x");
        store.apply(Event::Roster(vec![item("bob@x", None, Subscription::Both)]));
        let correction = |id: &str, replaces: &str, body: &str| {
            let mut m = chat("bob@x/phone", id, body);
            m.replaces = Some(replaces.into());
            m
        };
        let shown = |s: &Store| -> Vec<(String, bool)> {
            s.conversations[&bob]
                .messages
                .iter()
                .map(|m| (m.body.clone(), m.edited))
                .collect()
        };
        store.apply(Event::Message(chat("bob@x/phone", "m1", "teh cat")));
        store.apply(Event::Message(chat("bob@x/phone", "m2", "second")));
        let unread = store.contacts[&bob].unread;
        store.apply(Event::Message(correction("c1", "m1", "the cat")));
        // A further correction may name the original or the previous correction.
        store.apply(Event::Message(correction("c2", "c1", "the cat!")));
        store.apply(Event::Message(correction("c3", "m1", "the cat!!")));
        assert_eq!(
            shown(&store),
            [("the cat!!".into(), true), ("second".into(), false)]
        );
        assert_eq!(store.contacts[&bob].unread, unread, "corrections are quiet");
        // A correction repeated (carbons, resumption) changes nothing.
        store.apply(Event::Message(correction("c2", "c1", "the cat!")));
        assert_eq!(shown(&store)[0].0, "the cat!!");
        // Our own messages are corrected only by our own corrections (carbons).
        store.sent(&bob, "o1".into(), "mine".into(), false);
        store.apply(Event::Message(correction(
            "c4",
            "o1",
            "not bob's to change",
        )));
        assert_eq!(shown(&store)[2], ("mine".into(), false));
        assert_eq!(shown(&store)[3], ("not bob's to change".into(), true));

        // Encrypted text is never replaced by text that was not.
        store.apply_omemo(OmemoEvent::Message {
            message: chat("bob@x/phone", "e1", "secret"),
            device: 1,
            fingerprint: sotto_omemo::fingerprint::Fingerprint::from_curve25519_public(&[1; 32]),
            trust: Trust::Verified,
        });
        store.apply(Event::Message(correction("c5", "e1", "plaintext rewrite")));
        let messages = &store.conversations[&bob].messages;
        assert_eq!(messages[4].body, "secret");
        assert!(!messages[4].edited);
        assert_eq!(messages[5].body, "plaintext rewrite");
        assert!(!messages[5].edited && !messages[5].encrypted);
        store.apply_omemo(OmemoEvent::Message {
            message: correction("c6", "e1", "secret, corrected"),
            device: 1,
            fingerprint: sotto_omemo::fingerprint::Fingerprint::from_curve25519_public(&[1; 32]),
            trust: Trust::Verified,
        });
        assert_eq!(
            store.conversations[&bob].messages[4].body,
            "secret, corrected"
        );
        assert!(store.conversations[&bob].messages[4].edited);

        // A correction of a message not loaded yet stands in for it: the archive's copy of the
        // original, loaded later, is not shown again.
        let carol = jid("carol@x");
        let mut late = chat("carol@x/pc", "k2", "fixed text");
        late.replaces = Some("k1".into());
        store.apply(Event::Message(late));
        store.history_requested(&carol, RequestId(7));
        store.apply(Event::ArchivedMessage {
            request: RequestId(7),
            archive_id: "a-k1".into(),
            message: chat("carol@x/pc", "k1", "fixd txt"),
        });
        let bodies: Vec<(&str, bool)> = store.conversations[&carol]
            .messages
            .iter()
            .map(|m| (m.body.as_str(), m.edited))
            .collect();
        assert_eq!(bodies, [("fixed text", true)]);
    }

    #[test]
    fn our_corrections_replace_our_last_message_and_track_their_own_delivery() {
        let mut store = Store::signing_in(jid("me@x"));
        let bob = jid("bob@x");
        assert_eq!(store.last_correctable(&bob), None);
        store.sent(&bob, "m1".into(), "helo".into(), true);
        store.apply(Event::Receipt {
            from: "bob@x/phone".parse().unwrap_or_else(|_| unreachable!()),
            id: "m1".into(),
        });
        assert_eq!(
            store.last_correctable(&bob),
            Some(("m1".into(), "helo".into()))
        );
        assert!(store.corrected(&bob, "m1", "c1".into(), "hello".into()));
        let message = |s: &Store| s.conversations[&bob].messages[0].clone();
        assert_eq!(
            (message(&store).body.as_str(), message(&store).edited),
            ("hello", true)
        );
        assert_eq!(message(&store).state, DeliveryState::Sending);
        // The original's late receipt says nothing of the correction; the correction's does.
        store.apply(Event::Receipt {
            from: "bob@x/phone".parse().unwrap_or_else(|_| unreachable!()),
            id: "m1".into(),
        });
        assert_eq!(message(&store).state, DeliveryState::Sending);
        store.apply(Event::MessageAcked { id: "c1".into() });
        assert_eq!(message(&store).state, DeliveryState::Sent);
        store.apply(Event::Receipt {
            from: "bob@x/phone".parse().unwrap_or_else(|_| unreachable!()),
            id: "c1".into(),
        });
        assert_eq!(message(&store).state, DeliveryState::Delivered);
        // Every correction names the original.
        assert_eq!(
            store.last_correctable(&bob),
            Some(("m1".into(), "hello".into()))
        );
        // Unencrypted messages are not offered for correction, nor is anything but the last.
        store.sent(&bob, "p1".into(), "plain".into(), false);
        assert_eq!(store.last_correctable(&bob), None);
        assert!(!store.corrected(&bob, "nope", "c2".into(), "x".into()));
    }

    #[test]
    fn retractions_wipe_the_text_they_name_quietly() {
        let mut store = Store::signing_in(jid("me@x"));
        let bob = jid("bob@x");
        store.apply(Event::Roster(vec![item("bob@x", None, Subscription::Both)]));
        let retraction = |id: &str, target: &str| {
            let mut m = chat("bob@x/phone", id, "/me retracted a message (fallback)");
            m.retracts = Some(target.into());
            m
        };
        store.apply_omemo(OmemoEvent::Message {
            message: chat("bob@x/phone", "m1", "oops, wrong chat"),
            device: 1,
            fingerprint: sotto_omemo::fingerprint::Fingerprint::from_curve25519_public(&[1; 32]),
            trust: Trust::Verified,
        });
        store.sent(&bob, "o1".into(), "mine".into(), true);
        let unread = store.contacts[&bob].unread;
        // bob cannot retract our message; his own goes, text and all, without a fallback shown.
        store.apply(Event::Message(retraction("r0", "o1")));
        store.apply(Event::Message(retraction("r1", "m1")));
        let messages = &store.conversations[&bob].messages;
        assert!(messages[0].retracted && messages[0].body.is_empty());
        assert!(!messages[1].retracted && messages[1].body == "mine");
        // The one naming our message left only a note; the fallback text is shown nowhere.
        assert_eq!(messages.len(), 3);
        assert!(messages[2].retracted && messages[2].body.is_empty());
        assert!(messages.iter().all(|m| !m.body.contains("fallback")));
        assert_eq!(store.contacts[&bob].unread, unread, "retractions are quiet");
        assert!(
            !store.announcement.contains("oops"),
            "the live region still reads the deleted text"
        );
        // Twice is once; a correction cannot bring it back.
        store.apply(Event::Message(retraction("r1", "m1")));
        let mut back = chat("bob@x/phone", "c1", "back again");
        back.replaces = Some("m1".into());
        store.apply(Event::Message(back));
        let messages = &store.conversations[&bob].messages;
        assert!(messages[0].retracted && messages[0].body.is_empty());
        assert_eq!(messages.len(), 4, "the correction stands alone");

        // The archive's copy of a message retracted before it was loaded is not shown.
        let carol = jid("carol@x");
        let mut gone = chat("carol@x/pc", "r9", "fallback");
        gone.retracts = Some("k1".into());
        store.apply(Event::Message(gone));
        store.history_requested(&carol, RequestId(3));
        store.apply(Event::ArchivedMessage {
            request: RequestId(3),
            archive_id: "a-k1".into(),
            message: chat("carol@x/pc", "k1", "regrettable"),
        });
        let carol_messages = &store.conversations[&carol].messages;
        assert_eq!(carol_messages.len(), 1);
        assert!(carol_messages[0].retracted && carol_messages[0].body.is_empty());
    }

    #[test]
    fn our_deletions_wipe_our_text_at_once_and_only_ours() {
        let mut store = Store::signing_in(jid("me@x"));
        let bob = jid("bob@x");
        store.apply(Event::Message(chat("bob@x/phone", "m1", "his")));
        store.sent(&bob, "o1".into(), "first".into(), true);
        store.sent(&bob, "o2".into(), "second".into(), false);
        assert!(store.deletable(&bob, "o1") && store.deletable(&bob, "o2"));
        assert!(!store.deletable(&bob, "m1"), "not his message");
        assert!(
            !store.deletable(&jid("carol@x"), "o1"),
            "not in another conversation"
        );
        assert!(!store.retracted_own(&bob, "m1"));
        let revision = store.messages_rev;
        assert!(store.retracted_own(&bob, "o2"));
        assert!(store.messages_rev > revision, "the view is told");
        let messages = &store.conversations[&bob].messages;
        assert!(messages[2].retracted && messages[2].body.is_empty());
        assert!(!store.deletable(&bob, "o2"), "once");
        assert_eq!(
            store.last_correctable(&bob),
            None,
            "our last message is deleted: the Up arrow does not reach past it"
        );
        // The copy our other devices get (a carbon) and the archive's changes nothing more.
        let mut echo = chat("bob@x/phone", "r1", "fallback");
        echo.direction = Direction::Outgoing;
        echo.retracts = Some("o2".into());
        store.apply(Event::Message(echo));
        let messages = &store.conversations[&bob].messages;
        assert_eq!(messages.len(), 3);
        assert!(messages[1].body == "first" && !messages[1].retracted);
        assert!(messages[0].body == "his");
    }

    #[test]
    fn archive_pages_go_in_front_in_order_without_duplicates() {
        let mut store = Store::signing_in(jid("me@x"));
        let bob = jid("bob@x");
        store.apply(Event::Message(chat("bob@x/phone", "m3", "live")));
        assert!(store.history_untouched(&bob));
        assert_eq!(store.next_history_page(&bob), Some(None));
        store.history_requested(&bob, RequestId(1));
        assert_eq!(store.next_history_page(&bob), None, "one page at a time");
        let archived = |id: &str, body: &str| Event::ArchivedMessage {
            request: RequestId(1),
            archive_id: format!("a-{id}"),
            message: chat("bob@x/phone", id, body),
        };
        store.apply(archived("m1", "first"));
        store.apply(archived("m2", "second"));
        store.apply(archived("m3", "live")); // the live one again
        store.apply(Event::ArchiveFinished {
            request: RequestId(1),
            complete: false,
            first: Some("a-m1".into()),
        });
        let bodies: Vec<&str> = store.conversations[&bob]
            .messages
            .iter()
            .map(|m| m.body.as_str())
            .collect();
        assert_eq!(bodies, ["first", "second", "live"]);
        assert_eq!(store.next_history_page(&bob), Some(Some("a-m1".into())));
        // The next page goes in front of the first.
        store.history_requested(&bob, RequestId(2));
        store.apply(Event::ArchivedMessage {
            request: RequestId(2),
            archive_id: "a-m0".into(),
            message: chat("bob@x/phone", "m0", "zeroth"),
        });
        // A result of a query we did not make (or an old one) is ignored.
        store.apply(archived("m9", "stray"));
        store.apply(Event::ArchiveFinished {
            request: RequestId(2),
            complete: true,
            first: Some("a-m0".into()),
        });
        let messages = &store.conversations[&bob].messages;
        assert_eq!(messages.len(), 4);
        assert_eq!(messages[0].body, "zeroth");
        assert_eq!(store.next_history_page(&bob), None, "nothing older");
        // Archived messages are history: no unread count, no announcement.
        assert_eq!(
            store.announcement,
            crate::text::new_message("bob@x", "live")
        );
    }

    #[test]
    fn alerts_only_when_notifications_are_on() {
        let mut store = Store::signing_in(jid("me@x"));
        store.apply(Event::Message(chat("bob@x/phone", "m1", "one")));
        assert!(store.alerts.is_empty());
        store.set_notify(NotifyMode::Private, false);
        store.apply(Event::Message(chat("bob@x/phone", "m2", "two")));
        store.apply_omemo(OmemoEvent::DecryptionFailed {
            message: chat("bob@x/phone", "m3", "fallback"),
            device: None,
            reason: sotto_session::omemo::DecryptFailure::NoSession,
        });
        let alerts = store.take_alerts();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].body.as_deref(), Some("two"));
        assert_eq!(
            alerts[1].body, None,
            "no text for what could not be decrypted"
        );
        assert!(store.alerts.is_empty());
        store.set_notify(NotifyMode::Off, false);
        store.apply(Event::Message(chat("bob@x/phone", "m4", "four")));
        assert!(store.alerts.is_empty());
        // "Do not disturb" silences them, and only while it lasts.
        store.set_notify(NotifyMode::Private, false);
        store.set_own_status(OwnStatus {
            availability: Availability::DoNotDisturb,
            text: Some("focus".into()),
        });
        store.apply(Event::Message(chat("bob@x/phone", "m5", "five")));
        assert!(store.alerts.is_empty());
        assert!(
            store.conversations[&jid("bob@x")]
                .messages
                .iter()
                .any(|m| m.body == "five"),
            "still shown"
        );
        store.set_own_status(OwnStatus::default());
        store.apply(Event::Message(chat("bob@x/phone", "m6", "six")));
        assert_eq!(store.take_alerts().len(), 1);
    }

    #[test]
    fn lock_follows_the_device_list() {
        let mut store = Store::signing_in(jid("me@x"));
        assert_eq!(store.lock(&jid("bob@x")), Lock::Checking);
        let changed = store.apply_omemo(OmemoEvent::DeviceList {
            jid: jid("bob@x"),
            devices: vec![7],
        });
        assert_eq!(changed, Some(jid("bob@x")));
        assert_eq!(store.lock(&jid("bob@x")), Lock::Encrypted);
        store.apply_omemo(OmemoEvent::DeviceList {
            jid: jid("bob@x"),
            devices: vec![],
        });
        assert_eq!(store.lock(&jid("bob@x")), Lock::Unavailable);
    }

    #[test]
    fn a_contact_without_omemo_raises_the_plaintext_question() {
        let mut store = Store::signing_in(jid("me@x"));
        store.sent(&jid("carol@x"), "e1".into(), "secret".into(), true);
        store.apply_omemo(OmemoEvent::SendFailed {
            to: jid("carol@x"),
            id: "e1".into(),
            reason: SendError::NoDevices(jid("carol@x")),
        });
        assert_eq!(store.lock(&jid("carol@x")), Lock::Unavailable);
        let messages = &store.conversations[&jid("carol@x")].messages;
        assert_eq!(messages[0].state, DeliveryState::Failed);
        assert_eq!(
            store.plaintext_prompt,
            Some(PlaintextPrompt {
                peer: jid("carol@x"),
                body: "secret".into(),
                failed_id: Some("e1".into()),
            })
        );
        // Declined: the failed attempt stays, nothing else happens.
        let mut declined = store.clone();
        assert!(declined.take_plaintext_prompt(false).is_some());
        assert_eq!(declined.conversations[&jid("carol@x")].messages.len(), 1);
        // Confirmed: the failed attempt gives way to the plaintext message the app sends.
        let prompt = store.take_plaintext_prompt(true);
        assert_eq!(prompt.map(|p| p.body), Some("secret".to_owned()));
        assert!(store.conversations[&jid("carol@x")].messages.is_empty());
        assert!(store.take_plaintext_prompt(true).is_none());
    }

    #[test]
    fn decrypted_and_undecryptable_messages() {
        let mut store = Store::signing_in(jid("me@x"));
        store.apply(Event::Roster(vec![item("bob@x", None, Subscription::Both)]));
        let fingerprint = sotto_omemo::fingerprint::Fingerprint::from_curve25519_public(&[1; 32]);
        store.apply_omemo(OmemoEvent::Message {
            message: chat("bob@x/phone", "b1", "decrypted"),
            device: 9,
            fingerprint,
            trust: Trust::Blind,
        });
        let mut failed = chat(
            "bob@x/phone",
            "b2",
            "I sent you an OMEMO encrypted message…",
        );
        failed.body = Some("fallback".into());
        store.apply_omemo(OmemoEvent::DecryptionFailed {
            message: failed,
            device: Some(9),
            reason: sotto_session::omemo::DecryptFailure::NotForThisDevice,
        });
        let messages = &store.conversations[&jid("bob@x")].messages;
        assert_eq!(messages.len(), 2);
        assert!(messages[0].encrypted && messages[0].error.is_none());
        assert_eq!(messages[0].body, "decrypted");
        // The failure is shown in place with its reason, never the server-readable fallback.
        assert!(messages[1].error.is_some());
        assert!(messages[1].body.is_empty());
        assert_eq!(store.contacts[&jid("bob@x")].unread, 2);
    }

    #[test]
    fn undecided_devices_warn_until_decided() {
        let mut store = Store::signing_in(jid("me@x"));
        let fingerprint = sotto_omemo::fingerprint::Fingerprint::from_curve25519_public(&[2; 32]);
        store.apply_omemo(OmemoEvent::NewDevice {
            jid: jid("bob@x"),
            device: 5,
            fingerprint,
            trust: Trust::Blind,
        });
        assert!(store.trust_alerts.is_empty());
        store.apply_omemo(OmemoEvent::NewDevice {
            jid: jid("bob@x"),
            device: 6,
            fingerprint,
            trust: Trust::Undecided,
        });
        assert_eq!(store.trust_alerts, vec![(jid("bob@x"), 6)]);
        let view = |trust| DeviceView {
            id: 6,
            fingerprint: Some(fingerprint.to_string()),
            trust: Some(trust),
        };
        store.set_devices(jid("bob@x"), vec![view(Trust::Undecided)]);
        assert_eq!(store.trust_alerts.len(), 1);
        store.set_devices(jid("bob@x"), vec![view(Trust::Verified)]);
        assert!(store.trust_alerts.is_empty());
    }

    #[test]
    fn requests_from_people_we_asked_are_approved() {
        let mut store = Store::signing_in(jid("me@x"));
        store.apply(Event::Roster(vec![item("bob@x", None, Subscription::To)]));
        assert_eq!(
            store.apply(Event::SubscriptionRequest { from: jid("bob@x") }),
            Some(FollowUp::Approve(jid("bob@x")))
        );
        assert_eq!(
            store.apply(Event::SubscriptionRequest { from: jid("eve@x") }),
            None
        );
        assert_eq!(store.requests, vec![jid("eve@x")]);
    }

    #[test]
    fn presence_per_resource() {
        let mut store = Store::signing_in(jid("me@x"));
        store.apply(Event::Roster(vec![item("bob@x", None, Subscription::Both)]));
        let from = |r: &str| -> Jid {
            format!("bob@x/{r}")
                .parse()
                .unwrap_or_else(|_| unreachable!())
        };
        store.apply(Event::Presence {
            from: from("a"),
            availability: Availability::Away,
            status: Some("lunch".into()),
        });
        store.apply(Event::Presence {
            from: from("b"),
            availability: Availability::Available,
            status: None,
        });
        let bob = &store.contacts[&jid("bob@x")];
        assert_eq!(bob.availability(), Availability::Available);
        store.apply(Event::Presence {
            from: from("b"),
            availability: Availability::Unavailable,
            status: None,
        });
        let bob = &store.contacts[&jid("bob@x")];
        assert_eq!(bob.availability(), Availability::Away);
        assert_eq!(bob.status(), Some("lunch"));
    }
}
