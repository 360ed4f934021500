//! The Sotto web app.
//!
//! What this crate does: the user interface, rendered with yew, and (as they land) the browser
//! drivers that connect sotto-session to a WebSocket and storage. Components never touch XML,
//! keys or the network directly.
//!
//! Status: the login screen. Signing in arrives with the session milestone.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod login;
mod text;

use yew::prelude::*;

/// The version shown on every screen, so users and testers can tell which build they run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The root component.
#[function_component(App)]
pub fn app() -> Html {
    html! {
        <div class="shell">
            <header class="brand">
                <h1>{ text::APP_NAME }</h1>
                <p class="tagline">{ text::TAGLINE }</p>
            </header>
            <login::Login />
            <footer class="footer">
                <span data-testid="connection-state" class="connection-state">{ text::STATE_OFFLINE }</span>
                <span data-testid="app-version" class="version">{ format!("{} {VERSION}", text::VERSION_PREFIX) }</span>
            </footer>
        </div>
    }
}
