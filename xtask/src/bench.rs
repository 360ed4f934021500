//! `cargo xtask bench bridge`: the bridge's benchmark (issue 4). Not a test: it prints numbers.
//!
//! Everything runs on this machine, on loopback, in release builds from the one target dir:
//! the real `sotto-bridge` binary, a throwaway Prosody (the test fixture), and `sotto-bench`
//! (tests/src/bin/sotto-bench.rs), which is the load generator and the small servers.
//!
//! - (a) N pairs of logged-in sessions exchange chat messages through Prosody's own
//!   mod_websocket, then through sotto-bridge → Prosody c2s (STARTTLS). A round trip is
//!   A → server → B, then B's answer B → server → A, timed at A: two chat messages routed by
//!   Prosody. First a closed loop (`--window` round trips in flight per pair) for the maximum
//!   rate, then an open loop at half the lower of the two maxima for the latency percentiles.
//!   Prosody's Nagle algorithm is turned off unless `--prosody-nagle on` (docs/OPERATIONS.md).
//! - (b) The bridge against a minimal plaintext upstream that echoes stanzas, against a bare
//!   tokio WebSocket ⇄ TCP byte pipe in front of the same upstream. Same two phases.
//! - (c) The bridge process's resident memory (VmRSS) before and after opening N idle sessions,
//!   each with a live STARTTLS upstream connection to a minimal TLS server.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sotto_tests::ports::{accepts_tcp, free_loopback_port, fresh_dir, loopback, terminate_child};
use sotto_tests::prosody::{Prosody, ProsodyOptions};

use crate::util::{cargo, run_command, target_dir};

/// What to run and how hard.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Session pairs in (a), sessions in (b).
    pub pairs: usize,
    /// Measured seconds per run (after the warm-up).
    pub seconds: f64,
    /// Warm-up seconds per run (not measured).
    pub warmup: f64,
    /// Round trips in flight per pair in the throughput runs.
    pub window: usize,
    /// Idle session counts for (c).
    pub idle: Vec<usize>,
    /// Which figures: any of 'a', 'b', 'c'.
    pub only: Vec<char>,
    /// Scheduling priority of every benchmark process (`nice -n`; negative needs root), so
    /// other work on the machine disturbs the figures less. 0 leaves it alone.
    pub nice: i32,
    /// Leave Prosody's Nagle algorithm on (its default) in (a); off otherwise.
    pub prosody_nagle: bool,
    /// `TOKIO_WORKER_THREADS` for the bridge process only (None: tokio's default, one per core).
    pub bridge_threads: Option<usize>,
    /// The latency runs' offered load, as a fraction of the lower closed-loop maximum. An open
    /// loop near saturation measures queueing, not the path: Prosody spends more CPU per round
    /// trip in an open loop than in a closed one (no batching), so half the closed-loop maximum
    /// can already saturate it on a small machine.
    pub load: f64,
    /// (a): the bridge's upstream without TLS (`tls = "plaintext-loopback"`, Prosody's c2s
    /// unencrypted), so that neither path pays for encryption on loopback.
    pub plaintext_upstream: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            pairs: 50,
            seconds: 10.0,
            warmup: 2.0,
            window: 1,
            idle: vec![1000, 5000],
            only: vec!['a', 'b', 'c'],
            nice: 0,
            prosody_nagle: false,
            bridge_threads: None,
            load: 0.5,
            plaintext_upstream: false,
        }
    }
}

