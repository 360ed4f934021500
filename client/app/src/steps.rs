//! Long lists (a roster of thousands, a conversation of hundreds) shown in steps: a first
//! screenful at once, then more rows per task until all are there, so that no single task holds
//! the page long enough to be seen as a freeze.

use gloo_timers::callback::Timeout;
use yew::prelude::*;

/// How many rows of a list of `total` to show now: `first` when the list is new (a different
/// `key`: another conversation, another search), then `step` more in each following task while
/// some are missing — also when many arrive at once later (a roster after sign-in). The last
/// step leaves room above `total`, so that a row added later shows at once.
#[hook]
pub fn use_rows_in_steps<K>(key: K, total: usize, first: usize, step: usize) -> usize
where
    K: PartialEq + Clone + 'static,
{
    let shown = use_state(|| (key.clone(), first));
    let rows = if shown.0 == key { shown.1 } else { first };
    {
        let shown = shown.clone();
        use_effect_with((key, total, rows), move |(key, total, rows)| {
            let (key, rows) = (key.clone(), *rows);
            let more = (rows < *total)
                .then(|| Timeout::new(0, move || shown.set((key, rows.saturating_add(step)))));
            // Dropping a Timeout cancels it: a newer render schedules its own step.
            move || drop(more)
        });
    }
    rows
}
