//! The Sotto web app.
//!
//! What this crate does: the user interface, rendered with yew, over a state store
//! ([`store`]) that a browser driver ([`driver`]: WebSocket + timers around
//! `sotto_session::Session`) fills from the session's events. Components never touch XML,
//! keys or the network: they read the store and send [`Action`]s up to the root component.
//!
//! Every chat message is end-to-end encrypted with OMEMO (`sotto_session::omemo`, owned by the
//! driver); plaintext goes out only after the user confirms it for a contact without OMEMO.
//!
//! Two modes, chosen at login. On "my device" ([`persist`]) the OMEMO device, the roster and the
//! history are kept in IndexedDB, sealed with a data key that the account password unwraps, so a
//! reload restores the same device. On "a public computer" ([`kiosk`]) nothing is written
//! anywhere: a fresh OMEMO device is recorded (sealed) in the account, published, and retired at
//! sign-out; the session is wiped at sign-out, after an idle timeout and when the page goes.
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod chat;
mod contacts;
mod dialog;
pub mod driver;
mod idb;
mod kiosk;
mod links;
mod login;
mod messenger;
pub mod persist;
mod status;
mod steps;
pub mod store;
mod styling;
mod text;
mod time;
mod trust;

use sotto_session::{Availability, BareJid};
use yew::html::Scope;
use yew::prelude::*;

use crate::driver::Input;
use crate::login::Credentials;
use crate::persist::{KeepError, Keeper, Restored};
use crate::store::Connection;
use wasm_split_helpers::SplitLoaderError;

/// Messages per archive page when scrolling back.
pub const HISTORY_PAGE: u32 = 50;

/// The version shown on every screen, so users and testers can tell which build they run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the screens ask the root to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Open a conversation.
    Open(BareJid),
    /// Back to the contact list (phone layout).
    Back,
    /// Send a message in the open conversation.
    Send(String),
    /// Correct our message `replaces` in the open conversation with `body` (XEP-0308).
    Correct {
        /// The original id of the message corrected.
        replaces: String,
        /// Its new text.
        body: String,
    },
    /// Delete our message with this (original) id in the open conversation for everyone
    /// (XEP-0424), after the user confirmed it.
    Retract(String),
    /// Publish this picture as ours (a JPEG the app made from the user's image).
    PublishAvatar {
        /// The JPEG.
        data: Vec<u8>,
        /// Its size in pixels.
        width: u32,
        /// Its height.
        height: u32,
    },
    /// Take our picture down.
    RemoveAvatar,
    /// Something went wrong before a command could be sent (e.g. a picture that cannot be
    /// read): shown as the notice.
    Notice(String),
    /// Give a contact the name we know them by (empty: none).
    Rename(BareJid, String),
    /// Set our own status, as contacts see it.
    SetStatus {
        /// How available we are.
        availability: Availability,
        /// A line of text (empty for none).
        text: String,
    },
    /// Load the open conversation's previous page from the server's archive.
    LoadEarlier,
    /// We started (`true`) or stopped typing in the open conversation.
    Typing(bool),
    /// Add a contact and ask to see their presence.
    Add(BareJid),
    /// Accept a contact request (and ask for theirs in return).
    Approve(BareJid),
    /// Decline a contact request.
    Deny(BareJid),
    /// Remove a contact.
    Remove(BareJid),
    /// Block (`true`) or unblock someone (XEP-0191).
    Block(BareJid, bool),
    /// Hide the notice.
    DismissNotice,
    /// Send the message the plaintext question is about, unencrypted.
    ConfirmPlaintext,
    /// Do not send it.
    CancelPlaintext,
    /// Show the trust screen.
    OpenTrust,
    /// Close it.
    CloseTrust,
    /// Mark a device as verified.
    Verify(BareJid, u32),
    /// Mark a device as distrusted.
    Distrust(BareJid, u32),
    /// Trust a new device without verifying it.
    AcceptDevice(BareJid, u32),
    /// Turn desktop notifications on (asks the browser for permission).
    EnableNotifications,
    /// The browser answered the permission request.
    NotificationPermission(bool),
    /// Show (`true`) or hide the message text in notifications.
    NotificationText(bool),
    /// Turn desktop notifications off.
    DisableNotifications,
    /// Sign out.
    Logout,
    /// Still here: restart the idle countdown (public-computer mode).
    StayActive,
    /// Delete what this device saved, remove it from the account's devices, sign out.
    ForgetDevice,
}

