//! `effc`, the EfficientNet compiler.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bench_train;
mod check;
mod common;
mod compile;
mod inspect;
mod list;
mod output;
mod pick;
mod run;
mod run_features;
mod scale;
mod scale_grid;
mod scale_report;
mod serve;
mod train;
mod tune;

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
    /// Scale a model by φ: the largest that meets MACs, parameter, memory and latency budgets.
    Scale(Box<scale::Args>),
    /// Recommend the most accurate built-in model that meets latency and memory budgets here.
    Pick(pick::Args),
    /// Serve models over the Open Inference Protocol (KServe v2), HTTP and gRPC, with dynamic batching.
    Serve(serve::Args),
    /// Train or fine-tune a model on the CPU (a data set, or one fixed batch to compare with frameworks).
    Train(Box<train::Args>),
}

/// An error already reported to the user (or to be reported), with the exit code.
#[derive(Debug)]
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

/// A driver error for the terminal: spec diagnostics rendered (in colour on a
/// TTY), an out-of-range option named by its flag (`bn_eps` as `--bn-eps`).
pub fn fail(e: effc_driver::Error) -> Failure {
    let message = match e {
        effc_driver::Error::Spec(d) => d.render(color()),
        effc_driver::Error::Option { option, message } => {
            format!("--{}: {message}", option.replace('_', "-"))
        }
        e => e.to_string(),
    };
    Failure { message }
}

/// Whether diagnostics on stderr get colours.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` connects to the
/// Wayland and X displays while listing adapters, to put the one driving the
/// screen first, and libwayland prints "XDG_RUNTIME_DIR is invalid" twice where
/// there is no session. effc draws nothing on a screen and picks its adapter itself
/// (`WGPU_ADAPTER_NAME`), so the layer is switched off for this process with the
/// variable its manifest names (`NODEVICE_SELECT=1`), unless the user chose a
/// device through the layer (`MESA_VK_DEVICE_SELECT`) or set the variable.
fn quiet_vulkan_device_select() {
    if std::env::var_os("NODEVICE_SELECT").is_none()
        && std::env::var_os("MESA_VK_DEVICE_SELECT").is_none()
    {
        // Before any other thread exists (edition 2021: not `unsafe` yet).
        std::env::set_var("NODEVICE_SELECT", "1");
    }
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
    quiet_vulkan_device_select();
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
        Command::Scale(a) => scale::run(*a),
        Command::Pick(a) => pick::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Train(a) => train::run(*a),
    };
    match result.and_then(|code| output::flush().map(|()| code)) {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("{}", f.message.trim_end());
            }
            ExitCode::FAILURE
        }
    }
}
