//! The web app in headless Chromium against slixmpp-omemo (`tests/interop/omemo_peer.py`), an
//! OMEMO implementation nobody on the team wrote: the app signs in through the real bridge, the
//! Python peer logs in to the same real Prosody directly, and they chat encrypted both ways.
//! Driven only through the app's `data-testid` hooks. The test name starts with `browser_`
//! (`cargo xtask test --quick` skips it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fantoccini::Locator;
use sotto_tests::app::{
    click, contact_css, count, delete_message, dist_dir, message_css, save_screenshot, type_into,
    wait_attr, wait_css, wait_css_text, wait_gone, wait_image_width, ARROW_UP, ENTER, ESCAPE,
};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{with_browser, Browser};
use sotto_tests::prosody::Prosody;
use sotto_tests::pypeer::{PeerOptions, PyPeer};

/// A 48×48 PNG (a teal disc on orange), as a contact's picture.
const AVATAR_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAADAAAAAwCAIAAADYYG7QAAAAf0lEQVR42u3YUQ2AQAyD4YpAHZp4RgnCkICDuwG7pUv+pAK+t7XTfe1WESBAgAC1BW3HOU4daEr5w9I6yjeWCjSvTKrRxE0q0wRNqtRETN1A6ZqpqRVokWZsAgQIECBAnUEcVwpaDsiuUzuuDsdd5rhcHbe96feDhxUgQIAy8wAIQYNacz5gDAAAAABJRU5ErkJggg==";
const LOAD: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(20);