/// The root component's messages.
pub enum Msg {
    /// The login form was submitted.
    Login(Credentials),
    /// Something happened to the driver of session number `session`.
    Net {
        /// Which session (inputs of an older one are ignored).
        session: u32,
        /// What happened.
        input: Input,
    },
    /// A screen asked for something.
    Action(Action),
    /// Personal storage was opened (or found empty, or refused the password).
    Unlocked {
        /// Which sign-in.
        session: u32,
        /// What the user entered.
        credentials: Credentials,
        /// What was saved.
        result: Result<Option<(Keeper, Restored)>, KeepError>,
    },
    /// Personal storage was created after the first successful sign-in on this device.
    Created {
        /// Which sign-in.
        session: u32,
        /// The store.
        result: Result<Keeper, KeepError>,
    },
    /// A save finished.
    Saved(Result<(), KeepError>),
    /// Time to write the conversations (personal mode).
    SaveHistory,
    /// The conversations were written.
    HistorySaved(Result<(), KeepError>),
    /// Delete what was saved for this account (offered with a storage error at login).
    ForgetSaved(BareJid),
    /// The login form is being used: fetch the messenger's code now, so it is there when the
    /// form is submitted.
    Preload,
    /// The messenger's code arrived (or could not be fetched).
    Loaded(Result<Box<dyn Loaded>, SplitLoaderError>),
    /// Sign-in attempt number `.0` has waited [`LOAD_TIMEOUT_MS`] for the messenger's code.
    LoadTimedOut(u32),
    /// Saved data was deleted.
    Forgotten(Result<(), KeepError>),
    /// The idle watch's second.
    Tick,
    /// The page is going away (`pagehide`).
    PageHide,
}

/// How long a submitted login form waits for the messenger's code before it says so (a fetch
/// that hangs, as behind a captive portal, would otherwise leave "Signing in…" on screen for
/// minutes). The fetch itself goes on: if it completes later, the next submission uses it.
pub const LOAD_TIMEOUT_MS: u32 = 15_000;

/// What the shell asks of the messenger once its code is loaded.
pub trait Loaded {
    /// Handles one of the root component's messages; `true` to render again.
    fn update(&mut self, msg: Msg) -> bool;
    /// The whole page.
    fn view(&self) -> Html;
}

/// What the login screen shows.
pub(crate) struct LoginScreen<'a> {
    busy: bool,
    unlocking: bool,
    offer_forget: Option<BareJid>,
    ask_old_password: bool,
    error: Option<String>,
    /// The page was loaded after a public-computer session ended.
    after_kiosk: bool,
    connection: Connection,
    link: &'a Scope<App>,
}

/// The login screen, drawn by the shell until the messenger is loaded and by the messenger
/// after that (its errors, signing out).
pub(crate) fn login_screen(screen: LoginScreen<'_>) -> Html {
    let LoginScreen {
        busy,
        unlocking,
        offer_forget,
        ask_old_password,
        error,
        after_kiosk,
        connection,
        link,
    } = screen;
    let on_submit = link.callback(Msg::Login);
    let on_forget = link.callback(Msg::ForgetSaved);
    // Typing or pointing in the form means a sign-in is coming: fetch the messenger meanwhile.
    html! {
        <div class="shell" oninput={link.callback(|_: InputEvent| Msg::Preload)}
            onpointerdown={link.callback(|_: PointerEvent| Msg::Preload)}
            onkeydown={link.callback(|_: KeyboardEvent| Msg::Preload)}>
            <header class="brand">
                <h1>{ text::APP_NAME }</h1>
                <p class="tagline">{ text::TAGLINE }</p>
            </header>
            <login::Login {busy} {unlocking} {offer_forget} {on_forget} {ask_old_password} {error} {after_kiosk} {on_submit} />
            <footer class="footer">
                <span class="connection-state" data-state={connection.label()}
                    data-testid="connection-state" role="status">{ connection.label() }</span>
                <span data-testid="app-version" class="version">{ format!("{} {VERSION}", text::VERSION_PREFIX) }</span>
            </footer>
        </div>
    }
}

/// The root component. Until the login form is used it is only the login screen; everything
/// else (sign-in, storage, the session, the screens after sign-in) is the [`messenger`], whose
/// code the browser fetches as a separate wasm module when the form is first used or
/// submitted, so a first visit downloads only what the login screen needs.
pub struct App {
    messenger: Option<Box<dyn Loaded>>,
    /// The credentials submitted while the messenger was still on its way.
    waiting: Option<Credentials>,
    /// Counts submissions, so that a late timeout of an earlier one is ignored.
    attempt: u32,
    /// A load of the messenger is under way (one at a time: a submission after a timeout
    /// waits for the same load instead of making a second messenger).
    loading: bool,
    load_timer: Option<gloo_timers::callback::Timeout>,
    preloading: bool,
    login_error: Option<String>,
    /// This page was loaded by a public-computer session that ended (sign-out, idle timeout).
    after_kiosk: bool,
    /// `pagehide` (handed to the messenger: it saves or wipes) and `pageshow` (a page restored
    /// from the back-forward cache is reloaded, login screen included: what someone typed and
    /// left must not come back with "back"), from the first load on.
    _page: [wasm_bindgen::closure::Closure<dyn FnMut(web_sys::Event)>; 2],
}

