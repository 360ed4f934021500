//! Interoperability with python-oldmemo (an independent OMEMO 0.3 implementation), both ways.
//!
//! Needs Python 3 with venv; the pinned packages come from PyPI into the workspace's interop
//! venv on first use (see `client/omemo/interop/README.md`).

// An integration-test crate: its helpers are test code too (clippy.toml only covers #[test] fns).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use serde_json::{json, Value};
use sotto_omemo::{
    account::{Account, Bundle, RemoteBundle},
    messages::{OmemoKeyMessage, PreKeySignalMessage},
    payload::{self, KeyTransport},
    session::Session,
};

/// The interpreter with python-oldmemo: `SOTTO_OLDMEMO_PYTHON`, or the workspace's pinned
/// interop venv (`target/interop/venv`, from `tests/interop/requirements.txt`, shared with the
/// slixmpp-omemo suites), created here when missing. Fails clearly without Python or PyPI.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SOTTO_OLDMEMO_PYTHON") {
        return PathBuf::from(python);
    }
    static VENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = VENV.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
        .unwrap_or_else(|| root.join("target"));
    let venv = target.join("interop/venv");
    let python = venv.join("bin/python");
    let requirements = root.join("tests/interop/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    let stamp = venv.join("sotto-requirements.txt");
    let ready = || python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted);
    if ready() {
        return python;
    }
    // Another test process may be building it (tests/src/pypeer.rs holds this lock then).
    let lock = target.join("interop/venv.lock");
    std::fs::create_dir_all(target.join("interop")).unwrap();
    for _ in 0..3000 {
        let owner_alive = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !owner_alive {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if ready() {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 for the oldmemo interop tests (Debian: python3-venv)");
    assert!(
        status.success(),
        "python3 -m venv failed (Debian: install python3-venv)"
    );
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "-r",
        ])
        .arg(&requirements)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "pip could not install {} (is PyPI reachable?)",
        requirements.display()
    );
    std::fs::write(&stamp, &wanted).unwrap();
    python
}

struct Peer {
    state: PathBuf,
}

impl Peer {
    fn new(name: &str) -> Self {
        let state =
            std::env::temp_dir().join(format!("sotto-oldmemo-{}-{name}.json", std::process::id()));
        let _ = std::fs::remove_file(&state);
        Self { state }
    }

