//! `sotto`: the Sotto command-line client, for scripts, bots and tests.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 timeout, 4 login refused,
//! 5 server unreachable.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sotto_session::native::{Client, DriverError, WaitError};
use sotto_session::omemo::temporary::{
    KdfParams, Role, TemporaryDevices, TemporaryEvent, DEFAULT_RETIRE_TIMEOUT,
};
use sotto_session::omemo::{Omemo, OmemoEvent, Trust};
use sotto_session::{BareJid, Config, Direction, Event, LoginError, Subscription};
use zeroize::Zeroizing;

const USAGE: &str = "\
usage: sotto --service URL --jid JID [--ca FILE] [--store DIR | --temporary] [--resource NAME] COMMAND

The password is read from SOTTO_PASSWORD, or prompted for on a terminal; never from a flag.

Commands:
  send TO TEXT [--plaintext]     send one chat message, OMEMO-encrypted to all of TO's devices
                                 (fails if TO has none); --plaintext sends it unencrypted
  listen [--count N] [--timeout SECS] [--echo]
                                 print each received chat message as one JSON line
                                 {\"from\", \"body\", \"encrypted\", \"error\"?}; exit 0 after N
                                 messages, 3 on timeout; --echo replies with the same body
  devices [JID]                  our (or JID's) OMEMO device ids, one JSON line each
  fingerprints                   this device's OMEMO id and fingerprint
  history JID [--max N]          the newest N (default 50) archived messages with JID, oldest
                                 first, as listen's JSON lines plus \"direction\" and \"stamp\";
                                 OMEMO ones decrypted where this device can (one it already
                                 read live reports an \"error\": its keys are used up)

--store DIR keeps this device's OMEMO identity (DIR/omemo.device, mode 0600; an omemo.json of
earlier versions is read and replaced); without it every
run is a new OMEMO device. It also keeps the sessions and the trust in contacts' devices.
--temporary makes this run's OMEMO device temporary: recorded (sealed with the password) in a
private PEP node before it is published, removed from the device list with its bundle when the
command ends, and removed by the account's next login if this run dies first.
  roster                         print the roster, one JSON line per contact
  add JID | remove JID           add a contact (and ask to see their presence) / remove one
  approve JID | deny JID         answer a contact's subscription request
  -V, --version                  print the version

Exit codes: 0 ok, 1 failure, 2 usage, 3 timeout, 4 login refused, 5 server unreachable.";

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_TIMEOUT: u8 = 3;
const EXIT_LOGIN: u8 = 4;
const EXIT_UNREACHABLE: u8 = 5;

/// How long login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

struct Failure(u8, String);

impl From<DriverError> for Failure {
    fn from(e: DriverError) -> Self {
        let code = match e {
            DriverError::Timeout => EXIT_TIMEOUT,
            DriverError::Connect(_) | DriverError::Subprotocol => EXIT_UNREACHABLE,
            _ => EXIT_FAILURE,
        };
        Failure(code, e.to_string())
    }
}

impl From<WaitError> for Failure {
    fn from(e: WaitError) -> Self {
        match e {
            WaitError::Login(LoginError::Timeout) => Failure(EXIT_TIMEOUT, e.to_string()),
            WaitError::Login(_) => Failure(EXIT_LOGIN, e.to_string()),
            WaitError::Stream(ref s) if s.condition == "host-unknown" => Failure(
                EXIT_UNREACHABLE,
                format!("{e} (unknown domain at the bridge)"),
            ),
            WaitError::Stream(ref s) if s.condition == "remote-connection-failed" => {
                Failure(EXIT_UNREACHABLE, e.to_string())
            }
            WaitError::Stream(_) => Failure(EXIT_FAILURE, e.to_string()),
            WaitError::Driver(d) => d.into(),
            other => Failure(EXIT_FAILURE, other.to_string()),
        }
    }
}

struct Options {
    service: String,
    jid: BareJid,
    ca: Option<PathBuf>,
    store: Option<PathBuf>,
    resource: Option<String>,
    temporary: bool,
    command: Vec<String>,
}

fn parse_args(args: Vec<String>) -> Result<Options, Failure> {
    let usage = |msg: &str| Failure(EXIT_USAGE, format!("{msg}\n\n{USAGE}"));
    let mut service = None;
    let mut jid = None;
    let mut ca = None;
    let mut store = None;
    let mut resource = None;
    let mut temporary = false;
    let mut command = Vec::new();
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--service" => service = iter.next(),
            "--jid" => jid = iter.next(),
            "--ca" => ca = iter.next().map(PathBuf::from),
            "--store" => store = iter.next().map(PathBuf::from),
            "--resource" => resource = iter.next(),
            "--temporary" => temporary = true,
            "--password" => {
                return Err(usage(
                    "passwords are never taken from flags: set SOTTO_PASSWORD",
                ))
            }
            _ => {
                command.push(arg);
                command.extend(iter.by_ref());
            }
        }
    }
    let service = service.ok_or_else(|| usage("--service is required"))?;
    let jid = jid.ok_or_else(|| usage("--jid is required"))?;
    let jid: BareJid = jid
        .parse()
        .map_err(|_| usage(&format!("{jid:?} is not a valid address (name@domain)")))?;
    if jid.node().is_none() {
        return Err(usage("the address needs a name part (name@domain)"));
    }
    if command.is_empty() {
        return Err(usage("no command given"));
    }
    if temporary && store.is_some() {
        return Err(usage("--temporary and --store exclude each other"));
    }
    Ok(Options {
        service,
        jid,
        ca,
        store,
        resource,
        temporary,
        command,
    })
}