impl Component for App {
    type Message = Msg;
    type Properties = ();

    fn create(ctx: &Context<Self>) -> Self {
        let login_error = kiosk::take_leave_reason().map(|reason| {
            if reason == kiosk::REASON_IDLE {
                text::SIGNED_OUT_IDLE.to_owned()
            } else {
                text::SIGNED_OUT_WIPED.to_owned()
            }
        });
        Self {
            messenger: None,
            waiting: None,
            attempt: 0,
            loading: false,
            load_timer: None,
            preloading: false,
            after_kiosk: login_error.is_some(),
            login_error,
            _page: kiosk::watch_page(ctx.link().callback(|()| Msg::PageHide)),
        }
    }

    fn update(&mut self, ctx: &Context<Self>, msg: Msg) -> bool {
        if let Some(messenger) = self.messenger.as_mut() {
            return messenger.update(msg);
        }
        match msg {
            Msg::Preload => {
                if !self.preloading {
                    self.preloading = true;
                    // A failure here is reported by the load at submission, which retries.
                    wasm_bindgen_futures::spawn_local(async {
                        let _ = lazy::preload_messenger().await;
                    });
                }
                false
            }
            Msg::Login(credentials) => {
                if self.waiting.is_some() {
                    return false;
                }
                self.waiting = Some(credentials);
                self.login_error = None;
                self.attempt = self.attempt.wrapping_add(1);
                let (link, attempt) = (ctx.link().clone(), self.attempt);
                self.load_timer = Some(gloo_timers::callback::Timeout::new(
                    LOAD_TIMEOUT_MS,
                    move || link.send_message(Msg::LoadTimedOut(attempt)),
                ));
                if !self.loading {
                    self.loading = true;
                    let link = ctx.link().clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let loaded = lazy::messenger(link.clone()).await;
                        link.send_message(Msg::Loaded(loaded));
                    });
                }
                true
            }
            Msg::LoadTimedOut(attempt) => {
                if attempt != self.attempt || self.waiting.is_none() {
                    return false;
                }
                self.waiting = None;
                self.load_timer = None;
                self.login_error = Some(text::LOAD_FAILED.to_owned());
                true
            }
            Msg::Loaded(Ok(mut messenger)) => {
                self.loading = false;
                self.load_timer = None;
                if let Some(credentials) = self.waiting.take() {
                    messenger.update(Msg::Login(credentials));
                }
                self.messenger = Some(messenger);
                true
            }
            Msg::Loaded(Err(_)) => {
                self.loading = false;
                self.load_timer = None;
                self.waiting = None;
                self.preloading = false;
                self.login_error = Some(text::LOAD_FAILED.to_owned());
                true
            }
            // Nothing else happens before there is a messenger.
            _ => false,
        }
    }

    fn view(&self, ctx: &Context<Self>) -> Html {
        if let Some(messenger) = self.messenger.as_ref() {
            return messenger.view();
        }
        let busy = self.waiting.is_some();
        login_screen(LoginScreen {
            busy,
            unlocking: false,
            offer_forget: None,
            ask_old_password: false,
            error: self.login_error.clone(),
            after_kiosk: self.after_kiosk,
            connection: if busy {
                Connection::Connecting
            } else {
                Connection::Offline
            },
            link: ctx.link(),
        })
    }
}

/// The split point: in the browser, the first call fetches the messenger's wasm module (the
/// build splits everything only reachable from here into it); natively it is a plain call.
// The macro declares the module's import and export with `no_mangle`, which the lint counts as
// unsafe code; nothing else here is.
#[allow(unsafe_code)]
mod lazy {
    use wasm_split_helpers::{wasm_split, SplitLoaderError};
    use yew::html::Scope;

    use crate::{App, Loaded};

    #[wasm_split(messenger, preload(preload_messenger), fallible)]
    pub(crate) fn messenger(link: Scope<App>) -> Result<Box<dyn Loaded>, SplitLoaderError> {
        Ok(Box::new(crate::messenger::Messenger::new(&link)))
    }
}

/// How available a contact is, in words, and the CSS class of its dot.
fn availability_words(a: Availability) -> (&'static str, &'static str) {
    match a {
        Availability::Available => (text::PRESENCE_AVAILABLE, "available"),
        Availability::Chat => (text::PRESENCE_CHAT, "available"),
        Availability::Away => (text::PRESENCE_AWAY, "away"),
        Availability::ExtendedAway => (text::PRESENCE_XA, "away"),
        Availability::DoNotDisturb => (text::PRESENCE_DND, "dnd"),
        Availability::Unavailable => (text::PRESENCE_OFFLINE, "offline"),
    }
}
