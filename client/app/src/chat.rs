//! The conversation view: header with the lock state, the messages, the typing line and the
//! composer. Message bodies are rendered as text nodes only, never as HTML.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use sotto_session::{BareJid, Direction};
use web_sys::{HtmlElement, HtmlTextAreaElement};
use yew::prelude::*;

use crate::dialog::{escape_closes, use_focus_on_mount};
use crate::steps::use_rows_in_steps;
use crate::store::{DeliveryState, Lock, Message, PlaintextPrompt, Store};
use crate::styling::{self, Block, Span, Style};
use crate::time::{self, Millis};
use crate::{availability_words, text, Action};

/// The chat view's inputs.
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The store.
    pub store: Rc<Store>,
    /// Where actions go.
    pub on_action: Callback<Action>,
}

/// How long after the reader's last wheel, touch, key or pointer gesture on the conversation a
/// move up is taken as theirs (momentum scrolling goes on after the gesture).
const READER_GESTURE_MS: f64 = 1500.0;

/// How many of a conversation's newest messages show at first when it opens; older ones follow
/// `MORE_MESSAGES` at a time, each step in a task of its own, so that opening a long
/// conversation never holds the page for long (the reader starts at the newest message anyway).
const FIRST_MESSAGES: usize = 60;
const MORE_MESSAGES: usize = 100;

/// Marks the list as pinned to its newest message: only the end marker may then anchor the
/// scroll position (static/style.css), so the browser itself keeps the bottom in view as rows
/// above it change height.
fn show_pinned(list: &HtmlElement, pinned: bool) {
    let _ = if pinned {
        list.set_attribute("data-pinned", "")
    } else {
        list.remove_attribute("data-pinned")
    };
}

