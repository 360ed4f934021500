//! The contacts sidebar: search, the roster, contact requests, adding a contact.

use std::rc::Rc;

use sotto_session::{BareJid, Subscription};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::login::parse_bare_jid;
use crate::steps::use_rows_in_steps;
use crate::store::{Contact, Store};
use crate::{availability_words, text, Action};

/// The sidebar's inputs.
#[derive(Properties, PartialEq)]
pub struct Props {
    /// The store.
    pub store: Rc<Store>,
    /// Where actions go.
    pub on_action: Callback<Action>,
}

fn input_value(e: &InputEvent) -> String {
    e.target_dyn_into::<HtmlInputElement>()
        .map(|input| input.value())
        .unwrap_or_default()
}

/// How many rows the roster shows at first; the rest follow `MORE_ROWS` at a time, each step in
/// a task of its own, so that a roster of thousands never holds the page for long (one step of
/// rows costs about 25 ms in Chromium on a slow machine) and the first screenful comes at once.
const FIRST_ROWS: usize = 60;
const MORE_ROWS: usize = 150;

/// The sidebar.
#[function_component(Sidebar)]
pub fn sidebar(props: &Props) -> Html {
    let query = use_state(String::new);
    let store = &props.store;
    let on_search = {
        let query = query.clone();
        Callback::from(move |e: InputEvent| query.set(input_value(&e)))
    };
    // Sorting and searching a big roster is redone only when its entries or the search change,
    // not for every presence or unread count.
    let order = {
        let store = store.clone();
        use_memo(
            (store.roster_revision(), (*query).clone()),
            move |(_, query)| -> Vec<BareJid> {
                store
                    .sorted_contacts(query)
                    .into_iter()
                    .map(|c| c.jid.clone())
                    .collect()
            },
        )
    };
    let contacts: Vec<&Contact> = order
        .iter()
        .filter_map(|jid| store.contacts.get(jid))
        .collect();
    // Each search starts again with a first screenful.
    let rows = use_rows_in_steps((*query).clone(), contacts.len(), FIRST_ROWS, MORE_ROWS);
    let list = if contacts.is_empty() {
        let empty = if store.contacts.is_empty() {
            text::CONTACTS_EMPTY
        } else {
            text::CONTACTS_NO_MATCH
        };
        html! { <p class="empty">{ empty }</p> }
    } else {
        html! {
            <ul class="contacts" aria-labelledby="contacts-heading">
                { for contacts.iter().take(rows).map(|c| html! {
                    <ContactRow key={ c.jid.to_string() } contact={ (*c).clone() }
                        active={ store.active.as_ref() == Some(&c.jid) }
                        blocked={ store.blocked.contains(&c.jid) } on_action={ props.on_action.clone() }
                        avatar={ store.avatars.get(&c.jid).cloned().map(AttrValue::from) } />
                }) }
            </ul>
        }
    };
    let strangers = store.strangers();
    html! {
        <nav class="sidebar" aria-label={ text::CONTACTS_HEADING }>
            <div class="sidebar-head">
                <h2 id="contacts-heading">{ text::CONTACTS_HEADING }</h2>
                <label class="visually-hidden" for="contact-search">{ text::CONTACTS_SEARCH }</label>
                <input id="contact-search" class="search" type="search" data-testid="contact-search"
                    placeholder={ text::CONTACTS_SEARCH_PLACEHOLDER } value={ (*query).clone() }
                    oninput={on_search} autocomplete="off" spellcheck="false" />
            </div>
            if !store.requests.is_empty() {
                <section class="requests" aria-labelledby="requests-heading">
                    <h3 id="requests-heading">{ text::REQUESTS_HEADING }</h3>
                    <ul>
                        { for store.requests.iter().map(|jid| {
                            let approve = { let jid = jid.clone(); props.on_action.reform(move |_: MouseEvent| Action::Approve(jid.clone())) };
                            let deny = { let jid = jid.clone(); props.on_action.reform(move |_: MouseEvent| Action::Deny(jid.clone())) };
                            let block = { let jid = jid.clone(); props.on_action.reform(move |_: MouseEvent| Action::Block(jid.clone(), true)) };
                            html! {
                                <li class="request" data-testid="subscription-request" data-jid={ jid.to_string() }>
                                    <p><strong>{ jid.to_string() }</strong>{ " " }{ text::REQUEST_TEXT }</p>
                                    <div class="request-actions">
                                        <button type="button" class="button primary" data-testid="subscription-approve"
                                            data-jid={ jid.to_string() } onclick={approve}>{ text::REQUEST_APPROVE }</button>
                                        <button type="button" class="button subtle" data-testid="subscription-deny"
                                            data-jid={ jid.to_string() } onclick={deny}>{ text::REQUEST_DENY }</button>
                                        <button type="button" class="button subtle" data-testid="subscription-block"
                                            data-jid={ jid.to_string() } onclick={block}>{ text::REQUEST_BLOCK }</button>
                                    </div>
                                </li>
                            }
                        }) }
                    </ul>
                </section>
            }
            { list }
            if !strangers.is_empty() {
                <section class="strangers" aria-labelledby="strangers-heading">
                    <h3 id="strangers-heading">{ text::STRANGERS_HEADING }</h3>
                    <ul class="contacts">
                        { for strangers.iter().map(|jid| {
                            let open = { let jid = (*jid).clone(); props.on_action.reform(move |_: MouseEvent| Action::Open(jid.clone())) };
                            html! {
                                <li><button type="button" class="contact" data-jid={ jid.to_string() } onclick={open}>
                                    <span class="contact-name">{ jid.to_string() }</span>
                                </button></li>
                            }
                        }) }
                    </ul>
                </section>
            }
            <AddContact me={ store.me.clone() } on_action={ props.on_action.clone() } />
        </nav>
    }
}

