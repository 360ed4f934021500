//! Measurements of the web app in headless Chromium through the real bridge and Prosody,
//! printed, not asserted as timings (a loaded 2-core machine says little about users' devices):
//! the first load's gzip size, the time from navigation to a usable login screen, the time to
//! show a 1,000-contact roster, and the time to display a 500-message conversation — with the
//! longest main-thread task (Chromium's Long Tasks API) in each phase, which is what a user
//! sees as a freeze. The roster is real: 1,000 items in Prosody's roster store for alice; the
//! messages are real stanzas sent by a raw XMPP client as bob. Test names start with
//! `browser_` (`cargo xtask test --quick` skips them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use sotto_tests::app::dist_dir;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::browser::{with_browser, Browser};
use sotto_tests::prosody::Prosody;
use sotto_tests::wsclient::RawClient;

const LOAD: Duration = Duration::from_secs(30);
const ROSTER_SIZE: usize = 1000;
/// Contacts a tall desktop window shows at once.
const FIRST_SCREENFUL: usize = 25;
const HISTORY_SIZE: usize = 500;

/// The gzip sizes of what a first visit downloads (index.html and the script, wasm and
/// stylesheet it names: their pre-compressed `.gz` copies, as the bridge serves them) and of the
/// messenger's module, fetched once the login form is used.
fn download_gzip(dist: &std::path::Path) -> Result<(u64, u64)> {
    let index = std::fs::read_to_string(dist.join("index.html"))?;
    let mut first_load = std::fs::metadata(dist.join("index.html.gz"))?.len();
    let mut messenger = 0;
    let mut found = 0;
    for entry in std::fs::read_dir(dist)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".gz") else {
            continue;
        };
        let size = std::fs::metadata(dist.join(&name))?.len();
        if stem != "index.html" && index.contains(stem) {
            first_load += size;
            found += 1;
        } else if stem.starts_with("messenger-") && stem.ends_with(".wasm") {
            messenger += size;
        }
    }
    ensure!(
        found >= 3 && messenger > 0,
        "expected script, wasm, stylesheet and the messenger's wasm in {}",
        dist.display()
    );
    Ok((first_load, messenger))
}

/// alice's roster in Prosody's file store: bob plus `n - 1` more contacts, written before
/// alice signs in (Prosody reads it at her login).
fn write_roster(prosody: &Prosody, n: usize) -> Result<()> {
    let dir = prosody.data_dir().join("localhost").join("roster");
    std::fs::create_dir_all(&dir)?;
    let mut lua = String::from(
        "return {\n\t[false] = {\n\t\t[\"version\"] = 1;\n\t\t[\"pending\"] = {};\n\t};\n",
    );
    let _ = writeln!(
        lua,
        "\t[\"bob@localhost\"] = {{\n\t\t[\"subscription\"] = \"both\";\n\t\t[\"groups\"] = {{}};\n\t}};"
    );
    for i in 1..n {
        let _ = writeln!(
            lua,
            "\t[\"contact{i:04}@example.net\"] = {{\n\t\t[\"subscription\"] = \"both\";\n\t\t[\"name\"] = \"Contact {i:04}\";\n\t\t[\"groups\"] = {{}};\n\t}};"
        );
    }
    lua.push_str("};\n");
    std::fs::write(dir.join("alice.dat"), lua)?;
    Ok(())
}

async fn js(b: &Browser, script: &str, args: Vec<Value>) -> Result<Value> {
    b.client()
        .execute(script, args)
        .await
        .with_context(|| format!("running {script:.60}…"))
}

