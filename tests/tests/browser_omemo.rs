//! OMEMO in the web app, end to end: headless Chromiums signed in through the real bridge to a
//! real Prosody, driven only through the app's `data-testid` hooks. Messages are encrypted in
//! both directions, fingerprints match across browsers, a new device of a verified contact
//! raises the warning, a message not encrypted for a device is shown with its reason, plaintext
//! goes out only after confirmation, and no message text reaches Prosody's storage. Test names
//! start with `browser_` (`cargo xtask test --quick` skips them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fantoccini::Locator;
use sotto_tests::app::{
    befriend, click, contact_css, count, dist_dir, message_css, save_screenshot, submit_login_form,
    type_into, wait_attr, wait_css, wait_css_text, wait_gone, wait_text, ENTER, ESCAPE,
};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{testid_selector, with_browser, Browser};
use sotto_tests::prosody::Prosody;
use sotto_tests::scan::{all_bytes, contains};

const LOAD: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(20);

async fn login(b: &Browser, url: &str, user: &str) -> Result<()> {
    b.client().set_window_size(1200, 900).await?;
    b.goto(url).await?;
    b.wait_for_testid("login-jid", LOAD).await?;
    submit_login_form(b, &format!("{user}@localhost"), &format!("{user}-pass")).await?;
    wait_text(b, "connection-state", "online", STEP)
        .await
        .with_context(|| format!("{user} signing in"))
}

/// Sends `text` in the open chat and waits until it is delivered (receipt) and shown as
/// encrypted; the peer must show it as an encrypted incoming message.
async fn exchange(from: &Browser, to: &Browser, text: &str) -> Result<()> {
    type_into(from, "chat-input", &format!("{text}{ENTER}")).await?;
    let sent = wait_css_text(from, &message_css("out"), text, STEP).await?;
    ensure!(
        sent.attr("data-encrypted").await?.as_deref() == Some("true"),
        "{text:?} was not sent encrypted"
    );
    let got = wait_css_text(to, &message_css("in"), text, STEP)
        .await
        .with_context(|| format!("{text:?} not decrypted by the peer"))?;
    ensure!(
        got.attr("data-encrypted").await?.as_deref() == Some("true"),
        "{text:?} arrived as not encrypted"
    );
    wait_attr(&sent, "data-state", "delivered", STEP)
        .await
        .with_context(|| format!("receipt for {text:?}"))?;
    Ok(())
}

/// This browser's own device id and fingerprint, from the trust screen (left open).
/// What the message box holds now.
async fn input_value(b: &Browser) -> Result<String> {
    let input = b.wait_for_testid("chat-input", STEP).await?;
    Ok(input.prop("value").await?.unwrap_or_default())
}

async fn own_identity(b: &Browser) -> Result<(String, String)> {
    click(b, "trust-open").await?;
    let own = b.wait_for_testid("own-fingerprint", STEP).await?;
    let device = own.attr("data-device").await?.context("no data-device")?;
    Ok((device, own.text().await?.trim().to_owned()))
}

async fn close_trust(b: &Browser) -> Result<()> {
    // Escape closes the dialog (focus starts inside it).
    b.client().active_element().await?.send_keys(ESCAPE).await?;
    wait_gone(b, &testid_selector("trust-screen"), STEP).await
}

