//! The messenger behind the login form: sign-in, personal storage or public-computer mode, the
//! session's driver and the state store, and the screens after sign-in.
//!
//! In the browser this is its own wasm module, fetched when the login form is first used (see
//! [`crate::App`]): a first visit downloads only what the login screen needs.

use std::rc::Rc;

use gloo_timers::callback::Timeout;
use sotto_session::avatar::AvatarEvent;
use sotto_session::omemo::temporary::Role;
use sotto_session::omemo::Omemo;
use sotto_session::{BareJid, ChatState, Config, Event as SessionEvent};
use yew::html::Scope;
use yew::prelude::*;
use zeroize::Zeroizing;

use crate::driver::{Driver, Input, Notice};
use crate::kiosk::IdleWatch;
use crate::login::{Credentials, DeviceMode};
use crate::persist::{KeepError, Keeper, Restored};
use crate::store::{Alert, Connection, DeviceView, FollowUp, NotifyMode, OwnDevice, Store};
use crate::{
    chat, contacts, kiosk, login_screen, persist, text, trust, Action, App, Loaded, LoginScreen,
    Msg, HISTORY_PAGE, VERSION,
};

/// How long personal mode waits after a change of the conversations before writing them (a
/// burst of messages is written once).
const HISTORY_SAVE_DELAY_MS: u32 = 500;

/// What to do once a session that is signing out is over.
enum AfterSignOut {
    /// Nothing (personal mode: the data stays).
    Nothing,
    /// Load a fresh page (public-computer mode), saying why.
    Leave(&'static str),
    /// Delete the saved data ("forget this device").
    Forget(Keeper),
}

/// Everything from the submitted login form on: owns the driver and the store, maps notices
/// into the store and actions into session commands. Nothing else does either.
pub(crate) struct Messenger {
    driver: Option<Driver>,
    /// A driver that is logging out (kept until the server's `<close/>` or a grace period).
    retiring: Option<(u32, Driver, AfterSignOut)>,
    link: Scope<App>,
    /// The mode of the current session.
    mode: DeviceMode,
    /// Personal mode: the unlocked store, once there is one.
    keeper: Option<Keeper>,
    /// Personal mode on a device with nothing saved yet: the password, until the server has
    /// accepted it and the store is created.
    pending_password: Option<Zeroizing<String>>,
    /// Personal storage is being opened.
    unlocking: bool,
    /// Public-computer mode: the idle timeout and the seconds shown in its warning.
    idle: Option<IdleWatch>,
    idle_left: Option<u32>,
    /// A public-computer session is signing out; the page is replaced once it is over.
    leaving: bool,
    /// What personal mode must save after this update.
    device_dirty: bool,
    /// A history write is scheduled, or one is running.
    history_save: Option<Timeout>,
    history_saving: bool,
    /// The unread count the page's title shows.
    title_unread: u32,
    roster_dirty: bool,
    saved_messages: u64,
    /// A storage problem at login: offer to forget the saved data of this account.
    offer_forget: Option<BareJid>,
    /// The password did not open the saved data: ask for the previous one.
    ask_old_password: bool,
    /// Opened with the previous password: re-lock the data with this one once the server has
    /// accepted it.
    rewrap_to: Option<Zeroizing<String>>,
    session_no: u32,
    store: Rc<Store>,
    signed_in: bool,
    login_error: Option<String>,
    /// Made once, so that screens whose store did not change compare equal and are skipped.
    on_action: Callback<Action>,
}

impl Messenger {
    /// Made when the login form is first submitted (the shell then hands it the credentials).
    pub(crate) fn new(link: &Scope<App>) -> Self {
        Self {
            on_action: link.callback(Msg::Action),
            driver: None,
            retiring: None,
            link: link.clone(),
            mode: DeviceMode::Personal,
            keeper: None,
            pending_password: None,
            unlocking: false,
            idle: None,
            idle_left: None,
            leaving: false,
            device_dirty: false,
            history_save: None,
            history_saving: false,
            title_unread: 0,
            roster_dirty: false,
            saved_messages: 0,
            offer_forget: None,
            ask_old_password: false,
            rewrap_to: None,
            session_no: 0,
            store: Rc::new(Store::default()),
            signed_in: false,
            login_error: None,
        }
    }
}

impl Loaded for Messenger {
    fn update(&mut self, msg: Msg) -> bool {
        match msg {
            // The shell's own messages.
            Msg::Preload | Msg::Loaded(_) | Msg::LoadTimedOut(_) => return false,
            Msg::Login(credentials) => self.login(credentials),
            Msg::Net { session, input } => {
                if session == self.session_no {
                    if let Some(driver) = self.driver.as_mut() {
                        let notices = driver.handle(input);
                        self.apply(notices);
                    }
                } else if let Some((no, driver, _)) = self.retiring.as_mut() {
                    if *no == session {
                        let _ = driver.handle(input);
                        if driver.is_over() {
                            if let Some((_, driver, after)) = self.retiring.take() {
                                drop(driver);
                                self.after_sign_out(after);
                            }
                        }
                    }
                    return false;
                }
            }
            Msg::Action(action) => self.act(action),
            Msg::Unlocked {
                session,
                credentials,
                result,
            } => {
                if session != self.session_no || !self.unlocking {
                    return false;
                }
                // How long opening the saved data took (Argon2id included), for tests and
                // users' tools: `performance.getEntriesByName("sotto-unlock")`.
                if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
                    let _ = performance.measure_with_start_mark("sotto-unlock", UNLOCK_MARK);
                }
                self.unlocked(credentials, result);
            }
            Msg::Created { session, result } => {
                if session != self.session_no {
                    return false;
                }
                match result {
                    Ok(keeper) => {
                        self.keeper = Some(keeper);
                        // Everything so far goes to the new store.
                        self.device_dirty = true;
                        self.roster_dirty = true;
                        self.saved_messages = u64::MAX;
                    }
                    Err(e) => self.store().set_notice(Some(text::keep_error(&e))),
                }
            }
            Msg::Saved(result) => match result {
                Ok(()) => return false,
                Err(e) => self.store().set_notice(Some(text::keep_error(&e))),
            },
            Msg::SaveHistory => {
                self.save_history(false);
                return false;
            }
            Msg::HistorySaved(result) => {
                self.history_saving = false;
                match result {
                    Ok(()) => return false,
                    Err(e) => self.store().set_notice(Some(text::keep_error(&e))),
                }
            }
            Msg::ForgetSaved(jid) => {
                self.offer_forget = None;
                self.background(async move { persist::forget(&jid).await }, Msg::Forgotten);
            }
            Msg::Forgotten(result) => {
                self.login_error = Some(match result {
                    Ok(()) => text::FORGET_SAVED_DONE.to_owned(),
                    Err(e) => text::keep_error(&e),
                });
            }
            Msg::Tick => {
                let Some(idle) = self.idle.as_ref() else {
                    return false;
                };
                if idle.seconds_left() == 0 {
                    self.sign_out(true, AfterSignOut::Leave(kiosk::REASON_IDLE));
                    return true;
                }
                let left = idle.warning_due().then(|| idle.seconds_left());
                if left == self.idle_left {
                    return false;
                }
                self.idle_left = left;
            }
            Msg::PageHide => {
                if self.mode == DeviceMode::Personal {
                    // What the delay still holds back goes now (best effort: the browser
                    // usually completes a transaction started while the page hides).
                    self.save_history(true);
                }
                if self.mode == DeviceMode::Kiosk
                    && (self.driver.is_some() || self.retiring.is_some())
                {
                    // The tab is closing or navigating away: no time to say goodbye. The device
                    // stays in the account's list until its next login removes it.
                    self.retiring = None;
                    self.driver = None;
                    self.session_no = self.session_no.wrapping_add(1);
                    self.reset();
                }
                return false;
            }
        }
        self.persist();
        self.show_unread_in_title();
        true
    }

