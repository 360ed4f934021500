//! The login screen: one state struct, one message enum, one `update`.

use sotto_session::service::ServiceUrl;
use sotto_session::DEFAULT_WEBSOCKET_PATH;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::text;

/// Which storage behaviour the user chose for this computer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeviceMode {
    /// The user's own device: state persists, encrypted at rest.
    Personal,
    /// A public or shared computer: nothing persists.
    Kiosk,
}

pub enum Msg {
    Jid(String),
    Password(String),
    Mode(DeviceMode),
    Submit,
}

pub struct Login {
    jid: String,
    password: String,
    mode: DeviceMode,
    notice: Option<&'static str>,
    service: Option<ServiceUrl>,
}

impl Component for Login {
    type Message = Msg;
    type Properties = ();

    fn create(_ctx: &Context<Self>) -> Self {
        Self {
            jid: String::new(),
            password: String::new(),
            mode: DeviceMode::Personal,
            notice: None,
            service: same_origin_service(),
        }
    }

    fn update(&mut self, _ctx: &Context<Self>, msg: Msg) -> bool {
        match msg {
            Msg::Jid(jid) => self.jid = jid,
            Msg::Password(password) => self.password = password,
            Msg::Mode(mode) => self.mode = mode,
            Msg::Submit => {
                self.notice = Some(if !looks_like_bare_jid(&self.jid) {
                    text::ERROR_JID
                } else if self.password.is_empty() {
                    text::ERROR_PASSWORD
                } else {
                    text::NOT_YET_AVAILABLE
                });
            }
        }
        true
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
        // On a shared computer the browser must not offer to remember the password.
        let password_autocomplete = if kiosk { "off" } else { "current-password" };
        html! {
            <main class="login" aria-labelledby="login-heading">
                <h2 id="login-heading">{ text::LOGIN_HEADING }</h2>
                <form onsubmit={on_submit} novalidate=true>
                    <label for="login-jid">{ text::LOGIN_JID }</label>
                    <input id="login-jid" data-testid="login-jid" type="email" inputmode="email"
                        autocomplete={ if kiosk { "off" } else { "username" } } spellcheck="false"
                        placeholder={ text::LOGIN_JID_PLACEHOLDER } value={ self.jid.clone() }
                        oninput={on_jid} required=true />
                    <label for="login-password">{ text::LOGIN_PASSWORD }</label>
                    <input id="login-password" data-testid="login-password" type="password"
                        autocomplete={password_autocomplete} value={ self.password.clone() }
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
                    <button type="submit" data-testid="login-submit">{ text::LOGIN_SUBMIT }</button>
                    <p class="notice" role="status" aria-live="polite" data-testid="login-notice">
                        { self.notice.unwrap_or_default() }
                    </p>
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

/// A cheap shape check for the form; full RFC 7622 validation belongs to the session core.
fn looks_like_bare_jid(jid: &str) -> bool {
    match jid.trim().split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains(['@', '/', ' '])
        }
        None => false,
    }
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
        assert!(looks_like_bare_jid("alice@localhost"));
        assert!(!looks_like_bare_jid("alice"));
        assert!(!looks_like_bare_jid("@localhost"));
        assert!(!looks_like_bare_jid("a@b@c"));
    }
}