impl BenchOptions {
    /// Parses `--pairs N --seconds S --warmup S --window W --idle N,N --only a,b,c`.
    pub fn parse(args: &[&str]) -> Result<Self> {
        let mut opts = Self::default();
        let mut it = args.iter();
        while let Some(key) = it.next() {
            let value = it.next().ok_or_else(|| anyhow!("{key} needs a value"))?;
            let positive = |what: &str| -> Result<f64> {
                match value.parse::<f64>() {
                    Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
                    _ => bail!("{what} needs a positive number, not {value:?}"),
                }
            };
            match *key {
                "--pairs" => opts.pairs = positive("--pairs")? as usize,
                "--seconds" => opts.seconds = positive("--seconds")?,
                "--warmup" => opts.warmup = positive("--warmup")?,
                "--window" => opts.window = positive("--window")? as usize,
                "--idle" => {
                    opts.idle = value
                        .split(',')
                        .map(|n| n.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| anyhow!("--idle takes counts like 1000,5000"))?;
                }
                "--nice" => {
                    opts.nice = match value.parse::<i32>() {
                        Ok(n) if (-20..=19).contains(&n) => n,
                        _ => bail!("--nice takes -20..19, not {value:?}"),
                    };
                }
                "--load" => {
                    opts.load = match value.parse::<f64>() {
                        Ok(f) if f > 0.0 && f <= 1.0 => f,
                        _ => bail!("--load takes a fraction in (0, 1], not {value:?}"),
                    };
                }
                "--upstream" => {
                    opts.plaintext_upstream = match *value {
                        "starttls" => false,
                        "plaintext" => true,
                        _ => bail!("--upstream takes starttls or plaintext"),
                    };
                }
                "--bridge-threads" => {
                    opts.bridge_threads = Some(positive("--bridge-threads")? as usize);
                }
                "--prosody-nagle" => {
                    opts.prosody_nagle = match *value {
                        "on" => true,
                        "off" => false,
                        _ => bail!("--prosody-nagle takes on or off"),
                    };
                }
                "--only" => {
                    opts.only = value.split(',').filter_map(|s| s.chars().next()).collect();
                    if opts.only.iter().any(|c| !matches!(c, 'a' | 'b' | 'c')) {
                        bail!("--only takes a subset of a,b,c");
                    }
                }
                _ => bail!("unknown option {key}"),
            }
        }
        if opts.pairs == 0 || opts.window == 0 {
            bail!("--pairs and --window must be at least 1");
        }
        Ok(opts)
    }
}

/// Runs the benchmark and prints its figures, ending with one `SUMMARY` line per figure.
pub fn run(opts: &BenchOptions) -> Result<()> {
    let started = Instant::now();
    eprintln!("==> building sotto-bridge and sotto-bench (release)");
    run_command(cargo().args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "sotto-bridge",
        "--bin",
        "sotto-bridge",
        "-p",
        "sotto-tests",
        "--bin",
        "sotto-bench",
    ]))?;
    let bins = Bins {
        bridge: target_dir().join("release").join("sotto-bridge"),
        bench: target_dir().join("release").join("sotto-bench"),
    };
    let dir = fresh_dir("bench", "bridge")?;
    println!("machine: {}", machine_description());
    println!(
        "options: pairs={} seconds={} warmup={} window={} idle={:?} nice={} prosody-nagle={} \
         bridge-threads={} load={}",
        opts.pairs,
        opts.seconds,
        opts.warmup,
        opts.window,
        opts.idle,
        opts.nice,
        if opts.prosody_nagle { "on" } else { "off" },
        opts.bridge_threads
            .map_or("default".to_owned(), |n| n.to_string()),
        opts.load
    );
    NICE.store(opts.nice, Ordering::Relaxed);
    if let Some(n) = opts.bridge_threads {
        BRIDGE_THREADS.store(n, Ordering::Relaxed);
    }
    println!("load average at start: {}", load_average());
    let mut summary = Vec::new();
    if opts.only.contains(&'a') {
        summary.extend(bench_a(&bins, &dir, opts)?);
    }
    if opts.only.contains(&'b') {
        summary.extend(bench_b(&bins, &dir, opts)?);
    }
    if opts.only.contains(&'c') {
        summary.extend(bench_c(&bins, &dir, opts)?);
    }
    println!(
        "\nbench finished in {:.0} s; load average at the end: {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures: other work on the machine skews every number.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Bins {
    bridge: PathBuf,
    bench: PathBuf,
}

/// `N cores (nproc), <CPU model>, <kernel>`.
fn machine_description() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(String::new(), |kb| {
            format!(", {} GiB RAM", (kb + 512 * 1024) / (1024 * 1024))
        });
    format!(
        "{cores} cores (nproc), {model}{memory}, Linux {}",
        kernel.trim()
    )
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// The soft open-files limit of this process (children inherit it).
fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| {
            let mut f = l.split_whitespace().skip(3);
            let parse = |s: Option<&str>| match s {
                Some("unlimited") => u64::MAX,
                Some(n) => n.parse().unwrap_or(1024),
                None => 1024,
            };
            (parse(f.next()), parse(f.next()))
        })
        .unwrap_or((1024, 1024))
}

