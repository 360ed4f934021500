//! What the session reports to its driver and UI: one enum, mapped in one place by each UI.

use crate::jid::{BareJid, FullJid, Jid};

use crate::error::{LoginError, StreamError};
use crate::session::{PepItem, RequestId};

/// How available a contact (or we) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Online and available.
    Available,
    /// Away.
    Away,
    /// Do not disturb.
    DoNotDisturb,
    /// Extended away.
    ExtendedAway,
    /// Eager to chat.
    Chat,
    /// Offline.
    Unavailable,
}

/// A subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// Neither side sees the other's presence.
    None,
    /// We see their presence.
    To,
    /// They see ours.
    From,
    /// Both.
    Both,
}

/// One contact in the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's address.
    pub jid: BareJid,
    /// The name we gave them.
    pub name: Option<String>,
    /// Who sees whose presence.
    pub subscription: Subscription,
    /// We asked to see their presence and they have not answered yet.
    pub pending_out: bool,
    /// Groups.
    pub groups: Vec<String>,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent to us.
    Incoming,
    /// Sent by us — from this device, or from another device of ours (a carbon).
    Outgoing,
}

/// A chat message received, or sent by another device of ours.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// The id the sender gave it (origin-id when present, else the stanza id).
    pub id: Option<String>,
    /// Sender.
    pub from: Jid,
    /// Recipient.
    pub to: Option<Jid>,
    /// The conversation partner's bare JID.
    pub peer: BareJid,
    /// Incoming or outgoing (outgoing ones arrive here only as carbons).
    pub direction: Direction,
    /// Whether it was copied to us from another of our devices (XEP-0280).
    pub carbon: bool,
    /// The plaintext body (an OMEMO message's fallback body until OMEMO decrypts it).
    pub body: Option<String>,
    /// The sender asked for a delivery receipt (XEP-0184).
    pub receipt_requested: bool,
    /// XEP-0203 delay timestamp, if the server stored it for us.
    pub delayed: Option<String>,
    /// XEP-0308: the id of the earlier message this one corrects (its text replaces that
    /// message's, if it came from the same sender).
    pub replaces: Option<String>,
    /// XEP-0424: the id of the earlier message the sender retracted (this message's own body
    /// is only a fallback text for clients without retraction).
    pub retracts: Option<String>,
    /// The whole stanza, for layers above (OMEMO reads its `<encrypted/>` element).
    pub stanza: minidom::Element,
}

/// XEP-0085 chat states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatState {
    /// Paying attention.
    Active,
    /// Typing.
    Composing,
    /// Stopped typing.
    Paused,
    /// Not paying attention.
    Inactive,
    /// Left the conversation.
    Gone,
}

/// Everything the session reports. Polled with [`crate::Session::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Logged in and bound (or resumed): messages can be sent.
    Online {
        /// Our full JID.
        jid: FullJid,
        /// Whether the previous session was resumed (XEP-0198) rather than started anew.
        resumed: bool,
    },
    /// A previous session could not be resumed; a new one follows (messages unacknowledged
    /// by the server are sent again in it).
    ResumeFailed,
    /// Logging in failed; the driver should close the transport and tell the user.
    LoginFailed(LoginError),
    /// The server ended the stream with an error.
    StreamError(StreamError),
    /// The session is over; the driver should close the transport. `resumable` says whether a
    /// reconnect can resume it.
    Disconnected {
        /// Whether XEP-0198 resumption is possible on the next connection.
        resumable: bool,
    },
    /// The full roster (on login, or after reconnecting without resumption).
    Roster(Vec<RosterItem>),
    /// A roster item was added or changed (roster push).
    RosterItemUpdated(RosterItem),
    /// A roster item was removed.
    RosterItemRemoved(BareJid),
    /// A contact's resource changed presence.
    Presence {
        /// The resource.
        from: Jid,
        /// How available it is.
        availability: Availability,
        /// Status text.
        status: Option<String>,
    },
    /// Someone asks to see our presence.
    SubscriptionRequest {
        /// Who asks.
        from: BareJid,
    },
    /// A chat message (incoming, or a carbon of our own outgoing one).
    Message(ChatMessage),
    /// The server acknowledged one of our messages (XEP-0198): it is "sent".
    MessageAcked {
        /// The id we gave it.
        id: String,
    },
    /// The recipient's device confirmed delivery (XEP-0184).
    Receipt {
        /// Who confirmed.
        from: Jid,
        /// The id of our message.
        id: String,
    },
    /// A contact's chat state changed.
    ChatState {
        /// Whose.
        from: Jid,
        /// The new state.
        state: ChatState,
    },
    /// A message we sent bounced with an error.
    MessageError {
        /// The id of our message, if the error carries it.
        id: Option<String>,
        /// The stanza error condition.
        condition: String,
    },
    /// A request (publish, retract, delete, block…) succeeded.
    RequestDone {
        /// Which one.
        request: RequestId,
    },
    /// A request failed with a stanza error condition.
    RequestFailed {
        /// Which one.
        request: RequestId,
        /// The condition, e.g. `item-not-found`.
        condition: String,
    },
    /// The items of a PEP node we fetched.
    PepItems {
        /// The fetch.
        request: RequestId,
        /// Whose node.
        from: BareJid,
        /// Which node.
        node: String,
        /// Its items.
        items: Vec<PepItem>,
    },
    /// A contact (or we) published to a PEP node we are interested in (`+notify`).
    PepNotification {
        /// The publisher.
        from: BareJid,
        /// The node.
        node: String,
        /// Published items.
        items: Vec<PepItem>,
        /// Retracted item ids.
        retracted: Vec<String>,
    },
    /// One message from an archive query.
    ArchivedMessage {
        /// The query.
        request: RequestId,
        /// Its id in the archive (for paging with `before`).
        archive_id: String,
        /// The message (`delayed` holds the archive timestamp).
        message: ChatMessage,
    },
    /// An archive query is complete.
    ArchiveFinished {
        /// The query.
        request: RequestId,
        /// No older messages exist.
        complete: bool,
        /// The archive id of the oldest message of this page (for the next `before`).
        first: Option<String>,
    },
    /// Our block list.
    BlockList(Vec<BareJid>),
    /// A JID was blocked or unblocked (possibly by another of our devices).
    BlockChanged {
        /// Whom.
        jid: BareJid,
        /// Blocked now?
        blocked: bool,
    },
}
