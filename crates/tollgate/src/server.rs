//! Listeners, connections, reload and graceful shutdown.
//!
//! Each listener runs an accept loop; each connection is served by hyper's HTTP/1.1 server
//! with the configured header size, header count and header read time limits. On shutdown
//! the accept loops stop, open connections finish the request in flight and close, and
//! whatever is still open when the grace period ends is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::backend::guard::AddressGuard;
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config, LimitsConfig, Scheme};
use crate::counters::Counters;
use crate::discovery::Registry;
use crate::oauth;
use crate::pipeline::{BoxError, ConnectionInfo, Gateway};
use crate::snapshot::Snapshot;

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: u32 = 1024;
/// hyper's own read buffer maximum (8 KiB plus 100 times 4 KiB); raised to fit a larger
/// header limit.
const HYPER_DEFAULT_MAX_BUF_SIZE: usize = 8192 + 4096 * 100;
/// Pause after a failed accept (such as too many open files) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// A running gateway.
pub struct Server {
    gateway: Arc<Gateway>,
    /// Writes the local store's used quota once a second.
    flusher: JoinHandle<()>,
    /// Watches the etcd registry, when the configuration has one.
    registry_watch: Option<JoinHandle<()>>,
    /// The registry settings the server started with, which a reload cannot change.
    registry_config: config::RegistryConfig,
    config_path: Option<PathBuf>,
    local_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    unix_paths: Vec<PathBuf>,
    grace_period: Duration,
    stop_accepting: watch::Sender<bool>,
    force_close: watch::Sender<bool>,
    accept_loops: Vec<JoinHandle<()>>,
    graceful: Arc<GracefulShutdown>,
}

impl Server {
    /// Compiles `config`, binds its listeners and starts serving. `config_path` is the file
    /// that [`Server::reload`] reads again.
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<Server> {
        Server::start_with_clock(config, config_path, Arc::new(SystemClock)).await
    }

    /// Like [`Server::start`], with the clock that signature windows and rate limits read.
    pub async fn start_with_clock(
        config: Config,
        config_path: Option<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Server> {
        let snapshot = Snapshot::compile(&config).context("cannot compile the configuration")?;
        snapshot
            .oauth_verifiers
            .iter()
            .for_each(oauth::spawn_refresh);
        let counters = Arc::new(Counters::open(&config.counters)?);
        if let Some(file) = counters.quota_file() {
            tracing::info!(quota_file = %file.display(), "counting quota locally");
        }
        let flusher = tokio::spawn(flush_every_second(counters.clone()));
        let denied = config
            .server
            .backend_denied_ranges
            .iter()
            .filter_map(|range| config::parse_ip_range(range))
            .collect();
        let registry = Registry::new();
        registry.load_static(&config.registry);
        let registry_watch = watch_registry(&config.registry, &registry)?;
        let gateway = Arc::new(Gateway::new(
            snapshot,
            &config.server.backend_pool,
            AddressGuard::new(denied),
            counters,
            clock,
            registry,
        ));
        gateway.start_health_checks(&gateway.snapshot());
        let (stop_accepting, _) = watch::channel(false);
        let (force_close, _) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());

        let mut local_addrs = Vec::new();
        let mut tls_addrs = Vec::new();
        let mut unix_paths = Vec::new();
        let mut accept_loops = Vec::new();
        let plain = if config.server.http2_cleartext {
            Protocol::Cleartext
        } else {
            Protocol::Http1
        };
        let mut listeners: Vec<(&String, Protocol)> = config
            .server
            .listen
            .iter()
            .map(|address| (address, plain.clone()))
            .collect();
        if !config.server.listen_tls.is_empty() {
            let tls = TlsAcceptor::from(crate::tls::server_config(gateway.clone())?);
            for address in &config.server.listen_tls {
                listeners.push((address, Protocol::Tls(tls.clone())));
            }
        }
        let spawn_acceptor = |listener: Listener, protocol: Protocol| {
            let acceptor = Acceptor {
                listener,
                protocol,
                gateway: gateway.clone(),
                limits: config.server.limits.clone(),
                stop: stop_accepting.subscribe(),
                force_close: force_close.subscribe(),
                graceful: graceful.clone(),
            };
            tokio::spawn(acceptor.run())
        };
        for path in &config.server.listen_unix {
            let listener = bind_unix(path)?;
            tracing::info!(path = %path.display(), "listening on a Unix socket");
            unix_paths.push(path.clone());
            accept_loops.push(spawn_acceptor(Listener::Unix(listener), plain.clone()));
        }
        for (address, protocol) in listeners {
            let address: SocketAddr = address
                .parse()
                .with_context(|| format!("invalid listen address `{address}`"))?;
            let listener = bind(address).with_context(|| format!("cannot listen on {address}"))?;
            let local = listener.local_addr()?;
            let tls = matches!(protocol, Protocol::Tls(_));
            tracing::info!(address = %local, tls, "listening");
            if tls {
                tls_addrs.push(local);
            } else {
                local_addrs.push(local);
            }
            accept_loops.push(spawn_acceptor(Listener::Tcp(listener), protocol));
        }
        Ok(Server {
            gateway,
            flusher,
            registry_watch,
            registry_config: config.registry.clone(),
            config_path,
            local_addrs,
            tls_addrs,
            unix_paths,
            grace_period: Duration::from_secs(config.server.grace_period_secs),
            stop_accepting,
            force_close,
            accept_loops,
            graceful,
        })
    }

