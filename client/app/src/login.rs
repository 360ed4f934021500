//! The login screen: one state struct, one message enum, one `update`.

use sotto_session::service::ServiceUrl;
use sotto_session::{BareJid, DEFAULT_WEBSOCKET_PATH};
use web_sys::HtmlInputElement;
use yew::prelude::*;
use zeroize::Zeroizing;

use crate::text;

/// The `performance.mark` set when the login form is first on screen.
pub const LOGIN_READY_MARK: &str = "sotto-login-ready";

/// Which storage behaviour the user chose for this computer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeviceMode {
    /// The user's own device: state persists, encrypted at rest.
    Personal,
    /// A public or shared computer: nothing persists.
    Kiosk,
}

/// What the form hands to the app when the user signs in.
#[derive(Clone, PartialEq)]
pub struct Credentials {
    /// The account.
    pub jid: BareJid,
    /// Its password.
    pub password: Zeroizing<String>,
    /// Personal device or kiosk.
    pub mode: DeviceMode,
    /// The WebSocket URL.
    pub service: ServiceUrl,
    /// Public-computer mode: seconds without input before the session is wiped.
    pub idle_secs: u32,
    /// Personal mode after a password change elsewhere: the previous password, which still
    /// locks this device's saved data (it is re-locked with the new one after sign-in).
    pub old_password: Option<Zeroizing<String>>,
}

/// The form's inputs from the app.
#[derive(Properties, PartialEq)]
pub struct Props {
    /// A sign-in is in progress.
    pub busy: bool,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Called with valid credentials.
    pub on_submit: Callback<Credentials>,
    /// The saved data of this device is being opened.
    #[prop_or_default]
    pub unlocking: bool,
    /// The saved data of this account could not be opened: offer to forget it.
    #[prop_or_default]
    pub offer_forget: Option<BareJid>,
    /// The password did not open the saved data: ask for the previous one too.
    #[prop_or_default]
    pub ask_old_password: bool,
    /// This page was loaded after a public-computer session ended: whoever is next at this
    /// computer gets "a public or shared computer" preselected.
    #[prop_or_default]
    pub after_kiosk: bool,
    /// Forget the saved data of this account.
    #[prop_or_default]
    pub on_forget: Callback<BareJid>,
}

pub enum Msg {
    Jid(String),
    Password(String),
    OldPassword(String),
    Mode(DeviceMode),
    Submit,
    /// The XEP-0156 lookup for the account's domain ended.
    Discovered(BareJid, Result<ServiceUrl, String>),
    /// The deployment's settings arrived from the bridge (`/config.json`).
    Deployment(Deployment),
}

/// Seconds without input before a public-computer session is wiped, unless the deployment
/// says otherwise (`[client] kiosk_idle_secs`).
pub const DEFAULT_KIOSK_IDLE_SECS: u32 = 300;

/// What the deployment tells the app with the page (`GET /config.json`, served by the bridge
/// from its `[audit]` and `[client]` sections). A missing or unreadable file means the defaults.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Deployment {
    /// The bridge keeps an audit log of use (logins, never content): the user must be told.
    pub audit: bool,
    /// The XMPP domains the page's own bridge relays (`None`: no bridge configuration, the
    /// page is served by something else).
    pub domains: Option<Vec<String>>,
    /// Accounts of other domains may sign in: their server is found through XEP-0156.
    pub other_servers: bool,
    /// The mode preselected on the login screen.
    pub default_kiosk: bool,
    /// Public-computer mode only: the personal choice is not offered.
    pub force_kiosk: bool,
    /// Public-computer mode: seconds without input before the session is wiped.
    pub kiosk_idle_secs: u32,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            audit: false,
            domains: None,
            other_servers: false,
            default_kiosk: false,
            force_kiosk: false,
            kiosk_idle_secs: DEFAULT_KIOSK_IDLE_SECS,
        }
    }
}

impl Deployment {
    /// Reads the fields the app uses from the JSON object; anything missing keeps its default.
    fn from_js(value: &wasm_bindgen::JsValue) -> Self {
        let get = |object: &wasm_bindgen::JsValue, key: &str| {
            js_sys::Reflect::get(object, &wasm_bindgen::JsValue::from_str(key)).ok()
        };
        let client = get(value, "client").unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
        let domains = get(value, "domains")
            .filter(js_sys::Array::is_array)
            .map(|v| {
                js_sys::Array::from(&v)
                    .iter()
                    .filter_map(|d| d.as_string())
                    .map(|d| d.to_lowercase())
                    .collect()
            });
        Self {
            audit: get(value, "audit").and_then(|v| v.as_bool()) == Some(true),
            domains,
            other_servers: get(&client, "other_servers").and_then(|v| v.as_bool()) == Some(true),
            default_kiosk: get(&client, "default_mode").and_then(|v| v.as_string())
                == Some("kiosk".to_owned()),
            force_kiosk: get(&client, "force_kiosk").and_then(|v| v.as_bool()) == Some(true),
            kiosk_idle_secs: get(&client, "kiosk_idle_secs")
                .and_then(|v| v.as_f64())
                .filter(|s| *s >= 1.0)
                .map_or(DEFAULT_KIOSK_IDLE_SECS, |s| {
                    s.min(f64::from(u32::MAX)) as u32
                }),
        }
    }
}

