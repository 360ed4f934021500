//! Public-computer ("kiosk") mode's browser side: the idle watch that wipes an abandoned
//! session, and leaving the page clean.
//!
//! Nothing of a kiosk session is ever written to the browser's storage (the app never opens
//! IndexedDB in this mode, and uses no other storage API in any mode); what remains to do is to
//! make the session's memory go away:
//!
//! - at sign-out and after the idle timeout the app drops the session (secrets are zeroized on
//!   drop), then [`leave`] replaces the page with a fresh load of the app — discarding the whole
//!   WebAssembly instance, so no freed buffer survives either — without adding a history entry;
//! - when the tab is closed or navigated away (`pagehide`) the app drops the session at once;
//!   should the browser keep the page in its back-forward cache, [`reload_if_restored`] reloads
//!   it when it is shown again.

use std::cell::Cell;
use std::rc::Rc;

use gloo_timers::callback::Interval;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use yew::Callback;

/// How often the idle watch looks at the clock.
const TICK_MS: u32 = 1_000;
/// The warning shows this long before the wipe (or for half the limit, if that is shorter).
pub const WARNING_SECS: u32 = 60;
/// Why the page was left, carried in the query of the fresh page (`/?left=…`) so it can say so.
/// A query, not a fragment: changing only the fragment would not load a fresh page.
pub const REASON_SIGNED_OUT: &str = "signed-out";
/// See [`REASON_SIGNED_OUT`].
pub const REASON_IDLE: &str = "idle";

/// Input events that count as activity.
const ACTIVITY: &[&str] = &[
    "keydown",
    "pointerdown",
    "pointermove",
    "wheel",
    "touchstart",
];

fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_default()
}

/// Watches for input; ticks once a second so the app can show the countdown and wipe.
pub struct IdleWatch {
    limit_ms: f64,
    last: Rc<Cell<f64>>,
    listener: Closure<dyn FnMut(web_sys::Event)>,
    _tick: Interval,
}

impl IdleWatch {
    /// Starts watching: `on_tick` is called every second.
    pub fn start(limit_secs: u32, on_tick: Callback<()>) -> Self {
        let last = Rc::new(Cell::new(now_ms()));
        let seen = last.clone();
        let listener = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
            seen.set(now_ms());
        });
        if let Some(window) = web_sys::window() {
            for event in ACTIVITY {
                let _ = window
                    .add_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
            }
        }
        Self {
            limit_ms: f64::from(limit_secs.max(1)) * 1000.0,
            last,
            listener,
            _tick: Interval::new(TICK_MS, move || on_tick.emit(())),
        }
    }

    /// Counts now as activity (the "stay signed in" button).
    pub fn poke(&self) {
        self.last.set(now_ms());
    }

    /// Seconds left before the wipe (0: now).
    pub fn seconds_left(&self) -> u32 {
        let left = self.limit_ms - (now_ms() - self.last.get());
        (left.max(0.0) / 1000.0).ceil() as u32
    }

    /// Whether the countdown warning is due.
    pub fn warning_due(&self) -> bool {
        let window = WARNING_SECS.min((self.limit_ms / 2000.0) as u32).max(1);
        self.seconds_left() <= window
    }
}

impl Drop for IdleWatch {
    fn drop(&mut self) {
        if let Some(window) = web_sys::window() {
            for event in ACTIVITY {
                let _ = window.remove_event_listener_with_callback(
                    event,
                    self.listener.as_ref().unchecked_ref(),
                );
            }
        }
    }
}

/// Replaces the page with a fresh load of the app at its root (no new history entry), saying
/// why in the query.
pub fn leave(reason: &str) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let location = window.location();
    let origin = location.origin().unwrap_or_default();
    let _ = location.replace(&format!("{origin}/?{LEFT}={reason}"));
}

const LEFT: &str = "left";

/// The reason a fresh page was loaded by [`leave`], if it was; the query is removed from the
/// address (and from the current history entry) at once.
pub fn take_leave_reason() -> Option<&'static str> {
    let window = web_sys::window()?;
    let query = window.location().search().ok()?;
    let value = query
        .strip_prefix('?')?
        .strip_prefix(LEFT)?
        .strip_prefix('=')?;
    let reason = match value {
        REASON_SIGNED_OUT => REASON_SIGNED_OUT,
        REASON_IDLE => REASON_IDLE,
        _ => return None,
    };
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some("/"));
    }
    Some(reason)
}

/// Calls `on_hide` when the page is being hidden for good or put in the back-forward cache
/// (`pagehide`), and reloads the page should the browser restore it from that cache. Keep the
/// returned closures alive as long as the app.
pub fn watch_page(on_hide: Callback<()>) -> [Closure<dyn FnMut(web_sys::Event)>; 2] {
    let hide = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
        on_hide.emit(());
    });
    let show = Closure::<dyn FnMut(web_sys::Event)>::new(reload_if_restored);
    if let Some(window) = web_sys::window() {
        let _ = window.add_event_listener_with_callback("pagehide", hide.as_ref().unchecked_ref());
        let _ = window.add_event_listener_with_callback("pageshow", show.as_ref().unchecked_ref());
    }
    [hide, show]
}

/// A page restored from the back-forward cache is reloaded: its session was wiped when it was
/// hidden, and a fresh instance leaves no freed memory behind.
fn reload_if_restored(event: web_sys::Event) {
    let persisted = event
        .dyn_ref::<web_sys::PageTransitionEvent>()
        .is_some_and(|e| e.persisted());
    if persisted {
        if let Some(window) = web_sys::window() {
            let _ = window.location().reload();
        }
    }
}