    /// The bound plain listener addresses, in configuration order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound HTTPS listener addresses, in configuration order.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Reads the configuration file again and swaps it in. An invalid file is rejected and
    /// the current configuration keeps serving. Listeners, header limits, the pool and the
    /// counter store need a restart to change; the body limit and everything else do not.
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.reloader()?.reload().await
    }

    /// A handle that reloads this server's configuration from a task of its own.
    pub fn reloader(&self) -> anyhow::Result<Reloader> {
        let path = self
            .config_path
            .clone()
            .context("the server was started without a configuration file")?;
        Ok(Reloader {
            gateway: self.gateway.clone(),
            path,
            registry: self.registry_config.clone(),
        })
    }

    /// Stops accepting, lets requests in flight finish within the grace period, then closes
    /// what is left. Returns true when every connection finished in time.
    pub async fn shutdown(self) -> bool {
        let _ = self.stop_accepting.send(true);
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
        let graceful = match Arc::try_unwrap(self.graceful) {
            Ok(graceful) => graceful,
            Err(_) => unreachable!("the accept loops have ended and released their handles"),
        };
        let open = graceful.count();
        let relays = self.gateway.relays();
        tracing::info!(
            open_connections = open,
            open_websockets = relays.open(),
            grace_period_secs = self.grace_period.as_secs(),
            "shutting down"
        );
        // Upgraded connections have left hyper's connection tracking, so the WebSocket
        // relays are waited for after it, within the same grace period. After the
        // connections, because a handshake in flight can still start a relay.
        let drained = async {
            graceful.shutdown().await;
            relays.drain().await;
        };
        let finished = tokio::time::timeout(self.grace_period, drained)
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                open_websockets = relays.open(),
                "grace period over; closing the connections and WebSockets still open"
            );
            let _ = self.force_close.send(true);
            relays.close_all().await;
        }
        for path in &self.unix_paths {
            if let Err(error) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %error, "cannot remove the Unix socket");
            }
        }
        self.flusher.abort();
        if let Some(watch) = &self.registry_watch {
            watch.abort();
        }
        let counters = self.gateway.counters().clone();
        match tokio::task::spawn_blocking(move || counters.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "cannot write the used quota at shutdown"),
            Err(error) => tracing::error!(%error, "the final quota write failed"),
        }
        finished
    }
}

/// Reloads a server's configuration file.
#[derive(Clone)]
pub struct Reloader {
    gateway: Arc<Gateway>,
    path: PathBuf,
    /// The registry settings the server started with.
    registry: config::RegistryConfig,
}

impl Reloader {
    /// Reads, validates and compiles the file, then swaps it in. Reading and compiling run on
    /// the blocking pool, so a large file does not hold up the requests served meanwhile.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let path = self.path.clone();
        let (config, snapshot) = tokio::task::spawn_blocking(move || {
            let config = config::load(&path)?;
            let snapshot = Snapshot::compile(&config)?;
            anyhow::Ok((config, snapshot))
        })
        .await
        .context("the reload task failed")??;
        snapshot
            .oauth_verifiers
            .iter()
            .for_each(oauth::spawn_refresh);
        // The registry's kind and etcd settings need a restart; a static list reloads.
        match (&self.registry, &config.registry) {
            (started, now)
                if started.kind == config::RegistryKind::Static
                    && now.kind == config::RegistryKind::Static =>
            {
                self.gateway.registry().load_static(&config.registry);
            }
            (started, now)
                if serde_json::to_value(started).ok() == serde_json::to_value(now).ok() => {}
            _ => tracing::warn!(
                path = %self.path.display(),
                "the registry's kind or etcd settings changed; they take effect at the next \
                 start, and the running registry keeps serving"
            ),
        }
        self.gateway.swap(snapshot);
        let apis: usize = config.services.iter().map(|s| s.apis.len()).sum();
        tracing::info!(
            path = %self.path.display(),
            services = config.services.len(),
            apis,
            "configuration reloaded"
        );
        Ok(())
    }
}

/// Starts watching the etcd registry, if the configuration names one.
fn watch_registry(
    config: &config::RegistryConfig,
    registry: &Arc<Registry>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(etcd) = config.etcd() else {
        return Ok(None);
    };
    #[cfg(feature = "etcd")]
    {
        Ok(Some(crate::discovery::etcd::spawn_watch(
            etcd,
            registry.clone(),
        )))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (etcd, registry);
        anyhow::bail!("this build has no etcd registry: build with `--features etcd`")
    }
}