/// A command for `program`, run under `prlimit` when it needs more descriptors than the
/// inherited soft limit allows.
/// And under `nice -n N` when `--nice N` was given (`nice` and `prlimit` exec the program, so
/// the child's pid is the program's).
fn command_with_nofile(program: &Path, need: u64) -> Result<Command> {
    let (soft, hard) = nofile_limits();
    if need > hard {
        bail!(
            "this needs {need} open files per process but the hard limit is {hard}; \
             raise it (e.g. `ulimit -Hn {need}` as root) or use smaller --idle counts"
        );
    }
    let nice = NICE.load(Ordering::Relaxed);
    let mut cmd = if nice != 0 {
        let mut cmd = Command::new("nice");
        cmd.arg("-n").arg(nice.to_string());
        cmd
    } else if need > soft {
        Command::new("prlimit")
    } else {
        return Ok(Command::new(program));
    };
    if nice != 0 && need > soft {
        cmd.arg("prlimit");
    }
    if need > soft {
        cmd.arg(format!("--nofile={need}:{hard}"));
    }
    cmd.arg(program);
    Ok(cmd)
}

/// The `--nice` value for every process of the benchmark (0: unchanged).
static NICE: AtomicI32 = AtomicI32::new(0);

/// `--bridge-threads` (0: tokio's default).
static BRIDGE_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Gives an already running process (Prosody) the `--nice` priority.
fn renice(pid: u32) -> Result<()> {
    let nice = NICE.load(Ordering::Relaxed);
    if nice != 0 {
        run_command(
            Command::new("renice")
                .args(["-n", &nice.to_string(), "-p", &pid.to_string()])
                .stdout(Stdio::null()),
        )?;
    }
    Ok(())
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped. Its stdin is held open: the
/// `sotto-bench` servers exit when it closes.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
    name: String,
}

impl Proc {
    fn spawn(mut cmd: Command, name: &str, log: &Path) -> Result<Self> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let mut proc = Self {
            child,
            stdin: None,
            stdout: None,
            name: name.to_owned(),
        };
        proc.stdin = proc.child.stdin.take();
        proc.stdout = proc.child.stdout.take().map(BufReader::new);
        Ok(proc)
    }

    /// Reads stdout lines until one starts with `prefix`, returning the rest of it.
    fn wait_line(&mut self, prefix: &str, log: &Path) -> Result<String> {
        let stdout = self
            .stdout
            .as_mut()
            .ok_or_else(|| anyhow!("{}: no stdout", self.name))?;
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                let status = self.child.wait()?;
                bail!(
                    "{} ended ({status}) before printing {prefix}:\n{}",
                    self.name,
                    sotto_tests::ports::tail(log, 20)
                );
            }
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return Ok(rest.trim().to_owned());
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin and waits (up to `grace`) for the process to exit on its own.
    fn finish(mut self, grace: Duration) {
        drop(self.stdin.take());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        terminate_child(&mut self.child, Duration::from_secs(3), false);
    }
}

/// Starts a `sotto-bench` server (`upstream`/`pipe`) and returns it with its address.
fn bench_server(
    bins: &Bins,
    dir: &Path,
    name: &str,
    sessions: usize,
    args: &[&str],
) -> Result<(Proc, SocketAddr)> {
    let log = dir.join(format!("{name}.log"));
    let mut cmd = command_with_nofile(&bins.bench, 2 * sessions as u64 + 512)?;
    cmd.args(args);
    let mut proc = Proc::spawn(cmd, name, &log)?;
    let addr = proc
        .wait_line("LISTEN", &log)?
        .parse()
        .map_err(|_| anyhow!("{name}: bad LISTEN line"))?;
    Ok((proc, addr))
}