    fn view(&self) -> Html {
        let connection = self.store.connection();
        if self.leaving {
            return html! {
                <div class="shell">
                    <main class="login" data-testid="wiping" role="status">
                        <p>{ text::WIPING }</p>
                    </main>
                </div>
            };
        }
        if !self.signed_in {
            return login_screen(LoginScreen {
                busy: connection == Connection::Connecting || self.unlocking,
                unlocking: self.unlocking,
                offer_forget: self.offer_forget.clone(),
                ask_old_password: self.ask_old_password,
                error: self.login_error.clone(),
                // A public-computer session ends by loading a fresh page (the shell's).
                after_kiosk: false,
                connection,
                link: &self.link,
            });
        }
        let on_action = self.on_action.clone();
        let store = self.store.clone();
        let me = store
            .me
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let view = if store.active.is_some() {
            "chat"
        } else {
            "list"
        };
        let logout = on_action.reform(|_: MouseEvent| Action::Logout);
        html! {
            <div class="app" data-view={view} data-connection={connection.label()}>
                <header class="topbar">
                    <span class="topbar-brand">{ text::APP_NAME }</span>
                    <span class="me" title={ text::SIGNED_IN_AS }>
                        <span class="visually-hidden">{ format!("{} ", text::SIGNED_IN_AS) }</span>
                        { me }
                    </span>
                    <crate::status::OwnStatus availability={ store.own_status.availability }
                        text={ store.own_status.text.clone().map(AttrValue::from) }
                        avatar={ store.me.as_ref().and_then(|me| store.avatars.get(me)).cloned().map(AttrValue::from) }
                        on_action={ on_action.clone() } />
                    <span class="connection-state" data-state={connection.label()}
                        data-testid="connection-state" role="status"
                        aria-label={ format!("{}: {}", text::STATE_LABEL, connection.label()) }>
                        { connection.label() }
                    </span>
                    <button type="button" class="button subtle" data-testid="trust-open"
                        onclick={on_action.reform(|_: MouseEvent| Action::OpenTrust)}>
                        { text::TRUST_OPEN }
                    </button>
                    <button type="button" class="button subtle" data-testid="logout" onclick={logout}>
                        { text::LOGOUT }
                    </button>
                </header>
                if connection == Connection::Reconnecting {
                    <p class="banner warning" role="alert">{ text::RECONNECTING_BANNER }</p>
                }
                if let Some(left) = self.idle_left {
                    <p class="banner warning" role="alert" data-testid="idle-warning"
                        data-seconds={left.to_string()}>
                        <span>{ text::idle_warning(left) }</span>
                        <button type="button" class="button"
                            onclick={on_action.reform(|_: MouseEvent| Action::StayActive)}>
                            { text::IDLE_WARNING_STAY }
                        </button>
                    </p>
                }
                if let Some(notice) = store.notice.clone() {
                    <p class="banner error" role="alert">
                        <span>{ notice }</span>
                        <button type="button" class="button subtle"
                            onclick={on_action.reform(|_: MouseEvent| Action::DismissNotice)}>
                            { text::DISMISS }
                        </button>
                    </p>
                }
                { for store.trust_alerts.iter().map(|(jid, device)| {
                    let who = store.contacts.get(jid).map(|c| c.display_name()).unwrap_or_else(|| jid.to_string());
                    html! {
                        <p class="banner warning" role="alert" data-testid="trust-warning"
                            data-jid={jid.to_string()} data-device={device.to_string()}>
                            <span>{ text::new_device_warning(&who) }</span>
                            <button type="button" class="button subtle"
                                onclick={on_action.reform(|_: MouseEvent| Action::OpenTrust)}>
                                { text::TRUST_REVIEW }
                            </button>
                        </p>
                    }
                }) }
                <div class="main">
                    <contacts::Sidebar store={store.clone()} on_action={on_action.clone()} />
                    <chat::ChatView store={store.clone()} on_action={on_action.clone()} />
                </div>
                if let Some(prompt) = store.plaintext_prompt.clone() {
                    <chat::PlaintextDialog {prompt} store={store.clone()} on_action={on_action.clone()} />
                }
                if store.trust_open {
                    <trust::TrustDialog store={store.clone()} on_action={on_action.clone()} />
                }
                <div class="visually-hidden" aria-live="polite" aria-atomic="true">
                    { store.announcement.clone() }
                </div>
                <footer class="app-footer">
                    <span data-testid="app-version" class="version">{ format!("{} {VERSION}", text::VERSION_PREFIX) }</span>
                </footer>
            </div>
        }
    }
}