/// The conversation view (or a placeholder when none is open).
#[function_component(ChatView)]
pub fn chat_view(props: &Props) -> Html {
    let store = &props.store;
    let log = use_node_ref();
    let confirm_remove = use_state(|| false);
    let renaming = use_state(|| false);
    // Bumped by a message's "edit" button (touch screens have no Up arrow): the composer
    // then corrects our last message.
    let edit_token = use_state(|| 0u32);
    // The id of our message the user asked to delete for everyone, while they confirm.
    let deleting = use_state(|| None::<String>);
    // One callback for the life of the view: every message item gets the same one, so a new
    // render of the conversation does not re-render each of our messages.
    let on_delete = {
        let deleting = deleting.setter();
        use_callback((), move |id: String, _| deleting.set(Some(id)))
    };
    // What was typed and not sent, per conversation, for as long as this view lives (memory
    // only: it goes at sign-out like everything else).
    let drafts = use_mut_ref(HashMap::new);
    // The text of a message the user asked to quote, numbered so that quoting the same one
    // twice quotes it twice; the composer takes it in.
    let quote = use_state(|| None::<(u32, AttrValue)>);
    let on_quote = {
        let quote = quote.setter();
        let count = use_mut_ref(|| 0u32);
        use_callback((), move |body: AttrValue, _| {
            let mut count = count.borrow_mut();
            *count = count.wrapping_add(1);
            quote.set(Some((*count, body)));
        })
    };
    let active = store.active.clone();
    // Whether the reader is at the newest message: then the view stays there whatever renders
    // (new messages, the typing line, rows whose real height replaces the estimate of
    // `content-visibility: auto`); a reader who scrolled up (to older pages) is left alone.
    let stick = use_mut_ref(|| true);
    // The last scroll position and height seen, and when the reader last touched the list
    // (wheel, touch, keys, pointer). Layout moves the view too — rows near the bottom
    // replacing their estimated height, the position clamped as the list shrinks — and must
    // not unpin it (a slow machine sees many such moves): a move up is the reader's when they
    // just touched the list, or when nothing changed height (find in page, assistive tools).
    let last_seen = use_mut_ref(|| (0i32, 0i32));
    let touched_at = use_mut_ref(|| f64::NEG_INFINITY);
    {
        let stick = stick.clone();
        use_effect_with(active.clone(), move |_| *stick.borrow_mut() = true);
    }
    {
        let log = log.clone();
        let stick = stick.clone();
        use_effect(move || {
            let mut timers = Vec::new();
            if let Some(el) = log.cast::<HtmlElement>() {
                show_pinned(&el, *stick.borrow());
            }
            if *stick.borrow() {
                let to_bottom = move || {
                    if let Some(el) = log.cast::<HtmlElement>() {
                        el.set_scroll_top(el.scroll_height());
                    }
                };
                to_bottom();
                for delay in [16, 120] {
                    let again = to_bottom.clone();
                    timers.push(gloo_timers::callback::Timeout::new(delay, again));
                }
            }
            // Dropping a Timeout cancels it: the next render replaces these.
            move || drop(timers)
        });
    }
    {
        let confirm_remove = confirm_remove.clone();
        let deleting = deleting.clone();
        let renaming = renaming.clone();
        use_effect_with(active.clone(), move |_| {
            confirm_remove.set(false);
            deleting.set(None);
            renaming.set(false);
        });
    }
    // A long conversation opens with its newest messages and grows upwards, a step per task.
    let total = active
        .as_ref()
        .and_then(|peer| store.conversation(peer))
        .map_or(0, |c| c.messages.len());
    let rows = use_rows_in_steps(active.clone(), total, FIRST_MESSAGES, MORE_MESSAGES);
    let Some(peer) = active else {
        return html! {
            <section class="chat chat-empty" aria-label={ text::CHAT_EMPTY_TITLE }>
                <div class="placeholder">
                    <h2>{ text::CHAT_EMPTY_TITLE }</h2>
                    <p>{ text::CHAT_EMPTY_HINT }</p>
                </div>
            </section>
        };
    };
    let contact = store.contacts.get(&peer);
    let name = contact
        .map(|c| c.display_name())
        .unwrap_or_else(|| peer.to_string());
    let (presence, dot) = contact
        .map(|c| availability_words(c.availability()))
        .unwrap_or((text::PRESENCE_OFFLINE, "offline"));
    let conversation = store.conversation(&peer);
    let all_messages: &[Message] = conversation.map(|c| c.messages.as_slice()).unwrap_or(&[]);
    let messages = &all_messages[all_messages.len().saturating_sub(rows)..];
    let complete = messages.len() == all_messages.len();
    let typing = conversation.is_some_and(|c| c.typing);
    let peer_name = AttrValue::from(name.clone());
    let lock = store.lock(&peer);
    let (lock_class, lock_attr, lock_words, lock_hint) = match lock {
        Lock::Encrypted => (
            "lock-closed",
            "encrypted",
            text::LOCK_E2E,
            text::LOCK_E2E_HINT,
        ),
        Lock::Checking => (
            "lock-checking",
            "checking",
            text::LOCK_CHECKING,
            text::LOCK_CHECKING_HINT,
        ),
        Lock::Unavailable => (
            "lock-open",
            "unavailable",
            text::LOCK_UNAVAILABLE,
            text::LOCK_UNAVAILABLE_HINT,
        ),
    };
    let history = conversation.map(|c| c.history.clone()).unwrap_or_default();
    let load_earlier = props.on_action.reform(|_: MouseEvent| Action::LoadEarlier);
    let on_scroll = {
        // Near the top: the previous page (the store ignores this while one is loading).
        let on_action = props.on_action.clone();
        let can_load =
            complete && history.loading.is_none() && !history.complete && history.started;
        let stick = stick.clone();
        let last_seen = last_seen.clone();
        let touched_at = touched_at.clone();
        Callback::from(move |e: Event| {
            let Some(el) = e.target_dyn_into::<HtmlElement>() else {
                return;
            };
            let (top, height) = (el.scroll_top(), el.scroll_height());
            let at_bottom = height - top - el.client_height() < 24;
            let (previous_top, previous_height) = last_seen.replace((top, height));
            let went_up = top < previous_top - 2;
            let by_reader = height == previous_height
                || js_sys::Date::now() - *touched_at.borrow() < READER_GESTURE_MS;
            if at_bottom || (went_up && by_reader) {
                *stick.borrow_mut() = at_bottom;
                show_pinned(&el, at_bottom);
            } else if *stick.borrow() {
                // Layout moved the view away from the newest message: back to it.
                el.set_scroll_top(el.scroll_height());
            }
            if can_load && top < 48 {
                on_action.emit(Action::LoadEarlier);
            }
        })
    };
    let touched = {
        let touched_at = touched_at.clone();
        Rc::new(move || *touched_at.borrow_mut() = js_sys::Date::now())
    };
    let on_wheel = {
        let touched = touched.clone();
        Callback::from(move |_: WheelEvent| touched())
    };
    let on_touch = {
        let touched = touched.clone();
        Callback::from(move |_: TouchEvent| touched())
    };
    let on_key = {
        let touched = touched.clone();
        Callback::from(move |_: KeyboardEvent| touched())
    };
    // Pressing on the list, or dragging its scrollbar (a move with a button held).
    let on_pointer = Callback::from(move |e: PointerEvent| {
        if e.buttons() != 0 {
            touched()
        }
    });
    let back = props.on_action.reform(|_: MouseEvent| Action::Back);
    let on_escape = props.on_action.reform(|_: KeyboardEvent| Action::Back);
    let on_keydown = Callback::from(move |e: KeyboardEvent| {
        if e.key() == "Escape" {
            on_escape.emit(e);
        }
    });
    let last_own = store.last_correctable(&peer);
    let on_edit = {
        let edit_token = edit_token.clone();
        Callback::from(move |()| edit_token.set(edit_token.wrapping_add(1)))
    };
    let blocked = store.blocked.contains(&peer);
    let toggle_block = {
        let peer = peer.clone();
        props
            .on_action
            .reform(move |_: MouseEvent| Action::Block(peer.clone(), !blocked))
    };
    let remove = {
        let confirm_remove = confirm_remove.clone();
        let on_action = props.on_action.clone();
        let peer = peer.clone();
        Callback::from(move |_: MouseEvent| {
            if *confirm_remove {
                on_action.emit(Action::Remove(peer.clone()));
            } else {
                confirm_remove.set(true);
            }
        })
    };
    html! {
        <section class="chat" aria-labelledby="chat-heading" onkeydown={on_keydown}>
            <header class="chat-head">
                <button type="button" class="button subtle back" onclick={back} aria-label={ text::CHAT_BACK }>
                    <span aria-hidden="true">{ "‹" }</span>
                </button>
                <div class="chat-title">
                    if *renaming {
                        <crate::contacts::RenameForm jid={ peer.clone() }
                            name={ contact.and_then(|c| c.name.clone()).map(AttrValue::from) }
                            on_action={ props.on_action.clone() }
                            on_close={ { let renaming = renaming.clone(); Callback::from(move |()| renaming.set(false)) } } />
                    } else {
                        <h2 id="chat-heading" data-testid="chat-heading">{ name.clone() }</h2>
                    }
                    <p class="chat-sub">
                        { crate::contacts::avatar_and_dot(store.avatars.get(&peer).cloned().map(AttrValue::from).as_ref(), dot) }
                        { presence }
                        if name != peer.to_string() {
                            { " · " }<span class="jid">{ peer.to_string() }</span>
                        }
                        if contact.is_some() && !*renaming {
                            { " · " }
                            <button type="button" class="link-button" data-testid="contact-rename"
                                onclick={ { let renaming = renaming.clone(); Callback::from(move |_: MouseEvent| renaming.set(true)) } }>
                                { text::CONTACT_RENAME }
                            </button>
                        }
                    </p>
                </div>
                <p class={classes!("lock", lock_class)} data-testid="lock-state"
                    data-encrypted={ if lock == Lock::Unavailable { "false" } else { "true" } }
                    data-lock={lock_attr} title={lock_hint}>
                    { lock_icon(lock != Lock::Unavailable) }
                    <span>{ lock_words }</span>
                </p>
                <button type="button" class="button subtle block" data-testid="contact-block"
                    data-blocked={ if blocked { "true" } else { "false" } } onclick={toggle_block}>
                    { if blocked { text::CONTACT_UNBLOCK } else { text::CONTACT_BLOCK } }
                </button>
                if contact.is_some() {
                    <button type="button" class={classes!("button", "subtle", "remove", (*confirm_remove).then_some("danger"))}
                        data-testid="contact-remove" onclick={remove}>
                        { if *confirm_remove { format!("{}?", text::CONTACT_REMOVE) } else { text::CONTACT_REMOVE.to_owned() } }
                    </button>
                }
            </header>
            if lock == Lock::Unavailable {
                <p class="lock-hint">{ text::LOCK_UNAVAILABLE_HINT }</p>
            }
            <ol class="messages" ref={log} role="log" aria-label={ text::CHAT_LOG_LABEL } tabindex="0"
                onscroll={on_scroll} onwheel={on_wheel} ontouchmove={on_touch} onkeydown={on_key}
                onpointerdown={on_pointer.clone()} onpointermove={on_pointer}>
                <li class="history">
                    // Only above the oldest message: not while older ones are still being shown.
                    if complete {
                        if history.loading.is_some() {
                            <span class="history-loading" data-testid="history-loading" role="status">
                                <span class="spinner" aria-hidden="true"></span>
                                { text::HISTORY_LOADING }
                            </span>
                        } else if !history.complete {
                            <button type="button" class="button subtle" data-testid="history-load"
                                onclick={load_earlier}>{ text::HISTORY_LOAD }</button>
                        } else if !messages.is_empty() {
                            <span class="history-start" data-testid="history-start">{ text::HISTORY_START }</span>
                        }
                    }
                </li>
                if messages.is_empty() && history.loading.is_none() {
                    <li class="empty">{ text::CHAT_NO_MESSAGES }</li>
                }
                { for message_rows(messages, store.now(), &peer_name, last_own.as_ref().map(|(id, _)| id.as_str()), &MessageCallbacks { on_edit, on_delete, on_quote }, conversation.and_then(|c| c.first_unread)) }
                <li class="end" aria-hidden="true"></li>
            </ol>
            <p class="typing" aria-live="off">
                if typing { { format!("{name} {}", text::CHAT_TYPING) } }
            </p>
            if blocked {
                <p class="blocked-note" data-testid="blocked-note" role="status">
                    { text::blocked_note(&name) }
                </p>
            } else {
                <Composer key={ peer.to_string() } on_action={ props.on_action.clone() }
                    last_own={ last_own.clone() } edit_token={ *edit_token } quote={ (*quote).clone() }
                    draft={ Draft { drafts: drafts.clone(), peer: peer.clone() } } />
            }
            if let Some(message) = deleting.as_ref().and_then(|id| {
                messages.iter().find(|m| m.id.as_deref() == Some(id.as_str()) && m.direction == Direction::Outgoing && !m.retracted)
            }) {
                <DeleteDialog body={ AttrValue::from(message.body.clone()) }
                    on_confirm={ {
                        let deleting = deleting.clone();
                        let on_action = props.on_action.clone();
                        let id = message.id.clone().unwrap_or_default();
                        Callback::from(move |()| {
                            deleting.set(None);
                            on_action.emit(Action::Retract(id.clone()));
                        })
                    } }
                    on_cancel={ {
                        let deleting = deleting.clone();
                        Callback::from(move |()| deleting.set(None))
                    } } />
            }
        </section>
    }
}

