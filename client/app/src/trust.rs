//! The trust screen: this device's fingerprint (as text and as a QR code of the `xmpp:` URI
//! Conversations uses for verification), our other devices, and the open contact's devices
//! with verify / distrust. It only reads the store and sends actions up.

use std::rc::Rc;

use qrcodegen::{QrCode, QrCodeEcc};
use sotto_session::omemo::Trust;
use sotto_session::BareJid;
use web_sys::HtmlElement;
use yew::prelude::*;

use crate::store::{DeviceView, NotifyMode, Store};
use crate::{text, Action};

/// The quiet zone around the QR code, in modules (the standard asks for four).
const QR_BORDER: i32 = 4;

/// The verification URI of one device, in the form Conversations writes and scans:
/// `xmpp:user@domain?omemo-sid-<device id>=<64 hex digits of the identity key>`.
pub fn verification_uri(jid: &BareJid, device: u32, hex: &str) -> String {
    format!("xmpp:{jid}?omemo-sid-{device}={hex}")
}

/// An SVG path of the dark modules of `code` (one unit per module, offset by the border).
fn qr_path(code: &QrCode) -> String {
    let size = code.size();
    let mut d = String::with_capacity(usize::try_from(size * size * 6).unwrap_or(0));
    for y in 0..size {
        for x in 0..size {
            if code.get_module(x, y) {
                d.push_str(&format!("M{},{}h1v1h-1z", x + QR_BORDER, y + QR_BORDER));
            }
        }
    }
    d
}

/// The QR code of `data` as an inline SVG (nothing fetched, no script).
fn qr_svg(data: &str) -> Html {
    let Ok(code) = QrCode::encode_text(data, QrCodeEcc::Medium) else {
        return Html::default();
    };
    let extent = code.size() + 2 * QR_BORDER;
    html! {
        <svg class="qr" data-testid="own-qr" data-uri={data.to_owned()} role="img"
            aria-label={ text::TRUST_QR_LABEL } viewBox={ format!("0 0 {extent} {extent}") }
            width="200" height="200" shape-rendering="crispEdges">
            <rect width={ extent.to_string() } height={ extent.to_string() } fill="#fff" />
            <path d={ qr_path(&code) } fill="#000" />
        </svg>
    }
}

/// The trust screen's inputs.
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The store.
    pub store: Rc<Store>,
    /// Where actions go.
    pub on_action: Callback<Action>,
}

fn trust_attr(t: Option<Trust>) -> &'static str {
    match t {
        Some(Trust::Blind) => "blind",
        Some(Trust::Verified) => "verified",
        Some(Trust::Undecided) => "undecided",
        Some(Trust::Distrusted) => "distrusted",
        None => "unknown",
    }
}

fn device_row(jid: &BareJid, device: &DeviceView, on_action: &Callback<Action>) -> Html {
    let id = device.id;
    let action = |make: fn(BareJid, u32) -> Action| {
        let jid = jid.clone();
        on_action.reform(move |_: MouseEvent| make(jid.clone(), id))
    };
    let known = device.fingerprint.is_some();
    html! {
        <li class={classes!("device", trust_attr(device.trust))} data-testid="device"
            data-jid={jid.to_string()} data-device={id.to_string()} data-trust={trust_attr(device.trust)}
            key={format!("{jid}/{id}")}>
            <div class="device-head">
                <span class="device-id">{ format!("{} {id}", text::TRUST_DEVICE_ID) }</span>
                <span class="device-trust">{ text::trust(device.trust) }</span>
            </div>
            <code class="fingerprint" data-testid="device-fingerprint">
                { device.fingerprint.clone().unwrap_or_else(|| text::TRUST_UNKNOWN_KEY.to_owned()) }
            </code>
            if known {
                <div class="device-actions">
                    if device.trust == Some(Trust::Undecided) {
                        <button type="button" class="button subtle" data-testid="device-accept"
                            onclick={action(Action::AcceptDevice)}>{ text::TRUST_ACCEPT }</button>
                    }
                    if device.trust != Some(Trust::Verified) {
                        <button type="button" class="button primary" data-testid="device-verify"
                            onclick={action(Action::Verify)}>{ text::TRUST_VERIFY }</button>
                    }
                    if device.trust != Some(Trust::Distrusted) {
                        <button type="button" class="button subtle danger" data-testid="device-distrust"
                            onclick={action(Action::Distrust)}>{ text::TRUST_DISTRUST }</button>
                    }
                </div>
            }
        </li>
    }
}