impl Messenger {
    fn login(&mut self, credentials: Credentials) {
        if self.driver.is_some() || self.unlocking {
            return;
        }
        self.session_no = self.session_no.wrapping_add(1);
        self.login_error = None;
        self.offer_forget = None;
        match credentials.mode {
            DeviceMode::Kiosk => {
                // A fresh device for this visit; nothing is read or written.
                let omemo = Omemo::new(credentials.jid.clone(), &mut rand_core::OsRng);
                self.start(credentials, omemo, Role::Temporary, Restored::default());
            }
            DeviceMode::Personal => {
                self.unlocking = true;
                performance_mark(UNLOCK_MARK);
                self.store = Rc::new(Store::signing_in(credentials.jid.clone()));
                let link = self.link.clone();
                let session = self.session_no;
                wasm_bindgen_futures::spawn_local(async move {
                    let passphrase = credentials
                        .old_password
                        .as_ref()
                        .unwrap_or(&credentials.password);
                    let result = Keeper::open(&credentials.jid, passphrase).await;
                    link.send_message(Msg::Unlocked {
                        session,
                        credentials,
                        result,
                    });
                });
            }
        }
    }

    /// Personal mode: what the store held, or why it could not be opened.
    fn unlocked(
        &mut self,
        credentials: Credentials,
        result: Result<Option<(Keeper, Restored)>, KeepError>,
    ) {
        self.unlocking = false;
        match result {
            Ok(Some((keeper, mut restored))) => {
                let omemo = match restored.device.take() {
                    Some(document) => {
                        match Omemo::restore(
                            credentials.jid.clone(),
                            &document,
                            &mut rand_core::OsRng,
                        ) {
                            Ok(omemo) => omemo,
                            Err(e) => {
                                self.login_failed_storage(
                                    text::storage_damaged(&e.to_string()),
                                    &credentials.jid,
                                );
                                return;
                            }
                        }
                    }
                    None => Omemo::new(credentials.jid.clone(), &mut rand_core::OsRng),
                };
                self.keeper = Some(keeper);
                self.ask_old_password = false;
                if credentials.old_password.is_some() {
                    self.rewrap_to = Some(credentials.password.clone());
                }
                self.start(credentials, omemo, Role::Permanent, restored);
            }
            Ok(None) => {
                self.pending_password = Some(credentials.password.clone());
                let omemo = Omemo::new(credentials.jid.clone(), &mut rand_core::OsRng);
                self.start(credentials, omemo, Role::Permanent, Restored::default());
            }
            Err(e) => {
                let jid = credentials.jid.clone();
                self.login_failed_storage(text::keep_error(&e), &jid);
                self.ask_old_password = e == KeepError::WrongPassphrase;
            }
        }
    }