/// What the messages' buttons call.
struct MessageCallbacks {
    /// Starts correcting our last message.
    on_edit: Callback<()>,
    /// Asks to delete one of ours for everyone.
    on_delete: Callback<String>,
    /// Quotes a message in the message box.
    on_quote: Callback<AttrValue>,
}

/// The messages, each day's under a heading ("Today", "Yesterday", the date), all keyed so
/// that older pages arriving in front move no rows.
fn message_rows(
    messages: &[Message],
    now: Millis,
    peer_name: &AttrValue,
    correctable: Option<&str>,
    callbacks: &MessageCallbacks,
    first_unread: Option<u64>,
) -> Vec<Html> {
    let mut rows = Vec::with_capacity(messages.len() + 8);
    let mut previous_day = None;
    for m in messages {
        if let Some(at) = m.at {
            let day = time::local_day(at);
            if previous_day.replace(day) != Some(day) {
                rows.push(html! {
                    <li key={ format!("day-{}", m.seq) } class="day" data-testid="day">
                        <span>{ time::day_heading(at, now) }</span>
                    </li>
                });
            }
        }
        if first_unread == Some(m.seq) {
            rows.push(html! {
                <li key="unread" class="unread-divider" data-testid="unread-divider">
                    <span>{ text::UNREAD_DIVIDER }</span>
                </li>
            });
        }
        let editable = m.direction == Direction::Outgoing
            && correctable.is_some()
            && m.id.as_deref() == correctable;
        rows.push(html! {
            <MessageItem key={m.seq} message={m.clone()} peer_name={ peer_name.clone() }
                on_edit={ editable.then(|| callbacks.on_edit.clone()) }
                on_delete={ callbacks.on_delete.clone() } on_quote={ callbacks.on_quote.clone() } />
        });
    }
    rows
}