fn password() -> Result<Zeroizing<String>, Failure> {
    if let Ok(p) = std::env::var("SOTTO_PASSWORD") {
        return Ok(Zeroizing::new(p));
    }
    rpassword::prompt_password("Password: ")
        .map(Zeroizing::new)
        .map_err(|_| {
            Failure(
                EXIT_USAGE,
                "no password: set SOTTO_PASSWORD or run on a terminal".into(),
            )
        })
}

fn parse_jid(text: Option<&String>) -> Result<BareJid, Failure> {
    let text = text.ok_or_else(|| Failure(EXIT_USAGE, format!("missing address\n\n{USAGE}")))?;
    text.parse()
        .map_err(|_| Failure(EXIT_USAGE, format!("{text:?} is not a valid address")))
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).cloned()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("sotto {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sotto: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            eprintln!("sotto: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(args: Vec<String>) -> Result<(), Failure> {
    let options = parse_args(args)?;
    let command = options.command.clone();
    let verb = command.first().map(String::as_str).unwrap_or_default();
    // Validate the command before asking for a password or touching the network.
    match verb {
        "send" if command.len() >= 3 => {}
        "listen" | "roster" | "fingerprints" => {}
        "devices" if command.len() <= 2 => {}
        "history" if command.len() >= 2 => {}
        "add" | "remove" | "approve" | "deny" if command.len() == 2 => {}
        _ => {
            return Err(Failure(
                EXIT_USAGE,
                format!("unknown or incomplete command\n\n{USAGE}"),
            ))
        }
    }
    let password = password()?;
    let config = Config {
        jid: options.jid.clone(),
        password: password.clone(),
        resource: options.resource.clone(),
        allow_plain: false,
        service: None,
    };
    let mut client = Client::connect(&options.service, config, options.ca.as_deref()).await?;
    let plaintext = command.iter().any(|a| a == "--plaintext");
    if matches!(verb, "listen" | "devices" | "fingerprints" | "history")
        || (verb == "send" && !plaintext)
    {
        let mut omemo = load_omemo(&options)?;
        let kiosk = options.temporary.then(|| {
            TemporaryDevices::new(
                Role::Temporary,
                &mut omemo,
                &password,
                KdfParams::BROWSER,
                &mut rand::rngs::OsRng,
            )
        });
        let mut e2e = E2e {
            client,
            omemo,
            kiosk,
            out: VecDeque::new(),
        };
        e2e.omemo.attach(e2e.client.session());
        let mut result = e2e.run(verb, &command).await;
        if e2e.kiosk.is_some() {
            let retired = e2e.retire().await;
            result = result.and(retired);
        }
        // What the server stored for us meanwhile has been read: used prekeys can go.
        e2e.omemo.catch_up_done();
        save_omemo(&options, &e2e.omemo)?;
        result?;
        e2e.client.close().await?;
        return Ok(());
    }
    client.wait_online(LOGIN_TIMEOUT).await?;
    match verb {
        "send" => {
            let to = parse_jid(command.get(1))?;
            let text = command.get(2).cloned().unwrap_or_default();
            let id = client
                .session()
                .send_chat(&to, &text)
                .map_err(|e| Failure(EXIT_FAILURE, e.to_string()))?;
            wait_acked(&mut client, &id).await?;
        }
        "roster" => {
            let items = wait_roster(&mut client).await?;
            for item in items {
                let line = serde_json::json!({
                    "jid": item.jid.to_string(),
                    "name": item.name,
                    "subscription": match item.subscription {
                        Subscription::None => "none",
                        Subscription::To => "to",
                        Subscription::From => "from",
                        Subscription::Both => "both",
                    },
                    "pending": item.pending_out,
                });
                println!("{line}");
            }
        }
        "add" | "remove" | "approve" | "deny" => {
            let jid = parse_jid(command.get(1))?;
            let session = client.session();
            let result = match verb {
                "add" => session.add_contact(&jid, None),
                "remove" => session.remove_contact(&jid),
                "approve" => session.approve_subscription(&jid),
                _ => session.deny_subscription(&jid),
            };
            result.map_err(|e| Failure(EXIT_FAILURE, e.to_string()))?;
            client.flush().await?;
            // Let the server process it before we close (a roster push confirms add/remove).
            let _ = client.next_event_within(Duration::from_millis(500)).await;
        }
        _ => {}
    }
    client.close().await?;
    Ok(())
}

async fn wait_acked(client: &mut Client, id: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_within(left).await? {
            Event::MessageAcked { id: acked } if acked == id => return Ok(()),
            Event::MessageError {
                id: Some(e),
                condition,
            } if e == id => {
                return Err(Failure(
                    EXIT_FAILURE,
                    format!("the message was refused: {condition}"),
                ))
            }
            Event::Disconnected { .. } => {
                return Err(Failure(
                    EXIT_FAILURE,
                    "the connection ended before the server confirmed the message".into(),
                ))
            }
            _ => {}
        }
    }
}

