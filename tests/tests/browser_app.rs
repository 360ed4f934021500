//! The web app end to end: two headless Chromiums (alice and bob) signed in through the real
//! bridge to a real Prosody, driven only through the app's `data-testid` hooks. Test names start
//! with `browser_` (`cargo xtask test --quick` skips them).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fantoccini::Locator;
use sotto_tests::app::{
    befriend, click, contact_css, count, delete_message, dist_dir, message_css, open_delete_dialog,
    press_message_button, save_screenshot, submit_login_form, type_into, wait_attr, wait_css,
    wait_css_text, wait_gone, wait_image_width, wait_text, ENTER, ESCAPE,
};
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{testid_selector, with_browser, Browser};
use sotto_tests::prosody::Prosody;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const LOAD: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(15);

fn start_prosody(name: &str) -> Result<Prosody> {
    Prosody::for_test(name, &["alice", "bob"])
}

/// Opens the app and submits the login form.
async fn submit_login(b: &Browser, url: &str, jid: &str, password: &str) -> Result<()> {
    b.client().set_window_size(1200, 800).await?;
    b.goto(url).await?;
    b.wait_for_testid("login-jid", LOAD).await?;
    submit_login_form(b, jid, password).await
}

async fn login(b: &Browser, url: &str, user: &str) -> Result<()> {
    submit_login(
        b,
        url,
        &format!("{user}@localhost"),
        &format!("{user}-pass"),
    )
    .await?;
    wait_text(b, "connection-state", "online", STEP)
        .await
        .with_context(|| format!("{user} signing in"))
}

