use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rocket::error::ErrorKind;
use rocket::figment::Figment;
use sperform::config::{self, Effective};
use sperform::lifecycle::Drain;

/// A server-load monitor daemon.
///
/// Servers, or agents on them, report their CPU and RAM load over HTTP;
/// sperform stores every sample in an embedded SQLite database and answers
/// the per-minute averages of the last hour and the per-hour averages of
/// the last day. Without a command it runs the daemon.
#[derive(Parser)]
#[command(version, after_help = config::config_help())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Read and check the configuration exactly as start-up does, print the
    /// settings in force (tokens only as set or not set) and exit: 0 if it
    /// is valid, 1 with the error otherwise. The database is not touched.
    CheckConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let figment = config::figment();
    // Checked before Rocket starts its runtime, which would abort on a bad
    // key of its own with a less helpful message.
    let effective = match Effective::from_figment(&figment) {
        Ok(effective) => effective,
        Err(err) => {
            eprintln!("sperform: {err}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::CheckConfig) => {
            print!("{}", effective.describe());
            ExitCode::SUCCESS
        }
        None => rocket::execute(run(figment)),
    }
}

async fn run(figment: Figment) -> ExitCode {
    let rocket = match sperform::build(figment) {
        Ok(rocket) => rocket,
        Err(err) => {
            eprintln!("sperform: {err}");
            return ExitCode::FAILURE;
        }
    };
    let drain = rocket.state::<Drain>().cloned();
    let launched = rocket.launch().await;
    // Normally Rocket's shutdown fairing has done this already; see `Drain`.
    if let Some(drain) = drain {
        drain.run().await;
    }
    match launched {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => match err.kind() {
            // Rocket stopped without waiting for connections still open (or
            // cut them after `shutdown.grace` + `shutdown.mercy`); the queued
            // samples were committed all the same.
            ErrorKind::Shutdown(_, None) => ExitCode::SUCCESS,
            kind => {
                eprintln!("sperform: {kind}");
                ExitCode::FAILURE
            }
        },
    }
}
