//! The benchmark's processes (`sotto-bench`, driven by `cargo xtask bench bridge`) still work:
//! a tiny run of figure (b) — the echo upstream, the bare pipe and the real bridge in front of
//! it, the load generator through both — and of the idle-session holder. Seconds, not minutes;
//! the numbers are not checked, only that round trips complete and none is lost.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use sotto_bridge::config::Config;
use sotto_bridge::Bridge;

const BENCH: &str = env!("CARGO_BIN_EXE_sotto-bench");

/// A `sotto-bench` server; killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn server(args: &[&str]) -> (Server, String) {
    let mut child = Command::new(BENCH)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("LISTEN ").unwrap().to_owned();
    (Server(child), addr)
}

/// Runs the load generator and returns its `RESULT` fields.
fn load(url: &str, mode: &str) -> Vec<(String, f64)> {
    let output = Command::new(BENCH)
        .args([
            "load",
            "--url",
            url,
            "--domain",
            "localhost",
            "--mode",
            mode,
            "--pairs",
            "3",
            "--warmup",
            "0.2",
            "--duration",
            "0.5",
            "--window",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .expect("a RESULT line");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

fn field(result: &[(String, f64)], key: &str) -> f64 {
    result.iter().find(|(k, _)| k == key).unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_processes_relay_round_trips_through_pipe_and_bridge() {
    let (_upstream, upstream) = server(&["upstream", "--mode", "plain"]);
    let (_pipe, pipe) = server(&["pipe", "--upstream", &upstream]);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let port = upstream.rsplit(':').next().unwrap();
    let config = Config::parse(&format!(
        "listen = \"{addr}\"\npublic_url = \"http://{addr}\"\n\
         [[upstream]]\ndomain = \"localhost\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         tls = \"plaintext-loopback\"\n[limits]\nstanzas_per_second = 100000\n"
    ))
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let bridge = tokio::spawn(Bridge::new(config).unwrap().serve(listener, async {
        let _ = stopped.await;
    }));

    let through_pipe = {
        let url = format!("ws://{pipe}/xmpp-websocket");
        tokio::task::spawn_blocking(move || load(&url, "raw-echo"))
            .await
            .unwrap()
    };
    let through_bridge = {
        let url = format!("ws://{addr}/xmpp-websocket");
        tokio::task::spawn_blocking(move || load(&url, "echo"))
            .await
            .unwrap()
    };
    for result in [&through_pipe, &through_bridge] {
        assert!(field(result, "round_trips") > 0.0, "{result:?}");
        assert!(field(result, "samples") > 0.0, "{result:?}");
        assert_eq!(field(result, "lost"), 0.0, "{result:?}");
        assert!(field(result, "p99_us") >= field(result, "p50_us"));
    }

    // The idle-session holder opens sessions through the bridge and says so.
    let url = format!("ws://{addr}/xmpp-websocket");
    let ready = tokio::task::spawn_blocking(move || {
        let mut idle = Command::new(BENCH)
            .args([
                "idle",
                "--url",
                &url,
                "--domain",
                "localhost",
                "--sessions",
                "5",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(idle.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        drop(idle.stdin.take());
        let status = idle.wait().unwrap();
        (line, status)
    })
    .await
    .unwrap();
    assert!(ready.0.starts_with("READY sessions=5"), "{}", ready.0);
    assert!(ready.1.success());

    let _ = stop.send(());
    bridge.await.unwrap().unwrap();
}
