//! `gatehouse`: one binary, one subcommand per role.

mod cli;
mod crdgen;
mod demo_client;
mod http_client;
mod logging;
mod operator;
mod password_prompt;
mod serve;
mod standalone;
mod telemetry;
mod token_review;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
