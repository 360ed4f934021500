//! The Sotto XMPP client core, sans-IO.
//!
//! What this crate does: the protocol logic of an XMPP client speaking RFC 7395 (XMPP over
//! WebSocket). Input is bytes and time; output is bytes to send, timers to arm and typed events.
//!
//! What it does not do: open sockets, read clocks, touch browser APIs or storage. The yew app and
//! the native driver are thin shells around it.
//!
//! Status: service-address handling (which WebSocket URLs a client may use, and which redirects
//! it must refuse) is implemented; the stream, SASL, roster, presence and message machinery land
//! with the session milestone issue.
//!
//! ```
//! use sotto_session::service::ServiceUrl;
//! let url = ServiceUrl::parse("wss://chat.example.org/xmpp-websocket")?;
//! assert!(url.is_secure());
//! # Ok::<(), sotto_session::service::ServiceUrlError>(())
//! ```
#![forbid(unsafe_code)]
// Untrusted bytes reach this crate: no indexing that could panic (tests excepted, clippy.toml).
#![deny(clippy::indexing_slicing)]
#![deny(missing_docs)]

pub mod avatar;
pub mod discovery;
pub mod document;
pub mod error;
pub mod event;
pub mod jid;
#[cfg(feature = "native")]
pub mod native;
mod ns;
pub mod omemo;
pub mod scram;
pub mod service;
mod session;
pub mod time;

pub use crate::jid::{BareJid, FullJid, Jid};
pub use error::{CommandError, LoginError, StreamError};
pub use event::{Availability, ChatMessage, ChatState, Direction, Event, RosterItem, Subscription};
pub use session::{Config, PepItem, RequestId, Session};
pub use time::Instant;

/// The WebSocket subprotocol that RFC 7395 §3.1 requires on every XMPP WebSocket.
pub const WEBSOCKET_SUBPROTOCOL: &str = "xmpp";

/// The path at which Sotto's bridge (and Prosody's mod_websocket) accept XMPP WebSockets.
pub const DEFAULT_WEBSOCKET_PATH: &str = "/xmpp-websocket";
