//! Every string the user sees, in one place, ready for translation.

use sotto_session::omemo::{DecryptFailure, SendError, Trust};
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
    "Your own computer: your keys and messages stay here, encrypted with your password.";
pub const LOGIN_MODE_KIOSK: &str = "A public or shared computer";
pub const LOGIN_MODE_KIOSK_HINT: &str = "Nothing is stored; everything is wiped when you leave.";
/// What public-computer mode does and does not protect against, in plain words.
pub fn kiosk_explanation(idle_secs: u32) -> String {
    format!(
        "On a public computer Sotto writes nothing to this browser: your keys, contacts and \
         messages live only in this tab’s memory, and a new encryption key is made for this \
         visit and removed from your account when you leave. Everything is wiped when you sign \
         out, close the tab, or do nothing for {}. What it cannot do: protect you from a \
         keylogger, a screen recorder or a browser that someone has tampered with — on a \
         computer you do not trust, assume what you type can be seen.",
        duration_words(idle_secs)
    )
}
/// "5 minutes", "90 seconds".
pub fn duration_words(secs: u32) -> String {
    if secs >= 120 && secs.is_multiple_of(60) {
        format!("{} minutes", secs / 60)
    } else if secs == 60 {
        "1 minute".into()
    } else {
        format!("{secs} seconds")
    }
}
pub const IDLE_WARNING_STAY: &str = "Stay signed in";
/// The countdown before an idle public-computer session is wiped.
pub fn idle_warning(secs_left: u32) -> String {
    format!(
        "No activity: for your safety you will be signed out and everything wiped in {secs_left} s."
    )
}
/// The messenger's code could not be fetched after the login form was submitted (the server that
/// served the page went away, or the connection dropped).
pub const LOAD_FAILED: &str =
    "The server cannot be reached, so Sotto could not finish loading. Check your connection and try again.";
pub const SIGNED_OUT_WIPED: &str =
    "You are signed out. Nothing of your session is left in this browser.";
pub const SIGNED_OUT_IDLE: &str =
    "You were signed out after a period of inactivity. Nothing of your session is left in this browser.";
pub const UNLOCKING: &str = "Opening the messages saved on this device…";
pub const ERROR_WRONG_PASSPHRASE: &str = "This password does not open the messages saved on this device for this account. Nothing was changed. If you changed your password, enter the previous one too; or forget the saved data.";
pub const LOGIN_OLD_PASSWORD: &str = "Previous password";
pub const LOGIN_OLD_PASSWORD_HINT: &str =
    "The data saved on this device is still locked with it; it is re-locked with your new password once you are signed in.";
pub const FORGET_SAVED: &str = "Forget the data saved on this device";
pub const FORGET_SAVED_DONE: &str = "The data saved on this device for this account is deleted.";
pub const FORGET_DEVICE: &str = "Forget this device";
pub const FORGET_DEVICE_CONFIRM: &str = "Delete everything Sotto saved on this device for this account, remove this device from your account\u{2019}s encryption keys, and sign out?";
pub fn storage_damaged(what: &str) -> String {
    format!("The data saved on this device cannot be read ({what}). Nothing was changed; you can forget it and start afresh.")
}
pub const WIPING: &str = "Signing out and wiping this session\u{2026}";
/// A personal-storage problem, in words.
pub fn keep_error(e: &crate::persist::KeepError) -> String {
    use crate::persist::KeepError;
    match e {
        KeepError::WrongPassphrase => ERROR_WRONG_PASSPHRASE.to_owned(),
        KeepError::Damaged(what) => storage_damaged(what),
        KeepError::Storage(e) => format!(
            "This browser\u{2019}s storage cannot be used ({e}). Choose \u{201c}{LOGIN_MODE_KIOSK}\u{201d} to chat without storing anything."
        ),
    }
}
/// Shown on the login screen when the deployment keeps an audit log of use.
pub const AUDIT_NOTICE: &str = "This service records when you sign in and out, and which of your organisation\u{2019}s rules stopped a message \u{2014} never what you write. Your messages stay end-to-end encrypted.";
pub const LOGIN_SUBMIT: &str = "Sign in";
pub const LOGIN_SUBMITTING: &str = "Signing in…";
pub const LOGIN_SERVICE: &str = "Server";
pub const ERROR_JID: &str = "Enter your chat address as name@domain.";
pub const ERROR_PASSWORD: &str = "Enter your password.";
pub const ERROR_NO_SERVICE: &str = "This page cannot tell which server to connect to.";
pub const LOGIN_DISCOVERING: &str = "Finding your server…";
/// The account's domain is not one this page's bridge relays, and other servers are off.
pub fn domain_not_served(domain: &str, served: &[String]) -> String {
    match served {
        [] => format!("This service does not serve {domain} accounts."),
        [one] => format!(
            "This service is for {one} accounts; {domain} is not served here. Use the web address your {domain} provider gives you."
        ),
        many => format!(
            "This service is for accounts of {}; {domain} is not served here. Use the web address your {domain} provider gives you.",
            many.join(", ")
        ),
    }
}
/// XEP-0156 found no usable WebSocket address for the account's domain.
pub fn discovery_failed(domain: &str, why: &str) -> String {
    format!("Cannot find the chat server of {domain}: {why}. Check the address, or ask your provider for its web address.")
}
pub const DISCOVERY_UNREACHABLE: &str =
    "it publishes no web connection address (XEP-0156) that this page can read";

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
pub const CONTACT_RENAME: &str = "Rename";
pub const CONTACT_RENAME_LABEL: &str = "Name for this contact";
pub const CONTACT_RENAME_SAVE: &str = "Save";
pub const CONTACT_RENAME_CANCEL: &str = "Cancel";
pub const CONTACT_AWAITING: &str = "Waiting for them to accept";
pub const CONTACT_BLOCK: &str = "Block";
pub const CONTACT_UNBLOCK: &str = "Unblock";
pub const CONTACT_BLOCKED: &str = "Blocked";
pub const REQUEST_BLOCK: &str = "Block";
/// Shown instead of the composer in a blocked conversation.
pub fn blocked_note(name: &str) -> String {
    format!("You blocked {name}: the server passes on nothing between you. Unblock to write to each other again.")
}
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