#[derive(Properties, PartialEq)]
struct RowProps {
    contact: Contact,
    active: bool,
    blocked: bool,
    on_action: Callback<Action>,
    /// The contact's picture, if they publish one.
    avatar: Option<AttrValue>,
}

/// One roster entry. A component, so that rows whose contact did not change are skipped when
/// the list re-renders (a roster of 1,000 must not be rebuilt for every badge).
#[function_component(ContactRow)]
fn contact_row(props: &RowProps) -> Html {
    let contact = &props.contact;
    let active = props.active;
    let on_action = &props.on_action;
    let jid = contact.jid.clone();
    let open = on_action.reform(move |_: MouseEvent| Action::Open(jid.clone()));
    let (words, class) = availability_words(contact.availability());
    let name = contact.display_name();
    let sees = matches!(contact.subscription, Subscription::To | Subscription::Both);
    let detail = if !sees && contact.pending_out {
        text::CONTACT_AWAITING.to_owned()
    } else {
        match contact.status() {
            Some(status) => format!("{words} · {status}"),
            None => words.to_owned(),
        }
    };
    let subscription = match contact.subscription {
        Subscription::None => "none",
        Subscription::To => "to",
        Subscription::From => "from",
        Subscription::Both => "both",
    };
    html! {
        <li>
            <button type="button" class={classes!("contact", active.then_some("active"))}
                data-testid="contact" data-jid={ contact.jid.to_string() }
                data-presence={ class } data-subscription={ subscription }
                data-blocked={ if props.blocked { "true" } else { "false" } }
                aria-current={ if active { "true" } else { "false" } } onclick={open}>
                { avatar_and_dot(props.avatar.as_ref(), class) }
                <span class="contact-text">
                    <span class="contact-name">{ name }</span>
                    <span class="contact-detail">
                        { if props.blocked { text::CONTACT_BLOCKED.to_owned() } else { detail } }
                    </span>
                </span>
                if contact.unread > 0 {
                    <span class="badge" data-testid="unread" aria-label={ text::unread(contact.unread) }>
                        { contact.unread }
                    </span>
                }
            </button>
        </li>
    }
}

#[derive(Properties, PartialEq)]
struct AddProps {
    me: Option<sotto_session::BareJid>,
    on_action: Callback<Action>,
}

