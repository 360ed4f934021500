//! Driving the web app in a browser test: where the built site is, waiting for elements, text
//! and attributes, typing and clicking through the app's `data-testid` hooks, screenshots.
//! Shared by every browser suite so each one reads as the user's steps.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fantoccini::Locator;

use crate::browser::{testid_selector, Browser};

/// WebDriver's codes for the keys the tests press (WebDriver §17.4.2).
pub const ENTER: &str = "\u{E007}";
pub const ESCAPE: &str = "\u{E00C}";
pub const ARROW_UP: &str = "\u{E013}";

/// How long a single step (an element appearing, a click target) may take.
pub const STEP: Duration = Duration::from_secs(20);

/// The built site: `SOTTO_DIST_DIR` (set by `cargo xtask test`) or `target/dist`.
pub fn dist_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("SOTTO_DIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::target_dir().join("dist"));
    ensure!(
        dir.join("index.html").is_file(),
        "no built client in {} — run `cargo xtask dist` (cargo xtask test does it for you)",
        dir.display()
    );
    Ok(dir)
}

/// Saves a screenshot as `target/screenshots/NAME.png`.
pub async fn save_screenshot(b: &Browser, name: &str) -> Result<()> {
    let dir = crate::target_dir().join("screenshots");
    std::fs::create_dir_all(&dir)?;
    b.screenshot(&dir.join(format!("{name}.png"))).await
}

/// Waits until `css` matches at least one element.
pub async fn wait_css(
    b: &Browser,
    css: &str,
    timeout: Duration,
) -> Result<fantoccini::elements::Element> {
    b.client()
        .wait()
        .at_most(timeout)
        .every(Duration::from_millis(100))
        .for_element(Locator::Css(css))
        .await
        .with_context(|| format!("no element {css} within {timeout:?}"))
}