    fn call(&self, command: &str, request: &Value) -> Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/oldmemo_peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(&self.state)
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python with oldmemo (see interop/README.md)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(request.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "oldmemo peer `{command}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.state);
    }
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn bundle_json(b: &Bundle) -> Value {
    json!({
        "identity_key": hex::encode(b.identity_key().to_bytes()),
        "signed_pre_key_id": b.signed_pre_key_id(),
        "signed_pre_key": hex::encode(b.signed_pre_key().to_bytes()),
        "signed_pre_key_signature": hex::encode(b.signed_pre_key_signature()),
        "pre_keys": b.pre_keys().iter().map(|(id, k)| json!([id, hex::encode(k.to_bytes())])).collect::<Vec<_>>(),
    })
}

fn remote_bundle(v: &Value) -> RemoteBundle {
    RemoteBundle::new(
        &h(&v["identity_key"]),
        u32::try_from(v["signed_pre_key_id"].as_u64().unwrap()).unwrap(),
        &h(&v["signed_pre_key"]),
        &h(&v["signed_pre_key_signature"]),
        v["pre_keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (u32::try_from(p[0].as_u64().unwrap()).unwrap(), h(&p[1]))),
    )
    .expect("oldmemo's bundle verifies with the libsignal sign-bit rule")
}

/// Decrypt a reply from the peer on our session.
fn open_reply(session: &mut Session, reply: &Value, rng: &mut ChaCha20Rng) -> String {
    let message = OmemoKeyMessage::from_bytes(&h(&reply["key"]), false).unwrap();
    let material = session.decrypt(&message, rng).unwrap();
    let text = payload::decrypt(&material, &h(&reply["iv"]), &h(&reply["payload"])).unwrap();
    String::from_utf8(text.to_vec()).unwrap()
}

#[test]
fn we_initiate_and_oldmemo_decrypts() {
    let mut rng = ChaCha20Rng::seed_from_u64(2024);
    let account = Account::new(&mut rng);
    let ours = bundle_json(&account.bundle());
    let peer = Peer::new("responder");

    let theirs = remote_bundle(&peer.call("bundle", &json!({})));
    let mut session = account.create_outbound_session(&theirs, &mut rng);

    // 1. Our prekey message; oldmemo builds its session passively and answers.
    let body = payload::encrypt("Hallo from Sotto ✓".as_bytes(), &mut rng);
    let key = session.encrypt(body.key_material.as_bytes()).unwrap();
    assert!(key.is_prekey());
    let resp = peer.call(
        "receive",
        &json!({
            "bundle": ours, "key": hex::encode(key.as_bytes()), "prekey": true,
            "iv": hex::encode(body.iv), "payload": hex::encode(&body.ciphertext),
            "reply": "reply 1 from oldmemo",
        }),
    );
    assert_eq!(resp["plaintext"], "Hallo from Sotto ✓");
    assert_eq!(resp["key_material_length"], 32);
    assert_eq!(
        open_reply(&mut session, &resp["reply"], &mut rng),
        "reply 1 from oldmemo"
    );
    assert!(session.is_acknowledged());

    // 2. Two normal messages delivered out of order, then a key-transport message.
    let texts = ["second", "third"];
    let sent: Vec<_> = texts
        .iter()
        .map(|t| {
            let body = payload::encrypt(t.as_bytes(), &mut rng);
            let key = session.encrypt(body.key_material.as_bytes()).unwrap();
            assert!(!key.is_prekey());
            (body, key)
        })
        .collect();
    for i in [1, 0] {
        let (body, key) = &sent[i];
        let resp = peer.call(
            "receive",
            &json!({
                "bundle": ours, "key": hex::encode(key.as_bytes()), "prekey": false,
                "iv": hex::encode(body.iv), "payload": hex::encode(&body.ciphertext),
                "reply": format!("ack {i}"),
            }),
        );
        assert_eq!(resp["plaintext"], texts[i]);
        assert_eq!(
            open_reply(&mut session, &resp["reply"], &mut rng),
            format!("ack {i}")
        );
    }
    let kt = KeyTransport::generate(&mut rng);
    let key = session.encrypt(kt.as_bytes()).unwrap();
    let resp = peer.call(
        "receive",
        &json!({ "bundle": ours, "key": hex::encode(key.as_bytes()), "prekey": false, "reply": "after heartbeat" }),
    );
    assert_eq!(resp["key_material_length"], 16);
    assert_eq!(
        open_reply(&mut session, &resp["reply"], &mut rng),
        "after heartbeat"
    );
}

#[test]
fn oldmemo_initiates_and_we_decrypt() {
    // Several identities so that both Ed25519 sign bits of our XEdDSA signatures are exercised
    // against oldmemo's verification.
    let mut sign_bits = [false; 2];
    for seed in 0..6u64 {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut account = Account::new(&mut rng);
        let bundle = account.bundle();
        sign_bits[usize::from(bundle.signed_pre_key_signature()[63] >> 7)] = true;
        let ours = bundle_json(&bundle);
        let peer = Peer::new(&format!("initiator-{seed}"));

        let resp = peer.call(
            "initiate",
            &json!({ "bundle": ours, "text": format!("hi Sotto {seed}") }),
        );
        let message = PreKeySignalMessage::from_bytes(&h(&resp["key"])).unwrap();
        let inbound = account.create_inbound_session(&message, &mut rng).unwrap();
        let text =
            payload::decrypt(&inbound.plaintext, &h(&resp["iv"]), &h(&resp["payload"])).unwrap();
        assert_eq!(text.as_slice(), format!("hi Sotto {seed}").as_bytes());
        assert_eq!(account.unused_one_time_pre_keys(), 99);

        // Our answer on the new session.
        let mut session = inbound.session;
        let body = payload::encrypt(b"hello oldmemo", &mut rng);
        let key = session.encrypt(body.key_material.as_bytes()).unwrap();
        assert!(!key.is_prekey());
        let resp = peer.call(
            "receive",
            &json!({
                "bundle": ours, "key": hex::encode(key.as_bytes()), "prekey": false,
                "iv": hex::encode(body.iv), "payload": hex::encode(&body.ciphertext),
                "reply": "and back",
            }),
        );
        assert_eq!(resp["plaintext"], "hello oldmemo");
        assert_eq!(
            open_reply(&mut session, &resp["reply"], &mut rng),
            "and back"
        );
    }
    assert_eq!(sign_bits, [true, true], "both sign bits covered");
}

/// Regenerates `tests/vectors/oldmemo.json`, the committed messages of python-oldmemo that
/// `tests/oldmemo_vectors.rs` checks without Python: a prekey message to a pickled account of
/// ours, and a normal message on the resulting (pickled) session after our reply.
#[test]
#[ignore = "needs python-oldmemo; regenerates tests/vectors/oldmemo.json"]
fn capture_oldmemo_vectors() {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let mut account = Account::new(&mut rng);
    let account_pickle = serde_json::to_value(account.pickle()).unwrap();
    let ours = bundle_json(&account.bundle());
    let peer = Peer::new("vectors");

    let text = "Grüße von python-oldmemo";
    let first = peer.call("initiate", &json!({ "bundle": ours, "text": text }));
    let message = PreKeySignalMessage::from_bytes(&h(&first["key"])).unwrap();
    let mut session = account
        .create_inbound_session(&message, &mut rng)
        .unwrap()
        .session;

    let body = payload::encrypt(b"reply from Sotto", &mut rng);
    let key = session.encrypt(body.key_material.as_bytes()).unwrap();
    let session_pickle = serde_json::to_value(session.pickle()).unwrap();
    let reply_text = "second message from python-oldmemo";
    let resp = peer.call(
        "receive",
        &json!({
            "bundle": ours, "key": hex::encode(key.as_bytes()), "prekey": false,
            "iv": hex::encode(body.iv), "payload": hex::encode(&body.ciphertext),
            "reply": reply_text,
        }),
    );
    assert_eq!(
        open_reply(&mut session, &resp["reply"], &mut rng),
        reply_text
    );

    let vectors = json!({
        "comment": "Generated by python-oldmemo 2.1.0 (tests/interop_oldmemo.rs::capture_oldmemo_vectors). Test keys only.",
        "account_pickle": account_pickle,
        "prekey_message": { "key": first["key"], "iv": first["iv"], "payload": first["payload"], "text": text },
        "session_after_reply": session_pickle,
        "normal_message": { "key": resp["reply"]["key"], "iv": resp["reply"]["iv"], "payload": resp["reply"]["payload"], "text": reply_text },
    });
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/oldmemo.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&vectors).unwrap() + "\n",
    )
    .unwrap();
}
