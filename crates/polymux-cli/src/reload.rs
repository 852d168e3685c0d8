//! Hot reload of the `--config` file, and the set of per-service listeners it drives.
//!
//! [`watch`] re-reads the file once a second and on SIGHUP. It compares the file's bytes
//! with the last ones seen rather than watching with inotify (the `notify` crate): a
//! one-second poll of one small file costs nothing, needs no dependency, sees editors that
//! replace the file by renaming, and does not miss a change made within the same mtime
//! second. A file that fails validation is rejected with an error log; the running
//! configuration stays. SIGHUP reloads even when the bytes did not change (e.g. to re-read
//! a `token_file`).
//!
//! [`ListenerSet`] applies a new service list to the listening side (tunnel server, forward
//! client), keeping this invariant: **a service whose configuration did not change keeps
//! its listener, its accept loop and its open connections untouched.** Added services start;
//! removed ones stop accepting (their listener closes) while their open connections finish;
//! changed ones restart their accept loop, on the same listener when the address is the
//! same. New addresses are bound before anything is stopped, so a reload that cannot bind
//! changes nothing. A `udp://` service holds a UDP socket instead of a listener ([`Bound`]);
//! the same rules apply to it.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config_file::{self, FileConfig, ServiceConfig, Side};
use crate::limits::Limiter;
use crate::metrics::{Metrics, ServiceCounters};
use crate::shutdown::Shutdown;
use crate::transport;

/// How often the file is compared with its last version.
const POLL: Duration = Duration::from_secs(1);

/// What the accept loops of one listening side (tunnel server, forward client) share.
#[derive(Clone)]
pub struct Serving {
    /// Where each connection's relay runs (drained at shutdown).
    pub relays: TaskTracker,
    /// `--max-connections`, over all services.
    pub connections: Limiter,
    /// Per-service counters.
    pub metrics: Metrics,
    /// Shutdown.
    pub shutdown: Shutdown,
}

/// Accepts connections to one service until `stop` (a reload) or shutdown, and returns the
/// listener so that a restart can reuse it. A connection is taken within the service's own
/// `limit` and `--max-connections`, else refused (counted); a taken one runs `carry` as a
/// relay task, counted open while it runs and refused when `carry` returns `false`.
pub async fn accept_loop<C, F>(
    listener: TcpListener,
    name: String,
    serving: Serving,
    limit: Option<Limiter>,
    stop: CancellationToken,
    carry: C,
) -> TcpListener
where
    C: Fn(TcpStream, SocketAddr, String, Arc<ServiceCounters>) -> F,
    F: Future<Output = bool> + Send + 'static,
{
    let counters = serving.metrics.service(&name);
    loop {
        let accepted = tokio::select! {
            _ = serving.shutdown.requested() => return listener,
            _ = stop.cancelled() => return listener,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("{name}: accepting a connection failed: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let own = match &limit {
            Some(limit) => match limit.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    counters.refused();
                    continue;
                }
            },
            None => None,
        };
        let Some(permit) = serving.connections.try_acquire() else {
            counters.refused();
            continue;
        };
        tcp.set_nodelay(true).ok();
        let carried = carry(tcp, peer, name.clone(), counters.clone());
        let counters = counters.clone();
        serving.relays.spawn(async move {
            let _open = counters.opened();
            if !carried.await {
                counters.refused();
            }
            drop((permit, own));
        });
    }
}

/// The next configuration from [`watch`]'s receiver, or never when there is none (no
/// `--config`): a `select!` arm for the reload loops of both servers and clients.
pub async fn next(reloads: &mut Option<mpsc::Receiver<FileConfig>>) -> Option<FileConfig> {
    match reloads {
        Some(rx) => rx.recv().await,
        None => futures::future::pending().await,
    }
}

/// Watches `path` until shutdown; sends each new valid configuration. `current` holds the
/// bytes of the configuration already running (so that only changes are sent).
pub fn watch(
    path: PathBuf,
    side: Side,
    current: Vec<u8>,
    shutdown: Shutdown,
) -> mpsc::Receiver<FileConfig> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let mut last = current;
        let mut hangup = hangup_signal();
        loop {
            let forced = tokio::select! {
                _ = shutdown.requested() => return,
                _ = tokio::time::sleep(POLL) => false,
                _ = next_hangup(&mut hangup) => true,
            };
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) => {
                    if forced {
                        tracing::error!(
                            "reload: cannot read {}: {e}; keeping the running configuration",
                            path.display()
                        );
                    }
                    continue;
                }
            };
            if bytes == last && !forced {
                continue;
            }
            last = bytes;
            let why = if forced { "SIGHUP" } else { "file changed" };
            let parsed = std::str::from_utf8(&last)
                .map_err(|_| {
                    crate::error::config_error(format!("config file {}: not UTF-8", path.display()))
                })
                .and_then(|text| config_file::parse(text, &path, side));
            match parsed {
                Ok(config) => {
                    tracing::info!("reloading {} ({why})", path.display());
                    if tx.send(config).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!("reload rejected, the running configuration stays: {e:#}")
                }
            }
        }
    });
    rx
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch SIGHUP ({e}); the config file is still polled");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(s) => {
            if s.recv().await.is_none() {
                futures::future::pending::<()>().await;
            }
        }
        None => futures::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    futures::future::pending::<()>().await
}