/// Starts the real bridge binary with `upstream` (a TOML `[[upstream]]` table) and limits high
/// enough that the load generator is never refused.
fn start_bridge(
    bins: &Bins,
    dir: &Path,
    name: &str,
    upstream: &str,
    sessions: usize,
) -> Result<(Proc, SocketAddr)> {
    let addr = loopback(free_loopback_port()?);
    let max = sessions.max(1000) + 100;
    let config = format!(
        "# Written by cargo xtask bench.\nlisten = \"{addr}\"\npublic_url = \"http://{addr}\"\n\
         shutdown_grace_secs = 1\n\n{upstream}\n\n[limits]\nmax_connections = {max}\n\
         max_connections_per_ip = {max}\n# The load generator sends far faster than a person.\n\
         stanzas_per_second = 1000000\n"
    );
    let config_file = dir.join(format!("{name}.toml"));
    std::fs::write(&config_file, config)?;
    let log = dir.join(format!("{name}.log"));
    // Two descriptors per session (WebSocket and upstream) and some headroom.
    let mut cmd = command_with_nofile(&bins.bridge, 2 * sessions as u64 + 512)?;
    cmd.arg("--config")
        .arg(&config_file)
        .env("RUST_LOG", "warn");
    match BRIDGE_THREADS.load(Ordering::Relaxed) {
        0 => {}
        n => {
            cmd.env("TOKIO_WORKER_THREADS", n.to_string());
        }
    }
    let mut proc = Proc::spawn(cmd, name, &log)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !accepts_tcp(addr) {
        if let Ok(Some(status)) = proc.child.try_wait() {
            bail!(
                "the bridge exited ({status}):\n{}",
                sotto_tests::ports::tail(&log, 20)
            );
        }
        if Instant::now() > deadline {
            bail!("the bridge did not listen on {addr} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proc, addr))
}

fn toml_path(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

/// One `RESULT` of the load generator.
#[derive(Debug, Clone)]
struct LoadResult(HashMap<String, f64>);

impl LoadResult {
    fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(f64::NAN)
    }
}

/// Runs `sotto-bench load` with `args` and parses its `RESULT` line.
fn load(bins: &Bins, sessions: usize, args: &[String]) -> Result<LoadResult> {
    let mut cmd = command_with_nofile(&bins.bench, sessions as u64 + 512)?;
    let output = cmd
        .arg("load")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run sotto-bench load")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "sotto-bench load failed ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| anyhow!("no RESULT from sotto-bench load:\n{stdout}"))?;
    Ok(LoadResult(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
            .collect(),
    ))
}

/// The `cpu_NAME_us_per_rt` figures of a result, as `NAME=µs` pairs.
fn cpu_figures(r: &LoadResult) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> =
        r.0.iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("cpu_")
                    .and_then(|k| k.strip_suffix("_us_per_rt"))
                    .map(|name| (name.to_owned(), *v))
            })
            .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn describe(label: &str, r: &LoadResult) -> String {
    let cpu: Vec<String> = cpu_figures(r)
        .iter()
        .map(|(name, us)| format!("{name} {us:.1}"))
        .collect();
    format!(
        "  {label:<12} {:>7.0} msgs/s ({:>6.0} round trips/s)  p50 {:>6.0} µs  p90 {:>6.0} µs  \
         p99 {:>6.0} µs  max {:>6.0} µs  n {:.0}  lost {:.0}  CPU µs/round trip: {}",
        r.get("msgs_per_s"),
        r.get("rt_per_s"),
        r.get("p50_us"),
        r.get("p90_us"),
        r.get("p99_us"),
        r.get("max_us"),
        r.get("samples"),
        r.get("lost"),
        cpu.join(", "),
    )
}

