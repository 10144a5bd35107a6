//! `imprint manifest ...` (placeholder until filled in).

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ManifestCommand {}

pub fn run(command: ManifestCommand) -> anyhow::Result<ExitCode> {
    match command {}
}