/// No console errors other than the favicon and what `allowed` names.
/// A `width` × `height` PNG (a landscape photo's shape), made here.
fn wide_png(width: u32, height: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in bytes {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }
    // Rows of RGB pixels (a gradient), each after its filter byte, stored uncompressed.
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0);
        for x in 0..width {
            raw.extend_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 160]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    for (i, block) in raw.chunks(65_535).enumerate() {
        let last = (i + 1) * 65_535 >= raw.len();
        zlib.push(u8::from(last));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

async fn assert_clean_console(b: &Browser) -> Result<()> {
    let log = b.console_log().await?;
    let errors: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("SEVERE") && !l.contains("favicon"))
        .collect();
    ensure!(errors.is_empty(), "console errors: {errors:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_app_two_users_subscribe_and_chat() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = start_prosody("browser-app-chat")?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = bridge.http_url();

    with_browser("browser_app_alice", async |alice: &Browser| {
        with_browser("browser_app_bob", async |bob: &Browser| {
            // The login screen, before anything.
            alice.client().set_window_size(1200, 800).await?;
            alice.goto(&url).await?;
            alice.wait_for_testid("login-submit", LOAD).await?;
            wait_text(alice, "connection-state", "offline", STEP).await?;
            save_screenshot(alice, "login").await?;

            login(alice, &url, "alice").await?;
            login(bob, &url, "bob").await?;

            // alice adds bob; bob accepts (which asks for alice's presence in return, and
            // alice's app accepts that because she asked first).
            type_into(alice, "contact-add-jid", "bob@localhost").await?;
            click(alice, "contact-add-submit").await?;
            wait_css(alice, &contact_css("bob@localhost"), STEP).await?;
            let approve = wait_css(
                bob,
                "[data-testid=\"subscription-approve\"][data-jid=\"alice@localhost\"]",
                STEP,
            )
            .await?;
            save_screenshot(bob, "roster-request").await?;
            approve.click().await?;
            // Should alice be asked after all, she accepts too.
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
            wait_attr(&bob_at_alice, "data-presence", "available", STEP).await?;
            wait_attr(&alice_at_bob, "data-presence", "available", STEP).await?;
            save_screenshot(alice, "roster").await?;

            // alice writes; Enter sends.
            bob_at_alice.click().await?;
            // OMEMO by default: the lock closes once bob's devices are known.
            wait_css(
                alice,
                "[data-testid=\"lock-state\"][data-encrypted=\"true\"][data-lock=\"encrypted\"]",
                STEP,
            )
            .await?;
            type_into(alice, "chat-input", "Hello Bob <b>not bold</b>\u{E007}").await?;
            let sent = wait_css_text(alice, &message_css("out"), "Hello Bob", STEP).await?;
            ensure!(sent.attr("data-encrypted").await?.as_deref() == Some("true"));

            // bob sees it, as text (the markup is not interpreted), with an unread badge, and
            // the page's title counts it (never who or what).
            let badge = wait_css(bob, "[data-testid=\"unread\"]", STEP).await?;
            ensure!(
                bob.client().title().await? == "(1) Sotto",
                "title: {:?}",
                bob.client().title().await?
            );
            ensure!(badge.text().await?.trim() == "1");
            alice_at_bob.click().await?;
            let got =
                wait_css_text(bob, &message_css("in"), "Hello Bob <b>not bold</b>", STEP).await?;
            ensure!(got.attr("data-encrypted").await?.as_deref() == Some("true"));
            wait_css_text(
                bob,
                "[data-testid=\"unread-divider\"]",
                "New messages",
                STEP,
            )
            .await?;
            ensure!(bob.client().title().await? == "Sotto", "read, yet counted");
            ensure!(
                bob.client()
                    .find_all(Locator::Css(".message b"))
                    .await?
                    .is_empty(),
                "a message body was rendered as HTML"
            );
            // The receipt comes back: delivered.
            wait_attr(&sent, "data-state", "delivered", STEP).await?;

            // bob types (alice sees the typing notification), then replies with the button.
            type_into(bob, "chat-input", "Hi Alice").await?;
            wait_css_text(alice, ".typing", "typing", STEP).await?;
            click(bob, "chat-send").await?;
            wait_css_text(alice, &message_css("in"), "Hi Alice", STEP).await?;
            let reply = wait_css_text(bob, &message_css("out"), "Hi Alice", STEP).await?;
            wait_attr(&reply, "data-state", "delivered", STEP).await?;
            // Sent and received messages show their time, under today's heading.
            for b in [alice, bob] {
                for m in b
                    .client()
                    .find_all(Locator::Css("[data-testid=\"message\"]"))
                    .await?
                {
                    let time = m
                        .find(Locator::Css("[data-testid=\"message-time\"]"))
                        .await
                        .context("a message without its time")?;
                    ensure!(time
                        .attr("datetime")
                        .await?
                        .is_some_and(|d| d.ends_with('Z')));
                }
                wait_css_text(b, "[data-testid=\"day\"]", "Today", STEP).await?;
            }
            save_screenshot(alice, "chat").await?;
            save_screenshot(bob, "chat-bob").await?;

            // alice sets her status: bob sees "Do not disturb" and her line on her contact;
            // Escape closes the dialog without changing anything; back to online after.
            click(alice, "own-status").await?;
            alice.wait_for_testid("status-dialog", STEP).await?;
            click(alice, "own-status-dnd").await?;
            type_into(alice, "own-status-text", "in a meeting until 3").await?;
            save_screenshot(alice, "status").await?;
            click(alice, "own-status-save").await?;
            wait_gone(alice, "[data-testid=\"status-dialog\"]", STEP).await?;
            wait_css(alice, "[data-testid=\"own-status\"][data-presence=\"dnd\"]", STEP).await?;
            let alice_busy = format!(
                "{}[data-presence=\"dnd\"]",
                contact_css("alice@localhost")
            );
            wait_css_text(bob, &alice_busy, "in a meeting until 3", STEP)
                .await
                .context("bob does not see alice's status")?;
            click(alice, "own-status").await?;
            click(alice, "own-status-away").await?;
            alice
                .client()
                .active_element()
                .await?
                .send_keys(ESCAPE)
                .await?;
            wait_gone(alice, "[data-testid=\"status-dialog\"]", STEP).await?;
            ensure!(
                count(alice, "[data-testid=\"lock-state\"]").await? == 1,
                "Escape left the conversation instead of the dialog"
            );
            ensure!(count(alice, "[data-testid=\"own-status\"][data-presence=\"dnd\"]").await? == 1);
            click(alice, "own-status").await?;
            click(alice, "own-status-available").await?;
            let line = alice.wait_for_testid("own-status-text", STEP).await?;
            line.send_keys("\u{E009}a\u{E000}\u{E003}").await?;
            click(alice, "own-status-save").await?;
            wait_css(
                bob,
                &format!("{}[data-presence=\"available\"]", contact_css("alice@localhost")),
                STEP,
            )
            .await?;
            ensure!(!bob.client().source().await?.contains("in a meeting until 3"));

            // alice chooses a picture: the app crops and re-encodes it and publishes it; bob's
            // app shows it on her row, decoded; she takes it down and it goes.
            let photo = alice.scratch_dir().join("holiday.png");
            std::fs::write(&photo, wide_png(300, 200))?;
            click(alice, "own-status").await?;
            alice
                .wait_for_testid("own-avatar-file", STEP)
                .await?
                .send_keys(&photo.to_string_lossy())
                .await?;
            let alice_picture = format!(
                "{} [data-testid=\"avatar\"]",
                contact_css("alice@localhost")
            );
            wait_css(bob, &alice_picture, STEP)
                .await
                .context("bob does not see alice's picture")?;
            wait_image_width(bob, &alice_picture, 192).await?;
            wait_css(alice, "[data-testid=\"own-avatar\"]", STEP).await?;
            save_screenshot(alice, "status-picture").await?;
            click(alice, "own-avatar-remove").await?;
            wait_gone(bob, &alice_picture, STEP)
                .await
                .context("alice's picture stays after she took it down")?;
            click(alice, "own-status-cancel").await?;
            wait_gone(alice, "[data-testid=\"status-dialog\"]", STEP).await?;

            // bob corrects his reply with its "edit" button (no keyboard needed): alice's copy
            // changes in place, encrypted, marked edited; nothing is added on either side.
            // Each may correct only their own last message.
            for b in [alice, bob] {
                ensure!(count(b, "[data-testid=\"message-edit\"]").await? == 1);
                ensure!(
                    count(b, "[data-direction=\"out\"] [data-testid=\"message-edit\"]").await? == 1
                );
            }
            // What bob had started writing is kept while the correction borrows the box.
            type_into(bob, "chat-input", "unfinished").await?;
            click(bob, "message-edit").await?;
            bob.wait_for_testid("chat-editing", STEP).await?;
            type_into(bob, "chat-input", ", again").await?;
            click(bob, "chat-send").await?;
            let input = bob.wait_for_testid("chat-input", STEP).await?;
            ensure!(
                input.prop("value").await?.as_deref() == Some("unfinished"),
                "the draft did not come back after the correction"
            );
            // Ctrl+A, then Backspace: the box is empty again for what follows.
            input.send_keys("\u{E009}a\u{E000}\u{E003}").await?;
            let corrected = wait_css_text(
                alice,
                &format!("{}[data-edited=\"true\"]", message_css("in")),
                "Hi Alice, again",
                STEP,
            )
            .await?;
            ensure!(corrected.attr("data-encrypted").await?.as_deref() == Some("true"));
            let mine = wait_css_text(
                bob,
                &format!("{}[data-edited=\"true\"]", message_css("out")),
                "Hi Alice, again",
                STEP,
            )
            .await?;
            wait_attr(&mine, "data-state", "delivered", STEP).await?;
            for b in [alice, bob] {
                ensure!(count(b, "[data-testid=\"message\"]").await? == 2);
            }

            // bob deletes a message for everyone (XEP-0424) after a confirmation: "Keep it"
            // and Escape keep it, "Delete for everyone" takes its text from both screens.
            let regret = "a message bob takes back";
            type_into(bob, "chat-input", &format!("{regret}{ENTER}")).await?;
            wait_css_text(alice, &message_css("in"), regret, STEP).await?;
            let sent = wait_css_text(bob, &message_css("out"), regret, STEP).await?;
            wait_attr(&sent, "data-state", "delivered", STEP).await?;
            ensure!(
                count(alice, &format!("{} [data-testid=\"message-delete\"]", message_css("in")))
                    .await?
                    == 0,
                "alice is offered to delete bob's message"
            );
            open_delete_dialog(bob, &sent).await?;
            click(bob, "message-delete-cancel").await?;
            wait_gone(bob, "[data-testid=\"delete-dialog\"]", STEP).await?;
            ensure!(sent.text().await?.contains(regret), "\"Keep it\" deleted it");
            open_delete_dialog(bob, &sent).await?;
            save_screenshot(bob, "chat-delete").await?;
            bob.client()
                .active_element()
                .await?
                .send_keys(ESCAPE)
                .await?;
            wait_gone(bob, "[data-testid=\"delete-dialog\"]", STEP).await?;
            ensure!(
                count(bob, "[data-testid=\"lock-state\"]").await? == 1,
                "Escape left the conversation instead of the dialog"
            );
            ensure!(sent.text().await?.contains(regret), "Escape deleted it");
            delete_message(bob, &sent).await?;
            for b in [alice, bob] {
                wait_css(
                    b,
                    "[data-testid=\"message\"][data-retracted=\"true\"] [data-testid=\"message-retracted\"]",
                    STEP,
                )
                .await
                .with_context(|| format!("{}: the deletion did not show", b.test_name()))?;
                ensure!(count(b, "[data-testid=\"message\"]").await? == 3);
                let page = b.client().source().await?;
                ensure!(!page.contains(regret), "the deleted text is still on the page");
                ensure!(!page.contains("unsupported by your client"), "the fallback is shown");
            }
            save_screenshot(alice, "chat-deleted").await?;

            // alice gives bob a name (a roster set keeps it on the server, for all her
            // devices); Escape gives up a rename; an empty name shows the address again.
            click(alice, "contact-rename").await?;
            type_into(alice, "contact-rename-input", &format!("Bobby Tables{ENTER}")).await?;
            wait_css_text(alice, &contact_css("bob@localhost"), "Bobby Tables", STEP).await?;
            wait_text(alice, "chat-heading", "Bobby Tables", STEP).await?;
            click(alice, "contact-rename").await?;
            type_into(alice, "contact-rename-input", &format!("Mallory{ESCAPE}")).await?;
            wait_gone(alice, "[data-testid=\"contact-rename-input\"]", STEP).await?;
            ensure!(
                count(alice, "[data-testid=\"lock-state\"]").await? == 1,
                "Escape left the conversation instead of the rename"
            );
            ensure!(!alice.client().source().await?.contains("Mallory"));
            save_screenshot(alice, "chat-renamed").await?;
            click(alice, "contact-rename").await?;
            type_into(
                alice,
                "contact-rename-input",
                &format!("\u{E009}a\u{E000}\u{E003}{ENTER}"),
            )
            .await?;
            wait_text(alice, "chat-heading", "bob@localhost", STEP).await?;

            // Blocking (XEP-0191): while alice blocks bob, nothing of his reaches her; after
            // unblocking, it does again.
            click(alice, "contact-block").await?;
            wait_css(
                alice,
                "[data-testid=\"contact-block\"][data-blocked=\"true\"]",
                STEP,
            )
            .await?;
            alice.wait_for_testid("blocked-note", STEP).await?;
            wait_css(
                alice,
                "[data-testid=\"contact\"][data-jid=\"bob@localhost\"][data-blocked=\"true\"]",
                STEP,
            )
            .await?;
            save_screenshot(alice, "chat-blocked").await?;
            type_into(bob, "chat-input", "sent while blocked\u{E007}").await?;
            wait_css_text(bob, &message_css("out"), "sent while blocked", STEP).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            ensure!(
                !alice.client().source().await?.contains("sent while blocked"),
                "a message from a blocked contact was shown"
            );
            click(alice, "contact-block").await?;
            wait_css(
                alice,
                "[data-testid=\"contact-block\"][data-blocked=\"false\"]",
                STEP,
            )
            .await?;
            alice.wait_for_testid("chat-input", STEP).await?;
            type_into(bob, "chat-input", "sent after unblocking\u{E007}").await?;
            wait_css_text(alice, &message_css("in"), "sent after unblocking", STEP).await?;

            // Message styling (XEP-0393), as Conversations and Dino send it: Shift+Enter
            // starts a new line; the directives stay visible; a code block is not styled.
            let new_line = "\u{E008}\u{E007}\u{E000}";
            type_into(
                alice,
                "chat-input",
                &format!(
                    "*bold* _slanted_ ~struck~ `code`{new_line}> quoted *words*{new_line}```{new_line}pre *not bold*{new_line}```{new_line}after{ENTER}"
                ),
            )
            .await?;
            let styled = wait_css_text(bob, &message_css("in"), "after", STEP).await?;
            for (css, text) in [
                ("strong", "*bold*"),
                ("em", "_slanted_"),
                ("s", "~struck~"),
                ("code", "`code`"),
                (".styled-quote", "quoted *words*"),
                (".styled-quote strong", "*words*"),
                (".styled-pre", "pre *not bold*"),
            ] {
                let found = styled
                    .find(Locator::Css(&format!(".body {css}")))
                    .await
                    .with_context(|| format!("no {css} in the styled message"))?;
                ensure!(found.text().await?.trim() == text, "{css}: {:?}", found.text().await?);
            }
            ensure!(
                styled
                    .find_all(Locator::Css(".styled-pre strong"))
                    .await?
                    .is_empty(),
                "styled inside a code block"
            );
            save_screenshot(bob, "chat-styled").await?;

            // bob quotes it in his reply: its lines go into his box as a quotation (the
            // quotation inside it left out), and alice sees his reply with the quote.
            press_message_button(bob, &styled, "message-quote").await?;
            let input = bob.wait_for_testid("chat-input", STEP).await?;
            let quoted = input.prop("value").await?.unwrap_or_default();
            ensure!(
                quoted.starts_with("> *bold* _slanted_")
                    && quoted.contains("> after\n")
                    && !quoted.contains("quoted *words*"),
                "the quote in the box: {quoted:?}"
            );
            input.send_keys(&format!("agreed{ENTER}")).await?;
            let reply = wait_css_text(alice, &message_css("in"), "agreed", STEP).await?;
            let quote = reply
                .find(Locator::Css(".body .styled-quote"))
                .await
                .context("the reply shows no quotation")?;
            ensure!(quote.text().await?.contains("*bold*"));

            // Phone width: one pane at a time.
            bob.client().set_window_size(390, 800).await?;
            save_screenshot(bob, "chat-phone").await?;

            // Logout ends the session and returns to an empty login screen.
            click(alice, "logout").await?;
            alice.wait_for_testid("login-jid", STEP).await?;
            wait_text(alice, "connection-state", "offline", STEP).await?;
            ensure!(
                alice
                    .client()
                    .find_all(Locator::Css(
                        "[data-testid=\"message\"], [data-testid=\"contact\"]"
                    ))
                    .await?
                    .is_empty(),
                "state survived logout"
            );
            // bob sees alice go offline.
            wait_attr(&alice_at_bob, "data-presence", "offline", STEP).await?;
            assert_clean_console(alice).await?;
            assert_clean_console(bob).await?;
            Ok(())
        })
        .await
    })
    .await?;
    bridge.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_app_login_errors() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = start_prosody("browser-app-errors")?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = bridge.http_url();
    with_browser("browser_app_login_errors", async |b: &Browser| {
        // Wrong password.
        submit_login(b, &url, "alice@localhost", "not-the-password").await?;
        wait_css_text(b, &testid_selector("login-notice"), "Wrong", STEP).await?;
        wait_text(b, "connection-state", "offline", STEP).await?;
        save_screenshot(b, "login-wrong-password").await?;

        // A domain the bridge does not serve: said before anything is sent, once the page knows
        // the bridge's domains (tests/tests/browser_discovery.rs has the rest).
        b.goto(&url).await?;
        b.wait_for_testid("login-jid", LOAD).await?;
        wait_css(b, "form[data-deployment=\"loaded\"]", STEP).await?;
        submit_login_form(b, "alice@elsewhere.example", "whatever").await?;
        wait_css_text(
            b,
            &testid_selector("login-notice"),
            "elsewhere.example is not served here",
            STEP,
        )
        .await?;
        wait_text(b, "connection-state", "offline", STEP).await?;

        // And the right password still works afterwards.
        login(b, &url, "alice").await?;
        click(b, "logout").await?;
        b.wait_for_testid("login-jid", STEP).await?;

        // Addresses and passwords are prepared as the server prepares them, with the browser's
        // own NFKC (sotto_session::jid): an upper-case name typed with a combining diaeresis is
        // the account "müller", and a password with a no-break space and a Roman numeral Ⅸ is
        // the one Prosody stored (SASLprep: " " and "IX").
        prosody.register("m\u{fc}ller", "\u{2168}\u{a0}p\u{e4}sse")?;
        submit_login(
            b,
            &url,
            "MU\u{308}LLER@LOCALHOST",
            "\u{2168}\u{a0}p\u{e4}sse",
        )
        .await?;
        wait_text(b, "connection-state", "online", STEP)
            .await
            .context("signing in as MÜLLER with a decomposed Ü")?;
        click(b, "logout").await?;
        b.wait_for_testid("login-jid", STEP).await?;
        Ok(())
    })
    .await?;
    bridge.stop().await?;
    Ok(())
}

/// The server (here the bridge that served the page) goes away after the page has loaded: the
/// sign-in says so, also when the rest of the app could not be fetched either; once the server
/// is back, signing in again works without reloading the page.
#[tokio::test(flavor = "multi_thread")]
async fn browser_app_server_unreachable() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = start_prosody("browser-app-unreachable")?;
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?;
    let mut bridge = Some(FixedBridge::start(addr, &prosody, &dist).await?);
    let bridge_slot = &mut bridge;
    let url = format!("http://{addr}");
    let (prosody_ref, dist_ref) = (&prosody, dist.as_path());
    with_browser("browser_app_server_unreachable", async |b: &Browser| {
        b.goto(&url).await?;
        b.wait_for_testid("login-jid", LOAD).await?;
        // The page is loaded; now the server goes away.
        if let Some(bridge) = bridge_slot.take() {
            bridge.stop().await?;
        }
        submit_login_form(b, "alice@localhost", "alice-pass").await?;
        wait_css_text(
            b,
            &testid_selector("login-notice"),
            "cannot be reached",
            STEP,
        )
        .await?;
        wait_text(b, "connection-state", "offline", STEP).await?;

        // Back: the same form, submitted again, fetches what is missing and signs in.
        *bridge_slot = Some(FixedBridge::start(addr, prosody_ref, dist_ref).await?);
        click(b, "login-submit").await?;
        wait_text(b, "connection-state", "online", STEP).await?;
        Ok(())
    })
    .await?;
    if let Some(bridge) = bridge.take() {
        bridge.stop().await?;
    }
    Ok(())
}

