//! `cargo xtask demo`: Prosody + bridge + client on this machine, in the foreground.
//!
//! Everything lives under `target/demo/`: Prosody's config, certificates and data, the bridge
//! config, and the demo accounts (created once with random passwords, reused afterwards).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sotto_tests::prosody::{Prosody, ProsodyOptions};

use crate::dist;
use crate::util::{apt_install, cargo, ensure_wasm_target, have, run_command, target_dir};

/// Where the bridge listens unless `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

const DEMO_USERS: [&str; 2] = ["alice", "bob"];

/// Runs the demo until Ctrl-C.
pub fn run(listen: &str) -> Result<()> {
    let listen: SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen}: expected an address like 127.0.0.1:8080"))?;
    if !listen.ip().is_loopback() {
        bail!("--listen {listen}: the demo uses throwaway certificates and accounts, so it listens on loopback only");
    }
    let missing: Vec<&str> = [("prosody", "prosody"), ("openssl", "openssl")]
        .into_iter()
        .filter(|(program, _)| !have(program))
        .map(|(_, package)| package)
        .collect();
    apt_install(&missing)?;
    ensure_wasm_target()?;

    dist::run(&dist::DistOptions::default())?;
    run_command(cargo().args(["build", "--quiet", "-p", "sotto-bridge"]))?;

    let demo_dir = target_dir().join("demo");
    std::fs::create_dir_all(&demo_dir)?;
    let prosody = Prosody::start(ProsodyOptions {
        dir: demo_dir.join("prosody"),
        domain: "localhost".into(),
        websocket: false,
        plaintext_c2s: false,
    })?;
    let accounts = ensure_accounts(&prosody, &demo_dir.join("accounts.txt"))?;

    let config_path = demo_dir.join("bridge.toml");
    std::fs::write(&config_path, bridge_config(listen, &prosody))?;
    let bridge_bin = target_dir().join("debug").join("sotto-bridge");
    let mut bridge = Command::new(&bridge_bin)
        .arg("--config")
        .arg(&config_path)
        .spawn()
        .with_context(|| format!("cannot start {}", bridge_bin.display()))?;
    let stop = StopOnDrop(&mut bridge);
    wait_for_port(listen, Duration::from_secs(10)).context("the bridge did not start")?;

    println!("\nSotto demo is running.\n");
    println!("  Open:      http://{listen}/");
    println!("  Accounts:");
    for (user, password) in &accounts {
        println!("    {user}@localhost   password: {password}");
    }
    println!(
        "\n  Prosody:   {} (data in {})",
        prosody.c2s_addr(),
        prosody.data_dir().display()
    );
    println!("  Metrics:   http://{listen}/metrics");
    println!("\nPress Ctrl-C to stop everything.");

    let (tx, rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            break;
        }
        if let Some(status) = stop.0.try_wait()? {
            bail!("the bridge exited unexpectedly ({status})");
        }
    }
    println!("\nStopping the bridge and Prosody…");
    drop(stop);
    drop(prosody);
    println!("Stopped.");
    Ok(())
}

/// Terminates a child process on drop: SIGTERM, then SIGKILL if it does not exit in time.
struct StopOnDrop<'a>(&'a mut Child);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bridge_config(listen: SocketAddr, prosody: &Prosody) -> String {
    let toml_string = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let static_dir = target_dir().join("dist");
    format!(
        "# Written by cargo xtask demo; rewritten on every run.\n\
listen = \"{listen}\"\n\
static_dir = {}\n\
public_url = \"http://{listen}\"\n\
allowed_origins = []\n\n\
[[upstream]]\n\
domain = \"localhost\"\n\
host = \"{}\"\n\
port = {}\n\
tls = \"starttls\"\n\
ca_file = {}\n",
        toml_string(&static_dir.to_string_lossy()),
        prosody.c2s_addr().ip(),
        prosody.c2s_addr().port(),
        toml_string(&prosody.ca_file().to_string_lossy()),
    )
}

/// The demo accounts: read from `file` if present, otherwise created with random passwords.
/// Registering again with the same password is harmless and repairs a wiped data dir.
fn ensure_accounts(prosody: &Prosody, file: &Path) -> Result<Vec<(String, String)>> {
    let mut accounts: Vec<(String, String)> = match std::fs::read_to_string(file) {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(u, p)| (u.to_owned(), p.to_owned()))
            .collect(),
        Err(_) => Vec::new(),
    };
    if DEMO_USERS
        .iter()
        .any(|u| !accounts.iter().any(|(a, _)| a == u))
    {
        accounts = DEMO_USERS
            .iter()
            .map(|u| Ok((u.to_string(), random_password()?)))
            .collect::<Result<_>>()?;
        let text: String = accounts.iter().map(|(u, p)| format!("{u} {p}\n")).collect();
        std::fs::write(file, text)?;
        run_command(Command::new("chmod").arg("600").arg(file))?;
    }
    for (user, password) in &accounts {
        if !prosody.user_exists(user) {
            prosody.register(user, password)?;
        }
    }
    Ok(accounts)
}

fn random_password() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // 16 draws from 56 symbols (≈ 93 bits); the modulo bias (256 mod 56) is irrelevant here.
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listens on {addr}")
}
