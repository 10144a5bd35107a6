//! `imprint profile ...` (placeholder until filled in).

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ProfileCommand {}

pub fn run(command: ProfileCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
