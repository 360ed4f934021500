//! `sotto-bridge --config FILE` runs the bridge; `sotto-bridge check-config FILE` validates.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use sotto_bridge::config::Config;
use sotto_bridge::Bridge;

const USAGE: &str = "\
usage: sotto-bridge --config FILE        run the bridge
       sotto-bridge check-config FILE    validate a configuration file and exit
       sotto-bridge admin [OPTIONS] COMMAND   manage accounts on Prosody (admin --help)
       sotto-bridge --version

Logging: RUST_LOG (default \"info\"); no JIDs, IP addresses or content are ever logged.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    match strs.as_slice() {
        ["admin", "-h" | "--help"] => {
            println!("{}", sotto_bridge::admin::USAGE);
            ExitCode::SUCCESS
        }
        ["admin", ..] => {
            let stdin = std::io::stdin();
            let mut stdin = stdin.lock();
            let mut out = std::io::stdout();
            let mut err = std::io::stderr();
            let env = |name: &str| std::env::var(name).ok();
            let code = sotto_bridge::admin::run(
                args.get(1..).unwrap_or_default(),
                &mut sotto_bridge::admin::Io {
                    stdin: &mut stdin,
                    out: &mut out,
                    err: &mut err,
                    env: &env,
                },
            );
            ExitCode::from(code)
        }
        ["--version" | "-V"] => {
            println!("sotto-bridge {}", sotto_bridge::VERSION);
            ExitCode::SUCCESS
        }
        ["check-config", file] => match Config::load(&PathBuf::from(file)) {
            Ok(config) => {
                for warning in config.warnings() {
                    println!("{file}: warning: {warning}");
                }
                println!("{file}: ok");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{file}: {e}");
                ExitCode::from(2)
            }
        },
        ["--config", file] => run(PathBuf::from(file)),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(file: PathBuf) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let config = match Config::load(&file) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{}: {warning}", file.display());
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let bridge = Bridge::new(config)?;
        let listen = bridge.config().listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        tracing::info!(%listen, version = sotto_bridge::VERSION, "sotto-bridge listening");
        bridge
            .serve(listener, sotto_bridge::shutdown_signal())
            .await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}
