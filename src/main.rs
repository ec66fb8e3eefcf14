//! The `mailotp` binary: parses the command line and hands over to `cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = mailotp::cli::Args::parse();
    match mailotp::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
