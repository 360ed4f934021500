//! `sotto-bridge admin …`: account management on the organisation's Prosody, through Prosody's
//! own `prosodyctl` with the deployment's Prosody configuration.
//!
//! | command | how (Prosody 0.12, Debian 12) |
//! |---|---|
//! | `create JID` | `prosodyctl adduser JID`, password on its stdin |
//! | `reset-password JID` | `prosodyctl passwd JID`, password on its stdin |
//! | `disable JID` | `prosodyctl passwd JID` with a random password that is never shown or stored, then `prosodyctl shell c2s close JID` to end the account's sessions |
//! | `enable JID` | `prosodyctl passwd JID` with the new password given |
//! | `list [DOMAIN]` | `prosodyctl shell user list DOMAIN` |
//!
//! Prosody 0.12 has no "disabled" flag for accounts (`prosodyctl shell user disable` arrives
//! with 0.13), so disabling replaces the password: nobody can authenticate (resumption needs
//! authentication too), the account's data (roster, archive, OMEMO keys) is kept, and enabling
//! means giving it a new password. `shell` commands need `mod_admin_shell` (on in Debian's
//! default configuration).
//!
//! Passwords are read from stdin (one line) or from the environment variable named by
//! `--password-env`, never from the command line (where `ps` would show them); they are passed
//! to `prosodyctl` on its stdin and never printed or logged.