/// Polls `window.__perf[key]` until it is a number.
async fn wait_perf(b: &Browser, key: &str, timeout: Duration) -> Result<f64> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let v = js(
            b,
            "return window.__perf ? window.__perf[arguments[0]] : null;",
            vec![Value::from(key)],
        )
        .await?;
        if let Some(n) = v.as_f64() {
            return Ok(n);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{key} not reached within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The longest and the summed long tasks (ms) recorded since the last call, and their number.
async fn take_long_tasks(b: &Browser) -> Result<(f64, f64, usize)> {
    let list: Vec<f64> = take_long_task_list(b)
        .await?
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    Ok(summarise(&list))
}

/// The long tasks recorded since the last call, as (start, duration) in ms.
async fn take_long_task_list(b: &Browser) -> Result<Vec<(f64, f64)>> {
    let v = js(
        b,
        "const l = window.__perf.long; window.__perf.long = []; return l;",
        vec![],
    )
    .await?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| Some((e.get(0)?.as_f64()?, e.get(1)?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default())
}

/// The longest, the sum and the number of `durations`.
fn summarise(durations: &[f64]) -> (f64, f64, usize) {
    let max = durations.iter().copied().fold(0.0, f64::max);
    (max, durations.iter().sum(), durations.len())
}

/// Installs the long-task observer and a mutation observer that records, in
/// `window.__perf`, when `testid` elements first number at least `count` (under `key`) and,
/// once, when the connection state first reads "online".
const OBSERVE: &str = r#"
const [testid, count, key] = arguments;
if (!window.__perf) {
  window.__perf = { long: [] };
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__perf.long.push([e.startTime, e.duration]);
    }).observe({ type: 'longtask' });
  } catch (e) { window.__perf.noLongTasks = true; }
}
const p = window.__perf;
const check = () => {
  if (p.online === undefined) {
    const s = document.querySelector('[data-testid="connection-state"]');
    if (s && s.textContent.trim() === 'online') p.online = performance.now();
  }
  if (p[key] === undefined &&
      document.querySelectorAll('[data-testid="' + testid + '"]').length >= count) {
    p[key] = performance.now();
  }
};
new MutationObserver(check).observe(document.body,
  { childList: true, subtree: true, characterData: true });
p.t0 = performance.now();
"#;

/// When the messenger's module was fetched and how many bytes came over the wire:
/// `[fetchStart, responseEnd, transferSize]`, or null before it was fetched.
/// The messenger module's fetch as the browser recorded it: start and end (ms since
/// navigation) and bytes transferred; NaN for what is not there.
async fn messenger_fetch(b: &Browser) -> Result<[f64; 3]> {
    let entry = js(
        b,
        "const e = performance.getEntriesByType('resource')\
            .find(e => e.name.includes('/messenger-')); \
         return e ? [e.fetchStart, e.responseEnd, e.transferSize] : null;",
        vec![],
    )
    .await?;
    let field = |i: usize| entry.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
    Ok([field(0), field(1), field(2)])
}

/// Fills the login form the way a password manager does (values set, `input` events, no keys
/// or pointer), then submits it in the next task and records when in `window.__perf.submitted`.
const FILL_AND_SUBMIT: &str = r#"
const [jid, password] = arguments;
const setter = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
for (const [testid, value] of [['login-jid', jid], ['login-password', password]]) {
  const input = document.querySelector('[data-testid="' + testid + '"]');
  setter.call(input, value);
  input.dispatchEvent(new Event('input', { bubbles: true }));
}
setTimeout(() => {
  window.__perf.submitted = performance.now();
  document.querySelector('[data-testid="login-submit"]').click();
}, 0);
"#;

/// Types `text` into the input or textarea matching `css` one character at a time from page
/// script (no WebDriver in between), and returns, per keystroke, the app's synchronous work
/// (yew's handling of the input event and its render) and the layout that follows,
/// as `[max app ms, max layout ms]`.
const KEYSTROKES: &str = r#"
const [css, text] = arguments;
const done = arguments[arguments.length - 1];
(async () => {
  const el = document.querySelector(css);
  el.focus();
  void document.body.offsetHeight;
  let app = 0, layout = 0;
  for (const ch of text) {
    const t0 = performance.now();
    el.value = el.value + ch;
    el.dispatchEvent(new InputEvent('input', { bubbles: true, data: ch, inputType: 'insertText' }));
    // yew renders in a microtask queued by the dispatch; this one runs after it.
    await Promise.resolve();
    const t1 = performance.now();
    void document.body.offsetHeight;
    const t2 = performance.now();
    app = Math.max(app, t1 - t0);
    layout = Math.max(layout, t2 - t1);
    await new Promise((r) => setTimeout(r, 0));
  }
  return [app, layout];
})().then(done, () => done(null));
"#;

