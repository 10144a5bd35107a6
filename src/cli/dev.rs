//! `imprint dev ...` (placeholder until filled in).

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum DevCommand {}

pub fn run(command: DevCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