/// Fetches `/config.json` from the page's own origin.
async fn fetch_deployment() -> Option<Deployment> {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen_futures::JsFuture;
    let window = web_sys::window()?;
    let response = JsFuture::from(window.fetch_with_str("/config.json"))
        .await
        .ok()?;
    let response: web_sys::Response = response.dyn_into().ok()?;
    if !response.ok() {
        return None;
    }
    let json = JsFuture::from(response.json().ok()?).await.ok()?;
    Some(Deployment::from_js(&json))
}

pub struct Login {
    jid: String,
    password: Zeroizing<String>,
    old_password: Zeroizing<String>,
    mode: DeviceMode,
    notice: Option<String>,
    service: Option<ServiceUrl>,
    /// A XEP-0156 lookup is under way.
    discovering: bool,
    /// `None` until `/config.json` was read (or failed: then the defaults).
    deployment: Option<Deployment>,
}

impl Component for Login {
    type Message = Msg;
    type Properties = Props;

    fn create(ctx: &Context<Self>) -> Self {
        let link = ctx.link().clone();
        wasm_bindgen_futures::spawn_local(async move {
            let deployment = fetch_deployment().await.unwrap_or_default();
            link.send_message(Msg::Deployment(deployment));
        });
        Self {
            jid: String::new(),
            password: Zeroizing::new(String::new()),
            old_password: Zeroizing::new(String::new()),
            mode: if ctx.props().after_kiosk {
                DeviceMode::Kiosk
            } else {
                DeviceMode::Personal
            },
            notice: None,
            service: same_origin_service(),
            discovering: false,
            deployment: None,
        }
    }

    fn update(&mut self, ctx: &Context<Self>, msg: Msg) -> bool {
        match msg {
            Msg::Jid(jid) => self.jid = jid,
            Msg::Password(password) => self.password = Zeroizing::new(password),
            Msg::OldPassword(password) => self.old_password = Zeroizing::new(password),
            Msg::Mode(mode) => {
                let forced = self.deployment.as_ref().is_some_and(|d| d.force_kiosk);
                self.mode = if forced { DeviceMode::Kiosk } else { mode };
            }
            Msg::Deployment(deployment) => {
                if deployment.force_kiosk || deployment.default_kiosk {
                    self.mode = DeviceMode::Kiosk;
                }
                self.deployment = Some(deployment);
            }
            Msg::Submit => {
                if ctx.props().busy || self.discovering {
                    return false;
                }
                let jid = parse_bare_jid(&self.jid);
                self.notice = None;
                match jid {
                    None => self.notice = Some(text::ERROR_JID.into()),
                    _ if self.password.is_empty() => {
                        self.notice = Some(text::ERROR_PASSWORD.into())
                    }
                    Some(jid) => self.route(ctx, jid),
                }
            }
            Msg::Discovered(jid, found) => {
                self.discovering = false;
                match found {
                    Ok(service) => {
                        self.service = Some(service.clone());
                        self.submit(ctx, jid, service);
                    }
                    Err(why) => self.notice = Some(why),
                }
            }
        }
        true
    }

    fn changed(&mut self, _ctx: &Context<Self>, _old: &Props) -> bool {
        // A new error from the app replaces the form's own notice.
        self.notice = None;
        true
    }

    fn rendered(&mut self, _ctx: &Context<Self>, first_render: bool) {
        if first_render {
            // A performance mark, so that tests and users' tools can measure the time from
            // navigation to a usable login screen.
            if let Some(performance) = web_sys::window().and_then(|w| w.performance()) {
                let _ = performance.mark(LOGIN_READY_MARK);
            }
        }
    }

