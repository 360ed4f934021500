//! `sotto`: the Sotto command-line client.
//!
//! The command set (send, listen, roster, add, remove, devices, fingerprints) is defined by the
//! session milestone; until the session core can log in, every command says so plainly and
//! exits with status 2 instead of pretending to work.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use sotto_session::service::ServiceUrl;

const USAGE: &str = "\
usage: sotto --service URL --jid JID [--store DIR] [--ca FILE] COMMAND
       sotto --version

The password is read from SOTTO_PASSWORD or prompted on a terminal, never from a flag.
Commands: send TO TEXT [--plaintext] | listen [--count N] [--timeout SECS] [--echo]
          roster | add JID | remove JID | devices | fingerprints";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("sotto {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(_) => {
            if let Some(service) = flag_value(&args, "--service") {
                if let Err(e) = ServiceUrl::parse(service) {
                    eprintln!("sotto: {e}");
                    return ExitCode::from(2);
                }
            }
            eprintln!(
                "sotto: this build cannot sign in yet (the XMPP session core is not part of it)"
            );
            ExitCode::from(2)
        }
    }
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}