fn device_css(jid: &str, device: &str) -> String {
    format!("[data-testid=\"device\"][data-jid=\"{jid}\"][data-device=\"{device}\"]")
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_omemo_chat_trust_and_plaintext_confirmation() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = Prosody::for_test("browser-omemo", &["alice", "bob", "carol"])?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = bridge.http_url();
    let secrets = [
        "omemo-secret-one from alice",
        "omemo-secret-two from bob",
        "omemo-secret-three from bob to two devices",
    ];
    let plain = "plaintext-hello-carol confirmed";
    let declined = "plaintext-declined-never-sent";

    with_browser("browser_omemo_alice", async |alice: &Browser| {
        with_browser("browser_omemo_bob", async |bob: &Browser| {
            login(alice, &url, "alice").await?;
            login(bob, &url, "bob").await?;
            befriend(alice, bob).await?;

            // Both open the chat: the lock closes once the other's device list is known.
            wait_css(alice, &contact_css("bob@localhost"), STEP)
                .await?
                .click()
                .await?;
            wait_css(bob, &contact_css("alice@localhost"), STEP)
                .await?
                .click()
                .await?;
            for b in [alice, bob] {
                wait_css(
                    b,
                    "[data-testid=\"lock-state\"][data-lock=\"encrypted\"][data-encrypted=\"true\"]",
                    STEP,
                )
                .await
                .context("lock not closed")?;
            }

            // Encrypted both ways, with receipts.
            exchange(alice, bob, secrets[0]).await?;
            exchange(bob, alice, secrets[1]).await?;
            ensure!(count(alice, "[data-testid=\"decrypt-error\"]").await? == 0);
            save_screenshot(alice, "omemo-chat").await?;

            // Fingerprints: what alice shows for herself is what bob sees for her device.
            let (alice_device, alice_fp) = own_identity(alice).await?;
            ensure!(
                alice_fp.len() == 71 && alice_fp.split(' ').all(|g| g.len() == 8),
                "fingerprint not in eight groups of eight: {alice_fp:?}"
            );
            let hex: String = alice_fp.split(' ').collect();
            let qr = alice.wait_for_testid("own-qr", STEP).await?;
            ensure!(
                qr.attr("data-uri").await?.as_deref()
                    == Some(
                        format!("xmpp:alice@localhost?omemo-sid-{alice_device}={hex}").as_str()
                    ),
                "QR code URI"
            );
            save_screenshot(alice, "omemo-trust").await?;
            close_trust(alice).await?;

            click(bob, "trust-open").await?;
            let row = wait_css(bob, &device_css("alice@localhost", &alice_device), STEP).await?;
            let seen = row
                .find(Locator::Css(&testid_selector("device-fingerprint")))
                .await?
                .text()
                .await?;
            ensure!(
                seen.trim() == alice_fp,
                "bob sees {seen:?} for alice's device, alice shows {alice_fp:?}"
            );
            ensure!(row.attr("data-trust").await?.as_deref() == Some("blind"));
            // bob verifies alice's device.
            row.find(Locator::Css(&testid_selector("device-verify")))
                .await?
                .click()
                .await?;
            let row = wait_css(bob, &device_css("alice@localhost", &alice_device), STEP).await?;
            wait_attr(&row, "data-trust", "verified", STEP).await?;
            close_trust(bob).await?;

            // alice signs in on a second browser: a new device of a verified contact.
            with_browser("browser_omemo_alice2", async |alice2: &Browser| {
                login(alice2, &url, "alice").await?;
                let (alice2_device, _) = own_identity(alice2).await?;
                ensure!(alice2_device != alice_device, "a new device id per sign-in");
                close_trust(alice2).await?;
                wait_css(alice2, &contact_css("bob@localhost"), STEP)
                    .await?
                    .click()
                    .await?;
                // Give bob's app time to hear of the new device list.
                tokio::time::sleep(Duration::from_secs(2)).await;

                // bob writes: the new device needs a decision, so the message goes to the
                // verified one only; bob is warned.
                type_into(bob, "chat-input", &format!("{}{ENTER}", secrets[2])).await?;
                let warning = wait_css(
                    bob,
                    &format!(
                        "[data-testid=\"trust-warning\"][data-jid=\"alice@localhost\"][data-device=\"{alice2_device}\"]"
                    ),
                    STEP,
                )
                .await
                .context("no warning about alice's new device")?;
                ensure!(warning.text().await?.contains("new device"));
                save_screenshot(bob, "omemo-new-device-warning").await?;
                wait_css_text(alice, &message_css("in"), secrets[2], STEP).await?;

                // The new device got the message, not encrypted for it: shown in place with
                // the reason, never hidden.
                let error =
                    wait_css_text(alice2, &testid_selector("decrypt-error"), "device", STEP)
                        .await
                        .context("alice's new device shows no decryption failure")?;
                ensure!(error.text().await?.contains("not encrypted for this device"));
                save_screenshot(alice2, "omemo-decrypt-error").await?;

                // bob reviews and accepts the new device: the warning goes away.
                click(bob, "trust-open").await?;
                let row =
                    wait_css(bob, &device_css("alice@localhost", &alice2_device), STEP).await?;
                ensure!(row.attr("data-trust").await?.as_deref() == Some("undecided"));
                save_screenshot(bob, "omemo-trust-undecided").await?;
                row.find(Locator::Css(&testid_selector("device-verify")))
                    .await?
                    .click()
                    .await?;
                wait_gone(bob, &testid_selector("trust-warning"), STEP).await?;
                close_trust(bob).await?;
                Ok(())
            })
            .await?;

            // What alice starts writing to bob and does not send waits for her in his
            // conversation while she is in another.
            let draft = "half a thought for bob";
            wait_css(alice, &contact_css("bob@localhost"), STEP)
                .await?
                .click()
                .await?;
            type_into(alice, "chat-input", draft).await?;

            // carol has no OMEMO device (she never signed in): plaintext only when confirmed.
            type_into(alice, "contact-add-jid", "carol@localhost").await?;
            click(alice, "contact-add-submit").await?;
            wait_css(alice, &contact_css("carol@localhost"), STEP)
                .await?
                .click()
                .await?;
            ensure!(
                input_value(alice).await?.is_empty(),
                "bob's draft shows in carol's conversation"
            );
            wait_css(
                alice,
                "[data-testid=\"lock-state\"][data-lock=\"unavailable\"][data-encrypted=\"false\"]",
                STEP,
            )
            .await?;
            type_into(alice, "chat-input", &format!("{declined}{ENTER}")).await?;
            alice.wait_for_testid("plaintext-dialog", STEP).await?;
            save_screenshot(alice, "omemo-plaintext-confirmation").await?;
            // Escape closes it and nothing is sent.
            alice
                .client()
                .active_element()
                .await?
                .send_keys(ESCAPE)
                .await?;
            wait_gone(alice, &testid_selector("plaintext-dialog"), STEP).await?;
            ensure!(
                count(alice, &message_css("out")).await? == 0,
                "a declined message was sent"
            );
            // Confirmed: sent, marked as not encrypted.
            type_into(alice, "chat-input", &format!("{plain}{ENTER}")).await?;
            click(alice, "plaintext-confirm").await?;
            let sent = wait_css_text(alice, &message_css("out"), plain, STEP).await?;
            ensure!(sent.attr("data-encrypted").await?.as_deref() == Some("false"));
            wait_attr(&sent, "data-state", "sent", STEP).await?;
            ensure!(count(alice, &message_css("out")).await? == 1);

            wait_css(alice, &contact_css("bob@localhost"), STEP)
                .await?
                .click()
                .await?;
            wait_css(alice, "[data-testid=\"lock-state\"][data-lock=\"encrypted\"]", STEP).await?;
            ensure!(
                input_value(alice).await? == draft,
                "the draft to bob is gone: {:?}",
                input_value(alice).await?
            );
            Ok(())
        })
        .await
    })
    .await?;

    // Prosody's storage: carol's plaintext message waits there (she is offline), which shows
    // the scan can see message texts; none of the encrypted ones are anywhere.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let planted = "planted-control-string";
    let control = prosody.data_dir().join("scan-control.txt");
    std::fs::write(&control, planted)?;
    let stored = all_bytes(prosody.data_dir())?;
    ensure!(contains(&stored, planted), "the scan misses a planted file");
    ensure!(
        contains(&stored, plain),
        "the scan does not see the plaintext message stored for carol"
    );
    for secret in secrets.iter().chain([&declined]) {
        ensure!(
            !contains(&stored, secret),
            "{secret:?} is in Prosody's storage"
        );
    }
    std::fs::remove_file(control)?;
    bridge.stop().await?;
    Ok(())
}