#[derive(Properties, PartialEq)]
struct MessageProps {
    message: Message,
    peer_name: AttrValue,
    /// For our last message, when it can be corrected: starts the correction.
    on_edit: Option<Callback<()>>,
    /// Asks to delete one of our messages for everyone (given its id); the view confirms first.
    on_delete: Callback<String>,
    /// Quotes a message's text in the message box.
    on_quote: Callback<AttrValue>,
}

/// One message. A component, so that a long conversation is not rebuilt for every change.
#[function_component(MessageItem)]
fn message_item(props: &MessageProps) -> Html {
    let message = &props.message;
    let peer_name: &str = &props.peer_name;
    let outgoing = message.direction == Direction::Outgoing;
    let direction = if outgoing { "out" } else { "in" };
    // A deleted message's delivery is of no more interest.
    let state = match message.state {
        _ if message.retracted => None,
        DeliveryState::Sending => Some(text::STATE_SENDING),
        DeliveryState::Sent => Some(text::STATE_SENT),
        DeliveryState::Delivered => Some(text::STATE_DELIVERED),
        DeliveryState::Failed => Some(text::STATE_FAILED),
        DeliveryState::Received => None,
    };
    let who = if outgoing { text::YOU } else { peer_name };
    // The line under the text: what it was not, when it was sent, whether it was corrected,
    // where it is.
    let mut meta: Vec<Html> = Vec::with_capacity(4);
    if !message.encrypted && !message.retracted {
        meta.push(html! {
            <span class="not-e2e" data-testid="message-not-encrypted">
                { lock_icon(false) }{ text::MESSAGE_NOT_E2E }
            </span>
        });
    }
    if let Some(at) = message.at {
        meta.push(html! {
            <time datetime={ time::format_datetime(at) } title={ time::full_date_time(at) }
                data-testid="message-time">
                { time::clock_time(at) }
            </time>
        });
    }
    if message.edited {
        meta.push(html! {
            <span class="edited" data-testid="message-edited" title={ text::MESSAGE_EDITED_HINT }>
                { text::MESSAGE_EDITED }
            </span>
        });
    }
    if let Some(state) = state {
        meta.push(html! { { state } });
    }
    if let Some(on_edit) = &props.on_edit {
        let onclick = on_edit.reform(|_: MouseEvent| ());
        meta.push(html! {
            <button type="button" class="link-button" data-testid="message-edit"
                aria-label={ text::MESSAGE_EDIT_LABEL } {onclick}>{ text::MESSAGE_EDIT }</button>
        });
    }
    // Quote any message with text; delete any of ours for everyone (XEP-0424), once. Shown on
    // hover or focus where there is a pointer (static/style.css), so a long conversation is
    // not a column of buttons; always on touch screens.
    let has_text = !message.retracted && message.error.is_none() && !message.body.is_empty();
    let quote = has_text.then(|| {
        let body = AttrValue::from(message.body.clone());
        let onclick = props.on_quote.reform(move |_: MouseEvent| body.clone());
        html! {
            <>
                { if meta.is_empty() { "" } else { " · " } }
                <button type="button" class="link-button" data-testid="message-quote"
                    aria-label={ text::MESSAGE_QUOTE_LABEL } {onclick}>{ text::MESSAGE_QUOTE }</button>
            </>
        }
    });
    let delete = match (outgoing, message.retracted, message.id.clone()) {
        (true, false, Some(id)) => {
            let onclick = props.on_delete.reform(move |_: MouseEvent| id.clone());
            Some(html! {
                <>
                    { if meta.is_empty() && quote.is_none() { "" } else { " · " } }
                    <button type="button" class="link-button" data-testid="message-delete"
                        aria-label={ text::MESSAGE_DELETE_LABEL } {onclick}>{ text::MESSAGE_DELETE }</button>
                </>
            })
        }
        _ => None,
    };
    let actions = if quote.is_some() || delete.is_some() {
        html! { <span class="message-actions">{ quote }{ delete }</span> }
    } else {
        Html::default()
    };
    html! {
        <li class={classes!("message", direction, message.state.attr(), message.error.is_some().then_some("undecryptable"))}
            data-testid="message"
            data-direction={direction} data-encrypted={ if message.encrypted { "true" } else { "false" } }
            data-state={ message.state.attr() }
            data-edited={ if message.edited { "true" } else { "false" } }
            data-retracted={ if message.retracted { "true" } else { "false" } }>
            <span class="visually-hidden">{ format!("{who}: ") }</span>
            if message.retracted {
                <p class="body retracted" data-testid="message-retracted">
                    { if outgoing { text::MESSAGE_RETRACTED_OWN } else { text::MESSAGE_RETRACTED } }
                </p>
            } else if let Some(error) = &message.error {
                <p class="body decrypt-error" data-testid="decrypt-error">
                    { format!("{} {error}", text::DECRYPT_ERROR_PREFIX) }
                </p>
            } else {
                <div class="body">{ body_html(&message.body) }</div>
            }
            <span class="meta">
                { for meta.into_iter().enumerate().map(|(i, part)| html! {
                    <>{ if i > 0 { " · " } else { "" } }{ part }</>
                }) }
                { actions }
            </span>
        </li>
    }
}