/// Writes the local store's used quota once a second, off the request threads. A failed
/// write is logged once until a write succeeds again; the counts stay in memory meanwhile.
async fn flush_every_second(counters: Arc<Counters>) {
    if counters.quota_file().is_none() {
        return;
    }
    let mut failing = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = counters.clone();
        let result = tokio::task::spawn_blocking(move || store.flush()).await;
        match result {
            Ok(Ok(())) if failing => {
                failing = false;
                tracing::info!("the quota file is written again");
            }
            Ok(Ok(())) => {}
            Ok(Err(error)) if !failing => {
                failing = true;
                tracing::error!(%error, "cannot write the quota file; used quota is kept in memory and written when this clears");
            }
            Ok(Err(_)) => {}
            Err(error) => tracing::error!(%error, "the quota write task failed"),
        }
    }
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The protocol of a listener's connections.
#[derive(Clone)]
enum Protocol {
    /// Plain HTTP/1.1.
    Http1,
    /// Plain HTTP/1.1, or HTTP/2 with prior knowledge.
    Cleartext,
    /// TLS, then HTTP/2 or HTTP/1.1 as ALPN chose.
    Tls(TlsAcceptor),
}

/// A bound listener.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

struct Acceptor {
    listener: Listener,
    protocol: Protocol,
    gateway: Arc<Gateway>,
    limits: LimitsConfig,
    stop: watch::Receiver<bool>,
    force_close: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
}

impl Acceptor {
    async fn run(mut self) {
        loop {
            let accepted = tokio::select! {
                _ = self.stop.changed() => break,
                accepted = accept(&self.listener) => accepted,
            };
            match accepted {
                Ok(Accepted::Tcp(stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
                    }
                    let scheme = match self.protocol {
                        Protocol::Tls(_) => Scheme::Https,
                        _ => Scheme::Http,
                    };
                    self.serve(stream, ConnectionInfo::new(peer, scheme));
                }
                Ok(Accepted::Unix(stream)) => self.serve(stream, ConnectionInfo::unix()),
                Err(error) => {
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }

    fn serve<I>(&self, stream: I, info: ConnectionInfo)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let peer = info
            .peer
            .map_or_else(|| "unix".to_string(), |peer| peer.to_string());
        let info = Arc::new(info);
        let gateway = self.gateway.clone();
        let service = service_fn(move |request| {
            let gateway = gateway.clone();
            let info = info.clone();
            async move { Ok::<_, Infallible>(gateway.handle(request, &info).await) }
        });
        let limits = self.limits.clone();
        // Taken now, so a connection still in its TLS handshake counts as open at shutdown.
        let watcher = self.graceful.watcher();
        let mut force_close = self.force_close.clone();
        let mut stop = self.stop.clone();
        let protocol = self.protocol.clone();
        tokio::spawn(async move {
            let served = async {
                match protocol {
                    Protocol::Http1 => {
                        // hyper's graceful shutdown cannot watch an upgradeable HTTP/1.1
                        // connection, so this one shuts down on the stop signal itself. The
                        // watcher is held so that `Server::shutdown` waits for it to end.
                        let _counted = watcher;
                        let connection = http1_builder(&limits)
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades();
                        tokio::pin!(connection);
                        tokio::select! {
                            result = connection.as_mut() => result.map_err(BoxError::from),
                            _ = stop.changed() => {
                                connection.as_mut().graceful_shutdown();
                                connection.await.map_err(BoxError::from)
                            }
                        }
                    }
                    Protocol::Cleartext => {
                        let builder = auto_builder(&limits);
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(connection).await
                    }
                    Protocol::Tls(acceptor) => {
                        let handshake_time = Duration::from_secs(limits.header_read_timeout_secs);
                        let stream =
                            match tokio::time::timeout(handshake_time, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(error)) => {
                                    return Err(format!("TLS handshake: {error}").into())
                                }
                                Err(_) => return Err("TLS handshake timed out".into()),
                            };
                        let builder = auto_builder(&limits);
                        let connection = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        watcher.watch(connection).await
                    }
                }
            };
            tokio::select! {
                result = served => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                _ = force_close.changed() => {}
            }
        });
    }
}

enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(listener) => {
            let (stream, peer) = listener.accept().await?;
            Ok(Accepted::Tcp(stream, peer))
        }
        Listener::Unix(listener) => {
            let (stream, _) = listener.accept().await?;
            Ok(Accepted::Unix(stream))
        }
    }
}

/// Binds a Unix socket, replacing a stale socket file but nothing else.
fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        if !metadata.file_type().is_socket() {
            anyhow::bail!("`{}` exists and is not a socket", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot replace the stale socket `{}`", path.display()))?;
    }
    UnixListener::bind(path).with_context(|| format!("cannot listen on `{}`", path.display()))
}

fn http1_builder(limits: &LimitsConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(HYPER_DEFAULT_MAX_BUF_SIZE))
        .max_headers(limits.max_headers);
    builder
}

/// Builds a server for HTTP/1.1 and HTTP/2 with the same limits. For HTTP/2, the header list
/// size stands for the header bytes limit.
fn auto_builder(limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs))
        // The read buffer bounds the request head: a head that does not fit gets 431.
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}