/// A bridge on a fixed address, so it can be stopped and started again where the page expects it.
struct FixedBridge {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl FixedBridge {
    async fn start(addr: SocketAddr, prosody: &Prosody, dist: &Path) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let text = sotto_tests::bridge::config_text(addr, prosody, Some(dist), "");
        let config = sotto_bridge::config::Config::parse(&text)?;
        let bridge = sotto_bridge::Bridge::new(config)?;
        let (shutdown, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(bridge.serve(listener, async move {
            let _ = rx.await;
        }));
        Ok(Self { shutdown, task })
    }

    async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(());
        self.task.await??;
        Ok(())
    }
}

/// The bridge goes away mid-conversation and comes back: the app says "reconnecting", then
/// resumes by itself; messages sent meanwhile arrive exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn browser_app_reconnects_after_bridge_restart() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = start_prosody("browser-app-reconnect")?;
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?;
    let bridge = FixedBridge::start(addr, &prosody, &dist).await?;
    let url = format!("http://{addr}");
    let mut bridge = Some(bridge);
    let bridge_slot = &mut bridge;
    let (prosody_ref, dist_ref) = (&prosody, dist.as_path());
    with_browser("browser_app_reconnect_alice", async |alice: &Browser| {
        with_browser("browser_app_reconnect_bob", async |bob: &Browser| {
            login(alice, &url, "alice").await?;
            login(bob, &url, "bob").await?;
            befriend(alice, bob).await?;
            wait_css(alice, &contact_css("bob@localhost"), STEP)
                .await?
                .click()
                .await?;
            wait_css(bob, &contact_css("alice@localhost"), STEP)
                .await?
                .click()
                .await?;
            type_into(alice, "chat-input", "before the restart\u{E007}").await?;
            wait_css_text(bob, &message_css("in"), "before the restart", STEP).await?;

            // The bridge stops: the loss is shown, not hidden.
            if let Some(b) = bridge_slot.take() {
                b.stop().await?;
            }
            wait_text(alice, "connection-state", "reconnecting", STEP).await?;
            wait_text(bob, "connection-state", "reconnecting", STEP).await?;
            save_screenshot(alice, "reconnecting").await?;
            // Written while offline: queued, sent once the connection is back.
            type_into(alice, "chat-input", "while offline\u{E007}").await?;
            tokio::time::sleep(Duration::from_secs(2)).await;

            *bridge_slot = Some(FixedBridge::start(addr, prosody_ref, dist_ref).await?);
            let back = Duration::from_secs(40);
            wait_text(alice, "connection-state", "online", back).await?;
            wait_text(bob, "connection-state", "online", back).await?;
            wait_css_text(bob, &message_css("in"), "while offline", STEP).await?;
            type_into(bob, "chat-input", "after the restart\u{E007}").await?;
            wait_css_text(alice, &message_css("in"), "after the restart", STEP).await?;
            // Exactly once each.
            tokio::time::sleep(Duration::from_secs(1)).await;
            ensure!(
                count(bob, &message_css("in")).await? == 2,
                "bob's messages duplicated or lost"
            );
            ensure!(
                count(alice, &message_css("in")).await? == 1,
                "alice's messages duplicated or lost"
            );
            Ok(())
        })
        .await
    })
    .await?;
    if let Some(b) = bridge.take() {
        b.stop().await?;
    }
    Ok(())
}