pub const STATUS_LABEL: &str = "Your status";
pub const STATUS_TITLE: &str = "Your status";
pub const STATUS_TEXT_LABEL: &str = "Status message (optional)";
pub const STATUS_TEXT_PLACEHOLDER: &str = "e.g. In a meeting until 3";
pub const STATUS_HINT: &str = "Your contacts see this. Do not disturb also keeps desktop \
     notifications quiet.";
pub const STATUS_SAVE: &str = "Save";
pub const AVATAR_HEADING: &str = "Your picture";
pub const AVATAR_CHOOSE: &str = "Choose a picture";
pub const AVATAR_REMOVE: &str = "Remove picture";
pub const AVATAR_HINT: &str = "Your contacts see it. It is cropped to a square and saved again \
     on this device before it leaves, which drops what the file says about where and when it \
     was taken.";
pub const AVATAR_UNUSABLE: &str =
    "That picture cannot be used: choose a PNG, JPEG, WebP or GIF image.";
pub const STATUS_CANCEL: &str = "Cancel";

pub const CHAT_EMPTY_TITLE: &str = "No conversation open";
pub const CHAT_EMPTY_HINT: &str = "Choose a contact to start chatting.";
pub const CHAT_BACK: &str = "Back to contacts";
pub const CHAT_INPUT_LABEL: &str = "Message";
pub const CHAT_INPUT_PLACEHOLDER: &str = "Write a message";
pub const CHAT_SEND: &str = "Send";
/// While the composer corrects our last message (opened with the Up arrow).
pub const CHAT_EDITING: &str = "Correcting your last message. Enter sends the correction.";
pub const CHAT_EDIT_CANCEL: &str = "Cancel";
pub const CHAT_SEND_CORRECTION: &str = "Correct";
pub const MESSAGE_EDIT: &str = "Edit";
/// In place of a message its sender retracted (XEP-0424).
pub const MESSAGE_RETRACTED: &str = "This message was deleted by its sender.";
pub const MESSAGE_RETRACTED_OWN: &str = "You deleted this message.";
pub const MESSAGE_EDIT_LABEL: &str = "Correct this message";
pub const MESSAGE_QUOTE: &str = "Quote";
pub const MESSAGE_QUOTE_LABEL: &str = "Quote this message in your reply";
pub const MESSAGE_DELETE: &str = "Delete";
pub const MESSAGE_DELETE_LABEL: &str = "Delete this message for everyone";
pub const DELETE_TITLE: &str = "Delete for everyone?";
pub const DELETE_TEXT: &str = "The message disappears here, on your other devices and in the \
     contact's apps that support deleting. Apps that do not may keep showing it, and whoever \
     has read it has read it.";
