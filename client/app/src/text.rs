//! Every string the user sees, in one place, ready for translation.

use sotto_session::{LoginError, StreamError};

use crate::driver::Ended;

pub const APP_NAME: &str = "Sotto";
pub const TAGLINE: &str = "End-to-end encrypted chat in any browser. Nothing to install.";
pub const LOGIN_HEADING: &str = "Sign in";
pub const LOGIN_JID: &str = "Chat address";
pub const LOGIN_JID_PLACEHOLDER: &str = "you@example.org";
pub const LOGIN_PASSWORD: &str = "Password";
pub const LOGIN_MODE_LEGEND: &str = "This computer is";
pub const LOGIN_MODE_PERSONAL: &str = "My device";
pub const LOGIN_MODE_PERSONAL_HINT: &str =
    "Your own computer. (Until encrypted storage lands, nothing is kept after you close the tab.)";
pub const LOGIN_MODE_KIOSK: &str = "A public or shared computer";
pub const LOGIN_MODE_KIOSK_HINT: &str = "Nothing is stored; everything is wiped when you leave.";
pub const LOGIN_SUBMIT: &str = "Sign in";
pub const LOGIN_SUBMITTING: &str = "Signing in…";
pub const LOGIN_SERVICE: &str = "Server";
pub const ERROR_JID: &str = "Enter your chat address as name@domain.";
pub const ERROR_PASSWORD: &str = "Enter your password.";
pub const ERROR_NO_SERVICE: &str = "This page cannot tell which server to connect to.";

pub const STATE_OFFLINE: &str = "offline";
pub const STATE_CONNECTING: &str = "connecting";
pub const STATE_ONLINE: &str = "online";
pub const STATE_RECONNECTING: &str = "reconnecting";
pub const STATE_LABEL: &str = "Connection";
pub const RECONNECTING_BANNER: &str =
    "Connection lost. Reconnecting… Messages you send now go out once it is back.";
pub const VERSION_PREFIX: &str = "Version";

pub const SIGNED_IN_AS: &str = "Signed in as";
pub const LOGOUT: &str = "Sign out";

pub const CONTACTS_HEADING: &str = "Contacts";
pub const CONTACTS_SEARCH: &str = "Search contacts";
pub const CONTACTS_SEARCH_PLACEHOLDER: &str = "Search";
pub const CONTACTS_EMPTY: &str = "No contacts yet. Add someone by their chat address below.";
pub const CONTACTS_NO_MATCH: &str = "No contact matches your search.";
pub const CONTACT_ADD_LABEL: &str = "Add a contact";
pub const CONTACT_ADD_PLACEHOLDER: &str = "name@example.org";
pub const CONTACT_ADD_SUBMIT: &str = "Add";
pub const CONTACT_ADD_INVALID: &str = "Enter the contact's chat address as name@domain.";
pub const CONTACT_ADD_SELF: &str = "That is your own address.";
pub const CONTACT_REMOVE: &str = "Remove contact";
pub const CONTACT_AWAITING: &str = "Waiting for them to accept";
pub const REQUESTS_HEADING: &str = "Contact requests";
pub const REQUEST_TEXT: &str = "wants to add you as a contact";
pub const REQUEST_APPROVE: &str = "Accept";
pub const REQUEST_DENY: &str = "Decline";
pub const STRANGERS_HEADING: &str = "Messages from people not in your contacts";

pub const PRESENCE_AVAILABLE: &str = "Online";
pub const PRESENCE_CHAT: &str = "Free to chat";
pub const PRESENCE_AWAY: &str = "Away";
pub const PRESENCE_XA: &str = "Away for a while";
pub const PRESENCE_DND: &str = "Do not disturb";
pub const PRESENCE_OFFLINE: &str = "Offline";

pub const CHAT_EMPTY_TITLE: &str = "No conversation open";
pub const CHAT_EMPTY_HINT: &str = "Choose a contact to start chatting.";
pub const CHAT_BACK: &str = "Back to contacts";
pub const CHAT_INPUT_LABEL: &str = "Message";
pub const CHAT_INPUT_PLACEHOLDER: &str = "Write a message";
pub const CHAT_SEND: &str = "Send";
pub const CHAT_NO_MESSAGES: &str = "No messages yet. Say hello!";
pub const CHAT_TYPING: &str = "is typing…";
pub const CHAT_LOG_LABEL: &str = "Messages";
pub const LOCK_NOT_E2E: &str = "Not end-to-end encrypted yet";
pub const LOCK_NOT_E2E_HINT: &str =
    "Messages are protected on the way to the server, which can read them. \
     End-to-end encryption (OMEMO) comes in the next release.";
pub const YOU: &str = "You";
pub const STATE_SENDING: &str = "Sending";
pub const STATE_SENT: &str = "Sent";
pub const STATE_DELIVERED: &str = "Delivered";
pub const STATE_FAILED: &str = "Not delivered";
pub const DISMISS: &str = "Dismiss";

pub const ERROR_UNREACHABLE: &str =
    "The server cannot be reached. Check your connection and try again.";
pub const ERROR_NOT_XMPP: &str = "The server address does not lead to a chat server.";
pub const ERROR_NOT_ONLINE: &str = "You are offline; try again once the connection is back.";
pub const ERROR_QUEUE_FULL: &str = "Too many unsent messages; wait for the connection to catch up.";
pub const ERROR_BAD_BODY: &str = "That message is empty or too long.";

/// Why the session ended, for the login screen.
pub fn ended(why: &Ended) -> String {
    match why {
        Ended::Login(e) => login_error(e),
        Ended::Stream(e) => stream_error(e),
        Ended::Unreachable => ERROR_UNREACHABLE.into(),
        Ended::NotXmpp => ERROR_NOT_XMPP.into(),
    }
}

/// A login failure in words.
pub fn login_error(e: &LoginError) -> String {
    match e {
        LoginError::WrongPassword => "Wrong chat address or password.".into(),
        LoginError::AccountDisabled => "This account is disabled.".into(),
        LoginError::Timeout => "The server did not answer in time. Try again.".into(),
        other => format!("Signing in failed: {other}."),
    }
}

/// A stream error in words.
pub fn stream_error(e: &StreamError) -> String {
    match e.condition.as_str() {
        "host-unknown" => {
            "Unknown domain: this server does not serve that chat address's domain.".into()
        }
        "remote-connection-failed" | "remote-server-not-found" => {
            "The chat server for that domain cannot be reached right now.".into()
        }
        _ => e.user_message(),
    }
}

/// A command that could not be carried out.
pub fn command_error(e: &sotto_session::CommandError) -> String {
    match e {
        sotto_session::CommandError::NotOnline => ERROR_NOT_ONLINE.into(),
        sotto_session::CommandError::QueueFull => ERROR_QUEUE_FULL.into(),
        sotto_session::CommandError::BadBody => ERROR_BAD_BODY.into(),
        _ => format!("{e}"),
    }
}

/// A bounced message.
pub fn message_error(condition: &str) -> String {
    match condition {
        "service-unavailable" | "recipient-unavailable" | "item-not-found" => {
            "A message could not be delivered: the recipient is unknown or unavailable.".into()
        }
        other => format!("A message could not be delivered ({other})."),
    }
}

/// The live-region line for a new message.
pub fn new_message(from: &str, body: &str) -> String {
    format!("New message from {from}: {body}")
}

/// A contact's unread count, for screen readers.
pub fn unread(n: u32) -> String {
    if n == 1 {
        "1 unread message".into()
    } else {
        format!("{n} unread messages")
    }
}
