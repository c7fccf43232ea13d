//! The `tollgate` command: run the gateway, check a configuration file, print the schema.

use std::io::IsTerminal;
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
    /// Sign a request for a key-pair API: print its headers and a curl command.
    Sign(Box<SignArgs>),
    /// Register a microservice instance in etcd under a lease, and keep it registered until
    /// SIGTERM or SIGINT, which deregister it.
    #[cfg(feature = "etcd")]
    Register(Box<RegisterArgs>),
    /// Remove a microservice instance from etcd.
    #[cfg(feature = "etcd")]
    Deregister(InstanceArgs),
}

/// Names an instance in the etcd registry.
#[cfg(feature = "etcd")]
#[derive(clap::Args)]
struct InstanceArgs {
    /// etcd client endpoints; may be repeated.
    #[arg(long = "etcd", default_value = "http://127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// The registry's key prefix.
    #[arg(long, default_value = config::DEFAULT_ETCD_PREFIX)]
    prefix: String,
    /// The namespace code callers send in `X-NameSpace-Code`.
    #[arg(long)]
    namespace: String,
    /// The microservice name callers send in `X-MicroService-Name`.
    #[arg(long)]
    service: String,
    /// The instance's id, unique within the microservice. `register` uses `host:port` when it
    /// is left out; `deregister` needs it.
    #[arg(long)]
    instance: Option<String>,
}

#[cfg(feature = "etcd")]
#[derive(clap::Args)]
struct RegisterArgs {
    #[command(flatten)]
    instance: InstanceArgs,
    /// The instance's host name or IP address.
    #[arg(long)]
    host: String,
    /// The instance's port.
    #[arg(long)]
    port: u16,
    /// 0 to 100.
    #[arg(long, default_value_t = 10)]
    weight: u32,
    /// Seconds the lease lives without renewal; the instance disappears that long after
    /// this command is killed without a chance to deregister.
    #[arg(long, default_value_t = 10)]
    ttl: i64,
}