/// Scroll-back: messages from an earlier session come from the server's archive (XEP-0313),
/// newest page first when the conversation opens, older pages on demand, in order and once.
#[tokio::test(flavor = "multi_thread")]
async fn browser_app_scrolls_back_through_the_archive() -> Result<()> {
    const TOTAL: usize = 60;
    let dist = dist_dir()?;
    let prosody = start_prosody("browser-app-archive")?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = bridge.http_url();
    with_browser("browser_app_archive", async |alice: &Browser| {
        login(alice, &url, "alice").await?;
        type_into(alice, "contact-add-jid", "bob@localhost").await?;
        click(alice, "contact-add-submit").await?;
        wait_css(alice, &contact_css("bob@localhost"), STEP).await?;

        // bob (a plain XMPP client) writes while alice is online: Prosody archives it all.
        let mut bob =
            sotto_tests::wsclient::RawClient::connect(&bridge.ws_url(), Some(&url)).await?;
        bob.login_plain("localhost", "bob", "bob-pass", "raw")
            .await?;
        for i in 0..TOTAL {
            bob.send(&format!(
                "<message xmlns='jabber:client' to='alice@localhost' type='chat' id='arch{i}'>\
                 <body>archived message {i:02}</body></message>"
            ))
            .await?;
        }
        wait_css_text(alice, "[data-testid=\"unread\"]", &TOTAL.to_string(), STEP).await?;

        // A public-computer session knows nothing of them until it asks the archive (a
        // personal one shows what this device saved: tests/tests/browser_kiosk.rs).
        click(alice, "logout").await?;
        alice.goto(&url).await?;
        alice.wait_for_testid("login-jid", LOAD).await?;
        type_into(alice, "login-jid", "alice@localhost").await?;
        type_into(alice, "login-password", "alice-pass").await?;
        click(alice, "login-mode-kiosk").await?;
        // The browser's clock as this session begins: every archived message was sent before.
        let signed_in_at = alice
            .client()
            .execute("return Date.now();", vec![])
            .await?
            .as_f64()
            .context("Date.now()")?;
        click(alice, "login-submit").await?;
        wait_text(alice, "connection-state", "online", STEP).await?;
        wait_css(alice, &contact_css("bob@localhost"), STEP)
            .await?
            .click()
            .await?;
        let messages = &message_css("in");
        wait_css_text(
            alice,
            messages,
            &format!("archived message {:02}", TOTAL - 1),
            STEP,
        )
        .await?;
        wait_count(alice, messages, 50, STEP).await?;
        save_screenshot(alice, "chat-archive").await?;
        // Older ones on demand: the button is offered, and scrolling to the top loads them
        // (clicking the button does the same; WebDriver would scroll it into view first).
        alice.wait_for_testid("history-load", STEP).await?;
        alice
            .client()
            .execute(
                "document.querySelector('[data-testid=\"message\"]').parentElement.scrollTop = 0;",
                vec![],
            )
            .await?;
        alice.wait_for_testid("history-start", STEP).await?;
        wait_count(alice, messages, TOTAL, STEP).await?;
        let all = alice.client().find_all(Locator::Css(messages)).await?;
        for (i, m) in all.iter().enumerate() {
            let text = m.text().await?;
            ensure!(
                text.contains(&format!("archived message {i:02}")),
                "message {i} out of order: {text:?}"
            );
            ensure!(m.attr("data-encrypted").await?.as_deref() == Some("false"));
        }
        ensure!(count(alice, "[data-testid=\"history-loading\"]").await? == 0);
        // Each shows when it was sent (the archive's stamp, not when this session loaded it),
        // in order, under one heading for today.
        let times = alice
            .client()
            .execute(
                "return [...document.querySelectorAll('[data-testid=\"message\"]')].map(m => { \
                   const t = m.querySelector('[data-testid=\"message-time\"]'); \
                   return t ? [Date.parse(t.getAttribute('datetime')), t.textContent, t.title] : null; });",
                vec![],
            )
            .await?;
        let times: Vec<Option<(f64, String, String)>> = serde_json::from_value(times)?;
        ensure!(times.len() == TOTAL, "{} messages", times.len());
        let mut previous = 0.0;
        for (i, time) in times.iter().enumerate() {
            let Some((at, shown, full)) = time else {
                bail!("message {i} shows no time");
            };
            ensure!(
                *at < signed_in_at && *at > signed_in_at - 600_000.0,
                "message {i}: time {at} is not when it was sent (this session began at \
                 {signed_in_at})"
            );
            ensure!(*at >= previous, "message {i}: times out of order");
            ensure!(
                shown.contains(':') || shown.contains('.') || shown.contains('h'),
                "message {i}: {shown:?} is not a time of day"
            );
            ensure!(
                full.contains(shown.as_str()) && full.len() > shown.len() + 8,
                "message {i}: its full date and time {full:?} (shown {shown:?})"
            );
            previous = *at;
        }
        let days = alice
            .client()
            .find_all(Locator::Css("[data-testid=\"day\"]"))
            .await?;
        ensure!(!days.is_empty(), "no day heading");
        let last_day = days[days.len() - 1].text().await?;
        ensure!(last_day == "Today", "the newest heading says {last_day:?}");

        // A reader up in the history stays there when a message arrives; one at the newest
        // message follows the conversation.
        const GAP: &str = "const l = document.querySelector('.messages'); \
                           return l.scrollHeight - l.scrollTop - l.clientHeight;";
        let gap = |b: &'_ Browser| {
            let c = b.client().clone();
            async move {
                Ok::<f64, anyhow::Error>(c.execute(GAP, vec![]).await?.as_f64().unwrap_or(f64::NAN))
            }
        };
        ensure!(
            gap(alice).await? > 200.0,
            "the archive did not leave the view up in the history"
        );
        bob.send(
            "<message xmlns='jabber:client' to='alice@localhost' type='chat' id='late1'>\
             <body>a late message</body></message>",
        )
        .await?;
        wait_count(alice, messages, TOTAL + 1, STEP).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(
            gap(alice).await? > 200.0,
            "a new message pulled the reader away from the history"
        );
        alice
            .client()
            .execute(
                "const l = document.querySelector('.messages'); l.scrollTop = l.scrollHeight;",
                vec![],
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        bob.send(
            "<message xmlns='jabber:client' to='alice@localhost' type='chat' id='late2'>\
             <body>another late message</body></message>",
        )
        .await?;
        wait_count(alice, messages, TOTAL + 2, STEP).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let left = gap(alice).await?;
        ensure!(
            left.abs() < 4.0,
            "the view did not follow a new message (gap {left} px)"
        );
        assert_clean_console(alice).await?;
        Ok(())
    })
    .await?;
    bridge.stop().await?;
    Ok(())
}

