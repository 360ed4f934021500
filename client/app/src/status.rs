//! Our own status: how available we are and an optional line of text, as contacts see it. A
//! button in the top bar shows it and opens a small dialog to change it.

use sotto_session::Availability;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::dialog::{escape_closes, use_focus_on_mount};
use crate::{availability_words, text, Action};

/// The longest status text, in characters (other clients show one line of it).
pub const MAX_STATUS_CHARS: usize = 140;

/// What can be chosen, in the order shown ("free to chat" is left out: few clients show it
/// differently from "online").
const CHOICES: [(Availability, &str); 4] = [
    (Availability::Available, "available"),
    (Availability::Away, "away"),
    (Availability::ExtendedAway, "xa"),
    (Availability::DoNotDisturb, "dnd"),
];

/// The status button's inputs.
#[derive(Properties, PartialEq)]
pub struct Props {
    /// Our availability now.
    pub availability: Availability,
    /// Our status text now.
    pub text: Option<AttrValue>,
    /// Our picture, if we publish one.
    pub avatar: Option<AttrValue>,
    /// Where the new status goes.
    pub on_action: Callback<Action>,
}

/// The top bar's status button and, while it is open, its dialog.
#[function_component(OwnStatus)]
pub fn own_status(props: &Props) -> Html {
    let open = use_state(|| false);
    let (words, class) = availability_words(props.availability);
    let toggle = {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| open.set(!*open))
    };
    let close = {
        let open = open.clone();
        Callback::from(move |()| open.set(false))
    };
    let title = match &props.text {
        Some(status) => format!("{}: {words} · {status}", text::STATUS_LABEL),
        None => format!("{}: {words}", text::STATUS_LABEL),
    };
    html! {
        <>
            <button type="button" class="button subtle own-status" data-testid="own-status"
                data-presence={ class } title={ title.clone() } aria-label={ title }
                aria-haspopup="dialog" onclick={toggle}>
                { crate::contacts::avatar_and_dot(props.avatar.as_ref(), class) }
                <span class="own-status-words">{ words }</span>
            </button>
            if *open {
                <StatusDialog availability={ props.availability } text={ props.text.clone() }
                    avatar={ props.avatar.clone() }
                    on_action={ props.on_action.clone() } on_close={close} />
            }
        </>
    }
}

#[derive(Properties, PartialEq)]
struct DialogProps {
    availability: Availability,
    text: Option<AttrValue>,
    avatar: Option<AttrValue>,
    on_action: Callback<Action>,
    on_close: Callback<()>,
}