/// One side of a comparison: a label, the load generator's arguments, and the processes whose
/// CPU time is measured (name, pid).
struct Target {
    label: &'static str,
    args: Vec<String>,
    cpu: Vec<(&'static str, u32)>,
}

impl Target {
    fn args_with(&self, extra: &[String]) -> Vec<String> {
        let mut a = self.args.clone();
        a.extend_from_slice(extra);
        if !self.cpu.is_empty() {
            let list: Vec<String> = self
                .cpu
                .iter()
                .map(|(name, pid)| format!("{name}:{pid}"))
                .collect();
            a.push("--cpu".into());
            a.push(list.join(","));
        }
        a
    }
}

/// A comparison of two targets: throughput (closed loop), then latency (open loop at half the
/// lower throughput). Returns the summary lines, named `fig.*`.
fn compare(
    bins: &Bins,
    opts: &BenchOptions,
    fig: &str,
    base: Target,
    subject: Target,
    sessions: usize,
) -> Result<Vec<String>> {
    let timing = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            "--warmup".into(),
            opts.warmup.to_string(),
            "--duration".into(),
            opts.seconds.to_string(),
        ];
        v.extend_from_slice(extra);
        v
    };
    let window = vec!["--window".to_owned(), opts.window.to_string()];
    println!(
        "  throughput: closed loop, {} round trip(s) in flight per pair, {} s",
        opts.window, opts.seconds
    );
    let mut tput = Vec::new();
    for target in [&base, &subject] {
        let r = load(bins, sessions, &target.args_with(&timing(&window)))?;
        println!("{}", describe(target.label, &r));
        tput.push(r);
    }
    let rate = opts.load * tput[0].get("rt_per_s").min(tput[1].get("rt_per_s"));
    if rate.is_nan() || rate <= 0.0 {
        bail!("no round trip completed in the throughput runs");
    }
    println!(
        "  latency: open loop at {rate:.0} round trips/s in total ({} of the lower maximum), {} s",
        opts.load, opts.seconds
    );
    let mut lat = Vec::new();
    let rate_arg = vec!["--rate".to_owned(), format!("{rate:.1}")];
    for target in [&base, &subject] {
        let r = load(bins, sessions, &target.args_with(&timing(&rate_arg)))?;
        println!("{}", describe(target.label, &r));
        lat.push(r);
    }
    let (b, s) = (base.label, subject.label);
    let line = |key: &str, rs: &[LoadResult], extra: String| {
        let (x, y) = (rs[0].get(key), rs[1].get(key));
        format!(
            "SUMMARY {fig}.{key} {b}={x:.0} {s}={y:.0} ratio={:.3}{extra}",
            y / x
        )
    };
    // CPU per round trip in the throughput runs, summed over the watched processes.
    let cpu_total = |r: &LoadResult| cpu_figures(r).iter().map(|(_, us)| us).sum::<f64>();
    let cpu_parts = |r: &LoadResult| -> String {
        cpu_figures(r)
            .iter()
            .map(|(name, us)| format!("{name}:{us:.1}"))
            .collect::<Vec<_>>()
            .join("+")
    };
    Ok(vec![
        line("msgs_per_s", &tput, String::new()),
        line("p50_us", &lat, format!(" at_rt_per_s={rate:.0}")),
        line("p99_us", &lat, format!(" at_rt_per_s={rate:.0}")),
        format!(
            "SUMMARY {fig}.cpu_us_per_round_trip {b}={:.1} {s}={:.1} ratio={:.3} ({b}: {}; {s}: {})",
            cpu_total(&tput[0]),
            cpu_total(&tput[1]),
            cpu_total(&tput[1]) / cpu_total(&tput[0]),
            cpu_parts(&tput[0]),
            cpu_parts(&tput[1]),
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// (a) Prosody mod_websocket vs sotto-bridge → Prosody c2s
// ---------------------------------------------------------------------------------------------

fn bench_a(bins: &Bins, dir: &Path, opts: &BenchOptions) -> Result<Vec<String>> {
    // STARTTLS as with any upstream, or (`--upstream plaintext`) none, as a bridge on the
    // XMPP server's own host may be configured: then neither path encrypts on loopback.
    let (tls, upstream_label) = if opts.plaintext_upstream {
        ("plaintext-loopback", "without TLS")
    } else {
        ("starttls", "STARTTLS")
    };
    println!(
        "\n(a) {} pairs exchanging chat messages: Prosody mod_websocket vs sotto-bridge → Prosody c2s ({upstream_label})",
        opts.pairs
    );
    let prosody = Prosody::start(ProsodyOptions {
        dir: dir.join("prosody"),
        domain: "localhost".into(),
        websocket: true,
        plaintext_c2s: opts.plaintext_upstream,
    })?;
    renice(prosody.pid())?;
    prosody.register("alice", "alice-pass")?;
    prosody.register("bob", "bob-pass")?;
    if opts.prosody_nagle {
        println!("  Prosody with its default network settings (Nagle's algorithm on)");
    } else {
        // Prosody re-reads network_settings on SIGHUP; new connections get TCP_NODELAY.
        let mut cfg = std::fs::read_to_string(prosody.config_file())?;
        cfg.push_str("\n-- cargo xtask bench\nHost \"*\"\nnetwork_settings = { nagle = false }\n");
        std::fs::write(prosody.config_file(), cfg)?;
        // mod_posix installs its SIGHUP handler from a timer on the first turn of the event
        // loop (until then SIGHUP would kill Prosody). The fixture's readiness probe is logged
        // as "Client connected" once the loop turns; wait for it, then signal until reloaded.
        let log = prosody.log_file();
        let deadline = Instant::now() + Duration::from_secs(15);
        let logged = |what: &str| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains(what)
        };
        while !logged("Client connected") {
            if Instant::now() > deadline {
                bail!("Prosody's event loop did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut next_signal = Instant::now();
        while !logged("Reloading configuration file") {
            if Instant::now() > deadline || !sotto_tests::ports::process_alive(prosody.pid()) {
                bail!("Prosody did not reload its configuration");
            }
            if Instant::now() >= next_signal {
                sotto_tests::ports::send_signal(prosody.pid(), "HUP", false);
                next_signal = Instant::now() + Duration::from_secs(2);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        println!("  Prosody with network_settings = {{ nagle = false }} (see --prosody-nagle)");
    }
    let prosody_ws = prosody
        .websocket_url()
        .ok_or_else(|| anyhow!("Prosody has no WebSocket URL"))?;
    let upstream = format!(
        "[[upstream]]\ndomain = \"localhost\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"{tls}\"\nca_file = {}",
        prosody.c2s_addr().port(),
        toml_path(prosody.ca_file())
    );
    let (bridge, bridge_addr) = start_bridge(bins, dir, "bridge-a", &upstream, 2 * opts.pairs)?;
    let args = |url: &str| -> Vec<String> {
        [
            "--url",
            url,
            "--domain",
            "localhost",
            "--mode",
            "xmpp",
            "--pairs",
            &opts.pairs.to_string(),
            "--user-a",
            "alice",
            "--pass-a",
            "alice-pass",
            "--user-b",
            "bob",
            "--pass-b",
            "bob-pass",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    };
    let bridge_ws = format!("ws://{bridge_addr}/xmpp-websocket");
    compare(
        bins,
        opts,
        "a",
        Target {
            label: "prosody_ws",
            args: args(&prosody_ws),
            cpu: vec![("prosody", prosody.pid())],
        },
        Target {
            label: "bridge",
            args: args(&bridge_ws),
            cpu: vec![("prosody", prosody.pid()), ("bridge", bridge.pid())],
        },
        2 * opts.pairs,
    )
}

// ---------------------------------------------------------------------------------------------
// (b) the bridge vs a bare byte pipe, both in front of a minimal echo upstream
// ---------------------------------------------------------------------------------------------

fn bench_b(bins: &Bins, dir: &Path, opts: &BenchOptions) -> Result<Vec<String>> {
    println!(
        "\n(b) {} sessions echoing stanzas off a minimal plaintext upstream: bare WebSocket⇄TCP pipe vs sotto-bridge",
        opts.pairs
    );
    let (_upstream, upstream_addr) = bench_server(
        bins,
        dir,
        "echo-upstream",
        opts.pairs,
        &["upstream", "--mode", "plain"],
    )?;
    let (pipe, pipe_addr) = bench_server(
        bins,
        dir,
        "pipe",
        opts.pairs,
        &["pipe", "--upstream", &upstream_addr.to_string()],
    )?;
    let upstream = format!(
        "[[upstream]]\ndomain = \"localhost\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"plaintext-loopback\"",
        upstream_addr.port()
    );
    let (bridge, bridge_addr) = start_bridge(bins, dir, "bridge-b", &upstream, opts.pairs)?;
    let args = |url: String, mode: &str| -> Vec<String> {
        vec![
            "--url".into(),
            url,
            "--domain".into(),
            "localhost".into(),
            "--mode".into(),
            mode.into(),
            "--pairs".into(),
            opts.pairs.to_string(),
        ]
    };
    compare(
        bins,
        opts,
        "b",
        Target {
            label: "pipe",
            args: args(format!("ws://{pipe_addr}/xmpp-websocket"), "raw-echo"),
            cpu: vec![("pipe", pipe.pid())],
        },
        Target {
            label: "bridge",
            args: args(format!("ws://{bridge_addr}/xmpp-websocket"), "echo"),
            cpu: vec![("bridge", bridge.pid())],
        },
        opts.pairs,
    )
}

// ---------------------------------------------------------------------------------------------
// (c) memory per idle session with a TLS upstream
// ---------------------------------------------------------------------------------------------

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

/// Opens `n` idle sessions through the bridge; they stay open until the returned process is
/// finished or dropped.
fn open_idle(bins: &Bins, dir: &Path, url: &str, n: usize) -> Result<(Proc, String)> {
    let log = dir.join(format!("idle-{n}.log"));
    let mut cmd = command_with_nofile(&bins.bench, n as u64 + 512)?;
    cmd.args([
        "idle",
        "--url",
        url,
        "--domain",
        "localhost",
        "--sessions",
        &n.to_string(),
        "--concurrency",
        "64",
    ]);
    let mut proc = Proc::spawn(cmd, &format!("idle-{n}"), &log)?;
    let ready = proc.wait_line("READY", &log)?;
    Ok((proc, ready))
}

fn bench_c(bins: &Bins, dir: &Path, opts: &BenchOptions) -> Result<Vec<String>> {
    println!("\n(c) bridge memory per idle session with a STARTTLS upstream (VmRSS of the bridge process)");
    let certs = dir.join("certs");
    make_certificates(&certs, "localhost")?;
    let (_upstream, upstream_addr) = bench_server(
        bins,
        dir,
        "tls-upstream",
        opts.idle.iter().copied().max().unwrap_or(0),
        &[
            "upstream",
            "--mode",
            "starttls",
            "--cert",
            &certs.join("localhost.crt").to_string_lossy(),
            "--key",
            &certs.join("localhost.key").to_string_lossy(),
        ],
    )?;
    let upstream = format!(
        "[[upstream]]\ndomain = \"localhost\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = {}",
        upstream_addr.port(),
        toml_path(&certs.join("ca.pem"))
    );
    let mut per_session = Vec::new();
    for &n in &opts.idle {
        let (bridge, addr) = start_bridge(bins, dir, &format!("bridge-c{n}"), &upstream, n)?;
        let url = format!("ws://{addr}/xmpp-websocket");
        // Warm-up: runtime threads, TLS configuration and allocator arenas exist before the
        // baseline is taken, so the baseline is a running bridge, not a fresh process.
        let (warm, _) = open_idle(bins, dir, &url, 16)?;
        warm.finish(Duration::from_secs(5));
        std::thread::sleep(Duration::from_secs(1));
        let before = vm_rss_kib(bridge.pid())?;
        let (idle, ready) = open_idle(bins, dir, &url, n)?;
        std::thread::sleep(Duration::from_secs(2));
        let after = vm_rss_kib(bridge.pid())?;
        let per = (after.saturating_sub(before)) as f64 / n as f64;
        println!(
            "  {n:>6} sessions ({ready}): VmRSS {before} KiB → {after} KiB, {per:.1} KiB per session"
        );
        per_session.push((n, per));
        idle.finish(Duration::from_secs(5));
        drop(bridge);
    }
    let values: Vec<String> = per_session
        .iter()
        .map(|(n, per)| format!("n{n}={per:.1}"))
        .collect();
    Ok(vec![format!(
        "SUMMARY c.rss_kib_per_idle_session {} goal<=64",
        values.join(" ")
    )])
}

/// A private CA and a leaf for `domain` signed by it (EC P-256), made with openssl.
fn make_certificates(dir: &Path, domain: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let openssl = |args: &[&str]| -> Result<()> {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .context("cannot run openssl")?;
        if !output.status.success() {
            bail!(
                "openssl {} failed:\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    };
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    openssl(&[&["genpkey"], &ec[..], &["-out", "ca.key"]].concat())?;
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-sha256",
        "-days",
        "30",
        "-subj",
        "/O=Sotto bench/CN=Sotto bench CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-out",
        "ca.pem",
    ])?;
    let key = format!("{domain}.key");
    let csr = format!("{domain}.csr");
    let crt = format!("{domain}.crt");
    std::fs::write(
        dir.join("leaf.ext"),
        format!(
            "subjectAltName=DNS:{domain}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )?;
    openssl(&[&["genpkey"], &ec[..], &["-out", &key]].concat())?;
    openssl(&[
        "req",
        "-new",
        "-key",
        &key,
        "-subj",
        &format!("/CN={domain}"),
        "-out",
        &csr,
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "0x1",
        "-days",
        "30",
        "-sha256",
        "-extfile",
        "leaf.ext",
        "-out",
        &crt,
    ])?;
    Ok(())
}