async fn wait_roster(client: &mut Client) -> Result<Vec<sotto_session::RosterItem>, Failure> {
    loop {
        if let Event::Roster(items) = client.next_event_within(Duration::from_secs(15)).await? {
            return Ok(items);
        }
    }
}

const STORE_FILE: &str = "omemo.device";
/// Where versions before the postcard document kept it (JSON, version 1): read when
/// `STORE_FILE` is absent, and removed once `STORE_FILE` is written, so that no stale copy of
/// the keys stays behind.
const LEGACY_STORE_FILE: &str = "omemo.json";

fn load_omemo(options: &Options) -> Result<Omemo, Failure> {
    let mut rng = rand::rngs::OsRng;
    let Some(dir) = &options.store else {
        return Ok(Omemo::new(options.jid.clone(), &mut rng));
    };
    // It holds the device's private keys: wiped from memory once parsed.
    let mut found = None;
    for path in [dir.join(STORE_FILE), dir.join(LEGACY_STORE_FILE)] {
        match std::fs::read(&path) {
            Ok(bytes) => {
                found = Some((path, zeroize::Zeroizing::new(bytes)));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure(EXIT_FAILURE, format!("cannot read {path:?}: {e}"))),
        }
    }
    let Some((path, saved)) = found else {
        return Ok(Omemo::new(options.jid.clone(), &mut rng));
    };
    Omemo::restore(options.jid.clone(), &saved, &mut rng)
        .map_err(|e| Failure(EXIT_FAILURE, format!("{path:?}: {e}")))
}

