//! The `tollgate` command: run the gateway, check a configuration file, print the schema.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use tollgate::config::{self, LogFormat};
use tollgate::server::Server;

#[derive(Parser)]
#[command(name = "tollgate", version, about = "A self-hosted API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured services until SIGTERM or SIGINT; SIGHUP reloads the file.
    Run {
        /// Configuration file (YAML).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a configuration file and list every problem in it.
    Check {
        /// Configuration file (YAML).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the JSON Schema of the configuration file.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Schema => {
            print!("{}", tollgate::config_schema());
            ExitCode::SUCCESS
        }
        Command::Run { config } => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tollgate: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            let apis: usize = config.services.iter().map(|s| s.apis.len()).sum();
            println!(
                "{}: valid ({} services, {apis} APIs)",
                path.display(),
                config.services.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{problems}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = config::load(&path)?;
    init_logging(config.server.log_format);
    // One worker runs on the current-thread scheduler, which skips the cross-thread
    // coordination of the multi-thread one.
    let mut runtime = match config.server.workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        workers => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
    };
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config, path))
}

async fn serve(config: config::Config, path: PathBuf) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let server = Server::start(config, Some(path.clone())).await?;
    tracing::info!(config = %path.display(), "tollgate started");
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                if let Err(error) = server.reload().await {
                    tracing::error!(
                        config = %path.display(),
                        "reload rejected; the previous configuration keeps serving: {error:#}"
                    );
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    // A second SIGTERM or SIGINT while draining stops at once.
    let finished = tokio::select! {
        finished = server.shutdown() => finished,
        _ = terminate.recv() => false,
        _ = interrupt.recv() => false,
    };
    tracing::info!(all_requests_finished = finished, "tollgate stopped");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
