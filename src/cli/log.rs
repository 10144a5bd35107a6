//! `imprint log ...` (placeholder until filled in).

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum LogCommand {}

pub fn run(command: LogCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