async fn keystrokes(b: &Browser, css: &str, text: &str) -> Result<(f64, f64)> {
    let v = b
        .client()
        .execute_async(KEYSTROKES, vec![Value::from(css), Value::from(text)])
        .await
        .context("typing from page script")?;
    Ok((
        v[0].as_f64().unwrap_or(f64::NAN),
        v[1].as_f64().unwrap_or(f64::NAN),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_app_measurements() -> Result<()> {
    let dist = dist_dir()?;
    let (gzip, messenger_gzip) = download_gzip(&dist)?;
    let prosody = Prosody::for_test("browser-perf", &["alice", "bob"])?;
    write_roster(&prosody, ROSTER_SIZE)?;
    // The history arrives faster than the default per-session stanza rate allows.
    let bridge = BridgeFixture::start(
        &prosody,
        Some(&dist),
        "[limits]\nstanzas_per_second = 2000\n",
    )
    .await?;
    let url = bridge.http_url();
    let ws_url = bridge.ws_url();

    let mut report = String::new();
    let _ = writeln!(
        report,
        "first load (gzip): {gzip} bytes = {:.1} KiB; the messenger's module, fetched once the \
         login form is used: {messenger_gzip} bytes = {:.1} KiB",
        gzip as f64 / 1024.0,
        messenger_gzip as f64 / 1024.0
    );

    with_browser("browser_app_measurements", async |b: &Browser| {
        b.client().set_window_size(1200, 900).await?;
        // A fresh profile: nothing cached. The app marks the login screen's first render.
        b.goto(&url).await?;
        b.wait_for_testid("login-jid", LOAD).await?;
        let login_ready = js(
            b,
            "const m = performance.getEntriesByName('sotto-login-ready')[0]; \
             const n = performance.getEntriesByType('navigation')[0]; \
             const s = performance.getEntriesByName('sotto-wasm-started')[0]; \
             const r = performance.getEntriesByType('resource'); \
             const js = r.find(e => e.name.endsWith('.js')); \
             const wasm = r.filter(e => e.name.endsWith('.wasm')); \
             return [m ? m.startTime : null, n ? n.responseEnd : null, s ? s.startTime : null, \
                     js ? js.responseEnd : null, wasm.length ? wasm[0].fetchStart : null, \
                     wasm.length ? wasm[0].responseEnd : null, wasm.length];",
            vec![],
        )
        .await?;
        let ready = login_ready[0].as_f64().context("no sotto-login-ready mark")?;
        let html = login_ready[1].as_f64().unwrap_or(f64::NAN);
        let at = |i: usize| login_ready[i].as_f64().unwrap_or(f64::NAN);
        let _ = writeln!(
            report,
            "  index.html at {html:.0} ms, JS glue at {:.0} ms, wasm fetched {:.0}–{:.0} ms \
             ({} request(s)), wasm started (compiled, instantiated) at {:.0} ms",
            at(3),
            at(4),
            at(5),
            login_ready[6],
            at(2)
        );
        let _ = writeln!(
            report,
            "navigation → usable login screen: {ready:.0} ms (index.html received at {html:.0} ms)"
        );

        // Sign in and render the 1,000-contact roster.
        let jid = b.wait_for_testid("login-jid", LOAD).await?;
        let typing = js(b, "return performance.now();", vec![]).await?;
        jid.send_keys("alice@localhost").await?;
        b.wait_for_testid("login-password", LOAD)
            .await?
            .send_keys("alice-pass")
            .await?;
        for (count, key) in [(FIRST_SCREENFUL, "first_rows"), (ROSTER_SIZE, "roster")] {
            js(
                b,
                OBSERVE,
                vec![Value::from("contact"), Value::from(count), Value::from(key)],
            )
            .await?;
        }
        js(
            b,
            "document.querySelector('[data-testid=\"login-submit\"]').click();",
            vec![],
        )
        .await?;
        let first_rows = wait_perf(b, "first_rows", LOAD).await?;
        let roster = wait_perf(b, "roster", LOAD).await?;
        let online = wait_perf(b, "online", LOAD).await?;
        let t0 = wait_perf(b, "t0", LOAD).await?;
        let [fetch_start, fetch_end, fetched_bytes] = messenger_fetch(b).await?;
        let _ = writeln!(
            report,
            "messenger's module: typing began at {:.0} ms, fetched {fetch_start:.0}–{fetch_end:.0} ms \
             ({fetched_bytes:.0} bytes transferred), sign-in clicked at {t0:.0} ms",
            typing.as_f64().unwrap_or(f64::NAN),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Signing in does the account's cryptography (SCRAM, OMEMO keys); the roster comes after.
        let tasks = take_long_task_list(b).await?;
        let (signing_in, after): (Vec<_>, Vec<_>) = tasks.iter().partition(|(start, _)| *start < online);
        let durations = |l: &[&(f64, f64)]| l.iter().map(|(_, d)| *d).collect::<Vec<_>>();
        let (max_in, _, n_in) = summarise(&durations(&signing_in));
        let (max, sum, n) = summarise(&durations(&after));
        let _ = writeln!(
            report,
            "sign-in → online: {:.0} ms (long tasks: {n_in}, longest {max_in:.0} ms); \
             sign-in → first {FIRST_SCREENFUL} contacts on screen: {:.0} ms, all {ROSTER_SIZE}: \
             {:.0} ms; long tasks once online: {n}, longest {max:.0} ms, total {sum:.0} ms",
            online - t0,
            first_rows - t0,
            roster - t0
        );
        // Searching the big roster.
        js(
            b,
            OBSERVE,
            vec![Value::from("contact"), Value::from(1), Value::from("unused")],
        )
        .await?;
        let search = b
            .client()
            .find(fantoccini::Locator::Css("input[type=\"search\"], .sidebar input"))
            .await;
        if let Ok(search) = search {
            let started = std::time::Instant::now();
            search.send_keys("Contact 09").await?;
            let deadline = tokio::time::Instant::now() + LOAD;
            loop {
                let shown = js(
                    b,
                    "return document.querySelectorAll('[data-testid=\"contact\"]').length;",
                    vec![],
                )
                .await?;
                if shown.as_u64() == Some(100) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("search did not narrow the roster to 100: {shown}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let (max, _, _) = take_long_tasks(b).await?;
            let _ = writeln!(
                report,
                "search \"Contact 09\" (10 keystrokes) → 100 of {ROSTER_SIZE} shown: {} ms \
                 (WebDriver typing included); longest task {max:.0} ms",
                started.elapsed().as_millis()
            );
            // Backspaces (WebDriver's clear() fires no input event).
            search.send_keys(&"\u{E003}".repeat(10)).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (app, layout) = keystrokes(b, "[data-testid=\"contact-search\"]", "Contact 09").await?;
            let _ = writeln!(
                report,
                "  same search typed from page script: per keystroke at most {app:.0} ms in the app, \
                 {layout:.0} ms layout"
            );
            search.send_keys(&"\u{E003}".repeat(10)).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let _ = take_long_tasks(b).await?;

        // bob (a raw XMPP client) sends 500 messages while alice's chat with him is closed.
        let mut raw = RawClient::connect(&ws_url, Some(&url)).await?;
        raw.login_plain("localhost", "bob", "bob-pass", "perf")
            .await?;
        let started = std::time::Instant::now();
        for i in 0..HISTORY_SIZE {
            raw.send(&format!(
                "<message xmlns='jabber:client' to='alice@localhost' type='chat' id='h{i}'>\
                 <body>History message number {i} with a little text to wrap.</body></message>"
            ))
            .await?;
            if i % 50 == 49 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let deadline = tokio::time::Instant::now() + LOAD;
        loop {
            let unread = js(
                b,
                "const e = document.querySelector('[data-jid=\"bob@localhost\"] [data-testid=\"unread\"]'); \
                 return e ? e.textContent.trim() : null;",
                vec![],
            )
            .await?;
            if unread.as_str() == Some(&HISTORY_SIZE.to_string()) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("alice did not count {HISTORY_SIZE} unread messages: {unread}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let arrival = started.elapsed().as_millis();
        let (max, sum, n) = take_long_tasks(b).await?;
        let _ = writeln!(
            report,
            "{HISTORY_SIZE} incoming messages received and counted (chat closed, {ROSTER_SIZE}-contact \
             roster on screen): {arrival} ms; long tasks: {n}, longest {max:.0} ms, total {sum:.0} ms"
        );

        // Open the conversation: 500 messages rendered.
        js(
            b,
            OBSERVE,
            vec![
                Value::from("message"),
                Value::from(HISTORY_SIZE),
                Value::from("history"),
            ],
        )
        .await?;
        js(
            b,
            "document.querySelector('[data-testid=\"contact\"][data-jid=\"bob@localhost\"]').click();",
            vec![],
        )
        .await?;
        let shown = wait_perf(b, "history", LOAD).await?;
        let t0 = wait_perf(b, "t0", LOAD).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (max, _, n) = take_long_tasks(b).await?;
        let _ = writeln!(
            report,
            "open a {HISTORY_SIZE}-message conversation → all on screen: {:.0} ms; long tasks: {n}, \
             longest {max:.0} ms",
            shown - t0
        );

        // The newest message is in view (rows off screen have estimated heights).
        let gap = js(
            b,
            "const l = document.querySelector('.messages'); \
             return l.scrollHeight - l.scrollTop - l.clientHeight;",
            vec![],
        )
        .await?;
        ensure!(
            gap.as_f64().is_some_and(|g| g.abs() < 4.0),
            "the conversation is not scrolled to its newest message (gap {gap} px)"
        );

        // Typing one more message into that conversation stays responsive.
        let composer = b.wait_for_testid("chat-input", LOAD).await?;
        let started = std::time::Instant::now();
        composer.send_keys("hello").await?;
        let (max, _, _) = take_long_tasks(b).await?;
        let _ = writeln!(
            report,
            "type 5 characters in that conversation: {} ms (WebDriver included); longest task {max:.0} ms",
            started.elapsed().as_millis()
        );
        let (app, layout) = keystrokes(b, "[data-testid=\"chat-input\"]", " world").await?;
        let _ = writeln!(
            report,
            "  typed from page script: per keystroke at most {app:.0} ms in the app, {layout:.0} ms layout"
        );
        let no_long_tasks = js(b, "return !!window.__perf.noLongTasks;", vec![]).await?;
        ensure!(
            no_long_tasks == Value::Bool(false),
            "this Chromium has no Long Tasks API: the freeze numbers above mean nothing"
        );
        raw.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
            .await?;
        let dir = sotto_tests::target_dir().join("screenshots");
        std::fs::create_dir_all(&dir)?;
        b.screenshot(&dir.join("perf-500-messages.png")).await?;
        Ok(())
    })
    .await?;

    // A form that a password manager filled: nothing typed or pointed at before the submission,
    // so the messenger's module is fetched only then, and the sign-in waits for it.
    with_browser("browser_app_measurements_filled", async |b: &Browser| {
        b.goto(&url).await?;
        b.wait_for_testid("login-jid", LOAD).await?;
        js(
            b,
            OBSERVE,
            vec![Value::from("contact"), Value::from(1), Value::from("first_contact")],
        )
        .await?;
        js(b, FILL_AND_SUBMIT, vec![Value::from("bob@localhost"), Value::from("bob-pass")]).await?;
        let online = wait_perf(b, "online", LOAD).await?;
        let submitted = wait_perf(b, "submitted", LOAD).await?;
        let [fetch_start, fetch_end, _] = messenger_fetch(b).await?;
        let _ = writeln!(
            report,
            "sign-in from a filled form (nothing typed): the messenger's module fetched {:.0}–{:.0} ms \
             after the submission; online {:.0} ms after it",
            fetch_start - submitted,
            fetch_end - submitted,
            online - submitted
        );
        Ok(())
    })
    .await?;
    bridge.stop().await?;
    println!("--- web app measurements ---\n{report}----------------------------");
    let out = sotto_tests::target_dir().join("measurements");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("browser_app.txt"), &report)?;
    Ok(())
}