/// A lock, closed or open.
pub fn lock_icon(closed: bool) -> Html {
    let shackle = if closed {
        "M5 7V5a3 3 0 0 1 6 0v2"
    } else {
        "M5 7V5a3 3 0 0 1 5.8-1"
    };
    html! {
        <svg class="icon" viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">
            <path d={shackle} fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round" />
            <rect x="3" y="7" width="10" height="7.5" rx="1.5" fill="currentColor" />
        </svg>
    }
}

/// The delete dialog's inputs.
#[derive(Properties, PartialEq)]
struct DeleteProps {
    /// The text of the message to delete, quoted so the user sees which one it is.
    body: AttrValue,
    on_confirm: Callback<()>,
    on_cancel: Callback<()>,
}

/// "Delete for everyone?": says what deleting can and cannot do. Escape or the cancel button
/// keeps the message; focus starts on the cancel button.
#[function_component(DeleteDialog)]
fn delete_dialog(props: &DeleteProps) -> Html {
    let cancel_ref = use_focus_on_mount();
    let cancel = props.on_cancel.reform(|_: MouseEvent| ());
    let confirm = props.on_confirm.reform(|_: MouseEvent| ());
    let on_keydown = escape_closes(props.on_cancel.clone());
    html! {
        <div class="dialog-backdrop">
            <div class="dialog" role="alertdialog" aria-modal="true" aria-labelledby="delete-title"
                aria-describedby="delete-text" data-testid="delete-dialog" onkeydown={on_keydown}>
                <h2 id="delete-title">{ text::DELETE_TITLE }</h2>
                <p id="delete-text">{ text::DELETE_TEXT }</p>
                <blockquote class="quote">{ props.body.clone() }</blockquote>
                <div class="dialog-actions">
                    <button type="button" class="button" data-testid="message-delete-cancel"
                        ref={cancel_ref} onclick={cancel}>{ text::DELETE_CANCEL }</button>
                    <button type="button" class="button danger" data-testid="message-delete-confirm"
                        onclick={confirm}>{ text::DELETE_CONFIRM }</button>
                </div>
            </div>
        </div>
    }
}

