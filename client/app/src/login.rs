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
}

pub enum Msg {
    Jid(String),
    Password(String),
    Mode(DeviceMode),
    Submit,
}

pub struct Login {
    jid: String,
    password: Zeroizing<String>,
    mode: DeviceMode,
    notice: Option<&'static str>,
    service: Option<ServiceUrl>,
}

impl Component for Login {
    type Message = Msg;
    type Properties = Props;

    fn create(_ctx: &Context<Self>) -> Self {
        Self {
            jid: String::new(),
            password: Zeroizing::new(String::new()),
            mode: DeviceMode::Personal,
            notice: None,
            service: same_origin_service(),
        }
    }

    fn update(&mut self, ctx: &Context<Self>, msg: Msg) -> bool {
        match msg {
            Msg::Jid(jid) => self.jid = jid,
            Msg::Password(password) => self.password = Zeroizing::new(password),
            Msg::Mode(mode) => self.mode = mode,
            Msg::Submit => {
                if ctx.props().busy {
                    return false;
                }
                let jid = parse_bare_jid(&self.jid);
                self.notice = None;
                match (jid, &self.service) {
                    (None, _) => self.notice = Some(text::ERROR_JID),
                    _ if self.password.is_empty() => self.notice = Some(text::ERROR_PASSWORD),
                    (_, None) => self.notice = Some(text::ERROR_NO_SERVICE),
                    (Some(jid), Some(service)) => ctx.props().on_submit.emit(Credentials {
                        jid,
                        password: self.password.clone(),
                        mode: self.mode,
                        service: service.clone(),
                    }),
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
        let on_personal = link.callback(|_: Event| Msg::Mode(DeviceMode::Personal));
        let on_kiosk = link.callback(|_: Event| Msg::Mode(DeviceMode::Kiosk));
        let on_submit = link.callback(|e: SubmitEvent| {
            e.prevent_default();
            Msg::Submit
        });
        let kiosk = self.mode == DeviceMode::Kiosk;
        let busy = ctx.props().busy;
        let notice: String = match (self.notice, &ctx.props().error) {
            (Some(n), _) => n.to_owned(),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        // On a shared computer the browser must not offer to remember the password.
        let password_autocomplete = if kiosk { "off" } else { "current-password" };
        html! {
            <main class="login" aria-labelledby="login-heading">
                <h2 id="login-heading">{ text::LOGIN_HEADING }</h2>
                <form onsubmit={on_submit} novalidate=true>
                    <p class="notice" role="alert" aria-live="assertive" data-testid="login-notice">
                        { notice }
                    </p>
                    <label for="login-jid">{ text::LOGIN_JID }</label>
                    <input id="login-jid" data-testid="login-jid" type="email" inputmode="email"
                        autocomplete={ if kiosk { "off" } else { "username" } } spellcheck="false"
                        placeholder={ text::LOGIN_JID_PLACEHOLDER } value={ self.jid.clone() }
                        oninput={on_jid} required=true />
                    <label for="login-password">{ text::LOGIN_PASSWORD }</label>
                    <input id="login-password" data-testid="login-password" type="password"
                        autocomplete={password_autocomplete} value={ self.password.to_string() }
                        oninput={on_password} required=true />
                    <fieldset class="mode">
                        <legend>{ text::LOGIN_MODE_LEGEND }</legend>
                        <label class="choice">
                            <input type="radio" name="mode" data-testid="login-mode-personal"
                                checked={!kiosk} onchange={on_personal} />
                            <span>{ text::LOGIN_MODE_PERSONAL }</span>
                            <small>{ text::LOGIN_MODE_PERSONAL_HINT }</small>
                        </label>
                        <label class="choice">
                            <input type="radio" name="mode" data-testid="login-mode-kiosk"
                                checked={kiosk} onchange={on_kiosk} />
                            <span>{ text::LOGIN_MODE_KIOSK }</span>
                            <small>{ text::LOGIN_MODE_KIOSK_HINT }</small>
                        </label>
                    </fieldset>
                    if let Some(service) = &self.service {
                        <p class="service">{ format!("{}: {service}", text::LOGIN_SERVICE) }</p>
                    }
                    <button type="submit" data-testid="login-submit" disabled={busy}
                        aria-busy={ if busy { "true" } else { "false" } }>
                        { if busy { text::LOGIN_SUBMITTING } else { text::LOGIN_SUBMIT } }
                    </button>
                </form>
            </main>
        }
    }
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
