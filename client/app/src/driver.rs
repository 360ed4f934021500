//! The browser driver: the twin of sotto-session's tokio driver. It owns the [`Session`], the
//! OMEMO manager beside it ([`Omemo`], the one place where this device's keys, sessions and
//! trust live), a `WebSocket` (subprotocol `xmpp`) and the timers, and turns what happens to
//! them into [`Notice`]s for the store. All protocol decisions stay in the session and in
//! `sotto_session::omemo`.
//!
//! Browser callbacks never touch the driver directly: they send an [`Input`] through a yew
//! callback, and the app hands it to [`Driver::handle`]. So there is no shared mutable state
//! and no re-entrancy, and each input is followed by the session's polling order
//! (transmit, events, timer), with every session event passed through OMEMO first.

use gloo_timers::callback::Timeout;
use sotto_session::avatar::{AvatarEvent, Avatars};
use sotto_session::omemo::temporary::{
    KdfParams, Role, TemporaryDevices, TemporaryEvent, DEFAULT_RETIRE_TIMEOUT,
};
use sotto_session::omemo::{Omemo, OmemoEvent};
use sotto_session::{
    Config, Event, Instant, LoginError, Session, StreamError, WEBSOCKET_SUBPROTOCOL,
};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, WebSocket};
use yew::Callback;

use crate::store::Connection;

/// First wait before reconnecting; doubled per failed attempt up to [`RECONNECT_MAX_MS`].
pub const RECONNECT_FIRST_MS: u32 = 1_000;
/// Longest wait between reconnection attempts.
pub const RECONNECT_MAX_MS: u32 = 30_000;
/// How long logging out waits for the server's `<close/>` before dropping the socket.
pub const CLOSE_GRACE_MS: u32 = 2_000;

/// Something that happened to the socket or a timer. `socket` is the generation of the socket
/// it concerns, so late callbacks of a replaced socket are ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The WebSocket opened.
    Opened(u32),
    /// A text message arrived.
    Frame(u32, String),
    /// The WebSocket closed or failed.
    Closed(u32),
    /// The session's timer fired.
    Timer(u32),
    /// Time to try connecting again.
    Retry,
    /// The logout grace period is over.
    CloseNow,
}

/// Why a session ended for good (the app returns to the login screen and says why).
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Logging in failed.
    Login(LoginError),
    /// The server ended the stream.
    Stream(StreamError),
    /// The service could not be reached before we were ever online.
    Unreachable,
    /// The service does not speak XMPP over WebSocket.
    NotXmpp,
}

/// What the driver tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A session event, for the store.
    Event(Box<Event>),
    /// An OMEMO event (decrypted messages, failures, devices, trust), for the store.
    Omemo(Box<OmemoEvent>),
    /// The lifecycle of this device (recorded, clean-up of dead kiosk devices, retired).
    Device(TemporaryEvent),
    /// A contact's picture changed (XEP-0084).
    Avatar(AvatarEvent),
    /// The connection state changed.
    Connection(Connection),
    /// The session is over.
    Ended(Ended),
}