/// Choose an availability and write a line; Save sends it, Escape or Cancel keeps the old one.
#[function_component(StatusDialog)]
fn status_dialog(props: &DialogProps) -> Html {
    let chosen = use_state(|| props.availability);
    let line = use_state(|| props.text.as_deref().unwrap_or_default().to_owned());
    // Focus starts on the choice in force (the first when it is none of them).
    let first = use_focus_on_mount();
    let focus_index = CHOICES
        .iter()
        .position(|&(a, _)| a == props.availability)
        .unwrap_or(0);
    let on_input = {
        let line = line.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(input) = e.target_dyn_into::<HtmlInputElement>() {
                line.set(input.value());
            }
        })
    };
    let save = {
        let chosen = chosen.clone();
        let line = line.clone();
        let on_action = props.on_action.clone();
        let on_close = props.on_close.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            on_action.emit(Action::SetStatus {
                availability: *chosen,
                text: (*line).clone(),
            });
            on_close.emit(());
        })
    };
    let cancel = props.on_close.reform(|_: MouseEvent| ());
    let remove = props.on_action.reform(|_: MouseEvent| Action::RemoveAvatar);
    let on_file = {
        let on_action = props.on_action.clone();
        Callback::from(move |e: Event| {
            let file = e
                .target_dyn_into::<HtmlInputElement>()
                .and_then(|input| input.files())
                .and_then(|files| files.get(0));
            if let Some(file) = file {
                let on_action = on_action.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    on_action.emit(match square_jpeg(&file).await {
                        Some((data, side)) => Action::PublishAvatar {
                            data,
                            width: side,
                            height: side,
                        },
                        None => Action::Notice(text::AVATAR_UNUSABLE.to_owned()),
                    });
                });
            }
        })
    };
    let on_keydown = escape_closes(props.on_close.clone());
    html! {
        <div class="dialog-backdrop">
            <form class="dialog status-dialog" role="dialog" aria-modal="true"
                aria-labelledby="status-title" data-testid="status-dialog" onkeydown={on_keydown}
                onsubmit={save} autocomplete="off">
                <h2 id="status-title">{ text::STATUS_TITLE }</h2>
                <fieldset class="status-choices">
                    <legend class="visually-hidden">{ text::STATUS_LABEL }</legend>
                    { for CHOICES.iter().enumerate().map(|(i, &(availability, value))| {
                        let (words, class) = availability_words(availability);
                        let pick = {
                            let chosen = chosen.clone();
                            Callback::from(move |_: Event| chosen.set(availability))
                        };
                        html! {
                            <label class="status-choice">
                                <input type="radio" name="availability" {value}
                                    data-testid={ format!("own-status-{value}") }
                                    checked={ *chosen == availability } onchange={pick}
                                    ref={ if i == focus_index { first.clone() } else { NodeRef::default() } } />
                                <span class={classes!("dot", class)} aria-hidden="true"></span>
                                { words }
                            </label>
                        }
                    }) }
                </fieldset>
                <label class="field">
                    <span>{ text::STATUS_TEXT_LABEL }</span>
                    <input type="text" data-testid="own-status-text" value={ (*line).clone() }
                        placeholder={ text::STATUS_TEXT_PLACEHOLDER } oninput={on_input}
                        maxlength={ MAX_STATUS_CHARS.to_string() } />
                </label>
                <p class="hint">{ text::STATUS_HINT }</p>
                <h3>{ text::AVATAR_HEADING }</h3>
                <div class="own-avatar">
                    if let Some(url) = &props.avatar {
                        <img class="avatar" src={ url.clone() } alt="" data-testid="own-avatar" />
                    }
                    <label class="button subtle">
                        { text::AVATAR_CHOOSE }
                        <input type="file" class="visually-hidden" data-testid="own-avatar-file"
                            accept="image/png,image/jpeg,image/webp,image/gif" onchange={on_file} />
                    </label>
                    if props.avatar.is_some() {
                        <button type="button" class="button subtle" data-testid="own-avatar-remove"
                            onclick={remove}>{ text::AVATAR_REMOVE }</button>
                    }
                </div>
                <p class="hint">{ text::AVATAR_HINT }</p>
                <div class="dialog-actions">
                    <button type="button" class="button" data-testid="own-status-cancel"
                        onclick={cancel}>{ text::STATUS_CANCEL }</button>
                    <button type="submit" class="button primary" data-testid="own-status-save">
                        { text::STATUS_SAVE }
                    </button>
                </div>
            </form>
        </div>
    }
}

/// The side, in pixels, of the pictures we publish (clients show them at 32–64 CSS pixels, on
/// screens of up to three device pixels each).
const AVATAR_SIDE: u32 = 192;

/// The user's image as our picture: decoded by the browser, cropped to its centre square,
/// scaled to [`AVATAR_SIDE`] and saved again as a JPEG on a white background. Saving it again
/// drops what the file carried besides its pixels (the place and time of a photo, the camera);
/// `None` if the browser cannot read it as an image.
async fn square_jpeg(file: &web_sys::File) -> Option<(Vec<u8>, u32)> {
    use wasm_bindgen::JsCast as _;
    let url = web_sys::Url::create_object_url_with_blob(file).ok()?;
    let image = web_sys::HtmlImageElement::new().ok()?;
    image.set_src(&url);
    let decoded = wasm_bindgen_futures::JsFuture::from(image.decode()).await;
    let _ = web_sys::Url::revoke_object_url(&url);
    decoded.ok()?;
    let (width, height) = (image.natural_width(), image.natural_height());
    if width == 0 || height == 0 {
        return None;
    }
    let side = width.min(height);
    let canvas: web_sys::HtmlCanvasElement = web_sys::window()?
        .document()?
        .create_element("canvas")
        .ok()?
        .dyn_into()
        .ok()?;
    canvas.set_width(AVATAR_SIDE);
    canvas.set_height(AVATAR_SIDE);
    let context: web_sys::CanvasRenderingContext2d =
        canvas.get_context("2d").ok()??.dyn_into().ok()?;
    let full = f64::from(AVATAR_SIDE);
    context.set_fill_style_str("#fff");
    context.fill_rect(0.0, 0.0, full, full);
    context
        .draw_image_with_html_image_element_and_sw_and_sh_and_dx_and_dy_and_dw_and_dh(
            &image,
            f64::from((width - side) / 2),
            f64::from((height - side) / 2),
            f64::from(side),
            f64::from(side),
            0.0,
            0.0,
            full,
            full,
        )
        .ok()?;
    let data_url = canvas
        .to_data_url_with_type_and_encoder_options("image/jpeg", &wasm_bindgen::JsValue::from(0.88))
        .ok()?;
    let encoded = data_url.split_once("base64,")?.1;
    let binary = web_sys::window()?.atob(encoded).ok()?;
    // atob gives one character per byte.
    let data = binary.chars().map(|c| c as u32 as u8).collect();
    Some((data, AVATAR_SIDE))
}
