//! `sotto-bridge admin` against a real Prosody (through the real `prosodyctl` with the fixture's
//! configuration): a created account can log in through the bridge, a disabled one cannot and
//! its open session is ended, enabling and resetting passwords work, and passwords never appear
//! in the command's output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anyhow::Result;
use sotto_bridge::admin;
use sotto_tests::bridge::BridgeFixture;
use sotto_tests::prosody::{running_as_root, Prosody};
use sotto_tests::wsclient::{Frame, RawClient};

struct Outcome {
    code: u8,
    out: String,
    err: String,
}

/// Runs `sotto-bridge admin` with this Prosody's configuration.
fn admin(prosody: &Prosody, args: &[&str], stdin: &str, env: Option<(&str, &str)>) -> Outcome {
    let mut all = vec![
        "--prosody-config".to_owned(),
        prosody.config_file().to_string_lossy().into_owned(),
    ];
    if running_as_root() {
        all.push("--root".into());
    }
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let mut input = stdin.as_bytes();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let lookup = move |name: &str| env.and_then(|(k, v)| (k == name).then(|| v.to_owned()));
    let code = admin::run(
        &all,
        &mut admin::Io {
            stdin: &mut input,
            out: &mut out,
            err: &mut err,
            env: &lookup,
        },
    );
    Outcome {
        code,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    }
}

async fn can_log_in(bridge: &BridgeFixture, user: &str, password: &str) -> Result<bool> {
    let mut client = RawClient::connect(&bridge.ws_url(), None).await?;
    Ok(client
        .login_plain("localhost", user, password, "admin-test")
        .await
        .is_ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn create_disable_enable_reset_and_list() -> Result<()> {
    let prosody = Prosody::for_test("admin-accounts", &["alice"])?;
    let bridge = BridgeFixture::start(&prosody, None, "").await?;

    // create: the account exists and logs in through the bridge.
    let created = admin(
        &prosody,
        &["create", "carol@localhost"],
        "carol-secret-1\n",
        None,
    );
    assert_eq!(created.code, admin::OK, "{}{}", created.out, created.err);
    assert!(prosody.user_exists("carol"));
    assert!(can_log_in(&bridge, "carol", "carol-secret-1").await?);
    assert!(!can_log_in(&bridge, "carol", "wrong").await?);
    let again = admin(
        &prosody,
        &["create", "carol@localhost"],
        "other-secret\n",
        None,
    );
    assert_eq!(again.code, admin::FAILED);
    assert!(again.err.contains("already exists"), "{}", again.err);

    // list.
    let listed = admin(&prosody, &["list", "localhost"], "", None);
    assert_eq!(listed.code, admin::OK, "{}{}", listed.out, listed.err);
    let mut accounts: Vec<&str> = listed.out.lines().collect();
    accounts.sort_unstable();
    assert_eq!(accounts, ["alice@localhost", "carol@localhost"]);

    // disable: the open session ends, and no new login is possible.
    let mut carol = RawClient::connect(&bridge.ws_url(), None).await?;
    carol
        .login_plain("localhost", "carol", "carol-secret-1", "desk")
        .await?;
    let disabled = admin(&prosody, &["disable", "carol@localhost"], "", None);
    assert_eq!(disabled.code, admin::OK, "{}{}", disabled.out, disabled.err);
    assert!(
        disabled.out.contains("1 sessions closed"),
        "{}",
        disabled.out
    );
    let mut ended = false;
    for _ in 0..10 {
        match carol.recv().await? {
            Frame::Closed(_) => {
                ended = true;
                break;
            }
            Frame::Text(_) => {}
        }
    }
    assert!(ended, "the disabled account's session is still open");
    assert!(!can_log_in(&bridge, "carol", "carol-secret-1").await?);

    // enable, with the password from the environment.
    let enabled = admin(
        &prosody,
        &[
            "--password-env",
            "CAROL_PASSWORD",
            "enable",
            "carol@localhost",
        ],
        "",
        Some(("CAROL_PASSWORD", "carol-secret-2")),
    );
    assert_eq!(enabled.code, admin::OK, "{}{}", enabled.out, enabled.err);
    assert!(can_log_in(&bridge, "carol", "carol-secret-2").await?);

    // reset-password.
    let reset = admin(
        &prosody,
        &["reset-password", "alice@localhost"],
        "alice-new-secret\n",
        None,
    );
    assert_eq!(reset.code, admin::OK, "{}{}", reset.out, reset.err);
    assert!(can_log_in(&bridge, "alice", "alice-new-secret").await?);
    assert!(!can_log_in(&bridge, "alice", "alice-pass").await?);

    // Unknown accounts are reported, and no password is ever echoed.
    let missing = admin(
        &prosody,
        &["reset-password", "nobody@localhost"],
        "nobody-secret\n",
        None,
    );
    assert_eq!(missing.code, admin::FAILED);
    for outcome in [&created, &again, &disabled, &enabled, &reset, &missing] {
        for secret in [
            "carol-secret",
            "other-secret",
            "alice-new-secret",
            "nobody-secret",
        ] {
            assert!(
                !outcome.out.contains(secret) && !outcome.err.contains(secret),
                "{secret} printed: {}{}",
                outcome.out,
                outcome.err
            );
        }
    }
    bridge.stop().await?;
    Ok(())
}