    fn login_failed_storage(&mut self, why: String, jid: &BareJid) {
        self.reset();
        self.login_error = Some(why);
        self.offer_forget = Some(jid.clone());
    }

    /// Connects with `omemo` in `role`, showing what personal storage restored.
    fn start(&mut self, credentials: Credentials, omemo: Omemo, role: Role, restored: Restored) {
        let session = self.session_no;
        let notify = self
            .link
            .callback(move |input: Input| Msg::Net { session, input });
        // The mode goes to the bridge with the WebSocket URL, for its audit of use (it is the
        // client's word, so the bridge's policy does not rely on it).
        let url = with_mode(&credentials.service.to_string(), credentials.mode);
        self.mode = credentials.mode;
        let config = Config {
            jid: credentials.jid.clone(),
            password: credentials.password,
            resource: None,
            allow_plain: false,
            service: Some(credentials.service),
        };
        let mut store = Store::signing_in(credentials.jid);
        store.persistent = self.mode == DeviceMode::Personal;
        let roster_items = restored
            .roster
            .as_ref()
            .map(|(_, items)| items.clone())
            .unwrap_or_default();
        store.restore(roster_items, restored.history);
        self.saved_messages = store.messages_revision();
        self.store = Rc::new(store);
        let (mut driver, mut notices) = Driver::start(config, omemo, role, url, notify);
        if let Some((version, items)) = restored.roster {
            let ((), more) = driver.command(|s| s.restore_roster(version, items));
            notices.extend(more);
        }
        let omemo = driver.omemo();
        let fingerprint = omemo.fingerprint();
        let own = OwnDevice {
            id: omemo.device_id(),
            fingerprint: fingerprint.to_string(),
            hex: fingerprint.to_hex(),
        };
        self.driver = Some(driver);
        self.store().set_own_device(own);
        if self.mode == DeviceMode::Kiosk {
            self.idle = Some(IdleWatch::start(
                credentials.idle_secs,
                self.link.callback(|()| Msg::Tick),
            ));
        }
        self.apply(notices);
    }

    /// Personal mode: seals and writes what changed (device, roster, history). Writes run in
    /// the order they were started.
    fn persist(&mut self) {
        let (Some(keeper), Some(driver)) = (self.keeper.clone(), self.driver.as_ref()) else {
            return;
        };
        if std::mem::take(&mut self.device_dirty) {
            let document = driver.omemo().save();
            let keeper = keeper.clone();
            self.background(
                async move { keeper.save_device(&document).await },
                Msg::Saved,
            );
        }
        if std::mem::take(&mut self.roster_dirty) {
            if let Some(version) = driver.session().roster_version() {
                let version = version.to_owned();
                let items: Vec<_> = driver.session().roster().cloned().collect();
                let keeper = keeper.clone();
                self.background(
                    async move { keeper.save_roster(&version, &items).await },
                    Msg::Saved,
                );
            }
        }
        // The history is the large record: one save at a time, and a burst of messages (500
        // offline messages at login) is written once it is over, not once per message.
        let revision = self.store.messages_revision();
        if revision != self.saved_messages && self.history_save.is_none() {
            let link = self.link.clone();
            self.history_save = Some(Timeout::new(HISTORY_SAVE_DELAY_MS, move || {
                link.send_message(Msg::SaveHistory)
            }));
        }
    }

    /// Writes the conversations now (the delay after the last change is over).
    fn save_history(&mut self, force: bool) {
        let Some(keeper) = self.keeper.clone() else {
            self.history_save = None;
            return;
        };
        let revision = self.store.messages_revision();
        if revision == self.saved_messages {
            self.history_save = None;
            return;
        }
        if !force && self.history_saving {
            // The previous write is still going: try again after the delay.
            let link = self.link.clone();
            self.history_save = Some(Timeout::new(HISTORY_SAVE_DELAY_MS, move || {
                link.send_message(Msg::SaveHistory)
            }));
            return;
        }
        self.history_save = None;
        self.saved_messages = revision;
        self.history_saving = true;
        let history = self.store.history();
        self.background(
            async move { keeper.save_history(&history).await },
            Msg::HistorySaved,
        );
    }

    /// Ends the session: with `retire`, the device leaves the account first. Then `after`.
    fn sign_out(&mut self, retire: bool, after: AfterSignOut) {
        self.persist();
        // What the delay still holds back goes now.
        self.save_history(true);
        if matches!(after, AfterSignOut::Leave(_)) {
            self.leaving = true;
        }
        let mut after = Some(after);
        if let Some(mut driver) = self.driver.take() {
            let _ = driver.sign_out(retire);
            if !driver.is_over() {
                if let Some(after) = after.take() {
                    self.retiring = Some((self.session_no, driver, after));
                }
            }
        }
        // A new session number, so the retiring driver's inputs are routed to it.
        self.session_no = self.session_no.wrapping_add(1);
        self.login_error = None;
        self.reset();
        if let Some(after) = after {
            self.after_sign_out(after);
        }
    }