async fn wait_connection_online(b: &Browser) -> Result<()> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let state = match b
            .client()
            .find(Locator::Css("[data-testid=\"connection-state\"]"))
            .await
        {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if state.trim() == "online" {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the app did not come online (last state {state:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_app_and_slixmpp_omemo_chat_encrypted_both_ways() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = Prosody::for_test("interop-browser-omemo", &["alice", "bob"])?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = bridge.http_url();
    let mut bob = PyPeer::start(
        &prosody,
        PeerOptions::fixture(&prosody.dir().join("peers"), "bob", "py"),
    )
    .await?;
    let to_bob = "interop browser secret: from the web app";
    let to_alice = "interop browser secret: from slixmpp-omemo";

    with_browser("interop_browser_omemo_alice", async |alice: &Browser| {
        alice.client().set_window_size(1200, 900).await?;
        alice.goto(&url).await?;
        alice.wait_for_testid("login-jid", LOAD).await?;
        type_into(alice, "login-jid", "alice@localhost").await?;
        type_into(alice, "login-password", "alice-pass").await?;
        click(alice, "login-submit").await?;
        wait_connection_online(alice).await?;

        // alice adds bob; slixmpp authorises and asks back; the app approves (by itself,
        // having asked first, or when alice clicks).
        type_into(alice, "contact-add-jid", "bob@localhost").await?;
        click(alice, "contact-add-submit").await?;
        if let Ok(e) = wait_css(
            alice,
            "[data-testid=\"subscription-approve\"][data-jid=\"bob@localhost\"]",
            Duration::from_secs(3),
        )
        .await
        {
            e.click().await?;
        }
        let contact = wait_css(alice, &contact_css("bob@localhost"), STEP).await?;
        wait_attr(&contact, "data-subscription", "both", STEP).await?;
        contact.click().await?;
        wait_css(
            alice,
            "[data-testid=\"lock-state\"][data-lock=\"encrypted\"][data-encrypted=\"true\"]",
            STEP,
        )
        .await
        .context("the lock did not close: the app does not see bob's OMEMO device")?;

        // The app → slixmpp-omemo.
        type_into(alice, "chat-input", &format!("{to_bob}{ENTER}")).await?;
        let sent = wait_css_text(alice, &message_css("out"), to_bob, STEP).await?;
        ensure!(
            sent.attr("data-encrypted").await?.as_deref() == Some("true"),
            "not sent encrypted"
        );
        let got = bob.expect("message", |_| true).await?;
        ensure!(got["body"] == to_bob && got["encrypted"] == true, "{got}");
        ensure!(got["replace"].is_null(), "{got}");

        // alice corrects it: the Up arrow in the empty box brings her last message back, Escape
        // gives that up, and the second time Enter sends the correction. slixmpp-omemo gets
        // it encrypted, naming the original (XEP-0308).
        type_into(alice, "chat-input", ARROW_UP).await?;
        alice.wait_for_testid("chat-editing", STEP).await?;
        type_into(alice, "chat-input", ESCAPE).await?;
        wait_gone(alice, "[data-testid=\"chat-editing\"]", STEP).await?;
        ensure!(
            count(alice, "[data-testid=\"lock-state\"]").await? == 1,
            "Escape left the conversation instead of the correction"
        );
        let fixed = format!("{to_bob}, corrected");
        type_into(alice, "chat-input", ARROW_UP).await?;
        alice.wait_for_testid("chat-editing", STEP).await?;
        type_into(alice, "chat-input", ", corrected").await?;
        save_screenshot(alice, "chat-correcting").await?;
        type_into(alice, "chat-input", ENTER).await?;
        let correction = bob.expect("message", |_| true).await?;
        ensure!(
            correction["body"] == fixed.as_str()
                && correction["encrypted"] == true
                && correction["replace"] == got["id"],
            "{correction} (the original: {got})"
        );
        let outgoing = alice
            .client()
            .find_all(Locator::Css(&message_css("out")))
            .await?;
        ensure!(outgoing.len() == 1, "{} outgoing messages", outgoing.len());
        ensure!(outgoing[0].text().await?.contains(&fixed));
        ensure!(outgoing[0].attr("data-edited").await?.as_deref() == Some("true"));

        // alice deletes her corrected message for everyone (XEP-0424): slixmpp-omemo gets a
        // retraction naming the original, as Conversations, Dino and Gajim read it.
        delete_message(alice, &outgoing[0]).await?;
        let retraction = bob.expect("message", |_| true).await?;
        ensure!(
            retraction["retract"] == got["id"] && retraction["encrypted"] == false,
            "{retraction} (the original: {got})"
        );
        wait_css(
            alice,
            "[data-direction=\"out\"][data-retracted=\"true\"] [data-testid=\"message-retracted\"]",
            STEP,
        )
        .await?;
        ensure!(!alice.client().source().await?.contains(&fixed));

        // slixmpp-omemo → the app.
        let original = bob.send("alice@localhost", to_alice).await?;
        let shown = wait_css_text(alice, &message_css("in"), to_alice, STEP)
            .await
            .context("bob's message was not decrypted by the app")?;
        ensure!(
            shown.attr("data-encrypted").await?.as_deref() == Some("true"),
            "shown as not encrypted"
        );

        // bob corrects it (XEP-0308, as Conversations and Dino do): the same message shows the
        // new text, marked as edited, and no second message appears.
        let corrected = "interop browser secret: from slixmpp-omemo, corrected";
        bob.send_correction("alice@localhost", corrected, &original)
            .await?;
        wait_css_text(alice, &message_css("in"), corrected, STEP)
            .await
            .context("the correction was not applied")?;
        let incoming = alice
            .client()
            .find_all(Locator::Css(&message_css("in")))
            .await?;
        ensure!(incoming.len() == 1, "{} incoming messages", incoming.len());
        ensure!(incoming[0].attr("data-edited").await?.as_deref() == Some("true"));
        ensure!(incoming[0].attr("data-encrypted").await?.as_deref() == Some("true"));
        incoming[0]
            .find(Locator::Css("[data-testid=\"message-edited\"]"))
            .await
            .context("no \"edited\" mark")?;
        save_screenshot(alice, "omemo-corrected").await?;
        // An unencrypted "correction" does not rewrite encrypted text.
        bob.command(
            serde_json::json!({"cmd": "send_plain", "to": "alice@localhost",
            "body": "an unencrypted rewrite", "replace": original}),
        )
        .await?;
        bob.expect("sent", |_| true).await?;
        wait_css_text(alice, &message_css("in"), "an unencrypted rewrite", STEP).await?;
        let texts = alice
            .client()
            .find_all(Locator::Css(&message_css("in")))
            .await?;
        ensure!(texts.len() == 2, "{} incoming messages", texts.len());
        ensure!(
            texts[0].text().await?.contains(corrected),
            "encrypted text rewritten"
        );
        ensure!(texts[1].attr("data-encrypted").await?.as_deref() == Some("false"));

        // bob retracts his corrected message (XEP-0424): its text leaves the page, a note
        // stands in its place, and the fallback text for older clients is not shown.
        bob.retract("alice@localhost", &original).await?;
        wait_css(
            alice,
            "[data-testid=\"message\"][data-retracted=\"true\"] [data-testid=\"message-retracted\"]",
            STEP,
        )
        .await
        .context("the retraction was not applied")?;
        let page = alice.client().source().await?;
        ensure!(!page.contains(corrected), "the retracted text is still on the page");
        ensure!(!page.contains("unsupported by your client"), "the fallback is shown");
        ensure!(count(alice, &message_css("in")).await? == 2);
        save_screenshot(alice, "omemo-retracted").await?;

        // bob publishes a picture (XEP-0084, as Conversations and Dino do): alice's app is
        // told, fetches it, checks it against its hash and shows it, decoded, on his row and
        // in the conversation's header.
        bob.command(serde_json::json!({"cmd": "publish_avatar", "data": AVATAR_PNG}))
            .await?;
        bob.expect("done", |_| true).await?;
        let avatar_css = format!("{} [data-testid=\"avatar\"]", contact_css("bob@localhost"));
        let img = wait_css(alice, &avatar_css, STEP)
            .await
            .context("bob's picture is not shown")?;
        ensure!(
            img.attr("src").await?.is_some_and(|src| src.starts_with("blob:")),
            "the picture is not the app's own copy"
        );
        wait_image_width(alice, &avatar_css, 48).await?;
        wait_css(alice, ".chat-sub [data-testid=\"avatar\"]", STEP).await?;
        save_screenshot(alice, "omemo-avatar").await?;
        ensure!(
            alice
                .client()
                .find_all(Locator::Css("[data-testid=\"decrypt-error\"]"))
                .await?
                .is_empty(),
            "a decryption error is shown"
        );
        Ok(())
    })
    .await?;
    bob.quit().await?;
    bridge.stop().await?;
    Ok(())
}
