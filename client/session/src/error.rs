//! Errors, kept apart by who is to blame, and the one place they become user-facing words.

use crate::scram::ScramError;

/// Why logging in failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The server rejected the credentials.
    #[error("wrong address or password")]
    WrongPassword,
    /// The account exists but may not log in.
    #[error("this account is disabled")]
    AccountDisabled,
    /// The server offers no mechanism we accept (PLAIN is refused unless explicitly allowed).
    #[error("the server offers no sign-in method Sotto considers safe ({offered})")]
    NoSupportedMechanism {
        /// What the server offered, comma-separated.
        offered: String,
    },
    /// SCRAM failed on our side (bad server proof, weak parameters…).
    #[error("{0}")]
    Scram(#[from] ScramError),
    /// Other SASL failure reported by the server.
    #[error("the server refused the sign-in ({0})")]
    Sasl(String),
    /// Resource binding failed.
    #[error("the server did not let this device sign in ({0})")]
    Bind(String),
    /// The server did not finish the login in time.
    #[error("the server did not answer in time")]
    Timeout,
}

/// A stream error from the server (RFC 6120 §4.9), or one we raise for protocol violations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream error: {condition}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
pub struct StreamError {
    /// The defined condition, e.g. `host-unknown`.
    pub condition: String,
    /// The human-readable text, if the server sent one.
    pub text: Option<String>,
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The session is not online.
    #[error("not connected")]
    NotOnline,
    /// The outgoing queue is full; try again after it drains.
    #[error("too many unsent messages")]
    QueueFull,
    /// A message body is empty or too long.
    #[error("the message is empty or too long")]
    BadBody,
    /// A message id is empty or too long.
    #[error("no such message")]
    BadId,
    /// A contact's name is too long or has control characters.
    #[error("that name is too long or has control characters")]
    BadName,
    /// The address is not in the roster.
    #[error("not a contact")]
    NotInRoster,
}

impl StreamError {
    /// Words for the user.
    pub fn user_message(&self) -> String {
        match self.condition.as_str() {
            "host-unknown" => "This server does not serve that domain.".into(),
            "remote-connection-failed" => "The chat server cannot be reached right now.".into(),
            "conflict" => "You signed in from another place with the same device name.".into(),
            "connection-timeout" => "The connection timed out.".into(),
            "policy-violation" => "The server refused something this app sent.".into(),
            "system-shutdown" => "The server is shutting down.".into(),
            other => format!("The connection ended ({other})."),
        }
    }
}