/// Waits until the element with `testid` has exactly `expected` as its text.
pub async fn wait_text(b: &Browser, testid: &str, expected: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Ok(e) = b
            .client()
            .find(Locator::Css(&testid_selector(testid)))
            .await
        {
            if let Ok(text) = e.text().await {
                if text.trim() == expected {
                    return Ok(());
                }
                last = text;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{testid} did not become {expected:?} within {timeout:?} (last: {last:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until some element matching `css` has text containing `needle`; returns it.
pub async fn wait_css_text(
    b: &Browser,
    css: &str,
    needle: &str,
    timeout: Duration,
) -> Result<fantoccini::elements::Element> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        for e in b
            .client()
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
        {
            if e.text().await.is_ok_and(|t| t.contains(needle)) {
                return Ok(e);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no {css} containing {needle:?} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the element's attribute has the value.
pub async fn wait_attr(
    e: &fantoccini::elements::Element,
    attr: &str,
    expected: &str,
    timeout: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = e.attr(attr).await?;
        if value.as_deref() == Some(expected) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{attr} did not become {expected:?} within {timeout:?} (last: {value:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element with `testid` and types `text` into it.
pub async fn type_into(b: &Browser, testid: &str, text: &str) -> Result<()> {
    let e = b.wait_for_testid(testid, STEP).await?;
    e.click().await?;
    e.send_keys(text).await?;
    Ok(())
}

/// Types `jid` and `password` into the login form on screen and submits it.
pub async fn submit_login_form(b: &Browser, jid: &str, password: &str) -> Result<()> {
    type_into(b, "login-jid", jid).await?;
    type_into(b, "login-password", password).await?;
    click(b, "login-submit").await
}

/// Clicks the element with `testid` once it is there.
pub async fn click(b: &Browser, testid: &str) -> Result<()> {
    b.wait_for_testid(testid, STEP).await?.click().await?;
    Ok(())
}

/// Presses the button `testid` of `message` as a user does: points at the message first (its
/// buttons show on hover where there is a mouse), then clicks once the button can be clicked.
pub async fn press_message_button(
    b: &Browser,
    message: &fantoccini::elements::Element,
    testid: &str,
) -> Result<()> {
    use fantoccini::actions::{InputSource as _, MouseActions, PointerAction};
    let pointer = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
        element: message.clone(),
        duration: None,
        x: 0.0,
        y: 0.0,
    });
    b.client().perform_actions(pointer).await?;
    let button = message
        .find(Locator::Css(&testid_selector(testid)))
        .await
        .with_context(|| format!("no {testid} on the message"))?;
    // It fades in: the driver refuses to click it until it is visible.
    let deadline = tokio::time::Instant::now() + STEP;
    while let Err(e) = button.click().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(e).with_context(|| format!("{testid} never became clickable"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Asks to delete our message `message` for everyone as a user does ("Delete" on it); returns
/// once the confirmation dialog is open.
pub async fn open_delete_dialog(
    b: &Browser,
    message: &fantoccini::elements::Element,
) -> Result<()> {
    press_message_button(b, message, "message-delete").await?;
    b.wait_for_testid("delete-dialog", STEP).await?;
    Ok(())
}

/// Deletes our message `message` for everyone: "Delete", then "Delete for everyone".
pub async fn delete_message(b: &Browser, message: &fantoccini::elements::Element) -> Result<()> {
    open_delete_dialog(b, message).await?;
    click(b, "message-delete-confirm").await?;
    wait_gone(b, &testid_selector("delete-dialog"), STEP).await
}

/// `[data-testid="contact"]` of the roster entry for `jid`.
pub fn contact_css(jid: &str) -> String {
    format!("[data-testid=\"contact\"][data-jid=\"{jid}\"]")
}

/// `[data-testid="message"]` going `direction` (`in` or `out`).
pub fn message_css(direction: &str) -> String {
    format!("[data-testid=\"message\"][data-direction=\"{direction}\"]")
}

/// How many elements match `css` now.
pub async fn count(b: &Browser, css: &str) -> Result<usize> {
    Ok(b.client().find_all(Locator::Css(css)).await?.len())
}

/// Waits until nothing matches `css`.
pub async fn wait_gone(b: &Browser, css: &str, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    while count(b, css).await? > 0 {
        if tokio::time::Instant::now() >= deadline {
            bail!("{css} still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// alice (signed in as `alice@localhost`) adds `bob@localhost`, bob accepts (and alice accepts
/// bob's request back if the app asks); both end up subscribed both ways.
pub async fn befriend(alice: &Browser, bob: &Browser) -> Result<()> {
    type_into(alice, "contact-add-jid", "bob@localhost").await?;
    click(alice, "contact-add-submit").await?;
    wait_css(
        bob,
        "[data-testid=\"subscription-approve\"][data-jid=\"alice@localhost\"]",
        STEP,
    )
    .await?
    .click()
    .await?;
    if let Ok(e) = wait_css(
        alice,
        "[data-testid=\"subscription-approve\"][data-jid=\"bob@localhost\"]",
        Duration::from_secs(2),
    )
    .await
    {
        e.click().await?;
    }
    let bob_at_alice = wait_css(alice, &contact_css("bob@localhost"), STEP).await?;
    let alice_at_bob = wait_css(bob, &contact_css("alice@localhost"), STEP).await?;
    wait_attr(&bob_at_alice, "data-subscription", "both", STEP).await?;
    wait_attr(&alice_at_bob, "data-subscription", "both", STEP).await?;
    Ok(())
}

/// Waits until the `<img>` matching `css` has decoded, `width` pixels wide.
pub async fn wait_image_width(b: &Browser, css: &str, width: u64) -> Result<()> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let got = b
            .client()
            .execute(
                "const i = document.querySelector(arguments[0]); return i && i.complete ? i.naturalWidth : 0;",
                vec![serde_json::json!(css)],
            )
            .await?;
        if got == serde_json::json!(width) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{css}: not decoded at {width} px wide (now {got})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
