//! `sotto-bench`: the processes of `cargo xtask bench bridge`, in one release binary.
//!
//! - `load`: the load generator. Logs sessions in (or just opens them), then drives round trips
//!   and prints one `RESULT key=value …` line.
//! - `idle`: opens N sessions, waits for each one's stream features, prints `READY`, and holds
//!   them (answering pings) until its stdin closes.
//! - `upstream`: a minimal XMPP-ish server: answers a stream header with its own and with stream
//!   features (optionally doing STARTTLS first, with a test certificate), then echoes every
//!   byte it receives.
//! - `pipe`: the baseline relay: a bare tokio WebSocket ⇄ TCP byte pipe that parses nothing.
//!
//! The servers bind 127.0.0.1:0, print `LISTEN <addr>` and run until their stdin closes.
//! Everything is loopback only. No message content is logged; the bodies are synthetic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const USAGE: &str = "\
usage: sotto-bench <command> [--key value]...

  load      --url URL --domain D --mode xmpp|echo|raw-echo --pairs N --warmup SECS
            --duration SECS (--window W | --rate ROUND_TRIPS_PER_SEC) [--cpu NAME:PID,...]
            [--user-a U --pass-a P --user-b U --pass-b P] (xmpp mode)
  idle      --url URL --domain D --sessions N [--concurrency C]
  upstream  --mode plain|starttls [--cert PEM --key PEM] [--domain D]
  pipe      --upstream ADDR";

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return std::process::ExitCode::from(2);
    };
    let result = Args::parse(rest).and_then(|args| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            match command.as_str() {
                "load" => load(&args).await,
                "idle" => idle(&args).await,
                "upstream" => upstream(&args).await,
                "pipe" => pipe(&args).await,
                _ => bail!("unknown command {command:?}\n{USAGE}"),
            }
        })
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(rest: &[String]) -> Result<Self> {
        let mut map = HashMap::new();
        let mut it = rest.iter();
        while let Some(key) = it.next() {
            let Some(name) = key.strip_prefix("--") else {
                bail!("expected --key, got {key:?}\n{USAGE}");
            };
            let value = it.next().ok_or_else(|| anyhow!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Self(map))
    }

    fn get(&self, key: &str) -> Result<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("--{key} is required\n{USAGE}"))
    }

    fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        self.get(key)?
            .parse()
            .map_err(|_| anyhow!("--{key}: not a number"))
    }
}

// ---------------------------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const FRAME_TIMEOUT: Duration = Duration::from_secs(15);

/// A client connection. `raw`: the server is the byte pipe, so one WebSocket message may hold
/// any part of the byte stream; markers are then read from a carried-over buffer.
struct Conn {
    ws: Ws,
    raw: bool,
    carry: String,
}