    fn view(&self, ctx: &Context<Self>) -> Html {
        let link = ctx.link();
        let on_jid = link.callback(|e: InputEvent| Msg::Jid(input_value(&e)));
        let on_password = link.callback(|e: InputEvent| Msg::Password(input_value(&e)));
        let on_old_password = link.callback(|e: InputEvent| Msg::OldPassword(input_value(&e)));
        let on_personal = link.callback(|_: Event| Msg::Mode(DeviceMode::Personal));
        let on_kiosk = link.callback(|_: Event| Msg::Mode(DeviceMode::Kiosk));
        let on_submit = link.callback(|e: SubmitEvent| {
            e.prevent_default();
            Msg::Submit
        });
        let kiosk = self.mode == DeviceMode::Kiosk;
        let deployment = self.deployment.clone().unwrap_or_default();
        let busy = ctx.props().busy || self.discovering;
        let notice: String = match (&self.notice, &ctx.props().error) {
            (Some(n), _) => n.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        // On a shared computer the browser must not offer to remember the password.
        let password_autocomplete = if kiosk { "off" } else { "current-password" };
        html! {
            <main class="login" aria-labelledby="login-heading">
                <h2 id="login-heading">{ text::LOGIN_HEADING }</h2>
                // autocomplete="off" on the form itself, in both modes: Chromium then keeps no
                // copy of the fields in the tab's restorable form state (the profile's session
                // files), which it may capture while the mode is still being chosen. Password
                // managers still see the fields' own autocomplete hints in personal mode.
                <form onsubmit={on_submit} novalidate=true autocomplete="off"
                    data-deployment={ if self.deployment.is_some() { "loaded" } else { "pending" } }>
                    <p class="notice" role="alert" aria-live="assertive" data-testid="login-notice">
                        { notice }
                    </p>
                    if deployment.audit {
                        <p class="audit-notice" role="note" data-testid="audit-notice">
                            { text::AUDIT_NOTICE }
                        </p>
                    }
                    <label for="login-jid">{ text::LOGIN_JID }</label>
                    <input id="login-jid" data-testid="login-jid" type="email" inputmode="email"
                        autocomplete={ if kiosk { "off" } else { "username" } } spellcheck="false"
                        placeholder={ text::LOGIN_JID_PLACEHOLDER } value={ self.jid.clone() }
                        oninput={on_jid} required=true />
                    <label for="login-password">{ text::LOGIN_PASSWORD }</label>
                    <input id="login-password" data-testid="login-password" type="password"
                        autocomplete={password_autocomplete} value={ self.password.to_string() }
                        oninput={on_password} required=true />
                    if ctx.props().ask_old_password && !kiosk {
                        <label for="login-old-password">{ text::LOGIN_OLD_PASSWORD }</label>
                        <input id="login-old-password" data-testid="login-old-password"
                            type="password" autocomplete="off"
                            value={ self.old_password.to_string() } oninput={on_old_password} />
                        <small class="hint">{ text::LOGIN_OLD_PASSWORD_HINT }</small>
                    }
                    <fieldset class="mode">
                        <legend>{ text::LOGIN_MODE_LEGEND }</legend>
                        <label class="choice">
                            <input type="radio" name="mode" data-testid="login-mode-personal"
                                checked={!kiosk} onchange={on_personal}
                                disabled={deployment.force_kiosk} />
                            <span>{ text::LOGIN_MODE_PERSONAL }</span>
                            <small>{ text::LOGIN_MODE_PERSONAL_HINT }</small>
                        </label>
                        <label class="choice">
                            <input type="radio" name="mode" data-testid="login-mode-kiosk"
                                checked={kiosk} onchange={on_kiosk} />
                            <span>{ text::LOGIN_MODE_KIOSK }</span>
                            <small>{ text::LOGIN_MODE_KIOSK_HINT }</small>
                        </label>
                        if kiosk {
                            <p class="kiosk-explanation" data-testid="kiosk-explanation">
                                { text::kiosk_explanation(deployment.kiosk_idle_secs) }
                            </p>
                        }
                    </fieldset>
                    if let Some(service) = &self.service {
                        <p class="service" data-testid="login-service">{ format!("{}: {service}", text::LOGIN_SERVICE) }</p>
                    }
                    <button type="submit" data-testid="login-submit" disabled={busy}
                        aria-busy={ if busy { "true" } else { "false" } }>
                        { if ctx.props().unlocking { text::UNLOCKING } else if self.discovering { text::LOGIN_DISCOVERING } else if busy { text::LOGIN_SUBMITTING } else { text::LOGIN_SUBMIT } }
                    </button>
                    if let Some(jid) = ctx.props().offer_forget.clone() {
                        <button type="button" class="button subtle" data-testid="forget-saved"
                            onclick={ctx.props().on_forget.reform(move |_: MouseEvent| jid.clone())}>
                            { text::FORGET_SAVED }
                        </button>
                    }
                </form>
            </main>
        }
    }
}

impl Login {
    /// Where an account of `jid`'s domain signs in: the page's own bridge when it relays that
    /// domain (or when there is no bridge configuration to ask: the same origin, as before),
    /// the domain's own WebSocket endpoint (XEP-0156) when the deployment allows other servers,
    /// otherwise nowhere — said before anything is sent.
    fn route(&mut self, ctx: &Context<Self>, jid: BareJid) {
        let domain = jid.domain().to_lowercase();
        let deployment = self.deployment.clone().unwrap_or_default();
        let served_here = deployment
            .domains
            .as_ref()
            .is_none_or(|served| served.contains(&domain));
        if served_here {
            return match same_origin_service() {
                Some(service) => {
                    self.service = Some(service.clone());
                    self.submit(ctx, jid, service)
                }
                None => self.notice = Some(text::ERROR_NO_SERVICE.into()),
            };
        }
        if !deployment.other_servers {
            let served = deployment.domains.unwrap_or_default();
            self.notice = Some(text::domain_not_served(&domain, &served));
            return;
        }
        self.discovering = true;
        let link = ctx.link().clone();
        wasm_bindgen_futures::spawn_local(async move {
            let found = discover(&domain).await;
            link.send_message(Msg::Discovered(jid, found));
        });
    }

