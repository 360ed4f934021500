//! `cargo xtask`: the project's build and test entry points.
//!
//! - `cargo xtask dist` builds the browser client into `target/dist/`.
//! - `cargo xtask demo [--listen ADDR]` runs Prosody, the bridge and the client locally.
//! - `cargo xtask test [--quick]` runs every check and test suite.
//! - `cargo xtask fuzz [--seconds N]` runs every cargo-fuzz target for N seconds (default 60).
//! - `cargo xtask bench bridge [OPTIONS]` measures the bridge (throughput, latency, memory).
//! - `cargo xtask repro` proves two clean builds of the client are byte-identical.

mod bench;
mod demo;
mod deny;
mod dist;
mod fuzz;
mod repro;
mod test;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

  dist                    build the browser client into target/dist (wasm-bindgen, wasm-opt -Oz,
                          content hashes, SRI, .gz/.br, size budget, SHA256SUMS)
  demo [--listen ADDR]    start a throwaway Prosody, the bridge on ADDR (default 127.0.0.1:8080)
                          and the client; Ctrl-C stops everything
  test [--quick]          fmt, clippy, unit and integration tests, wasm build, browser suite
                          (--quick: fmt and native tests only, for the inner loop)
  fuzz [--seconds N]      run every cargo-fuzz target under fuzz/ for N seconds each (default 60;
                          installs the nightly toolchain and cargo-fuzz when missing)
  repro                   build the client twice (the second time from a copy of the sources at
                          another path, in an empty target dir) and fail unless every file matches
  bench bridge [OPTIONS]  benchmark the bridge in release builds (docs/OPERATIONS.md, Performance):
                          (a) vs Prosody's mod_websocket, (b) vs a bare WebSocket-TCP pipe,
                          (c) memory per idle session. Options: --pairs N (50) --seconds S (10)
                          --warmup S (2) --window W (1) --idle N,N (1000,5000) --only a,b,c
                          --nice N (0; e.g. -10 as root so other work disturbs it less)
                          --prosody-nagle on|off (off: Prosody's network_settings nagle = false)
                          --bridge-threads N (the bridge's tokio worker threads; default: cores)
                          --load F (0.5: the latency runs' rate, a fraction of the lower maximum)
                          --upstream starttls|plaintext (starttls; plaintext: loopback, no TLS)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match strs.as_slice() {
        ["dist"] => dist::run(&dist::DistOptions::default()).map(|_| ()),
        ["demo"] => demo::run(demo::DEFAULT_LISTEN),
        ["demo", "--listen", addr] => demo::run(addr),
        ["repro"] => repro::run(),
        ["test"] => test::run(false),
        ["test", "--quick"] => test::run(true),
        ["fuzz"] => fuzz::run(fuzz::DEFAULT_SECONDS).map(|_| ()),
        ["fuzz", "--seconds", n] => match n.parse::<u64>() {
            Ok(n) if n > 0 => fuzz::run(n).map(|_| ()),
            _ => {
                eprintln!("--seconds needs a positive whole number\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["bench", "bridge", options @ ..] => {
            bench::BenchOptions::parse(options).and_then(|opts| bench::run(&opts))
        }
        ["-h" | "--help"] | [] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