use std::io::{BufRead, Read as _, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::config::{is_valid_bare_jid, is_valid_domain, Config};

/// Usage text of the admin subcommands.
pub const USAGE: &str = "\
usage: sotto-bridge admin [OPTIONS] COMMAND
commands:
  create JID            create an account (password from stdin or --password-env)
  reset-password JID    set a new password (stdin or --password-env)
  disable JID           replace the password with a random one nobody knows and end the
                        account's sessions (Prosody 0.12 has no disabled flag)
  enable JID            give a disabled account a new password (stdin or --password-env)
  list [DOMAIN]         the accounts of DOMAIN (default: every [[upstream]] domain of --config)
options:
  --prosody-config FILE  the Prosody configuration (default: prosodyctl's own default)
  --prosodyctl PATH      the prosodyctl program (default: prosodyctl)
  --root                 pass --root to prosodyctl (when Prosody's files belong to root)
  --password-env NAME    read the password from the environment variable NAME
  --config FILE          the bridge configuration (for list without DOMAIN)";

/// Exit status: success.
pub const OK: u8 = 0;
/// Exit status: prosodyctl refused or failed.
pub const FAILED: u8 = 1;
/// Exit status: bad usage.
pub const USAGE_ERROR: u8 = 2;
/// Exit status: `disable` replaced the password but could not end the sessions.
pub const PARTIAL: u8 = 3;

struct Options {
    prosody_config: Option<PathBuf>,
    prosodyctl: String,
    root: bool,
    password_env: Option<String>,
    bridge_config: Option<PathBuf>,
}

enum Action {
    Create(String),
    ResetPassword(String),
    Disable(String),
    Enable(String),
    List(Option<String>),
}

/// Where the admin command gets its input and writes its output (the real process streams in
/// `main`, buffers in tests).
pub struct Io<'a> {
    /// Standard input (the password).
    pub stdin: &'a mut dyn BufRead,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// Environment lookup (for `--password-env`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Runs `sotto-bridge admin ARGS` (the arguments after `admin`); returns the exit status.
pub fn run(args: &[String], io: &mut Io<'_>) -> u8 {
    let (options, action) = match parse(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            let _ = writeln!(io.err, "sotto-bridge admin: {message}\n{USAGE}");
            return USAGE_ERROR;
        }
    };
    let ctl = Prosodyctl { options: &options };
    match action {
        Action::Create(jid) => {
            let Some(password) = read_password(&options, io) else {
                return USAGE_ERROR;
            };
            report(
                io,
                ctl.set_password("adduser", &jid, &password),
                &format!("{jid}: created"),
            )
        }
        Action::ResetPassword(jid) | Action::Enable(jid) => {
            let Some(password) = read_password(&options, io) else {
                return USAGE_ERROR;
            };
            report(
                io,
                ctl.set_password("passwd", &jid, &password),
                &format!("{jid}: password set"),
            )
        }
        Action::Disable(jid) => {
            let password = match random_password() {
                Ok(p) => p,
                Err(e) => {
                    let _ = writeln!(io.err, "cannot read random bytes: {e}");
                    return FAILED;
                }
            };
            if let Err(e) = ctl.set_password("passwd", &jid, &password) {
                let _ = writeln!(io.err, "{jid}: {e}");
                return FAILED;
            }
            match ctl.shell(&["c2s", "close", &jid]) {
                Ok(output) => {
                    let _ = writeln!(
                        io.out,
                        "{jid}: disabled (password replaced by a random one; {})",
                        output.trim().to_lowercase()
                    );
                    OK
                }
                Err(e) => {
                    let _ = writeln!(
                        io.err,
                        "{jid}: password replaced, so no new login is possible, but open sessions could not be closed: {e}\n\
                         (enable mod_admin_shell in Prosody, or restart Prosody to end them)"
                    );
                    PARTIAL
                }
            }
        }
        Action::List(domain) => {
            let domains = match domain {
                Some(d) => vec![d],
                None => match &options.bridge_config {
                    Some(file) => match Config::load(file) {
                        Ok(config) => config.upstream.iter().map(|u| u.domain.clone()).collect(),
                        Err(e) => {
                            let _ = writeln!(io.err, "{}: {e}", file.display());
                            return USAGE_ERROR;
                        }
                    },
                    None => {
                        let _ = writeln!(
                            io.err,
                            "list: name a DOMAIN, or give --config with the bridge configuration"
                        );
                        return USAGE_ERROR;
                    }
                },
            };
            for domain in domains {
                match ctl.shell(&["user", "list", &domain]) {
                    Ok(output) => {
                        for line in output.lines().filter(|l| is_valid_bare_jid(l.trim())) {
                            let _ = writeln!(io.out, "{}", line.trim());
                        }
                    }
                    Err(e) => {
                        let _ = writeln!(io.err, "{domain}: {e}");
                        return FAILED;
                    }
                }
            }
            OK
        }
    }
}

fn report(io: &mut Io<'_>, result: Result<(), String>, success: &str) -> u8 {
    match result {
        Ok(()) => {
            let _ = writeln!(io.out, "{success}");
            OK
        }
        Err(e) => {
            let _ = writeln!(io.err, "{e}");
            FAILED
        }
    }
}

fn parse(args: &[String]) -> Result<(Options, Action), String> {
    let mut options = Options {
        prosody_config: None,
        prosodyctl: "prosodyctl".into(),
        root: false,
        password_env: None,
        bridge_config: None,
    };
    let mut rest = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--prosody-config" => options.prosody_config = Some(value(arg)?.into()),
            "--prosodyctl" => options.prosodyctl = value(arg)?,
            "--root" => options.root = true,
            "--password-env" => options.password_env = Some(value(arg)?),
            "--config" => options.bridge_config = Some(value(arg)?.into()),
            "--password" => {
                return Err(
                    "passwords are never taken from the command line: use stdin or --password-env"
                        .into(),
                )
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => rest.push(other.to_owned()),
        }
    }
    let jid = |j: Option<&String>| -> Result<String, String> {
        match j {
            Some(j) if is_valid_bare_jid(j) => Ok(j.to_lowercase()),
            Some(j) => Err(format!("{j:?} is not a bare JID like alice@example.org")),
            None => Err("a JID is required".into()),
        }
    };
    let action = match rest.first().map(String::as_str) {
        Some("create") if rest.len() == 2 => Action::Create(jid(rest.get(1))?),
        Some("reset-password") if rest.len() == 2 => Action::ResetPassword(jid(rest.get(1))?),
        Some("disable") if rest.len() == 2 => Action::Disable(jid(rest.get(1))?),
        Some("enable") if rest.len() == 2 => Action::Enable(jid(rest.get(1))?),
        Some("list") if rest.len() <= 2 => match rest.get(1) {
            Some(d) if is_valid_domain(d) => Action::List(Some(d.to_lowercase())),
            Some(d) => return Err(format!("{d:?} is not a domain")),
            None => Action::List(None),
        },
        Some(other) => return Err(format!("unknown command or wrong arguments: {other}")),
        None => return Err("a command is required".into()),
    };
    Ok((options, action))
}

fn read_password(options: &Options, io: &mut Io<'_>) -> Option<String> {
    let password = match &options.password_env {
        Some(name) => match (io.env)(name) {
            Some(p) => p,
            None => {
                let _ = writeln!(io.err, "the environment variable {name} is not set");
                return None;
            }
        },
        None => {
            let mut line = String::new();
            if io.stdin.read_line(&mut line).is_err() {
                let _ = writeln!(io.err, "cannot read the password from stdin");
                return None;
            }
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    if password.is_empty() || password.len() > 1024 || password.contains(['\n', '\r', '\0']) {
        let _ = writeln!(
            io.err,
            "the password must be one line of 1 to 1024 bytes (given on stdin or in --password-env)"
        );
        return None;
    }
    Some(password)
}

/// 32 bytes from the operating system's CSPRNG, hex-encoded.
fn random_password() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

struct Prosodyctl<'a> {
    options: &'a Options,
}

impl Prosodyctl<'_> {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.options.prosodyctl);
        if let Some(config) = &self.options.prosody_config {
            cmd.arg("--config").arg(config);
        }
        if self.options.root {
            cmd.arg("--root");
        }
        cmd
    }

    /// `prosodyctl adduser|passwd JID`, the password typed twice on its stdin.
    fn set_password(&self, command: &str, jid: &str, password: &str) -> Result<(), String> {
        let mut child = self
            .command()
            .arg(command)
            .arg(jid)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.options.prosodyctl))?;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(format!("{password}\n{password}\n").as_bytes());
        }
        let output = child
            .wait_with_output()
            .map_err(|e| format!("{} failed: {e}", self.options.prosodyctl))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{jid}: prosodyctl {command} failed ({}): {}",
            output.status,
            prosodyctl_message(&output.stdout, &output.stderr)
        ))
    }

    /// `prosodyctl shell WORDS…` (one command for mod_admin_shell); its output on success.
    fn shell(&self, words: &[&str]) -> Result<String, String> {
        let output = self
            .command()
            .arg("shell")
            .args(words)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.options.prosodyctl))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && !stdout.contains("Unable to connect") {
            Ok(stdout)
        } else {
            Err(format!(
                "prosodyctl shell {} failed ({}): {}",
                words.first().copied().unwrap_or(""),
                output.status,
                prosodyctl_message(&output.stdout, &output.stderr)
            ))
        }
    }
}