/// The trust screen, as a dialog over the app. Escape or "Close" closes it.
#[function_component(TrustDialog)]
pub fn trust_dialog(props: &Props) -> Html {
    let store = &props.store;
    let close_ref = crate::dialog::use_focus_on_mount();
    let dialog_ref = use_node_ref();
    {
        // A modal keeps the focus: when the focused button goes away (a device just verified),
        // focus returns to the dialog, so Escape and Tab keep working.
        let dialog_ref = dialog_ref.clone();
        use_effect(move || {
            if let Some(dialog) = dialog_ref.cast::<HtmlElement>() {
                let active = web_sys::window()
                    .and_then(|w| w.document())
                    .and_then(|d| d.active_element());
                let inside = active.is_some_and(|a| dialog.contains(Some(&a)));
                if !inside {
                    let _ = dialog.focus();
                }
            }
        });
    }
    let on_keydown = crate::dialog::escape_closes(props.on_action.reform(|()| Action::CloseTrust));
    let close = props.on_action.reform(|_: MouseEvent| Action::CloseTrust);
    let me = store.me.clone();
    let own = match (&me, &store.own_device) {
        (Some(me), Some(own)) => html! {
            <section class="trust-own" aria-labelledby="trust-own-heading">
                <h3 id="trust-own-heading">{ text::TRUST_OWN_HEADING }</h3>
                <p class="hint">{ text::TRUST_OWN_HINT }</p>
                <p class="device-id">{ format!("{} {}", text::TRUST_DEVICE_ID, own.id) }</p>
                <code class="fingerprint" data-testid="own-fingerprint" data-device={own.id.to_string()}>
                    { own.fingerprint.clone() }
                </code>
                { qr_svg(&verification_uri(me, own.id, &own.hex)) }
            </section>
        },
        _ => html! { <p>{ text::TRUST_OWN_PENDING }</p> },
    };
    let own_id = store.own_device.as_ref().map(|o| o.id);
    let own_others: Vec<&DeviceView> = me
        .as_ref()
        .and_then(|me| store.devices.get(me))
        .map(|list| list.iter().filter(|d| Some(d.id) != own_id).collect())
        .unwrap_or_default();
    // The open contact's devices, and every contact with a device waiting for a decision.
    let mut contacts: Vec<BareJid> = Vec::new();
    if let Some(peer) = store.active.clone() {
        contacts.push(peer);
    }
    for (jid, _) in &store.trust_alerts {
        if !contacts.contains(jid) {
            contacts.push(jid.clone());
        }
    }
    let contact_section = |jid: &BareJid| {
        let name = store
            .contacts
            .get(jid)
            .map(|c| c.display_name())
            .unwrap_or_else(|| jid.to_string());
        let devices = store.devices.get(jid).cloned().unwrap_or_default();
        html! {
            <section class="trust-contact" data-testid="trust-contact" data-jid={jid.to_string()}
                key={jid.to_string()}>
                <h3>{ text::contact_devices(&name) }</h3>
                if devices.is_empty() {
                    <p class="hint">{ text::TRUST_NO_DEVICES }</p>
                } else {
                    <ul class="devices">
                        { for devices.iter().map(|d| device_row(jid, d, &props.on_action)) }
                    </ul>
                }
            </section>
        }
    };
    html! {
        <div class="dialog-backdrop">
            <div class="dialog trust" role="dialog" aria-modal="true" aria-labelledby="trust-title"
                data-testid="trust-screen" onkeydown={on_keydown} tabindex="-1" ref={dialog_ref}>
                <header class="dialog-head">
                    <h2 id="trust-title">{ text::TRUST_TITLE }</h2>
                    <button type="button" class="button subtle" data-testid="trust-close"
                        ref={close_ref} onclick={close}>{ text::TRUST_CLOSE }</button>
                </header>
                { own }
                if let Some(me) = me.as_ref().filter(|_| !own_others.is_empty()) {
                    <section class="trust-contact" aria-label={ text::TRUST_OWN_OTHERS }>
                        <h3>{ text::TRUST_OWN_OTHERS }</h3>
                        <ul class="devices">
                            { for own_others.iter().map(|d| device_row(me, d, &props.on_action)) }
                        </ul>
                    </section>
                }
                if contacts.is_empty() {
                    <p class="hint">{ text::TRUST_NO_CHAT }</p>
                }
                { for contacts.iter().map(contact_section) }
                { notifications(store, &props.on_action) }
                if store.persistent {
                    <section class="trust-forget">
                        <button type="button" class="button danger" data-testid="forget-device"
                            onclick={props.on_action.reform(|_: MouseEvent| Action::ForgetDevice)}>
                            { text::FORGET_DEVICE }
                        </button>
                    </section>
                }
            </div>
        </div>
    }
}

