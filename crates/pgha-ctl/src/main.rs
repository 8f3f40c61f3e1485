//! `pghactl`: the command-line interface of pgha, a drop-in for `patronictl`.
//!
//! It reads the cluster state straight from etcd (Patroni's key layout) and prints it exactly as
//! patronictl 4.1 does. Failures are reported as one `Error: ...` line on stderr with exit code
//! 1, never a backtrace.

mod args;
mod cli;
mod commands;
mod config;
mod dcs;
mod diff;
mod haproxy;
mod pyfmt;
mod render;
mod rest;
mod table;
mod term;
mod yaml11;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<term::AlreadyReported>().is_some() => ExitCode::from(1),
        Err(e) if e.downcast_ref::<term::Aborted>().is_some() => {
            // An unanswered prompt (end of input), as click reports it.
            eprintln!("Aborted!");
            ExitCode::from(1)
        }
        Err(e) => {
            // `{:#}` joins the context chain with ": "; keep it on one line.
            let message = format!("{e:#}").replace('\n', " ");
            eprintln!("Error: {message}");
            ExitCode::from(1)
        }
    }
}