struct Socket {
    ws: WebSocket,
    opened: bool,
    // Kept alive as long as the socket; dropped (and detached) with it.
    _on_open: Closure<dyn FnMut(web_sys::Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(web_sys::Event)>,
}

impl Socket {
    fn open(url: &str, generation: u32, notify: &Callback<Input>) -> Option<Self> {
        let ws = WebSocket::new_with_str(url, WEBSOCKET_SUBPROTOCOL).ok()?;
        let n = notify.clone();
        let on_open =
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| n.emit(Input::Opened(generation)));
        let n = notify.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            // RFC 7395 uses text messages only; anything else is ignored.
            if let Some(text) = e.data().as_string() {
                n.emit(Input::Frame(generation, text));
            }
        });
        let n = notify.clone();
        let on_close =
            Closure::<dyn FnMut(web_sys::Event)>::new(move |_| n.emit(Input::Closed(generation)));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // `error` is always followed by `close`; one handler is enough.
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Some(Self {
            ws,
            opened: false,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// One signed-in (or signing-in) session and its transport.
pub struct Driver {
    session: Session,
    omemo: Omemo,
    /// Records a kiosk device before it is published and retires it at the end; on a
    /// personal device, removes kiosk devices of this account that never retired.
    lifecycle: TemporaryDevices,
    /// Contacts' pictures.
    avatars: Avatars,
    /// Signing out waits for this device to leave the device list first.
    retiring: bool,
    url: String,
    notify: Callback<Input>,
    socket: Option<Socket>,
    generation: u32,
    timer: Option<(Instant, Timeout)>,
    retry: Option<Timeout>,
    attempts: u32,
    ever_online: bool,
    logging_out: bool,
    /// A fatal error seen in this round of events.
    ending: Option<Ended>,
    over: bool,
}

/// Milliseconds on the page's monotonic clock.
pub fn now() -> Instant {
    let ms = web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_default();
    // performance.now() is non-negative and far below 2^53.
    Instant::from_millis(ms.max(0.0) as u64)
}

impl Driver {
    /// Starts signing in with `omemo` (a new device, or one restored from personal storage)
    /// in `role`: opens the WebSocket to `url`.
    pub fn start(
        config: Config,
        mut omemo: Omemo,
        role: Role,
        url: String,
        notify: Callback<Input>,
    ) -> (Self, Vec<Notice>) {
        let mut rng = rand_core::OsRng;
        // Scroll-back: encrypted archive results are decrypted where this device can.
        omemo.set_archive_decryption(true);
        let lifecycle = TemporaryDevices::new(
            role,
            &mut omemo,
            &config.password,
            KdfParams::BROWSER,
            &mut rng,
        );
        let mut session = Session::new(config, &mut rng);
        omemo.attach(&mut session);
        let avatars = Avatars::new();
        avatars.attach(&mut session);
        let mut driver = Self {
            session,
            omemo,
            lifecycle,
            avatars,
            retiring: false,
            url,
            notify,
            socket: None,
            generation: 0,
            timer: None,
            retry: None,
            attempts: 0,
            ever_online: false,
            logging_out: false,
            ending: None,
            over: false,
        };
        let mut out = vec![Notice::Connection(Connection::Connecting)];
        if !driver.connect() {
            driver.over = true;
            out.push(Notice::Ended(Ended::Unreachable));
        }
        (driver, out)
    }

    fn connect(&mut self) -> bool {
        self.generation = self.generation.wrapping_add(1);
        self.socket = Socket::open(&self.url, self.generation, &self.notify);
        self.socket.is_some()
    }

    /// Whether the session is over (the app may drop the driver).
    pub fn is_over(&self) -> bool {
        self.over
    }

    /// Runs a command on the session, then sends what it queued.
    pub fn command<R>(&mut self, f: impl FnOnce(&mut Session) -> R) -> (R, Vec<Notice>) {
        let result = f(&mut self.session);
        let notices = self.pump();
        (result, notices)
    }

    /// Runs a command of the avatar layer (publishing our picture), then sends what it queued.
    pub fn command_avatars<R>(
        &mut self,
        f: impl FnOnce(&mut Avatars, &mut Session) -> R,
    ) -> (R, Vec<Notice>) {
        let result = f(&mut self.avatars, &mut self.session);
        let notices = self.pump();
        (result, notices)
    }

    /// Runs a command that needs OMEMO and the session, then sends what it queued.
    pub fn command_e2e<R>(
        &mut self,
        f: impl FnOnce(&mut Omemo, &mut Session) -> R,
    ) -> (R, Vec<Notice>) {
        let result = f(&mut self.omemo, &mut self.session);
        let notices = self.pump();
        (result, notices)
    }

    /// This device's OMEMO manager (devices, fingerprints, trust).
    pub fn omemo(&self) -> &Omemo {
        &self.omemo
    }

    /// Changes OMEMO state that needs no network (trust decisions).
    pub fn omemo_mut(&mut self) -> &mut Omemo {
        &mut self.omemo
    }

    /// The session (to read the roster for storage).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Signs out. With `retire`, this device first leaves the account's device list and its
    /// bundle is deleted (a kiosk device at the end of its session, or a personal device being
    /// forgotten) — bounded by [`DEFAULT_RETIRE_TIMEOUT`] — then the session closes.
    pub fn sign_out(&mut self, retire: bool) -> Vec<Notice> {
        if retire && self.session.is_online() && !self.retiring {
            self.retiring = true;
            self.lifecycle.retire(
                &mut self.session,
                &mut self.omemo,
                now(),
                DEFAULT_RETIRE_TIMEOUT,
            );
            // If retiring ends at once (it cannot start), the session is closing already.
            return self.pump();
        }
        self.logout();
        Vec::new()
    }

    /// Logs out: `<close/>`, then the socket closes when the server answers (or after a grace
    /// period).
    fn logout(&mut self) {
        self.logging_out = true;
        self.retry = None;
        self.session.close();
        let _ = self.pump();
        if self.socket.as_ref().is_some_and(|s| s.opened) {
            let notify = self.notify.clone();
            self.retry = Some(Timeout::new(CLOSE_GRACE_MS, move || {
                notify.emit(Input::CloseNow)
            }));
        } else {
            self.shut();
        }
    }

    fn shut(&mut self) {
        self.socket = None;
        self.timer = None;
        self.retry = None;
        self.over = true;
    }

    /// Feeds one input to the session and reports what follows.
    pub fn handle(&mut self, input: Input) -> Vec<Notice> {
        if self.over {
            return Vec::new();
        }
        let current = |socket: u32| socket == self.generation && self.socket.is_some();
        let now = now();
        let mut out = Vec::new();
        match input {
            Input::Opened(socket) if current(socket) => {
                let protocol = self.socket.as_ref().map(|s| s.ws.protocol());
                if protocol.as_deref() != Some(WEBSOCKET_SUBPROTOCOL) {
                    self.socket = None;
                    return self.end(Ended::NotXmpp);
                }
                if let Some(s) = self.socket.as_mut() {
                    s.opened = true;
                }
                self.session.handle_connected(now);
            }
            Input::Frame(socket, text) if current(socket) => {
                self.session.handle_frame(&text, now);
            }
            Input::Closed(socket) if current(socket) => {
                let opened = self.socket.take().is_some_and(|s| s.opened);
                if self.logging_out {
                    self.shut();
                    return Vec::new();
                }
                if opened {
                    self.session.handle_disconnected(now);
                } else if self.ever_online {
                    // A reconnection attempt that did not even open: wait and try again.
                    out.push(Notice::Connection(Connection::Reconnecting));
                    self.schedule_retry();
                } else {
                    return self.end(Ended::Unreachable);
                }
            }
            Input::Timer(socket) if socket == self.generation => {
                self.timer = None;
                self.session.handle_timeout(now);
                self.lifecycle.handle_timeout(now);
            }
            Input::Retry if !self.logging_out => {
                self.retry = None;
                if !self.connect() {
                    self.schedule_retry();
                }
            }
            Input::CloseNow => {
                self.shut();
                return Vec::new();
            }
            _ => return Vec::new(),
        }
        out.extend(self.pump());
        out
    }

    fn end(&mut self, why: Ended) -> Vec<Notice> {
        self.shut();
        vec![Notice::Connection(Connection::Offline), Notice::Ended(why)]
    }

    fn schedule_retry(&mut self) {
        let base = RECONNECT_FIRST_MS
            .saturating_mul(1u32 << self.attempts.min(5))
            .min(RECONNECT_MAX_MS);
        // Up to a quarter more at random, so many clients do not return at the same instant.
        let jitter = (js_sys::Math::random() * f64::from(base / 4)) as u32;
        self.attempts = self.attempts.saturating_add(1);
        let notify = self.notify.clone();
        self.retry = Some(Timeout::new(base + jitter, move || {
            notify.emit(Input::Retry)
        }));
    }

    /// The session's polling order: transmit, events, timer.
    fn pump(&mut self) -> Vec<Notice> {
        let mut out = Vec::new();
        self.transmit();
        let mut disconnected = false;
        loop {
            // The device lifecycle's and OMEMO's own events first (those that commands or the
            // last event raised).
            while let Some(event) = self.lifecycle.poll_event() {
                let done = matches!(
                    event,
                    TemporaryEvent::Retired | TemporaryEvent::RetireFailed { .. }
                );
                out.push(Notice::Device(event));
                if done && self.retiring {
                    self.retiring = false;
                    self.logout();
                    return out;
                }
            }
            while let Some(event) = self.omemo.poll_event() {
                out.push(Notice::Omemo(Box::new(event)));
            }
            while let Some(event) = self.avatars.poll_event() {
                out.push(Notice::Avatar(event));
            }
            let Some(event) = self.session.poll_event() else {
                break;
            };
            // The lifecycle takes the answers to its requests; OMEMO takes what is its own
            // (PEP results, encrypted messages), the avatar layer its notifications and
            // fetches. Each may queue stanzas; everything else comes back.
            let event = self
                .lifecycle
                .handle_event(&mut self.session, &mut self.omemo, event)
                .and_then(|event| self.omemo.handle_event(&mut self.session, event))
                .and_then(|event| self.avatars.handle_event(&mut self.session, event));
            self.transmit();
            let Some(event) = event else {
                continue;
            };
            match &event {
                Event::Online { .. } => {
                    self.ever_online = true;
                    self.attempts = 0;
                    out.push(Notice::Connection(Connection::Online));
                }
                Event::LoginFailed(e) => {
                    self.ending.get_or_insert(Ended::Login(e.clone()));
                }
                Event::StreamError(e) if !self.ever_online || is_fatal(&e.condition) => {
                    self.ending.get_or_insert(Ended::Stream(e.clone()));
                }
                Event::Disconnected { .. } => disconnected = true,
                _ => {}
            }
            out.push(Notice::Event(Box::new(event)));
            // Events may queue more to send (none do today, but the order is the contract).
            self.transmit();
        }
        if self.logging_out {
            if disconnected || !self.session.is_connected() {
                self.shut();
            }
            return out;
        }
        if let Some(why) = self.ending.take() {
            self.transmit();
            out.extend(self.end(why));
            return out;
        }
        if disconnected && !self.session.is_connected() {
            // Close our side (the session has said all it will), then try again.
            self.socket = None;
            if self.ever_online {
                out.push(Notice::Connection(Connection::Reconnecting));
                self.schedule_retry();
            } else {
                out.extend(self.end(Ended::Unreachable));
                return out;
            }
        }
        self.arm_timer();
        out
    }

    fn transmit(&mut self) {
        while let Some(frame) = self.session.poll_transmit() {
            let Some(socket) = self.socket.as_ref().filter(|s| s.opened) else {
                // Nothing can be sent without a socket; the session re-sends after resuming.
                continue;
            };
            if socket.ws.send_with_str(&frame).is_err() {
                // The close event follows and reports the loss.
                break;
            }
        }
    }

    fn arm_timer(&mut self) {
        let at = match (self.session.poll_timeout(), self.lifecycle.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(at) = at else {
            self.timer = None;
            return;
        };
        if self.timer.as_ref().is_some_and(|(armed, _)| *armed == at) {
            return;
        }
        let delay = at.saturating_duration_since(now()).as_millis();
        let delay = u32::try_from(delay).unwrap_or(u32::MAX).saturating_add(1);
        let notify = self.notify.clone();
        let socket = self.generation;
        self.timer = Some((
            at,
            Timeout::new(delay, move || notify.emit(Input::Timer(socket))),
        ));
    }
}

/// Stream errors after which reconnecting would be wrong.
fn is_fatal(condition: &str) -> bool {
    matches!(
        condition,
        "conflict" | "see-other-uri" | "host-unknown" | "not-authorized" | "policy-violation"
    )
}