fn trust_name(trust: Trust) -> &'static str {
    match trust {
        Trust::Blind => "blind",
        Trust::Verified => "verified",
        Trust::Undecided => "undecided",
        Trust::Distrusted => "distrusted",
    }
}

fn save_omemo(options: &Options, omemo: &Omemo) -> Result<(), Failure> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let Some(dir) = &options.store else {
        return Ok(());
    };
    let fail = |e: std::io::Error| Failure(EXIT_FAILURE, format!("cannot write {dir:?}: {e}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let saved = omemo.save();
    let tmp = dir.join(format!("{STORE_FILE}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail)?;
    file.write_all(&saved).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, dir.join(STORE_FILE)).map_err(fail)?;
    match std::fs::remove_file(dir.join(LEGACY_STORE_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
        _ => Ok(()),
    }
}

enum Out {
    Session(Event),
    Omemo(OmemoEvent),
    Kiosk(TemporaryEvent),
}

/// The client with OMEMO beside its session (polling order of `sotto_session::omemo`).
struct E2e {
    client: Client,
    omemo: Omemo,
    /// With `--temporary`: the lifecycle of this temporary device.
    kiosk: Option<TemporaryDevices>,
    out: VecDeque<Out>,
}

impl E2e {
    async fn next(&mut self, deadline: Option<Instant>) -> Result<Out, Failure> {
        loop {
            if let Some(out) = self.out.pop_front() {
                return Ok(out);
            }
            let event = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    self.client.next_event_within(left).await?
                }
                None => self.client.next_event().await?,
            };
            let session = self.client.session();
            let event = match self.kiosk.as_mut() {
                Some(kiosk) => kiosk.handle_event(session, &mut self.omemo, event),
                None => Some(event),
            };
            if let Some(event) = event.and_then(|e| self.omemo.handle_event(session, e)) {
                self.out.push_back(Out::Session(event));
            }
            if let Some(kiosk) = self.kiosk.as_mut() {
                while let Some(event) = kiosk.poll_event() {
                    self.out.push_back(Out::Kiosk(event));
                }
            }
            while let Some(event) = self.omemo.poll_event() {
                self.out.push_back(Out::Omemo(event));
            }
            self.client.flush().await?;
        }
    }

    /// Retires the temporary device (leaves the device list, deletes its bundle and its entry
    /// in the record), within a bounded time.
    async fn retire(&mut self) -> Result<(), Failure> {
        let Some(kiosk) = self.kiosk.as_mut() else {
            return Ok(());
        };
        let start = sotto_session::Instant::from_millis(0);
        kiosk.retire(
            self.client.session(),
            &mut self.omemo,
            start,
            DEFAULT_RETIRE_TIMEOUT,
        );
        self.client.flush().await?;
        let deadline = Some(Instant::now() + DEFAULT_RETIRE_TIMEOUT);
        let failed = |why: String| {
            Failure(
                EXIT_FAILURE,
                format!("could not retire the temporary device ({why}); the account's next login removes it"),
            )
        };
        loop {
            match self.next(deadline).await {
                Ok(Out::Kiosk(TemporaryEvent::Retired)) => return Ok(()),
                Ok(Out::Kiosk(TemporaryEvent::RetireFailed { reason })) => {
                    return Err(failed(reason.to_string()))
                }
                Ok(_) => {}
                Err(Failure(_, why)) => return Err(failed(why)),
            }
        }
    }

    async fn run(&mut self, verb: &str, command: &[String]) -> Result<(), Failure> {
        // Online; our device list and bundle are published meanwhile. For `devices` and
        // `fingerprints`, wait until they are, so that the device is reachable afterwards.
        let deadline = Some(Instant::now() + LOGIN_TIMEOUT);
        // A temporary device is recorded and published before anything else.
        let wait_published = matches!(verb, "devices" | "fingerprints") || self.kiosk.is_some();
        loop {
            match self.next(deadline).await? {
                Out::Session(Event::LoginFailed(e)) => return Err(WaitError::Login(e).into()),
                Out::Session(Event::StreamError(e)) => return Err(WaitError::Stream(e).into()),
                Out::Session(Event::Disconnected { .. }) => {
                    return Err(DriverError::ConnectionLost.into())
                }
                Out::Session(Event::Online { .. }) if !wait_published => break,
                Out::Omemo(OmemoEvent::Published) if wait_published => break,
                Out::Omemo(OmemoEvent::PublishFailed { condition }) => {
                    return Err(Failure(
                        EXIT_FAILURE,
                        format!("cannot publish this OMEMO device: {condition}"),
                    ))
                }
                Out::Kiosk(TemporaryEvent::RecordFailed { condition }) => {
                    return Err(Failure(
                        EXIT_FAILURE,
                        format!("cannot record the temporary OMEMO device, so it is not published: {condition}"),
                    ))
                }
                _ => {}
            }
        }
        match verb {
            "send" => {
                let to = parse_jid(command.get(1))?;
                let text = command.get(2).cloned().unwrap_or_default();
                let id = self.send(&to, &text)?;
                self.wait_sent(&id).await
            }
            "listen" => self.listen(command).await,
            "history" => self.history(command).await,
            "fingerprints" => {
                let line = serde_json::json!({
                    "device": self.omemo.device_id(),
                    "fingerprint": self.omemo.fingerprint().to_string(),
                    "own": true,
                });
                println!("{line}");
                Ok(())
            }
            _ => {
                let jid = match command.get(1) {
                    Some(_) => parse_jid(command.get(1))?,
                    None => own_jid(&self.omemo),
                };
                self.omemo.refresh_devices(self.client.session(), &jid);
                self.client.flush().await?;
                let deadline = Some(Instant::now() + Duration::from_secs(15));
                let devices = loop {
                    if let Out::Omemo(OmemoEvent::DeviceList { jid: j, devices }) =
                        self.next(deadline).await?
                    {
                        if j == jid {
                            break devices;
                        }
                    }
                };
                let known = self.omemo.devices(&jid);
                for device in devices {
                    let info = known.iter().find(|d| d.id == device);
                    let line = serde_json::json!({
                        "jid": jid.to_string(),
                        "device": device,
                        "this": jid == own_jid(&self.omemo) && device == self.omemo.device_id(),
                        "fingerprint": info.and_then(|d| d.fingerprint).map(|f| f.to_string()),
                        "trust": info.and_then(|d| d.trust).map(trust_name),
                    });
                    println!("{line}");
                }
                Ok(())
            }
        }
    }

    /// Prints the newest messages of the archive (XEP-0313) exchanged with a contact, oldest
    /// first, decrypting OMEMO ones where this device can.
    async fn history(&mut self, command: &[String]) -> Result<(), Failure> {
        let with = parse_jid(command.get(1))?;
        let max: u32 = match flag_value(command, "--max") {
            Some(n) => n
                .parse()
                .map_err(|_| Failure(EXIT_USAGE, "--max needs a number".into()))?,
            None => 50,
        };
        self.omemo.set_archive_decryption(true);
        let query = self
            .client
            .session()
            .archive_query(&with, None, max)
            .map_err(|e| Failure(EXIT_FAILURE, e.to_string()))?;
        self.client.flush().await?;
        let deadline = Some(Instant::now() + Duration::from_secs(30));
        loop {
            let (message, encrypted, error) = match self.next(deadline).await? {
                Out::Omemo(OmemoEvent::ArchivedMessage {
                    request, message, ..
                }) if request == query => (message, true, None),
                Out::Omemo(OmemoEvent::ArchivedDecryptionFailed {
                    request,
                    message,
                    reason,
                    ..
                }) if request == query => (message, true, Some(reason.to_string())),
                Out::Session(Event::ArchivedMessage {
                    request, message, ..
                }) if request == query => (message, false, None),
                Out::Session(Event::ArchiveFinished { request, .. }) if request == query => {
                    return Ok(())
                }
                Out::Session(Event::RequestFailed { request, condition }) if request == query => {
                    return Err(Failure(
                        EXIT_FAILURE,
                        format!("the server refused the archive query: {condition}"),
                    ))
                }
                Out::Session(Event::Disconnected { .. }) => {
                    return Err(Failure(EXIT_FAILURE, "the connection ended".into()))
                }
                _ => continue,
            };
            let Some(body) = message.body else {
                continue;
            };
            let mut line = serde_json::json!({
                "from": message.from.to_string(),
                "body": body,
                "encrypted": encrypted,
                "direction": match message.direction {
                    Direction::Incoming => "in",
                    Direction::Outgoing => "out",
                },
                "stamp": message.delayed,
            });
            if let Some(error) = error {
                line["error"] = serde_json::Value::String(error);
            }
            println!("{line}");
        }
    }

    /// Waits (briefly) until encrypted echoes waiting for bundles have been sent.
    async fn finish_echoes(&mut self, mut echoes: Vec<String>) -> Result<(), Failure> {
        let deadline = Some(Instant::now() + Duration::from_secs(10));
        while !echoes.is_empty() {
            match self.next(deadline).await? {
                Out::Omemo(OmemoEvent::Sent { id, .. }) => echoes.retain(|e| *e != id),
                Out::Omemo(OmemoEvent::SendFailed { id, reason, .. }) => {
                    echoes.retain(|e| *e != id);
                    eprintln!("sotto: cannot echo: {reason}");
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn send(&mut self, to: &BareJid, text: &str) -> Result<String, Failure> {
        self.omemo
            .send_encrypted(self.client.session(), to, text)
            .map_err(|e| {
                Failure(
                    EXIT_FAILURE,
                    format!("{e}; pass --plaintext to send unencrypted on purpose"),
                )
            })
    }

    async fn wait_sent(&mut self, id: &str) -> Result<(), Failure> {
        let deadline = Some(Instant::now() + Duration::from_secs(15));
        loop {
            match self.next(deadline).await? {
                Out::Omemo(OmemoEvent::SendFailed {
                    id: failed, reason, ..
                }) if failed == id => {
                    return Err(Failure(
                        EXIT_FAILURE,
                        format!("{reason}; pass --plaintext to send unencrypted on purpose"),
                    ))
                }
                Out::Session(Event::MessageAcked { id: acked }) if acked == id => return Ok(()),
                Out::Session(Event::MessageError {
                    id: Some(e),
                    condition,
                }) if e == id => {
                    return Err(Failure(
                        EXIT_FAILURE,
                        format!("the message was refused: {condition}"),
                    ))
                }
                Out::Session(Event::Disconnected { .. }) => {
                    return Err(Failure(
                        EXIT_FAILURE,
                        "the connection ended before the server confirmed the message".into(),
                    ))
                }
                _ => {}
            }
        }
    }

    async fn listen(&mut self, command: &[String]) -> Result<(), Failure> {
        let count: Option<usize> = match flag_value(command, "--count") {
            Some(n) => Some(
                n.parse()
                    .map_err(|_| Failure(EXIT_USAGE, "--count needs a number".into()))?,
            ),
            None => None,
        };
        let timeout = match flag_value(command, "--timeout") {
            Some(s) => {
                Some(Duration::from_secs(s.parse().map_err(|_| {
                    Failure(EXIT_USAGE, "--timeout needs seconds".into())
                })?))
            }
            None => None,
        };
        let echo = command.iter().any(|a| a == "--echo");
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut received = 0usize;
        let mut echoes: Vec<String> = Vec::new();
        loop {
            if count.is_some_and(|n| received >= n) {
                return self.finish_echoes(echoes).await;
            }
            let out = match self.next(deadline).await {
                Err(Failure(EXIT_TIMEOUT, _)) => {
                    return Err(Failure(
                        EXIT_TIMEOUT,
                        format!("timed out after {received} messages"),
                    ))
                }
                other => other?,
            };
            let (message, encrypted, error) = match out {
                Out::Omemo(OmemoEvent::Message { message, .. }) => (message, true, None),
                Out::Omemo(OmemoEvent::DecryptionFailed {
                    message, reason, ..
                }) => (message, true, Some(reason.to_string())),
                Out::Session(Event::Message(message)) => (message, false, None),
                Out::Session(Event::Disconnected { .. }) => {
                    return Err(Failure(EXIT_FAILURE, "the connection ended".into()));
                }
                Out::Omemo(OmemoEvent::Sent { id, .. }) => {
                    echoes.retain(|e| *e != id);
                    continue;
                }
                Out::Omemo(OmemoEvent::SendFailed { id, reason, .. }) => {
                    echoes.retain(|e| *e != id);
                    eprintln!("sotto: cannot echo: {reason}");
                    continue;
                }
                _ => continue,
            };
            if message.direction != Direction::Incoming || message.carbon {
                continue;
            }
            let Some(body) = message.body.clone() else {
                continue;
            };
            let mut line = serde_json::json!({
                "from": message.from.to_string(),
                "body": body,
                "encrypted": encrypted,
            });
            let failed = error.is_some();
            if let Some(error) = error {
                line["error"] = serde_json::Value::String(error);
            }
            println!("{line}");
            received += 1;
            if echo && !failed {
                if encrypted {
                    match self.send(&message.peer, &body) {
                        Ok(id) => echoes.push(id),
                        Err(Failure(_, e)) => eprintln!("sotto: cannot echo: {e}"),
                    }
                } else {
                    let _ = self.client.session().send_chat(&message.peer, &body);
                }
                self.client.flush().await?;
            }
        }
    }
}

fn own_jid(omemo: &Omemo) -> BareJid {
    omemo.own_jid().clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of an earlier version (`omemo.json`, JSON) is read, and replaced by `omemo.device`
    /// at the next save: the same device, and no stale copy of its keys left behind.
    #[test]
    fn legacy_json_store_is_read_and_replaced() {
        let dir = std::env::temp_dir().join(format!("sotto-cli-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let jid: BareJid = "alice@example.org".parse().expect("jid");
        let old = Omemo::new(jid.clone(), &mut rand::rngs::OsRng);
        let v1 = serde_json::json!({
            "version": 1,
            "jid": "alice@example.org",
            "device_id": old.device_id(),
            "account": old.account().pickle(),
            "devices": [],
        });
        std::fs::write(dir.join(LEGACY_STORE_FILE), v1.to_string()).expect("write");
        let options = Options {
            service: String::new(),
            jid,
            ca: None,
            store: Some(dir.clone()),
            resource: None,
            temporary: false,
            command: Vec::new(),
        };
        let loaded = load_omemo(&options).unwrap_or_else(|e| panic!("load: {}", e.1));
        assert_eq!(loaded.fingerprint(), old.fingerprint());
        save_omemo(&options, &loaded).unwrap_or_else(|e| panic!("save: {}", e.1));
        assert!(dir.join(STORE_FILE).is_file());
        assert!(
            !dir.join(LEGACY_STORE_FILE).exists(),
            "the JSON copy is removed"
        );
        let again = load_omemo(&options).unwrap_or_else(|e| panic!("reload: {}", e.1));
        assert_eq!(again.device_id(), old.device_id());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