#[function_component(AddContact)]
fn add_contact(props: &AddProps) -> Html {
    let value = use_state(String::new);
    let error = use_state(|| None::<&'static str>);
    let on_input = {
        let value = value.clone();
        let error = error.clone();
        Callback::from(move |e: InputEvent| {
            value.set(input_value(&e));
            error.set(None);
        })
    };
    let on_submit = {
        let value = value.clone();
        let error = error.clone();
        let me = props.me.clone();
        let on_action = props.on_action.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            match parse_bare_jid(&value) {
                None => error.set(Some(text::CONTACT_ADD_INVALID)),
                Some(jid) if Some(&jid) == me.as_ref() => error.set(Some(text::CONTACT_ADD_SELF)),
                Some(jid) => {
                    on_action.emit(Action::Add(jid));
                    value.set(String::new());
                }
            }
        })
    };
    html! {
        <form class="add-contact" onsubmit={on_submit} novalidate=true autocomplete="off">
            <label for="contact-add-jid">{ text::CONTACT_ADD_LABEL }</label>
            <div class="row">
                <input id="contact-add-jid" data-testid="contact-add-jid" type="email" inputmode="email"
                    autocomplete="off" spellcheck="false" placeholder={ text::CONTACT_ADD_PLACEHOLDER }
                    value={ (*value).clone() } oninput={on_input}
                    aria-invalid={ if error.is_some() { "true" } else { "false" } }
                    aria-describedby="contact-add-error" />
                <button type="submit" class="button primary" data-testid="contact-add-submit">
                    { text::CONTACT_ADD_SUBMIT }
                </button>
            </div>
            <p id="contact-add-error" class="field-error" role="alert">{ error.unwrap_or_default() }</p>
        </form>
    }
}

/// The rename form's inputs.
#[derive(Properties, PartialEq)]
pub struct RenameProps {
    /// The contact.
    pub jid: BareJid,
    /// The name we gave them, if any.
    pub name: Option<AttrValue>,
    /// Where the new name goes.
    pub on_action: Callback<Action>,
    /// Called when the form is done (saved or given up).
    pub on_close: Callback<()>,
}

/// Gives a contact the name we know them by, in place of the conversation's title. Enter
/// saves; Escape or Cancel keeps the old name; an empty name shows their address.
#[function_component(RenameForm)]
pub fn rename_form(props: &RenameProps) -> Html {
    let input = use_node_ref();
    {
        let input = input.clone();
        use_effect_with((), move |_| {
            if let Some(el) = input.cast::<HtmlInputElement>() {
                let _ = el.focus();
                el.select();
            }
        });
    }
    let on_submit = {
        let input = input.clone();
        let jid = props.jid.clone();
        let on_action = props.on_action.clone();
        let on_close = props.on_close.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let name = input
                .cast::<HtmlInputElement>()
                .map(|i| i.value())
                .unwrap_or_default();
            on_action.emit(Action::Rename(jid.clone(), name));
            on_close.emit(());
        })
    };
    // Gives up the new name only; the conversation stays open.
    let on_keydown = crate::dialog::escape_closes(props.on_close.clone());
    let cancel = props.on_close.reform(|_: MouseEvent| ());
    html! {
        <form class="rename" onsubmit={on_submit} onkeydown={on_keydown} autocomplete="off">
            <label class="visually-hidden" for="contact-rename-input">{ text::CONTACT_RENAME_LABEL }</label>
            <input id="contact-rename-input" data-testid="contact-rename-input" type="text" ref={input}
                value={ props.name.clone().unwrap_or_default() } placeholder={ props.jid.to_string() }
                maxlength={ MAX_CONTACT_NAME_CHARS.to_string() } />
            <button type="submit" class="button primary" data-testid="contact-rename-save">
                { text::CONTACT_RENAME_SAVE }
            </button>
            <button type="button" class="button subtle" data-testid="contact-rename-cancel"
                onclick={cancel}>{ text::CONTACT_RENAME_CANCEL }</button>
        </form>
    }
}

/// The longest name the form takes, in characters (the session bounds it in bytes).
const MAX_CONTACT_NAME_CHARS: usize = 64;

/// A contact's picture with their presence dot on its corner, or the dot alone.
pub fn avatar_and_dot(avatar: Option<&AttrValue>, presence: &'static str) -> Html {
    match avatar {
        Some(url) => html! {
            <span class="avatar-frame">
                <img class="avatar" src={ url.clone() } alt="" data-testid="avatar" decoding="async" />
                <span class={classes!("dot", presence)} aria-hidden="true"></span>
            </span>
        },
        None => html! { <span class={classes!("dot", presence)} aria-hidden="true"></span> },
    }
}