impl Conn {
    async fn connect(url: &str, raw: bool) -> Result<Self> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("WebSocket connect to {url}"))?;
        if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            let _ = tcp.set_nodelay(true);
        }
        Ok(Self {
            ws,
            raw,
            carry: String::new(),
        })
    }

    async fn send(&mut self, text: String) -> Result<()> {
        self.ws.send(Message::Text(text.into())).await?;
        Ok(())
    }

    /// The next text message (pings are answered by tungstenite while reading).
    async fn recv_text(&mut self) -> Result<String> {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.ws.next())
                .await
                .map_err(|_| anyhow!("no frame within {FRAME_TIMEOUT:?}"))?;
            match next {
                Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
                Some(Ok(Message::Close(_))) | None => bail!("the server closed the connection"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Receives until the accumulated text contains `needle`.
    async fn recv_until(&mut self, needle: &str) -> Result<String> {
        let mut seen = String::new();
        loop {
            let text = self.recv_text().await?;
            if self.raw {
                seen.push_str(&text);
                if seen.contains(needle) {
                    return Ok(seen);
                }
            } else if text.contains(needle) {
                return Ok(text);
            }
        }
    }

    async fn open(&mut self, domain: &str) -> Result<String> {
        self.send(format!(
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>"
        ))
        .await?;
        self.recv_until("features").await
    }

    /// SASL PLAIN, stream restart, resource binding; returns the full JID.
    async fn login(&mut self, domain: &str, user: &str, pass: &str, res: &str) -> Result<String> {
        let features = self.open(domain).await?;
        if !features.contains("PLAIN") {
            bail!("no PLAIN mechanism offered");
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"));
        self.send(format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await?;
        let outcome = self.recv_text().await?;
        if !outcome.contains("<success") {
            bail!("authentication failed for {user}");
        }
        self.open(domain).await?;
        self.send(format!(
            "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{res}</resource></bind></iq>"
        ))
        .await?;
        let result = self.recv_until("bind1").await?;
        let jid = result
            .split("<jid>")
            .nth(1)
            .and_then(|rest| rest.split("</jid>").next())
            .ok_or_else(|| anyhow!("no jid in the bind result"))?;
        Ok(jid.to_owned())
    }

    /// The round-trip markers (`#B<seq>#`) in one received message. In raw mode the text is
    /// appended to a carry-over buffer and only complete `</message>`s are scanned.
    fn markers(&mut self, text: &str, out: &mut Vec<u64>) {
        if !self.raw {
            scan_markers(text, out);
            return;
        }
        self.carry.push_str(text);
        if let Some(end) = self.carry.rfind("</message>") {
            let end = end + "</message>".len();
            scan_markers(&self.carry[..end], out);
            self.carry.drain(..end);
        }
    }
}

fn scan_markers(text: &str, out: &mut Vec<u64>) {
    let mut rest = text;
    while let Some(i) = rest.find("#B") {
        rest = &rest[i + 2..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits) == Some(&b'#') {
            if let Ok(seq) = rest[..digits].parse() {
                out.push(seq);
            }
        }
    }
}

/// A 64-character filler so the body has the size of a short chat line.
const PADDING: &str = "The quick brown fox jumps over the lazy dog; sphinx of black quar";

/// A chat message carrying marker `seq`. `no-store` (XEP-0334) keeps Prosody's archive (file
/// storage) out of the measurement: the benchmark measures transport, not disk.
fn chat(to: &str, seq: u64) -> String {
    format!(
        "<message xmlns='jabber:client' to='{to}' type='chat'><body>#B{seq}# {PADDING}</body><no-store xmlns='urn:xmpp:hints'/></message>"
    )
}

#[derive(Clone, Copy)]
enum Drive {
    /// Closed loop: keep `window` round trips in flight per pair.
    Closed { window: usize },
    /// Open loop: one round trip per pair every `interval`, latency counted from the scheduled
    /// send time (so a stalled server cannot hide its stall).
    Open { interval: Duration },
}

#[derive(Clone, Copy)]
struct Plan {
    drive: Drive,
    /// Measurement starts (warm-up before).
    start: Instant,
    /// Sending stops.
    end: Instant,
    /// Round trips still in flight then are counted as lost.
    drain_deadline: Instant,
}

#[derive(Default)]
struct Stats {
    /// Round trips completed between `start` and `end`.
    completed: u64,
    /// Round-trip times (µs) of round trips started between `start` and `end`.
    latencies_us: Vec<u32>,
    /// Round trips started in the measurement window that never came back.
    lost: u64,
}

/// Drives one pair's round trips from the sending side.
async fn drive_sender(mut conn: Conn, to: String, plan: Plan, offset: Duration) -> Result<Stats> {
    let mut stats = Stats::default();
    let mut inflight: HashMap<u64, Instant> = HashMap::new();
    let mut seq: u64 = 0;
    let mut next_scheduled = Instant::now() + offset;
    let mut seqs = Vec::new();
    loop {
        let now = Instant::now();
        if now >= plan.end && inflight.is_empty() {
            break;
        }
        if now >= plan.drain_deadline {
            stats.lost += inflight
                .values()
                .filter(|t| **t >= plan.start && **t < plan.end)
                .count() as u64;
            break;
        }
        let next_send = match plan.drive {
            Drive::Closed { window } => (now < plan.end && inflight.len() < window).then_some(now),
            Drive::Open { .. } => (next_scheduled < plan.end).then_some(next_scheduled),
        };
        if let Some(at) = next_send.filter(|at| *at <= now) {
            seq += 1;
            let reference = match plan.drive {
                Drive::Closed { .. } => now,
                Drive::Open { interval } => {
                    next_scheduled += interval;
                    at
                }
            };
            inflight.insert(seq, reference);
            conn.send(chat(&to, seq)).await?;
            continue;
        }
        let wake = next_send
            .unwrap_or(plan.drain_deadline)
            .min(if now < plan.end {
                plan.end
            } else {
                plan.drain_deadline
            });
        tokio::select! {
            message = conn.ws.next() => {
                let text = match message {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => bail!("the server closed a session mid-run"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                };
                let done = Instant::now();
                seqs.clear();
                conn.markers(text.as_str(), &mut seqs);
                for s in &seqs {
                    let Some(sent) = inflight.remove(s) else { continue };
                    if done >= plan.start && done <= plan.end {
                        stats.completed += 1;
                    }
                    if sent >= plan.start && sent < plan.end {
                        let us = done.duration_since(sent).as_micros();
                        stats.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    let _ = conn
        .send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>".into())
        .await;
    Ok(stats)
}

/// The receiving side of a pair (xmpp mode): answers every marker with a message back.
async fn drive_echoer(mut conn: Conn, to: String, stop: Instant) -> Result<()> {
    let mut seqs = Vec::new();
    loop {
        let message = tokio::select! {
            m = conn.ws.next() => m,
            _ = tokio::time::sleep_until(stop) => break,
        };
        let text = match message {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        };
        seqs.clear();
        conn.markers(text.as_str(), &mut seqs);
        for seq in &seqs {
            conn.send(chat(&to, *seq)).await?;
        }
    }
    let _ = conn
        .send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>".into())
        .await;
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn load(args: &Args) -> Result<()> {
    let url = args.get("url")?.to_owned();
    let domain = args.get("domain")?.to_owned();
    let mode = args.get("mode")?;
    let pairs: usize = args.num("pairs")?;
    let warmup = Duration::from_secs_f64(args.num("warmup")?);
    let duration = Duration::from_secs_f64(args.num("duration")?);
    let drive = match (args.opt("window"), args.opt("rate")) {
        (Some(_), None) => Drive::Closed {
            window: args.num::<usize>("window")?.max(1),
        },
        (None, Some(_)) => {
            let rate: f64 = args.num("rate")?;
            if rate <= 0.0 || pairs == 0 {
                bail!("--rate and --pairs must be positive");
            }
            Drive::Open {
                interval: Duration::from_secs_f64(pairs as f64 / rate),
            }
        }
        _ => bail!("give exactly one of --window and --rate"),
    };
    let raw = mode == "raw-echo";
    let xmpp = match mode {
        "xmpp" => true,
        "echo" | "raw-echo" => false,
        _ => bail!("--mode must be xmpp, echo or raw-echo"),
    };

    // Set-up (not timed): every session connected and, for xmpp, logged in.
    let setup_started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut setups = Vec::new();
    for i in 0..pairs {
        let (url, domain, limit) = (url.clone(), domain.clone(), limit.clone());
        let creds = if xmpp {
            Some((
                args.get("user-a")?.to_owned(),
                args.get("pass-a")?.to_owned(),
                args.get("user-b")?.to_owned(),
                args.get("pass-b")?.to_owned(),
            ))
        } else {
            None
        };
        setups.push(tokio::spawn(async move {
            let _permit = limit.acquire().await?;
            let mut a = Conn::connect(&url, raw).await?;
            match creds {
                Some((ua, pa, ub, pb)) => {
                    let a_jid = a.login(&domain, &ua, &pa, &format!("bench-a{i}")).await?;
                    let mut b = Conn::connect(&url, raw).await?;
                    let b_jid = b.login(&domain, &ub, &pb, &format!("bench-b{i}")).await?;
                    anyhow::Ok((a, b_jid, Some((b, a_jid))))
                }
                None => {
                    a.open(&domain).await?;
                    anyhow::Ok((a, domain.clone(), None))
                }
            }
        }));
    }
    let mut sessions = Vec::new();
    for setup in setups {
        sessions.push(setup.await??);
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();

    let t0 = Instant::now() + Duration::from_millis(100);
    let plan = Plan {
        drive,
        start: t0 + warmup,
        end: t0 + warmup + duration,
        drain_deadline: t0 + warmup + duration + Duration::from_secs(5),
    };
    let mut senders = Vec::new();
    let mut echoers = Vec::new();
    let per_pair = match drive {
        Drive::Open { interval } => interval / u32::try_from(pairs.max(1)).unwrap_or(1),
        Drive::Closed { .. } => Duration::ZERO,
    };
    tokio::time::sleep_until(t0).await;
    for (i, (a, to, echo)) in sessions.into_iter().enumerate() {
        if let Some((b, a_jid)) = echo {
            echoers.push(tokio::spawn(drive_echoer(
                b,
                a_jid,
                plan.drain_deadline + Duration::from_secs(1),
            )));
        }
        let offset = per_pair * u32::try_from(i).unwrap_or(0);
        senders.push(tokio::spawn(drive_sender(a, to, plan, offset)));
    }
    let cpu_watch = tokio::spawn(cpu_during(watched(args)?, plan.start, plan.end));
    let mut total = Stats::default();
    for sender in senders {
        let stats = sender.await??;
        total.completed += stats.completed;
        total.lost += stats.lost;
        total.latencies_us.extend(stats.latencies_us);
    }
    for echoer in echoers {
        echoer.abort();
    }
    total.latencies_us.sort_unstable();
    let secs = duration.as_secs_f64();
    let rt_per_s = total.completed as f64 / secs;
    let l = &total.latencies_us;
    let cpu: String = cpu_watch
        .await?
        .iter()
        .map(|(name, ticks)| {
            // /proc counts in USER_HZ = 100 ticks per second on Linux.
            let us = *ticks as f64 * 10_000.0 / (total.completed.max(1) as f64);
            format!(" cpu_{name}_us_per_rt={us:.1}")
        })
        .collect();
    println!(
        "RESULT round_trips={} secs={secs:.3} rt_per_s={rt_per_s:.1} msgs_per_s={:.1} \
         p50_us={} p90_us={} p99_us={} max_us={} samples={} lost={} setup_secs={setup_secs:.2}{cpu}",
        total.completed,
        rt_per_s * 2.0,
        percentile(l, 50.0),
        percentile(l, 90.0),
        percentile(l, 99.0),
        l.last().copied().unwrap_or(0),
        l.len(),
        total.lost,
    );
    Ok(())
}

/// `--cpu name:pid,name:pid`: processes whose CPU time is measured over the window.
fn watched(args: &Args) -> Result<Vec<(String, u32)>> {
    let Some(list) = args.opt("cpu") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|item| {
            let (name, pid) = item
                .split_once(':')
                .ok_or_else(|| anyhow!("--cpu takes name:pid,name:pid"))?;
            let pid = pid.parse().map_err(|_| anyhow!("--cpu: bad pid {pid:?}"))?;
            Ok((name.to_owned(), pid))
        })
        .collect()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..." — utime and stime are fields 14 and 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU ticks each watched process used between `start` and `end`.
async fn cpu_during(pids: Vec<(String, u32)>, start: Instant, end: Instant) -> Vec<(String, u64)> {
    tokio::time::sleep_until(start).await;
    let before: Vec<Option<u64>> = pids.iter().map(|(_, pid)| cpu_ticks(*pid)).collect();
    tokio::time::sleep_until(end).await;
    pids.iter()
        .zip(before)
        .filter_map(|((name, pid), before)| {
            Some((name.clone(), cpu_ticks(*pid)?.saturating_sub(before?)))
        })
        .collect()
}

async fn idle(args: &Args) -> Result<()> {
    let url = args.get("url")?.to_owned();
    let domain = args.get("domain")?.to_owned();
    let sessions: usize = args.num("sessions")?;
    let concurrency: usize = args
        .opt("concurrency")
        .map_or(Ok(100), |_| args.num("concurrency"))?;
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<()>>(sessions.max(1));
    for _ in 0..sessions {
        let (url, domain, limit, ready) =
            (url.clone(), domain.clone(), limit.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let opened = async {
                let _permit = limit.acquire().await?;
                let mut conn = Conn::connect(&url, false).await?;
                conn.open(&domain).await?;
                anyhow::Ok(conn)
            }
            .await;
            match opened {
                Ok(mut conn) => {
                    let _ = ready.send(Ok(())).await;
                    // Hold the session; reading answers the bridge's pings.
                    while let Some(Ok(_)) = conn.ws.next().await {}
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                }
            }
        });
    }
    drop(ready_tx);
    let mut ok = 0usize;
    let mut failed = 0usize;
    let mut first_error = None;
    while ok + failed < sessions {
        match ready_rx.recv().await {
            Some(Ok(())) => ok += 1,
            Some(Err(e)) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    if let Some(e) = first_error {
        bail!("{failed} of {sessions} sessions failed to open; first: {e:#}");
    }
    println!(
        "READY sessions={ok} secs={:.2}",
        started.elapsed().as_secs_f64()
    );
    wait_for_stdin_eof().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------------------------

/// Completes when stdin reaches its end (the parent closed it or exited).
async fn wait_for_stdin_eof() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.await;
}

async fn bind_and_announce() -> Result<TcpListener> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("LISTEN {}", listener.local_addr()?);
    Ok(listener)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until `buf` holds an opening tag starting with one of `starts`, closed by `>`; returns
/// whatever followed it.
async fn read_tag<S: AsyncRead + Unpin>(io: &mut S, starts: &[&[u8]]) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(start) = starts.iter().filter_map(|s| find(&buf, s)).min() {
            if let Some(end) = buf[start..].iter().position(|b| *b == b'>') {
                return Ok(buf.split_off(start + end + 1));
            }
        }
        if buf.len() > 64 * 1024 {
            bail!("no tag in 64 KiB");
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            bail!("peer closed during negotiation");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

const STREAM_TAGS: &[&[u8]] = &[b"<stream:stream", b"<open"];

fn stream_header_reply(domain: &str, features: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='{domain}' id='bench' version='1.0' xml:lang='en'><stream:features>{features}</stream:features>"
    )
}

const SASL_FEATURES: &str = "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>";

/// After the stream header: echo every byte back.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, pending: Vec<u8>) -> Result<()> {
    io.write_all(&pending).await?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        io.write_all(&buf[..n]).await?;
    }
}

async fn upstream_session(
    mut tcp: TcpStream,
    domain: Arc<str>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<()> {
    let _ = tcp.set_nodelay(true);
    read_tag(&mut tcp, STREAM_TAGS).await?;
    match tls {
        None => {
            tcp.write_all(stream_header_reply(&domain, SASL_FEATURES).as_bytes())
                .await?;
            let pending = Vec::new();
            echo(tcp, pending).await
        }
        Some(acceptor) => {
            tcp.write_all(
                stream_header_reply(
                    &domain,
                    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
                )
                .as_bytes(),
            )
            .await?;
            read_tag(&mut tcp, &[b"<starttls"]).await?;
            tcp.write_all(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                .await?;
            let mut tls = acceptor.accept(tcp).await?;
            let pending = read_tag(&mut tls, STREAM_TAGS).await?;
            tls.write_all(stream_header_reply(&domain, SASL_FEATURES).as_bytes())
                .await?;
            echo(tls, pending).await
        }
    }
}

fn tls_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(PathBuf::from(cert))
        .with_context(|| cert.to_owned())?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| cert.to_owned())?;
    let key = PrivateKeyDer::from_pem_file(PathBuf::from(key)).with_context(|| key.to_owned())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn upstream(args: &Args) -> Result<()> {
    let domain: Arc<str> = args.opt("domain").unwrap_or("localhost").into();
    let tls = match args.get("mode")? {
        "plain" => None,
        "starttls" => Some(tls_acceptor(args.get("cert")?, args.get("key")?)?),
        other => bail!("--mode {other:?}: plain or starttls"),
    };
    let listener = bind_and_announce().await?;
    let serve = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(upstream_session(tcp, domain.clone(), tls.clone()));
        }
    };
    tokio::select! {
        () = serve => {}
        () = wait_for_stdin_eof() => {}
    }
    Ok(())
}

/// The handshake callback: select the `xmpp` subprotocol when offered (the signature is
/// tungstenite's).
#[allow(clippy::result_large_err)]
fn select_xmpp(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let wants_xmpp = request
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "xmpp"));
    if wants_xmpp {
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("xmpp"));
    }
    Ok(response)
}

async fn pipe_session(tcp: TcpStream, upstream: SocketAddr) -> Result<()> {
    let _ = tcp.set_nodelay(true);
    let ws = tokio_tungstenite::accept_hdr_async(tcp, select_xmpp).await?;
    let up = TcpStream::connect(upstream).await?;
    let _ = up.set_nodelay(true);
    let (mut up_read, mut up_write) = up.into_split();
    let (mut sink, mut stream) = ws.split();
    let to_upstream = async {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Text(text) => up_write.write_all(text.as_bytes()).await?,
                Message::Close(_) => break,
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    let to_client = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = up_read.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            sink.send(Message::Text(text.into())).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = to_upstream => r,
        r = to_client => r,
    }
}

async fn pipe(args: &Args) -> Result<()> {
    let upstream: SocketAddr = args
        .get("upstream")?
        .parse()
        .map_err(|_| anyhow!("--upstream: not an address"))?;
    let listener = bind_and_announce().await?;
    let serve = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(pipe_session(tcp, upstream));
        }
    };
    tokio::select! {
        () = serve => {}
        () = wait_for_stdin_eof() => {}
    }
    Ok(())
}