    /// Hands the credentials to the app.
    fn submit(&self, ctx: &Context<Self>, jid: BareJid, service: ServiceUrl) {
        let idle_secs = self
            .deployment
            .as_ref()
            .map_or(DEFAULT_KIOSK_IDLE_SECS, |d| d.kiosk_idle_secs);
        ctx.props().on_submit.emit(Credentials {
            jid,
            password: self.password.clone(),
            mode: self.mode,
            service,
            idle_secs,
            old_password: (ctx.props().ask_old_password
                && self.mode == DeviceMode::Personal
                && !self.old_password.is_empty())
            .then(|| self.old_password.clone()),
        });
    }
}

/// How long a host-meta lookup may take before the user is told.
const DISCOVERY_TIMEOUT_MS: u32 = 10_000;

/// The WebSocket endpoint of `domain`'s XMPP service from its host-meta, read over https (http
/// only when this page itself is plain http, i.e. a local setup). The XML form, which every
/// host-meta server offers (RFC 6415; Prosody, ejabberd and this bridge serve both); reading
/// only it spares the app a JSON parser. The request carries no cookies and no referrer.
async fn discover(domain: &str) -> Result<ServiceUrl, String> {
    use sotto_session::discovery::{host_meta_xml_url, websocket_from_xrd};
    let secure = web_sys::window()
        .and_then(|w| w.location().protocol().ok())
        .is_none_or(|p| p != "http:");
    let why = match fetch_text(&host_meta_xml_url(domain, secure)).await {
        None => text::DISCOVERY_UNREACHABLE.to_owned(),
        Some(body) => match websocket_from_xrd(&body, secure) {
            Ok(service) => return Ok(service),
            Err(e) => e.to_string(),
        },
    };
    Err(text::discovery_failed(domain, &why))
}

/// The body of a successful cross-origin GET of `url`, or `None` (network, CORS, CSP, status,
/// timeout, larger than any host-meta).
async fn fetch_text(url: &str) -> Option<String> {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen_futures::JsFuture;
    let window = web_sys::window()?;
    let abort = web_sys::AbortController::new().ok()?;
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_mode(web_sys::RequestMode::Cors);
    init.set_credentials(web_sys::RequestCredentials::Omit);
    init.set_signal(Some(&abort.signal()));
    let request = web_sys::Request::new_with_str_and_init(url, &init).ok()?;
    let _deadline =
        gloo_timers::callback::Timeout::new(DISCOVERY_TIMEOUT_MS, move || abort.abort());
    let response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .ok()?;
    let response: web_sys::Response = response.dyn_into().ok()?;
    if !response.ok() {
        return None;
    }
    let body = JsFuture::from(response.text().ok()?)
        .await
        .ok()?
        .as_string()?;
    (body.len() <= sotto_session::discovery::MAX_HOST_META_BYTES).then_some(body)
}

fn input_value(e: &InputEvent) -> String {
    e.target_dyn_into::<HtmlInputElement>()
        .map(|input| input.value())
        .unwrap_or_default()
}

/// A bare JID with a local part (`name@domain`), or `None`.
pub fn parse_bare_jid(input: &str) -> Option<BareJid> {
    let input = input.trim();
    if input.contains('/') {
        return None;
    }
    input.parse::<BareJid>().ok().filter(|j| j.node().is_some())
}

fn same_origin_service() -> Option<ServiceUrl> {
    let origin = web_sys::window()?.location().origin().ok()?;
    ServiceUrl::same_origin(&origin, DEFAULT_WEBSOCKET_PATH).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_shape() {
        assert!(parse_bare_jid(" alice@localhost ").is_some());
        assert!(parse_bare_jid("alice").is_none());
        assert!(parse_bare_jid("@localhost").is_none());
        assert!(parse_bare_jid("a@b@c").is_none());
        assert!(parse_bare_jid("a@b/c").is_none());
    }
}