/// The plaintext dialog's inputs.
#[derive(Properties, PartialEq)]
pub struct PlaintextProps {
    /// The question.
    pub prompt: PlaintextPrompt,
    /// The store (for the contact's name).
    pub store: Rc<Store>,
    /// Where the answer goes.
    pub on_action: Callback<Action>,
}

/// "Send without encryption?": the only way a message goes out in plaintext. Escape or the
/// cancel button closes it without sending; focus starts on "Don't send".
#[function_component(PlaintextDialog)]
pub fn plaintext_dialog(props: &PlaintextProps) -> Html {
    let cancel_ref = use_focus_on_mount();
    let peer = &props.prompt.peer;
    let who = props
        .store
        .contacts
        .get(peer)
        .map(|c| c.display_name())
        .unwrap_or_else(|| peer.to_string());
    let cancel = props
        .on_action
        .reform(|_: MouseEvent| Action::CancelPlaintext);
    let confirm = props
        .on_action
        .reform(|_: MouseEvent| Action::ConfirmPlaintext);
    let on_keydown = escape_closes(props.on_action.reform(|()| Action::CancelPlaintext));
    html! {
        <div class="dialog-backdrop">
            <div class="dialog" role="alertdialog" aria-modal="true" aria-labelledby="plaintext-title"
                aria-describedby="plaintext-text" data-testid="plaintext-dialog" onkeydown={on_keydown}>
                <h2 id="plaintext-title">{ lock_icon(false) }{ text::PLAINTEXT_TITLE }</h2>
                <p id="plaintext-text">{ text::plaintext_question(&who) }</p>
                <blockquote class="quote">{ props.prompt.body.clone() }</blockquote>
                <div class="dialog-actions">
                    <button type="button" class="button" data-testid="plaintext-cancel"
                        ref={cancel_ref} onclick={cancel}>{ text::PLAINTEXT_CANCEL }</button>
                    <button type="button" class="button danger" data-testid="plaintext-confirm"
                        onclick={confirm}>{ text::PLAINTEXT_CONFIRM }</button>
                </div>
            </div>
        </div>
    }
}

/// Where the composer keeps its conversation's unsent text between visits.
#[derive(Clone)]
struct Draft {
    drafts: Rc<RefCell<HashMap<BareJid, String>>>,
    peer: BareJid,
}

impl Draft {
    fn get(&self) -> String {
        self.drafts
            .borrow()
            .get(&self.peer)
            .cloned()
            .unwrap_or_default()
    }

    fn set(&self, text: &str) {
        let mut drafts = self.drafts.borrow_mut();
        if text.trim().is_empty() {
            drafts.remove(&self.peer);
        } else {
            drafts.insert(self.peer.clone(), text.to_owned());
        }
    }
}

impl PartialEq for Draft {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.drafts, &other.drafts) && self.peer == other.peer
    }
}

#[derive(Properties, PartialEq)]
struct ComposerProps {
    on_action: Callback<Action>,
    /// Our last message if it can be corrected: its id and text.
    last_own: Option<(String, String)>,
    /// Bumped when the user asks to correct it with the message's own button.
    edit_token: u32,
    /// This conversation's unsent text: shown again when the conversation is, and after a
    /// correction (which borrows the box) ends.
    draft: Draft,
    /// A message's text to quote (numbered: each new number quotes once).
    quote: Option<(u32, AttrValue)>,
}