pub const DELETE_CONFIRM: &str = "Delete for everyone";
pub const DELETE_CANCEL: &str = "Keep it";
pub const CHAT_NO_MESSAGES: &str = "No messages yet. Say hello!";
pub const CHAT_TYPING: &str = "is typing…";
pub const CHAT_LOG_LABEL: &str = "Messages";
pub const HISTORY_LOAD: &str = "Load earlier messages";
pub const HISTORY_LOADING: &str = "Loading earlier messages…";
pub const HISTORY_START: &str = "Start of the conversation";
pub const LOCK_E2E: &str = "End-to-end encrypted";
pub const LOCK_E2E_HINT: &str =
    "Messages are encrypted on this device for the contact's devices and your own (OMEMO). \
     The server cannot read them.";
pub const LOCK_CHECKING: &str = "Checking encryption…";
pub const LOCK_CHECKING_HINT: &str =
    "Looking up the contact's encryption keys. Messages are sent encrypted.";
pub const LOCK_UNAVAILABLE: &str = "Not encrypted";
pub const LOCK_UNAVAILABLE_HINT: &str =
    "This contact's app does not publish OMEMO keys, so messages cannot be end-to-end \
     encrypted. You will be asked before anything is sent unencrypted.";
pub const MESSAGE_NOT_E2E: &str = "Not encrypted";
pub const DECRYPT_ERROR_PREFIX: &str = "This message could not be decrypted:";

pub const PLAINTEXT_TITLE: &str = "Send without encryption?";
pub const PLAINTEXT_CONFIRM: &str = "Send unencrypted";
pub const PLAINTEXT_CANCEL: &str = "Don't send";

pub const TRUST_OPEN: &str = "Security";
pub const TRUST_TITLE: &str = "Security and keys";
pub const TRUST_CLOSE: &str = "Close";
pub const TRUST_OWN_HEADING: &str = "This device";
pub const TRUST_OWN_HINT: &str =
    "Compare this fingerprint with what your contacts see for you, or let them scan the code.";
pub const TRUST_OWN_PENDING: &str = "Your keys are being published…";
pub const TRUST_QR_LABEL: &str = "QR code of your address and fingerprint";
pub const TRUST_DEVICE_ID: &str = "Device";
pub const TRUST_OWN_OTHERS: &str = "Your other devices";
pub const TRUST_NO_DEVICES: &str = "No OMEMO devices.";
pub const TRUST_UNKNOWN_KEY: &str = "Key not seen yet";
pub const TRUST_VERIFY: &str = "Verify";
pub const TRUST_DISTRUST: &str = "Distrust";
pub const TRUST_ACCEPT: &str = "Trust";
pub const TRUST_REVIEW: &str = "Review";
pub const NOTIFY_HEADING: &str = "Desktop notifications";
pub const NOTIFY_OFF: &str = "Off";
pub const NOTIFY_PRIVATE: &str = "On, without message text";
pub const NOTIFY_WITH_TEXT: &str = "On, with message text";
pub const NOTIFY_BLOCKED: &str =
    "Blocked by the browser. Allow notifications for this site in the browser's settings.";
pub const NOTIFY_ENABLE: &str = "Turn on";
pub const NOTIFY_DISABLE: &str = "Turn off";
pub const NOTIFY_SHOW_TEXT: &str =
    "Show the message text in notifications (others near your screen can read it)";
pub const NOTIFICATION_PRIVATE: &str = "Open Sotto to read it.";
pub const NOTIFICATION_UNDECRYPTABLE: &str = "A message that could not be decrypted.";

/// A desktop notification's title.
pub fn notification_title(from: &str) -> String {
    format!("New message from {from}")
}

pub const TRUST_NO_CHAT: &str = "Open a conversation to see that contact's devices here.";

/// The heading of a contact's devices.
pub fn contact_devices(name: &str) -> String {
    format!("Devices of {name}")
}

/// The word for a trust level.
pub fn trust(t: Option<Trust>) -> &'static str {
    match t {
        Some(Trust::Blind) => "Trusted (not verified)",
        Some(Trust::Verified) => "Verified",
        Some(Trust::Undecided) => "New: needs your decision",
        Some(Trust::Distrusted) => "Distrusted",
        None => "Unknown",
    }
}

/// The warning for a new, unverified device of a contact whose devices we verified.
pub fn new_device_warning(who: &str) -> String {
    format!(
        "{who} has a new device that you have not verified. Nothing is encrypted to it \
         until you decide."
    )
}