/// The notification settings: off, or on with or without the message text.
fn notifications(store: &Store, on_action: &Callback<Action>) -> Html {
    let state = match store.notify {
        _ if store.notify_blocked => text::NOTIFY_BLOCKED,
        NotifyMode::Off => text::NOTIFY_OFF,
        NotifyMode::Private => text::NOTIFY_PRIVATE,
        NotifyMode::WithText => text::NOTIFY_WITH_TEXT,
    };
    let mode = match store.notify {
        NotifyMode::Off => "off",
        NotifyMode::Private => "private",
        NotifyMode::WithText => "text",
    };
    let on = store.notify != NotifyMode::Off;
    let toggle_text = on_action.reform(|e: Event| {
        Action::NotificationText(
            e.target_dyn_into::<web_sys::HtmlInputElement>()
                .is_some_and(|i| i.checked()),
        )
    });
    html! {
        <section class="trust-notify" aria-labelledby="notify-heading">
            <h3 id="notify-heading">{ text::NOTIFY_HEADING }</h3>
            <p data-testid="notifications-state" data-mode={mode}>{ state }</p>
            if on {
                <label class="check">
                    <input type="checkbox" data-testid="notifications-text"
                        checked={store.notify == NotifyMode::WithText} onchange={toggle_text} />
                    { text::NOTIFY_SHOW_TEXT }
                </label>
                <button type="button" class="button subtle" data-testid="notifications-disable"
                    onclick={on_action.reform(|_: MouseEvent| Action::DisableNotifications)}>
                    { text::NOTIFY_DISABLE }
                </button>
            } else {
                <button type="button" class="button subtle" data-testid="notifications-enable"
                    onclick={on_action.reform(|_: MouseEvent| Action::EnableNotifications)}>
                    { text::NOTIFY_ENABLE }
                </button>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_has_the_conversations_shape() {
        let jid: BareJid = "alice@localhost".parse().unwrap_or_else(|_| unreachable!());
        let hex = "ab".repeat(32);
        assert_eq!(
            verification_uri(&jid, 1234, &hex),
            format!("xmpp:alice@localhost?omemo-sid-1234={hex}")
        );
    }

    #[test]
    fn qr_path_draws_the_dark_modules() {
        let code = QrCode::encode_text("xmpp:a@b?omemo-sid-1=00", QrCodeEcc::Medium)
            .unwrap_or_else(|_| unreachable!());
        let dark = (0..code.size())
            .flat_map(|y| (0..code.size()).map(move |x| (x, y)))
            .filter(|&(x, y)| code.get_module(x, y))
            .count();
        assert_eq!(qr_path(&code).matches('M').count(), dark);
    }
}