    fn after_sign_out(&mut self, after: AfterSignOut) {
        match after {
            AfterSignOut::Nothing => {}
            AfterSignOut::Leave(reason) => kiosk::leave(reason),
            AfterSignOut::Forget(keeper) => {
                self.background(async move { keeper.forget().await }, Msg::Forgotten);
            }
        }
    }

    /// Copies what the OMEMO manager knows of `jid`'s devices into the store.
    fn refresh_devices(&mut self, jid: BareJid) {
        let Some(driver) = self.driver.as_ref() else {
            return;
        };
        let devices: Vec<DeviceView> = driver
            .omemo()
            .devices(&jid)
            .into_iter()
            .map(DeviceView::from)
            .collect();
        self.store().set_devices(jid, devices);
    }

    /// Runs a trust decision, then shows the new picture.
    fn decide(
        &mut self,
        jid: BareJid,
        f: impl FnOnce(&mut sotto_session::omemo::Omemo) -> Result<(), sotto_session::omemo::TrustError>,
    ) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        if let Err(e) = f(driver.omemo_mut()) {
            self.store().set_notice(Some(e.to_string()));
        }
        self.device_dirty = true;
        self.refresh_devices(jid);
    }

    /// Shows desktop notifications for new messages the user is not looking at: the sender
    /// only, or the text too when the user allowed it.
    fn notify(&self, alerts: Vec<Alert>) {
        let mode = self.store.notify;
        if mode == NotifyMode::Off
            || web_sys::Notification::permission() != web_sys::NotificationPermission::Granted
        {
            return;
        }
        let document = web_sys::window().and_then(|w| w.document());
        let away = document
            .as_ref()
            .is_none_or(|d| d.hidden() || !d.has_focus().unwrap_or(false));
        for alert in alerts {
            if !away && self.store.active.as_ref() == Some(&alert.peer) {
                continue;
            }
            let options = web_sys::NotificationOptions::new();
            let body = match (&alert.body, mode) {
                (Some(body), NotifyMode::WithText) => body.as_str(),
                (None, _) => text::NOTIFICATION_UNDECRYPTABLE,
                _ => text::NOTIFICATION_PRIVATE,
            };
            options.set_body(body);
            options.set_tag(&format!("sotto:{}", alert.peer));
            let _ = web_sys::Notification::new_with_options(
                &text::notification_title(&alert.from),
                &options,
            );
        }
    }

    /// Asks the browser for permission to show notifications; the answer comes back as an
    /// action.
    fn request_notifications(&self) {
        let on_action = self.on_action.clone();
        let Ok(promise) = web_sys::Notification::request_permission() else {
            on_action.emit(Action::NotificationPermission(false));
            return;
        };
        wasm_bindgen_futures::spawn_local(async move {
            let answer = wasm_bindgen_futures::JsFuture::from(promise).await;
            let granted = answer.ok().and_then(|v| v.as_string()).as_deref() == Some("granted");
            on_action.emit(Action::NotificationPermission(granted));
        });
    }

    /// Asks the archive for the open conversation's previous page (the newest page first).
    fn load_earlier(&mut self) {
        let Some(peer) = self.store.active.clone() else {
            return;
        };
        let Some(before) = self.store.next_history_page(&peer) else {
            return;
        };
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        let (result, notices) =
            driver.command(|s| s.archive_query(&peer, before.as_deref(), HISTORY_PAGE));
        match result {
            Ok(request) => self.store().history_requested(&peer, request),
            Err(_) => self.store().history_failed(&peer),
        }
        self.apply(notices);
    }

    /// Sends `body` to `peer` unencrypted (the user confirmed it).
    fn send_plaintext(&mut self, peer: BareJid, body: String) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        let (result, notices) = driver.command(|s| s.send_chat(&peer, &body));
        match result {
            Ok(id) => self.store().sent(&peer, id, body, false),
            Err(e) => self.store().set_notice(Some(text::command_error(&e))),
        }
        self.apply(notices);
    }

    /// The store, to change it: with its clock set, so that what is sent or received now
    /// carries the time it happened.
    fn store(&mut self) -> &mut Store {
        let store = Rc::make_mut(&mut self.store);
        store.set_clock(js_sys::Date::now() as crate::time::Millis);
        store
    }

    fn apply(&mut self, notices: Vec<Notice>) {
        let mut follow_ups = Vec::new();
        let mut changed_devices: Vec<BareJid> = Vec::new();
        let mut fetch_block_list = false;
        for notice in notices {
            match notice {
                Notice::Event(event) => {
                    // A new session (not a resumed one): learn whom we block.
                    fetch_block_list |=
                        matches!(*event, SessionEvent::Online { resumed: false, .. });
                    if matches!(
                        *event,
                        SessionEvent::Roster(_)
                            | SessionEvent::RosterItemUpdated(_)
                            | SessionEvent::RosterItemRemoved(_)
                    ) {
                        self.roster_dirty = true;
                    }
                    // Events the store ignores (acks of non-messages, PEP, disco…) must not
                    // copy it or re-render the screens.
                    if !Store::affects(&event) {
                        continue;
                    }
                    if let Some(f) = self.store().apply(*event) {
                        follow_ups.push(f);
                    }
                }
                Notice::Device(_) => self.device_dirty = true,
                Notice::Avatar(AvatarEvent::Published) => {}
                Notice::Avatar(AvatarEvent::PublishFailed { condition }) => {
                    self.store()
                        .set_notice(Some(text::avatar_failed(&condition)));
                }
                Notice::Avatar(AvatarEvent::Changed { jid, avatar }) => {
                    let url = avatar.as_ref().and_then(object_url);
                    if let Some(old) = self.store().set_avatar(jid, url) {
                        let _ = web_sys::Url::revoke_object_url(&old);
                    }
                }
                Notice::Omemo(event) => {
                    self.device_dirty = true;
                    if let Some(jid) = self.store().apply_omemo(*event) {
                        if !changed_devices.contains(&jid) {
                            changed_devices.push(jid);
                        }
                    }
                }
                Notice::Connection(connection) => {
                    if connection == Connection::Online {
                        self.signed_in = true;
                        self.create_store_if_new();
                        self.rewrap_if_changed();
                    }
                    self.store().set_connection(connection);
                }
                Notice::Ended(why) => {
                    self.login_error = Some(text::ended(&why));
                    self.reset();
                    return;
                }
            }
        }
        for jid in changed_devices {
            self.refresh_devices(jid);
        }
        if !self.store.alerts.is_empty() {
            let alerts = self.store().take_alerts();
            self.notify(alerts);
        }
        for follow_up in follow_ups {
            match follow_up {
                FollowUp::Approve(jid) => self.command(|s| s.approve_subscription(&jid)),
            }
        }
        if fetch_block_list {
            self.command(|s| s.fetch_block_list());
        }
    }

    /// Personal mode on a device with nothing saved yet: the server accepted the password, so
    /// the store can be created under it.
    fn create_store_if_new(&mut self) {
        let Some(password) = self.pending_password.take() else {
            return;
        };
        let Some(jid) = self.store.me.clone() else {
            return;
        };
        let session = self.session_no;
        self.background(
            async move { Keeper::create(&jid, &password).await },
            move |result| Msg::Created { session, result },
        );
    }

    /// Personal mode, opened with the previous password: the server accepted the new one, so
    /// the data key is wrapped under it (docs/SECURITY.md §6).
    fn rewrap_if_changed(&mut self) {
        let (Some(password), Some(keeper)) = (self.rewrap_to.take(), self.keeper.clone()) else {
            return;
        };
        self.background(async move { keeper.rewrap(&password).await }, Msg::Saved);
    }

    /// Runs storage work in the background; its outcome comes back as the message `reply`
    /// makes of it.
    fn background<T: 'static>(
        &self,
        work: impl std::future::Future<Output = T> + 'static,
        reply: impl FnOnce(T) -> Msg + 'static,
    ) {
        let link = self.link.clone();
        wasm_bindgen_futures::spawn_local(async move { link.send_message(reply(work.await)) });
    }

    /// Back to the login screen with nothing of the session left in memory.
    fn reset(&mut self) {
        // The store holds every picture URL this messenger made.
        for url in self.store.avatars.values() {
            let _ = web_sys::Url::revoke_object_url(url);
        }
        self.driver = None;
        self.signed_in = false;
        self.unlocking = false;
        self.keeper = None;
        self.pending_password = None;
        self.rewrap_to = None;
        self.idle = None;
        self.idle_left = None;
        self.device_dirty = false;
        self.roster_dirty = false;
        self.history_save = None;
        self.history_saving = false;
        self.store = Rc::new(Store::default());
    }

    /// The page's title counts the unread messages ("(3) Sotto"), so a tab in the background
    /// says that something came; never who or what.
    fn show_unread_in_title(&mut self) {
        let unread = self.store.unread_total();
        if self.title_unread == unread {
            return;
        }
        self.title_unread = unread;
        if let Some(document) = web_sys::window().and_then(|w| w.document()) {
            document.set_title(&text::page_title(unread));
        }
    }

    /// Runs a session command; a failure becomes the notice.
    fn command(
        &mut self,
        f: impl FnOnce(&mut sotto_session::Session) -> Result<(), sotto_session::CommandError>,
    ) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        let (result, notices) = driver.command(f);
        self.apply(notices);
        if let Err(e) = result {
            self.store().set_notice(Some(text::command_error(&e)));
        }
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Open(jid) => {
                // Learn the contact's devices (for the lock and the trust screen) unless their
                // list is known; changes arrive as PEP notifications.
                let known = self.store.device_lists.contains_key(&jid);
                if let Some(driver) = self.driver.as_mut().filter(|_| !known) {
                    let ((), notices) =
                        driver.command_e2e(|omemo, session| omemo.refresh_devices(session, &jid));
                    self.apply(notices);
                }
                self.refresh_devices(jid.clone());
                let first_visit = self.store.history_untouched(&jid);
                self.store().open(jid);
                if first_visit {
                    self.load_earlier();
                }
            }
            Action::LoadEarlier => self.load_earlier(),
            Action::Back => self.store().close_conversation(),
            Action::Send(body) => {
                let Some(peer) = self.store.active.clone() else {
                    return;
                };
                let body = body.trim().to_owned();
                if body.is_empty() {
                    return;
                }
                if self.store.lock(&peer) == crate::store::Lock::Unavailable {
                    // Known to have no OMEMO device: only with the user's explicit consent.
                    self.store().ask_plaintext(peer, body, None);
                    return;
                }
                let Some(driver) = self.driver.as_mut() else {
                    return;
                };
                let (result, notices) = driver
                    .command_e2e(|omemo, session| omemo.send_encrypted(session, &peer, &body));
                self.device_dirty = true;
                match result {
                    Ok(id) => self.store().sent(&peer, id, body, true),
                    Err(sotto_session::omemo::SendError::NoDevices(_)) => {
                        self.store().ask_plaintext(peer, body, None)
                    }
                    Err(e) => self.store().set_notice(Some(text::send_error(&e))),
                }
                self.apply(notices);
            }
            Action::Correct { replaces, body } => {
                let Some(peer) = self.store.active.clone() else {
                    return;
                };
                let body = body.trim().to_owned();
                // Only what the composer offered: our last message, sent encrypted.
                if body.is_empty()
                    || self.store.last_correctable(&peer).map(|(id, _)| id)
                        != Some(replaces.clone())
                {
                    return;
                }
                let Some(driver) = self.driver.as_mut() else {
                    return;
                };
                let (result, notices) = driver.command_e2e(|omemo, session| {
                    omemo.send_encrypted_correction(session, &peer, &body, &replaces)
                });
                self.device_dirty = true;
                match result {
                    Ok(id) => {
                        self.store().corrected(&peer, &replaces, id, body);
                    }
                    Err(e) => self.store().set_notice(Some(text::send_error(&e))),
                }
                self.apply(notices);
            }
            Action::PublishAvatar {
                data,
                width,
                height,
            } => {
                let Some(driver) = self.driver.as_mut() else {
                    return;
                };
                let (result, notices) = driver.command_avatars(|avatars, session| {
                    avatars.publish(session, &data, "image/jpeg", width, height)
                });
                if result.is_err() {
                    self.store()
                        .set_notice(Some(text::AVATAR_UNUSABLE.to_owned()));
                }
                self.apply(notices);
            }
            Action::RemoveAvatar => {
                let Some(driver) = self.driver.as_mut() else {
                    return;
                };
                let ((), notices) =
                    driver.command_avatars(|avatars, session| avatars.unpublish(session));
                self.apply(notices);
            }
            Action::Notice(notice) => self.store().set_notice(Some(notice)),
            Action::Rename(jid, name) => {
                let unchanged = self
                    .store
                    .contacts
                    .get(&jid)
                    .is_some_and(|c| c.name.as_deref().unwrap_or_default() == name.trim());
                if unchanged {
                    return;
                }
                let Some(driver) = self.driver.as_mut() else {
                    return;
                };
                // The server's roster push brings the new name to every device, this one too.
                let (result, notices) = driver.command(|s| s.rename_contact(&jid, Some(&name)));
                if let Err(e) = result {
                    self.store().set_notice(Some(text::command_error(&e)));
                }
                self.apply(notices);
            }
            Action::SetStatus { availability, text } => {
                let line: String = text
                    .trim()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(crate::status::MAX_STATUS_CHARS)
                    .collect();
                let status = crate::store::OwnStatus {
                    availability,
                    text: (!line.is_empty()).then_some(line),
                };
                if status == self.store.own_status {
                    return;
                }
                let Some(driver) = self.driver.as_mut() else {
                    return;
                };
                // Kept by the session while offline and sent when it is online again.
                let ((), notices) =
                    driver.command(|s| s.set_presence(availability, status.text.as_deref()));
                self.store().set_own_status(status);
                self.apply(notices);
            }
            Action::Retract(id) => {
                let Some(peer) = self.store.active.clone() else {
                    return;
                };
                if !self.store.deletable(&peer, &id) {
                    return;
                }
                let Some(driver) = self.driver.as_mut() else {
                    return;
                };
                let (result, notices) = driver.command(|s| s.send_retraction(&peer, &id));
                match result {
                    Ok(_) => {
                        self.store().retracted_own(&peer, &id);
                    }
                    Err(e) => self.store().set_notice(Some(text::command_error(&e))),
                }
                self.apply(notices);
            }
            Action::ConfirmPlaintext => {
                if let Some(prompt) = self.store().take_plaintext_prompt(true) {
                    self.send_plaintext(prompt.peer, prompt.body);
                }
            }
            Action::CancelPlaintext => {
                let _ = self.store().take_plaintext_prompt(false);
            }
            Action::OpenTrust => {
                if let Some(me) = self.store.me.clone() {
                    self.refresh_devices(me);
                }
                if let Some(peer) = self.store.active.clone() {
                    self.refresh_devices(peer);
                }
                for jid in self
                    .store
                    .trust_alerts
                    .iter()
                    .map(|(j, _)| j.clone())
                    .collect::<Vec<_>>()
                {
                    self.refresh_devices(jid);
                }
                self.store().set_trust_open(true);
            }
            Action::CloseTrust => self.store().set_trust_open(false),
            Action::Verify(jid, device) => self.decide(jid.clone(), |o| o.verify(&jid, device)),
            Action::Distrust(jid, device) => self.decide(jid.clone(), |o| o.distrust(&jid, device)),
            Action::EnableNotifications => self.request_notifications(),
            Action::NotificationPermission(granted) => {
                let mode = if granted {
                    NotifyMode::Private
                } else {
                    NotifyMode::Off
                };
                self.store().set_notify(mode, !granted);
            }
            Action::NotificationText(show) => {
                let mode = if show {
                    NotifyMode::WithText
                } else {
                    NotifyMode::Private
                };
                self.store().set_notify(mode, false);
            }
            Action::DisableNotifications => self.store().set_notify(NotifyMode::Off, false),
            Action::AcceptDevice(jid, device) => {
                self.decide(jid.clone(), |o| o.accept(&jid, device))
            }
            Action::Typing(typing) => {
                let Some(peer) = self.store.active.clone() else {
                    return;
                };
                let state = if typing {
                    ChatState::Composing
                } else {
                    ChatState::Active
                };
                if let Some(driver) = self.driver.as_mut() {
                    let ((), notices) = driver.command(|s| s.send_chat_state(&peer, state));
                    self.apply(notices);
                }
            }
            Action::Add(jid) => self.command(|s| s.add_contact(&jid, None)),
            Action::Approve(jid) => {
                self.store().forget_request(&jid);
                let known = self.store.contacts.get(&jid).is_some_and(|c| {
                    c.pending_out
                        || matches!(
                            c.subscription,
                            sotto_session::Subscription::To | sotto_session::Subscription::Both
                        )
                });
                self.command(|s| {
                    s.approve_subscription(&jid)?;
                    if known {
                        Ok(())
                    } else {
                        // Accepting someone also asks to see them, so both sides see each other.
                        s.add_contact(&jid, None)
                    }
                });
            }
            Action::Deny(jid) => {
                self.store().forget_request(&jid);
                self.command(|s| s.deny_subscription(&jid));
            }
            Action::Remove(jid) => {
                if self.store.active.as_ref() == Some(&jid) {
                    self.store().close_conversation();
                }
                self.command(|s| s.remove_contact(&jid));
            }
            Action::Block(jid, block) => {
                if block {
                    self.store().forget_request(&jid);
                }
                // The server's push (to every resource, this one too) updates the store.
                self.command(|s| s.set_blocked(&jid, block).map(|_| ()));
            }
            Action::DismissNotice => self.store().set_notice(None),
            Action::Logout => {
                if self.mode == DeviceMode::Kiosk {
                    self.sign_out(true, AfterSignOut::Leave(kiosk::REASON_SIGNED_OUT));
                } else {
                    self.sign_out(false, AfterSignOut::Nothing);
                }
            }
            Action::StayActive => {
                if let Some(idle) = self.idle.as_ref() {
                    idle.poke();
                }
                self.idle_left = None;
            }
            Action::ForgetDevice => {
                let confirmed = web_sys::window()
                    .and_then(|w| w.confirm_with_message(text::FORGET_DEVICE_CONFIRM).ok())
                    .unwrap_or(false);
                if !confirmed {
                    return;
                }
                match self.keeper.take() {
                    Some(keeper) => self.sign_out(true, AfterSignOut::Forget(keeper)),
                    None => self.sign_out(true, AfterSignOut::Nothing),
                }
            }
        }
    }
}

/// The `performance.mark` set when personal storage starts to open.
const UNLOCK_MARK: &str = "sotto-unlock-start";

fn performance_mark(name: &str) {
    if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
        let _ = performance.mark(name);
    }
}

/// `url` with `mode=kiosk|personal` added to its query.
fn with_mode(url: &str, mode: DeviceMode) -> String {
    let mode = match mode {
        DeviceMode::Kiosk => "kiosk",
        DeviceMode::Personal => "personal",
    };
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode={mode}")
}

/// An object URL for a contact's picture, with its type: the page shows it as an `<img>`
/// (the Content-Security-Policy allows `blob:` images), and nothing else can read it.
fn object_url(avatar: &sotto_session::avatar::Avatar) -> Option<std::rc::Rc<str>> {
    let bytes = js_sys::Uint8Array::from(avatar.data.as_slice());
    let parts = js_sys::Array::of1(&bytes);
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(avatar.mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob)
        .ok()
        .map(std::rc::Rc::from)
}
