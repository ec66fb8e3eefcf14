//! cli: the `mailotp` commands (serve, check, hash-pin, login, ctl). Each builds
//! what it needs from the library and reports errors as values; `main`
//! prints them.

mod check;
mod ctl;
mod explain;
mod login;

use std::error::Error;
use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LoadOptions};
pub use ctl::CtlCommand;

/// Errors at the binary's edge.
pub type CliError = Box<dyn Error + Send + Sync>;

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "mailotp", version, about = "RADIUS server with a second factor by e-mail")]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (without -c: the embedded default on 127.0.0.1:1812).
    Serve {
        /// Configuration file.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Allow `fixed_otp_for_testing` (never in production).
        #[arg(long)]
        test_mode: bool,
    },
    /// Check the configuration and users file, print a summary.
    Check {
        /// Configuration file.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Accept `fixed_otp_for_testing` as `serve --test-mode` would.
        #[arg(long)]
        test_mode: bool,
        /// Also try the SMTP server and the LDAP service bind; fail if one fails.
        #[arg(long)]
        connect: bool,
        /// Print which policy applies to this user and what the server would do (no PIN needed).
        #[arg(long, value_name = "USER")]
        explain: Option<String>,
        /// With --explain: the RADIUS client the request would come from (its name).
        #[arg(long, value_name = "NAME", requires = "explain")]
        client: Option<String>,
        /// With --explain: the Calling-Station-Id the request would carry.
        #[arg(long, value_name = "IP", requires = "explain")]
        calling_station: Option<String>,
    },
    /// Read a PIN (no echo on a terminal, or from stdin) and print its hash for the users file.
    HashPin,
    /// Log in interactively as a VPN would: PIN, then the code from the e-mail.
    Login {
        /// The user name.
        user: String,
        /// The RADIUS server.
        #[arg(long, default_value = "127.0.0.1:1812")]
        server: SocketAddr,
        /// The shared secret (default: the embedded default's).
        #[arg(long, default_value = "testing123")]
        secret: String,
    },
    /// Ask a running server: a user's status, unlock, revoke, stats, reload.
    Ctl {
        /// The server's control socket (`[control] socket`).
        #[arg(short, long, default_value = crate::config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print the answer as one JSON object.
        #[arg(long)]
        json: bool,
        /// The command.
        #[command(subcommand)]
        command: CtlCommand,
    },
}

/// Runs a command.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    match args.command {
        Command::Serve { config, test_mode } => {
            let config = load(config, test_mode)?;
            // Declared before the runtime, so dropped after it: the last
            // lines are written once everything has stopped.
            let _log = crate::logging::init(config.log.format);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(crate::app::run(config, LoadOptions { test_mode }))?;
        }
        Command::Check {
            config,
            test_mode,
            connect,
            explain,
            client,
            calling_station,
        } => {
            let config = load(config, test_mode)?;
            if let Some(user) = explain {
                let request = explain::Asked {
                    user,
                    client,
                    calling_station,
                };
                return explain::run(&config, &request);
            }
            return check::run(config, connect);
        }
        Command::HashPin => hash_pin()?,
        Command::Login { user, server, secret } => return login::run(&user, server, &secret),
        Command::Ctl { socket, json, command } => return ctl::run(&socket, json, command),
    }
    Ok(ExitCode::SUCCESS)
}

fn load(path: Option<PathBuf>, test_mode: bool) -> Result<Config, CliError> {
    Ok(match path {
        Some(path) => Config::load(&path, LoadOptions { test_mode })?,
        None => Config::embedded()?,
    })
}

fn hash_pin() -> Result<(), CliError> {
    let pin = if std::io::stdin().is_terminal() {
        zeroize::Zeroizing::new(rpassword::prompt_password("PIN: ")?)
    } else {
        let mut line = zeroize::Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line)?;
        zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    if pin.is_empty() {
        return Err("the PIN is empty".into());
    }
    println!("{}", crate::users::hash_pin(pin.as_bytes()));
    Ok(())
}