/// The question before sending unencrypted.
pub fn plaintext_question(who: &str) -> String {
    format!(
        "{who} has no device that can receive end-to-end encrypted messages (OMEMO). If you send \
         this message anyway, the servers on the way can read it."
    )
}

/// Why a message could not be decrypted, in words.
pub fn decrypt_failure(reason: &DecryptFailure) -> String {
    match reason {
        DecryptFailure::NotForThisDevice => {
            "it was not encrypted for this device (sent before this device existed, or the \
             sender does not trust it)"
                .into()
        }
        DecryptFailure::NoSession => {
            "this device has no session with the sender's device; a new one is being set up".into()
        }
        other => other.to_string(),
    }
}

/// Why a message could not be sent encrypted, in words.
pub fn send_error(e: &SendError) -> String {
    match e {
        SendError::NoUsableDevices(jid) => format!(
            "A message was not sent: none of {jid}'s devices is trusted. Open Security to decide."
        ),
        other => format!("A message was not sent: {other}."),
    }
}

/// Our keys could not be published.
pub fn publish_failed(condition: &str) -> String {
    format!(
        "Your encryption keys could not be published ({condition}); contacts cannot write to \
         you encrypted."
    )
}
pub const YOU: &str = "You";
pub const STATE_SENDING: &str = "Sending";
pub const STATE_SENT: &str = "Sent";
pub const STATE_DELIVERED: &str = "Delivered";
pub const STATE_FAILED: &str = "Not delivered";
/// Beside a message its sender corrected (XEP-0308).
pub const MESSAGE_EDITED: &str = "edited";
pub const MESSAGE_EDITED_HINT: &str = "The sender corrected this message; this is the latest text.";
/// Headings over a conversation's days (older days show their date in the reader's locale).
pub const TODAY: &str = "Today";
/// Above the messages that were unread when the conversation was opened.
pub const UNREAD_DIVIDER: &str = "New messages";
pub const YESTERDAY: &str = "Yesterday";
pub const DISMISS: &str = "Dismiss";

pub const ERROR_UNREACHABLE: &str =
    "The server cannot be reached. Check your connection and try again.";
pub const ERROR_NOT_XMPP: &str = "The server address does not lead to a chat server.";
pub const ERROR_NOT_ONLINE: &str = "You are offline; try again once the connection is back.";
pub const ERROR_QUEUE_FULL: &str = "Too many unsent messages; wait for the connection to catch up.";
pub const ERROR_BAD_BODY: &str = "That message is empty or too long.";
pub const ERROR_BAD_NAME: &str = "That name is too long or has line breaks.";
pub const ERROR_NOT_IN_ROSTER: &str = "Only a contact in your list can be renamed.";
pub const ERROR_BAD_ID: &str = "That message cannot be deleted: it has no usable id.";

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

/// The page's title: the app's name, after the number of unread messages if there are any.
pub fn page_title(unread: u32) -> String {
    if unread == 0 {
        APP_NAME.to_owned()
    } else {
        format!("({unread}) {APP_NAME}")
    }
}

/// Publishing our picture failed.
pub fn avatar_failed(condition: &str) -> String {
    format!("Your picture could not be published ({condition}).")
}

/// A command that could not be carried out.
pub fn command_error(e: &sotto_session::CommandError) -> String {
    match e {
        sotto_session::CommandError::NotOnline => ERROR_NOT_ONLINE.into(),
        sotto_session::CommandError::QueueFull => ERROR_QUEUE_FULL.into(),
        sotto_session::CommandError::BadBody => ERROR_BAD_BODY.into(),
        sotto_session::CommandError::BadId => ERROR_BAD_ID.into(),
        sotto_session::CommandError::BadName => ERROR_BAD_NAME.into(),
        sotto_session::CommandError::NotInRoster => ERROR_NOT_IN_ROSTER.into(),
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

/// The live-region line for a message that could not be decrypted.
pub fn new_undecryptable(from: &str) -> String {
    format!("New message from {from} that could not be decrypted")
}

/// A contact's unread count, for screen readers.
pub fn unread(n: u32) -> String {
    if n == 1 {
        "1 unread message".into()
    } else {
        format!("{n} unread messages")
    }
}

/// The tooltip of a link in a message.
pub fn link_title(url: &str) -> String {
    format!("Opens {url} in a new tab")
}
/// Shown after a link whose host has non-ASCII letters (which can imitate another name).
pub fn link_ascii_host(ascii: &str) -> String {
    format!(" (really {ascii})")
}