/// What a reload changed, by service name.
#[derive(Debug, Default)]
pub struct Changes {
    /// Services started.
    pub added: Vec<String>,
    /// Services stopped.
    pub removed: Vec<String>,
    /// Services restarted with a new configuration.
    pub changed: Vec<String>,
}

impl Changes {
    /// `added web; removed api; changed —`.
    pub fn describe(&self) -> String {
        let list = |v: &Vec<String>| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        format!(
            "added: {}; removed: {}; changed: {}",
            list(&self.added),
            list(&self.removed),
            list(&self.changed)
        )
    }
}

/// What a listening service holds: a TCP listener, or the UDP socket of a `udp://HOST:PORT`
/// service.
#[derive(Debug)]
pub enum Bound {
    /// A TCP service's listener.
    Tcp(TcpListener),
    /// A UDP service's socket (shared with its open flows, which answer through it).
    Udp(Arc<UdpSocket>),
}

impl Bound {
    /// Binds `addr` (`udp://HOST:PORT` binds a UDP socket); `flag` names the option in errors;
    /// a TCP listener gets a listen backlog of `backlog` (`--backlog`).
    pub async fn bind(addr: &str, flag: &str, backlog: u32) -> anyhow::Result<Bound> {
        match crate::udp::udp_target(addr) {
            Some(udp) => Ok(Bound::Udp(Arc::new(crate::udp::bind(udp, flag).await?))),
            None => Ok(Bound::Tcp(
                transport::bind_with_backlog(addr, flag, backlog).await?,
            )),
        }
    }

    /// The bound local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Tcp(listener) => listener.local_addr(),
            Bound::Udp(socket) => socket.local_addr(),
        }
    }
}

/// Starts one service's loop on what was bound for it (and logs where it listens); the loop
/// returns it when `stop` is cancelled (or at shutdown) so that a restart can reuse it.
pub type Spawner =
    Box<dyn Fn(&ServiceConfig, Bound, CancellationToken) -> JoinHandle<Bound> + Send>;

struct Running {
    config: ServiceConfig,
    stop: CancellationToken,
    task: JoinHandle<Bound>,
}

/// The listeners of the listening side's services. See the module docs for its invariant.
pub struct ListenerSet {
    flag: &'static str,
    backlog: u32,
    running: BTreeMap<String, Running>,
    spawn: Spawner,
}

impl ListenerSet {
    /// An empty set; `flag` names the option in bind errors, `backlog` is the listen backlog
    /// of its TCP listeners (`--backlog`), `spawn` starts accept loops.
    pub fn new(flag: &'static str, backlog: u32, spawn: Spawner) -> ListenerSet {
        ListenerSet {
            flag,
            backlog,
            running: BTreeMap::new(),
            spawn,
        }
    }

    /// Makes the running services those of `wanted`. On error (an address cannot be bound)
    /// nothing was changed.
    pub async fn apply(&mut self, wanted: &[ServiceConfig]) -> anyhow::Result<Changes> {
        let mut fresh = BTreeMap::new();
        for service in wanted {
            let same_addr = self
                .running
                .get(&service.name)
                .is_some_and(|r| r.config.addr == service.addr);
            if !same_addr {
                let listener = Bound::bind(&service.addr, self.flag, self.backlog).await?;
                fresh.insert(service.name.clone(), listener);
            }
        }
        let mut changes = Changes::default();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|name| !wanted.iter().any(|s| &s.name == *name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(running) = self.running.remove(&name) {
                running.stop.cancel();
                let _ = running.task.await;
                tracing::info!(
                    "service {name} removed: its listener is closed; open connections finish"
                );
                changes.removed.push(name);
            }
        }
        for service in wanted {
            let listener = match self.running.remove(&service.name) {
                Some(running) if running.config == *service => {
                    self.running.insert(service.name.clone(), running);
                    continue;
                }
                Some(running) => {
                    running.stop.cancel();
                    let old = running.task.await.ok();
                    changes.changed.push(service.name.clone());
                    match fresh.remove(&service.name).or(old) {
                        Some(listener) => listener,
                        // The old loop failed and took its listener: bind again.
                        None => Bound::bind(&service.addr, self.flag, self.backlog).await?,
                    }
                }
                None => {
                    changes.added.push(service.name.clone());
                    match fresh.remove(&service.name) {
                        Some(listener) => listener,
                        None => Bound::bind(&service.addr, self.flag, self.backlog).await?,
                    }
                }
            };
            let stop = CancellationToken::new();
            let task = (self.spawn)(service, listener, stop.clone());
            self.running.insert(
                service.name.clone(),
                Running {
                    config: service.clone(),
                    stop,
                    task,
                },
            );
        }
        Ok(changes)
    }

    /// Stops every accept loop (at shutdown) and waits for them.
    pub async fn stop_all(&mut self) {
        for (_, running) in std::mem::take(&mut self.running) {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }
}