/// The message box: Enter sends, Shift+Enter starts a new line; typing notifications. The Up
/// arrow in an empty box corrects our last message (as in Conversations, Dino and Gajim);
/// Escape gives up the correction.
#[function_component(Composer)]
fn composer(props: &ComposerProps) -> Html {
    let text_state = {
        let draft = props.draft.clone();
        use_state(move || draft.get())
    };
    // The id of the message being corrected, and its text as it was.
    let editing = use_state(|| None::<(String, String)>);
    let typing = use_mut_ref(|| false);
    let input = use_node_ref();
    {
        // The message's "edit" button: the same as the Up arrow (the token it bumps counts
        // from the composer's creation on).
        let seen_token = use_mut_ref(|| props.edit_token);
        let text_state = text_state.clone();
        let editing = editing.clone();
        let last_own = props.last_own.clone();
        use_effect_with(props.edit_token, move |token| {
            if *seen_token.borrow() != *token {
                *seen_token.borrow_mut() = *token;
                if let Some((id, body)) = last_own {
                    text_state.set(body.clone());
                    editing.set(Some((id, body)));
                }
            }
        });
    }
    {
        // Quoting: the message's lines go into the box as a quotation (XEP-0393, as
        // Conversations quotes), after what is there, and the caret after them.
        let seen = use_mut_ref(|| props.quote.as_ref().map(|(n, _)| *n));
        let text_state = text_state.clone();
        let editing = editing.clone();
        let draft = props.draft.clone();
        let input = input.clone();
        use_effect_with(props.quote.clone(), move |quote| {
            let Some((number, body)) = quote else {
                return;
            };
            if seen.borrow_mut().replace(*number) == Some(*number) {
                return;
            }
            let text = with_quote(&text_state, body);
            if editing.is_none() {
                draft.set(&text);
            }
            text_state.set(text);
            if let Some(el) = input.cast::<HtmlTextAreaElement>() {
                let _ = el.focus();
            }
        });
    }
    {
        // A correction ends when its message stops being our last correctable one (we deleted
        // it, or sent another from elsewhere); what was typed stays, as a new message's draft.
        let editing = editing.clone();
        let text_state = text_state.clone();
        let draft = props.draft.clone();
        let last_id = props.last_own.as_ref().map(|(id, _)| id.clone());
        use_effect_with(last_id, move |last_id| {
            if editing
                .as_ref()
                .is_some_and(|(id, _)| Some(id) != last_id.as_ref())
            {
                editing.set(None);
                draft.set(&text_state);
            }
        });
    }
    {
        // Focus the box when a conversation opens, and with the caret after the text when a
        // correction begins or ends.
        let input = input.clone();
        use_effect_with(editing.is_some(), move |_| {
            if let Some(el) = input.cast::<HtmlTextAreaElement>() {
                let _ = el.focus();
                let end = el.value().encode_utf16().count() as u32;
                let _ = el.set_selection_range(end, end);
            }
        });
    }
    let send = {
        let text_state = text_state.clone();
        let editing = editing.clone();
        let typing = typing.clone();
        let draft = props.draft.clone();
        let on_action = props.on_action.clone();
        Callback::from(move |()| {
            let body = (*text_state).trim().to_owned();
            if body.is_empty() {
                return;
            }
            match &*editing {
                Some((replaces, before)) => {
                    if body != before.trim() {
                        on_action.emit(Action::Correct {
                            replaces: replaces.clone(),
                            body,
                        });
                    }
                    editing.set(None);
                    // The box was borrowed: what was being written before comes back.
                    text_state.set(draft.get());
                }
                None => {
                    on_action.emit(Action::Send(body));
                    draft.set("");
                    text_state.set(String::new());
                }
            }
            // The message itself carries <active/>.
            *typing.borrow_mut() = false;
        })
    };
    let cancel_edit = {
        let text_state = text_state.clone();
        let editing = editing.clone();
        let draft = props.draft.clone();
        Callback::from(move |()| {
            editing.set(None);
            text_state.set(draft.get());
        })
    };
    let on_input = {
        let text_state = text_state.clone();
        let typing = typing.clone();
        let on_action = props.on_action.clone();
        let editing = editing.clone();
        let draft = props.draft.clone();
        Callback::from(move |e: InputEvent| {
            let value = e
                .target_dyn_into::<HtmlTextAreaElement>()
                .map(|t| t.value())
                .unwrap_or_default();
            // A correction's text is not a draft: the draft waits until the correction ends.
            if editing.is_none() {
                draft.set(&value);
            }
            let now_typing = !value.trim().is_empty();
            if now_typing != *typing.borrow() {
                *typing.borrow_mut() = now_typing;
                on_action.emit(Action::Typing(now_typing));
            }
            text_state.set(value);
        })
    };
    let on_keydown = {
        let send = send.clone();
        let cancel_edit = cancel_edit.clone();
        let text_state = text_state.clone();
        let editing = editing.clone();
        let last_own = props.last_own.clone();
        Callback::from(move |e: KeyboardEvent| {
            let key = e.key();
            if key == "Enter" && !e.shift_key() && !e.is_composing() {
                e.prevent_default();
                send.emit(());
            } else if key == "ArrowUp" && text_state.is_empty() && editing.is_none() {
                if let Some((id, body)) = &last_own {
                    e.prevent_default();
                    text_state.set(body.clone());
                    editing.set(Some((id.clone(), body.clone())));
                }
            } else if key == "Escape" && editing.is_some() {
                // Gives up the correction only; the conversation stays open.
                e.prevent_default();
                e.stop_propagation();
                cancel_edit.emit(());
            }
        })
    };
    let on_submit = Callback::from(move |e: SubmitEvent| {
        e.prevent_default();
        send.emit(());
    });
    let on_cancel = cancel_edit.reform(|_: MouseEvent| ());
    html! {
        <>
        if editing.is_some() {
            <p class="composer-editing" data-testid="chat-editing" role="status">
                <span>{ text::CHAT_EDITING }</span>
                <button type="button" class="button subtle" data-testid="chat-edit-cancel"
                    onclick={on_cancel}>{ text::CHAT_EDIT_CANCEL }</button>
            </p>
        }
        // autocomplete="off" on the form (that is where Chromium looks): the browser keeps no
        // copy of a draft in the tab's restorable form state (docs/SECURITY.md §6).
        <form class="composer" onsubmit={on_submit} autocomplete="off">
            <label class="visually-hidden" for="chat-input">{ text::CHAT_INPUT_LABEL }</label>
            <textarea id="chat-input" data-testid="chat-input" ref={input} rows="1"
                autocomplete="off"
                placeholder={ text::CHAT_INPUT_PLACEHOLDER } value={ (*text_state).clone() }
                oninput={on_input} onkeydown={on_keydown} maxlength="20000" />
            <button type="submit" class="button primary" data-testid="chat-send">
                { if editing.is_some() { text::CHAT_SEND_CORRECTION } else { text::CHAT_SEND } }
            </button>
        </form>
        </>
    }
}