#[derive(clap::Args)]
struct SignArgs {
    /// The key pair's secret id.
    #[arg(long)]
    secret_id: String,
    /// The secret key itself (visible to other users in the process list; prefer the next
    /// two).
    #[arg(long, group = "key")]
    secret_key: Option<String>,
    /// The environment variable holding the secret key.
    #[arg(long, group = "key")]
    secret_key_env: Option<String>,
    /// The file holding the secret key (one trailing newline removed).
    #[arg(long, group = "key")]
    secret_key_file: Option<PathBuf>,
    /// hmac-sha1, hmac-sha256, hmac-sha384 or hmac-sha512.
    #[arg(long, default_value = "hmac-sha256")]
    algorithm: String,
    /// `x-date` (checked against the gateway's clock) or `date` (not checked).
    #[arg(long, default_value = "x-date")]
    date_header: String,
    /// A further header to send and sign, as `Name: value`; may be repeated.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The request method.
    #[arg(long, short = 'X', default_value = "GET")]
    method: String,
    /// The URL to call, for the curl command and `--sign-request-target`.
    #[arg(long, default_value = "http://127.0.0.1:8080/release/")]
    url: String,
    /// Sign the path and query as `@request-target`.
    #[arg(long)]
    sign_request_target: bool,
    /// Send this file as the body and sign it through a `Digest` header.
    #[arg(long)]
    body_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Schema => {
            print!("{}", tollgate::config_schema());
            ExitCode::SUCCESS
        }
        Command::Sign(args) => match sign(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tollgate sign: {error:#}");
                ExitCode::FAILURE
            }
        },
        #[cfg(feature = "etcd")]
        Command::Register(args) => report("register", registry_command(registry::register(*args))),
        #[cfg(feature = "etcd")]
        Command::Deregister(args) => {
            report("deregister", registry_command(registry::deregister(args)))
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

#[cfg(feature = "etcd")]
fn report(command: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tollgate {command}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a registry command on a small runtime, with logs on standard error.
#[cfg(feature = "etcd")]
fn registry_command(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    init_logging(LogFormat::Text);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(command)
}

#[cfg(feature = "etcd")]
mod registry {
    use super::*;
    use tollgate::discovery::etcd::{self, InstanceValue, Registration};

    fn instance_id(args: &InstanceArgs, host: &str, port: u16) -> String {
        args.instance
            .clone()
            .unwrap_or_else(|| format!("{host}:{port}"))
    }

    pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let stop = async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        };
        let instance = instance_id(&args.instance, &args.host, args.port);
        let registration = Registration {
            endpoints: args.instance.endpoints,
            prefix: args.instance.prefix,
            namespace: args.instance.namespace,
            service: args.instance.service,
            instance,
            value: InstanceValue {
                host: args.host,
                port: args.port,
                weight: args.weight,
            },
            ttl_secs: args.ttl,
        };
        etcd::register(registration, stop).await
    }

    pub async fn deregister(args: InstanceArgs) -> anyhow::Result<()> {
        let Some(instance) = args.instance.clone() else {
            anyhow::bail!("give the instance's id with --instance (`host:port` if it was registered without one)");
        };
        let removed = etcd::deregister(
            &args.endpoints,
            &args.prefix,
            &args.namespace,
            &args.service,
            &instance,
        )
        .await?;
        if removed {
            println!(
                "removed {}{}/{}/{instance}",
                args.prefix, args.namespace, args.service
            );
            Ok(())
        } else {
            anyhow::bail!(
                "no instance {}{}/{}/{instance} is registered",
                args.prefix,
                args.namespace,
                args.service
            )
        }
    }
}

fn sign(args: Box<SignArgs>) -> anyhow::Result<()> {
    use tollgate::auth::sign::{curl_command, sign_request, SignRequest};
    use tollgate::auth::signature::Algorithm;

    let secret_key = match (
        &args.secret_key,
        &args.secret_key_env,
        &args.secret_key_file,
    ) {
        (Some(key), _, _) => key.clone(),
        (_, Some(name), _) => std::env::var(name)
            .with_context(|| format!("the environment variable `{name}` is not set"))?,
        (_, _, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => anyhow::bail!("give --secret-key-env, --secret-key-file or --secret-key"),
    };
    let algorithm = Algorithm::parse(&args.algorithm).with_context(|| {
        format!(
            "`{}` is not an algorithm: use hmac-sha1, hmac-sha256, hmac-sha384 or hmac-sha512",
            args.algorithm
        )
    })?;
    if !["x-date", "date"].contains(&args.date_header.to_ascii_lowercase().as_str()) {
        anyhow::bail!("--date-header is `x-date` or `date`");
    }
    let headers = args
        .headers
        .iter()
        .map(|header| {
            let (name, value) = header
                .split_once(':')
                .with_context(|| format!("`{header}` is not `Name: value`"))?;
            Ok((name.trim().to_string(), value.trim().to_string()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let uri: http::Uri = args
        .url
        .parse()
        .with_context(|| format!("`{}` is not a URL", args.url))?;
    let target = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let body = match &args.body_file {
        Some(file) => {
            Some(std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?)
        }
        None => None,
    };
    let signed = sign_request(&SignRequest {
        secret_id: &args.secret_id,
        secret_key: secret_key.as_bytes(),
        algorithm,
        date_header: &args.date_header,
        now: std::time::SystemTime::now(),
        headers: &headers,
        request_target: args.sign_request_target.then_some(target.as_str()),
        body: body.as_deref(),
    });
    let body_file = args
        .body_file
        .as_ref()
        .map(|file| file.display().to_string());
    let mut text = String::new();
    for (name, value) in &signed {
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    text.push_str(&curl_command(
        &args.method,
        &args.url,
        &signed,
        body_file.as_deref(),
    ));
    text.push('\n');
    // A reader that stops early, such as `head`, is not an error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            let apis: usize = config.services.iter().map(|s| s.apis.len()).sum();
            let services = config.services.len();
            println!(
                "{}: valid ({services} service{}, {apis} API{})",
                path.display(),
                if services == 1 { "" } else { "s" },
                if apis == 1 { "" } else { "s" },
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
    let reloader = server.reloader()?;
    tracing::info!(config = %path.display(), "tollgate started");
    // Reloads run in a task of their own, so signals are still handled while one runs.
    let mut reloading: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                if reloading.as_ref().is_some_and(|task| !task.is_finished()) {
                    tracing::warn!("a reload is still running; this SIGHUP is ignored");
                    continue;
                }
                let reloader = reloader.clone();
                let config = path.display().to_string();
                reloading = Some(tokio::spawn(async move {
                    if let Err(error) = reloader.reload().await {
                        tracing::error!(
                            %config,
                            "reload rejected; the previous configuration keeps serving: {error:#}"
                        );
                    }
                }));
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
