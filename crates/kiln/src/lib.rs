//! kiln's command line. `cli` holds the clap structs, `commands` one file per command, and
//! `exit_codes` the documented exit statuses.
//!
//! Adding a command: a variant in [`cli::Command`], a file in `commands/`, one arm in
//! [`commands::dispatch`].

pub mod cli;
pub mod commands;
pub mod exit_codes;
pub mod output;

use clap::Parser;

/// Parses `std::env::args` and runs the command.
pub fn run() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    std::process::ExitCode::from(commands::dispatch(cli))
}