/// `text` followed by `quoted` as a quotation, one `> ` per line, ready for the reply. The
/// quotations inside `quoted` are left out, as Conversations does: a quote of a quote of a
/// quote helps nobody.
fn with_quote(text: &str, quoted: &str) -> String {
    let mut out = text.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for line in quoted.lines().filter(|l| !l.starts_with('>')) {
        out.push_str("> ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A message text as text: styled as XEP-0393 says (crate::styling) when it has any styling,
/// with its web addresses as links that show their real target (crate::links). Never HTML:
/// the text is only ever text nodes inside elements the app chose.
fn body_html(body: &str) -> Html {
    if !styling::has_styling(body) {
        return text_with_links(body);
    }
    blocks_html(&styling::blocks(body))
}

/// Lines are joined by line breaks (the body keeps white space); quotations and preformatted
/// blocks are blocks of their own.
fn blocks_html(blocks: &[Block<'_>]) -> Html {
    let mut nodes = Vec::with_capacity(blocks.len() * 2);
    let mut after_line = false;
    for block in blocks {
        match block {
            Block::Line(spans) => {
                if after_line {
                    nodes.push(html! { "\n" });
                }
                nodes.push(spans_html(spans));
                after_line = true;
            }
            Block::Pre(lines) => {
                nodes.push(html! { <pre class="styled-pre">{ lines.join("\n") }</pre> });
                after_line = false;
            }
            Block::Quote(inner) => {
                nodes.push(
                    html! { <blockquote class="styled-quote">{ blocks_html(inner) }</blockquote> },
                );
                after_line = false;
            }
        }
    }
    html! { { for nodes } }
}

/// Styled spans keep their directives, dimmed and hidden from screen readers.
fn spans_html(spans: &[Span<'_>]) -> Html {
    html! {
        { for spans.iter().map(|span| match span {
            Span::Plain(text) => text_with_links(text),
            Span::Styled(style, children) => {
                let directive = html! {
                    <span class="directive" aria-hidden="true">{ style.directive().to_string() }</span>
                };
                let inner = html! { <>{ directive.clone() }{ spans_html(children) }{ directive }</> };
                match style {
                    Style::Strong => html! { <strong>{ inner }</strong> },
                    Style::Emphasis => html! { <em>{ inner }</em> },
                    Style::Strike => html! { <s>{ inner }</s> },
                    Style::Code => html! { <code>{ inner }</code> },
                }
            }
        }) }
    }
}

/// Text with its web addresses as links that show their real target (crate::links).
fn text_with_links(body: &str) -> Html {
    use crate::links::{segments, Segment};
    let segments = segments(body);
    if segments.iter().all(|s| matches!(s, Segment::Text(_))) {
        return html! { body.to_owned() };
    }
    html! {
        { for segments.into_iter().map(|segment| match segment {
            Segment::Text(t) => html! { t.to_owned() },
            Segment::Link { url, ascii_host } => html! {
                <>
                    <a href={url.to_owned()} target="_blank" rel="noopener noreferrer nofollow"
                        referrerpolicy="no-referrer" data-testid="message-link"
                        title={ text::link_title(url) }>{ url.to_owned() }</a>
                    if let Some(ascii) = ascii_host {
                        <span class="link-host" data-testid="message-link-host">
                            { text::link_ascii_host(&ascii) }
                        </span>
                    }
                </>
            },
        }) }
    }
}

#[cfg(test)]
mod tests {
    use super::with_quote;

    #[test]
    fn quotes_go_after_the_text_one_marker_a_line_without_older_quotes() {
        assert_eq!(with_quote("", "one\ntwo"), "> one\n> two\n");
        assert_eq!(with_quote("so", "x"), "so\n> x\n");
        assert_eq!(with_quote("so\n", "x"), "so\n> x\n");
        assert_eq!(with_quote("", "> older\nnew"), "> new\n");
    }
}
