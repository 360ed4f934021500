//! The app's state store: everything the screens show, built from the session's events.
//!
//! The UI is a view over this and nothing else: it never sees XML, sockets or keys. The store
//! is plain data (no browser APIs), so its rules are unit-tested natively.

use std::collections::{BTreeMap, HashMap};

use sotto_session::{
    Availability, BareJid, ChatMessage, ChatState, Direction, Event, RosterItem, Subscription,
};

/// Most messages kept per conversation in memory; older ones are dropped first.
pub const MAX_MESSAGES_PER_CONVERSATION: usize = 2000;
/// Most pending subscription requests shown.
pub const MAX_REQUESTS: usize = 200;

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
    /// Whether it was end-to-end encrypted (always false until OMEMO is wired in).
    pub encrypted: bool,
    /// Delivery state.
    pub state: DeliveryState,
}

/// One conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conversation {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// The peer is typing.
    pub typing: bool,
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

/// Everything the screens show.
#[derive(Debug, Clone, Default)]
pub struct Store {
    /// Bumped on every change, so views compare cheaply.
    revision: u64,
    /// Our address, once signed in.
    pub me: Option<BareJid>,
    /// The connection.
    pub connection: Option<Connection>,
    /// The roster.
    pub contacts: HashMap<BareJid, Contact>,
    /// People asking to see our presence, oldest first.
    pub requests: Vec<BareJid>,
    /// Conversations by peer.
    pub conversations: HashMap<BareJid, Conversation>,
    /// The open conversation.
    pub active: Option<BareJid>,
    /// The latest line for the screen reader live region.
    pub announcement: String,
    /// A problem to show (a failed command, a bounced message).
    pub notice: Option<String>,
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

    fn touch(&mut self) {
        self.revision = self.revision.wrapping_add(1);
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
        list.sort_by_cached_key(|c| (c.display_name().to_lowercase(), c.jid.to_string()));
        list
    }

    /// The open conversation's messages and typing state.
    pub fn conversation(&self, peer: &BareJid) -> Option<&Conversation> {
        self.conversations.get(peer)
    }

    /// Opens a conversation and marks it read.
    pub fn open(&mut self, peer: BareJid) {
        if let Some(contact) = self.contacts.get_mut(&peer) {
            contact.unread = 0;
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

    /// Records a message we just handed to the session.
    pub fn sent(&mut self, peer: &BareJid, id: String, body: String) {
        let conversation = self.conversations.entry(peer.clone()).or_default();
        push_bounded(
            &mut conversation.messages,
            Message {
                id: Some(id),
                direction: Direction::Outgoing,
                body,
                encrypted: false,
                state: DeliveryState::Sending,
            },
        );
        self.touch();
    }

    /// Forgets a request (approved or denied).
    pub fn forget_request(&mut self, jid: &BareJid) {
        self.requests.retain(|r| r != jid);
        self.touch();
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
            Event::RosterItemUpdated(item) => match self.contacts.get_mut(&item.jid) {
                Some(contact) => {
                    contact.name = item.name;
                    contact.subscription = item.subscription;
                    contact.pending_out = item.pending_out;
                }
                None => {
                    self.contacts.insert(item.jid.clone(), Contact::new(item));
                }
            },
            Event::RosterItemRemoved(jid) => {
                self.contacts.remove(&jid);
            }
            Event::Presence {
                from,
                availability,
                status,
            } => {
                let bare = from.to_bare();
                if let Some(contact) = self.contacts.get_mut(&bare) {
                    let resource = from
                        .resource()
                        .map(|r| r.as_str().to_owned())
                        .unwrap_or_default();
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
                            && message.id.as_deref() == Some(id.as_str())
                        {
                            message.state = DeliveryState::Delivered;
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
            // Connection changes are reported by the driver, which knows about the transport.
            _ => {}
        }
        None
    }

    fn update_outgoing(&mut self, id: &str, f: impl Fn(DeliveryState) -> DeliveryState) {
        for conversation in self.conversations.values_mut() {
            if let Some(message) = conversation
                .messages
                .iter_mut()
                .rev()
                .find(|m| m.direction == Direction::Outgoing && m.id.as_deref() == Some(id))
            {
                message.state = f(message.state);
                return;
            }
        }
    }

    fn on_message(&mut self, message: ChatMessage) {
        let Some(body) = message.body.filter(|b| !b.is_empty()) else {
            return;
        };
        let peer = message.peer;
        let active = self.active.as_ref() == Some(&peer);
        let conversation = self.conversations.entry(peer.clone()).or_default();
        // XEP-0198 resends and carbons may bring a message twice: the same id counts once.
        if let Some(id) = &message.id {
            if conversation
                .messages
                .iter()
                .rev()
                .take(200)
                .any(|m| m.direction == message.direction && m.id.as_ref() == Some(id))
            {
                return;
            }
        }
        let incoming = message.direction == Direction::Incoming;
        if incoming {
            conversation.typing = false;
        }
        push_bounded(
            &mut conversation.messages,
            Message {
                id: message.id,
                direction: message.direction,
                body: body.clone(),
                encrypted: false,
                state: if incoming {
                    DeliveryState::Received
                } else {
                    DeliveryState::Sent
                },
            },
        );
        if incoming {
            let name = self
                .contacts
                .get(&peer)
                .map(Contact::display_name)
                .unwrap_or_else(|| peer.to_string());
            self.announcement = crate::text::new_message(&name, &body);
            if !active {
                if let Some(contact) = self.contacts.get_mut(&peer) {
                    contact.unread = contact.unread.saturating_add(1);
                }
            }
        }
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
    }

    #[test]
    fn message_states_and_unread() {
        let mut store = Store::signing_in(jid("me@x"));
        store.apply(Event::Roster(vec![item("bob@x", None, Subscription::Both)]));
        store.sent(&jid("bob@x"), "m1".into(), "hi".into());
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
        store.apply(Event::Message(chat("bob@x/phone", "b2", "again")));
        assert_eq!(store.contacts[&jid("bob@x")].unread, 0);
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
