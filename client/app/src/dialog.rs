//! What every dialog and inline form does with the keyboard: the focus starts on its safe
//! choice, and Escape closes it and nothing behind it.

use web_sys::HtmlElement;
use yew::prelude::*;

/// A node to focus once, when the component appears: a dialog's safe choice ("Cancel", "Keep
/// it", the choice in force).
#[hook]
pub fn use_focus_on_mount() -> NodeRef {
    let node = use_node_ref();
    {
        let node = node.clone();
        use_effect_with((), move |_| {
            if let Some(el) = node.cast::<HtmlElement>() {
                let _ = el.focus();
            }
        });
    }
    node
}

/// A keydown handler that gives Escape to `close` and keeps it from the view behind (Escape
/// there leaves the conversation).
pub fn escape_closes(close: Callback<()>) -> Callback<KeyboardEvent> {
    Callback::from(move |e: KeyboardEvent| {
        if e.key() == "Escape" {
            e.prevent_default();
            e.stop_propagation();
            close.emit(());
        }
    })
}