/// What prosodyctl said, without its password prompts and terminal escapes.
fn prosodyctl_message(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    );
    text.replace("\u{1b}[08m", "")
        .replace("\u{1b}[00m", "")
        .replace("Enter new password: ", "")
        .replace("Retype new password: ", "")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn run_with(args: &[&str], stdin: &str) -> (u8, String, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut input = stdin.as_bytes();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let env = |_: &str| None;
        let code = run(
            &args,
            &mut Io {
                stdin: &mut input,
                out: &mut out,
                err: &mut err,
                env: &env,
            },
        );
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn usage_errors() {
        assert_eq!(run_with(&[], "").0, USAGE_ERROR);
        assert_eq!(run_with(&["create"], "").0, USAGE_ERROR);
        assert_eq!(run_with(&["create", "not a jid"], "").0, USAGE_ERROR);
        let (code, _, err) = run_with(&["--password", "x", "create", "a@b.example"], "");
        assert_eq!(code, USAGE_ERROR);
        assert!(err.contains("never taken from the command line"));
        assert_eq!(run_with(&["list"], "").0, USAGE_ERROR);
        // An empty password is refused before prosodyctl runs.
        let (code, _, err) = run_with(
            &[
                "--prosodyctl",
                "/nonexistent/prosodyctl",
                "create",
                "a@b.example",
            ],
            "\n",
        );
        assert_eq!(code, USAGE_ERROR, "{err}");
        let (code, _, err) = run_with(
            &[
                "--prosodyctl",
                "/nonexistent/prosodyctl",
                "create",
                "a@b.example",
            ],
            "secret-password\n",
        );
        assert_eq!(code, FAILED);
        assert!(err.contains("cannot run"), "{err}");
        assert!(!err.contains("secret-password"));
    }

    #[test]
    fn random_passwords_differ() {
        let a = random_password().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_password().unwrap());
    }
}
