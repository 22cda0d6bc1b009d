//! `effc`, the EfficientNet compiler.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod check;
mod common;
mod compile;
mod inspect;
mod list;
mod run;
mod tune;
mod web;

/// effc compiles EfficientNet-family networks (.enet specs or built-in models).
#[derive(Parser)]
#[command(name = "effc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in models with their resolution, parameters and MACs.
    List(list::Args),
    /// Show a model's architecture: settings, stages, every layer, parameters, MACs.
    Inspect(inspect::Args),
    /// Check .enet files; exit 0 when every model in them is valid, 1 otherwise.
    Check(check::Args),
    /// Run a model with real weights on images (or a saved input tensor).
    Run(run::Args),
    /// Compile a model: write every kernel as a .wgsl file, and the kernel plan.
    Compile(compile::Args),
    /// Print the generated WGSL of a model (all kernels, or one).
    Shaders(compile::ShadersArgs),
    /// Measure a compiled model on the GPU: latency, every kernel, the GEMM ceiling.
    Bench(bench::Args),
    /// Measure the tile sizes of a model's kernels on this GPU and cache the fastest.
    Tune(tune::Args),
}

/// An error already reported to the user (or to be reported), with the exit code.
pub struct Failure {
    pub message: String,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
        }
    }
}

/// Whether diagnostics on stderr get colours.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn main() -> ExitCode {
    // `effc ... | head` should end quietly, as other Unix tools do, rather than
    // panic on a closed pipe: restore the default SIGPIPE action.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_DFL at start-up, before any
    // other thread exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List(a) => list::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Check(a) => check::run(a),
        Command::Run(a) => run::run(a),
        Command::Compile(a) => compile::run(a),
        Command::Shaders(a) => compile::shaders(a),
        Command::Bench(a) => bench::run(a),
        Command::Tune(a) => tune::run(a),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("{}", f.message.trim_end());
            }
            ExitCode::FAILURE
        }
    }
}