/// Waits until `css` matches exactly `n` elements.
async fn wait_count(b: &Browser, css: &str, n: usize, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = count(b, css).await?;
        if now == n {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{css}: {now} elements, not {n}, after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`).
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or("none")
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = serde_json::json!({ "cmd": self.cmd, "params": self.params });
        (http::Method::POST, Some(body.to_string()))
    }
}

/// Desktop notifications: only after the user turns them on and the browser grants
/// permission; the sender only, the message text only when the user allows it. The browser's
/// own `Notification` is used; a pass-through wrapper records what the app passes to it.
#[tokio::test(flavor = "multi_thread")]
async fn browser_app_desktop_notifications() -> Result<()> {
    let dist = dist_dir()?;
    let prosody = start_prosody("browser-app-notify")?;
    let bridge = BridgeFixture::start(&prosody, Some(&dist), "").await?;
    let url = bridge.http_url();
    with_browser("browser_app_notify", async |alice: &Browser| {
        login(alice, &url, "alice").await?;
        type_into(alice, "contact-add-jid", "bob@localhost").await?;
        click(alice, "contact-add-submit").await?;
        wait_css(alice, &contact_css("bob@localhost"), STEP).await?;
        alice
            .client()
            .issue_cmd(Cdp {
                cmd: "Browser.grantPermissions",
                params: serde_json::json!({ "origin": url, "permissions": ["notifications"] }),
            })
            .await
            .context("granting the notification permission")?;
        alice
            .client()
            .execute(
                "const Real = window.Notification; window.__shown = []; \
                 window.Notification = class extends Real { \
                   constructor(title, options) { super(title, options); \
                     window.__shown.push([title, (options && options.body) || '']); } };",
                vec![],
            )
            .await?;
        let shown = async || -> Result<Vec<(String, String)>> {
            let v = alice
                .client()
                .execute("return window.__shown;", vec![])
                .await?;
            Ok(v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap_or_default().to_owned(),
                                p[1].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default())
        };

        let mut bob =
            sotto_tests::wsclient::RawClient::connect(&bridge.ws_url(), Some(&url)).await?;
        bob.login_plain("localhost", "bob", "bob-pass", "raw")
            .await?;
        let say = async |bob: &mut sotto_tests::wsclient::RawClient, id: &str, body: &str| {
            bob.send(&format!(
                "<message xmlns='jabber:client' to='alice@localhost' type='chat' id='{id}'>\
                 <body>{body}</body></message>"
            ))
            .await
        };

        // Off by default: a message, no notification.
        say(&mut bob, "n0", "notify-secret-zero").await?;
        wait_css_text(alice, "[data-testid=\"unread\"]", "1", STEP).await?;
        ensure!(shown().await?.is_empty(), "notified without being asked to");

        // Turned on: the sender, not the text.
        click(alice, "trust-open").await?;
        click(alice, "notifications-enable").await?;
        let state = wait_css(
            alice,
            "[data-testid=\"notifications-state\"][data-mode=\"private\"]",
            STEP,
        )
        .await
        .context("notifications not on after permission")?;
        ensure!(state.text().await?.contains("without message text"));
        save_screenshot(alice, "notification-settings").await?;
        say(&mut bob, "n1", "notify-secret-one").await?;
        wait_css_text(alice, "[data-testid=\"unread\"]", "2", STEP).await?;
        let list = shown().await?;
        ensure!(list.len() == 1, "one notification expected: {list:?}");
        ensure!(list[0].0.contains("bob@localhost"), "{list:?}");
        ensure!(
            !list
                .iter()
                .any(|(t, b)| t.contains("notify-secret") || b.contains("notify-secret")),
            "message text in a notification the user did not allow: {list:?}"
        );

        // Text allowed.
        click(alice, "notifications-text").await?;
        wait_css(
            alice,
            "[data-testid=\"notifications-state\"][data-mode=\"text\"]",
            STEP,
        )
        .await?;
        say(&mut bob, "n2", "notify-visible-two").await?;
        wait_css_text(alice, "[data-testid=\"unread\"]", "3", STEP).await?;
        let list = shown().await?;
        ensure!(
            list.len() == 2 && list[1].1 == "notify-visible-two",
            "{list:?}"
        );

        // Off again.
        click(alice, "notifications-disable").await?;
        wait_css(
            alice,
            "[data-testid=\"notifications-state\"][data-mode=\"off\"]",
            STEP,
        )
        .await?;
        say(&mut bob, "n3", "notify-after-off").await?;
        wait_css_text(alice, "[data-testid=\"unread\"]", "4", STEP).await?;
        ensure!(shown().await?.len() == 2, "notified after turning them off");
        assert_clean_console(alice).await?;
        Ok(())
    })
    .await?;
    bridge.stop().await?;
    Ok(())
}
