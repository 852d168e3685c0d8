//! The Go peer program (`crates/polymux-testkit/go`): built once per test process, spawned per side.
//!
//! `polymux-go-peer -proto yamux|smux1|smux2 -role client|server -addr HOST:PORT -scenario NAME`
//! prints `LISTENING <addr>` as server, then `OK` (exit 0) or `FAIL: <reason>` (exit 1); exit
//! code 2 means the scenario is unsupported for that protocol/role. [`GoProcess::echo_server`]
//! starts its long-lived echo-server mode instead (for `polymux bench --connect`). Children are
//! killed on drop and every wait is bounded.

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::scenario::{Outcome, Scenario, DEADLINE};
use crate::session::Role;

/// What to install when the toolchain or the Go libraries are missing (Debian).
pub const INSTALL_HINT: &str =
    "apt-get install golang-go golang-github-hashicorp-yamux-dev golang-github-xtaci-smux-dev";

const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The program bounds itself by the scenario deadline; allow for start-up and lingering.
const EXIT_TIMEOUT: Duration = Duration::from_secs(DEADLINE.as_secs() + 30);

/// Debian packages providing the Go libraries, and where they install their sources.
const GO_LIBS: [(&str, &str); 2] = [
    (
        "golang-github-hashicorp-yamux-dev",
        "/usr/share/gocode/src/github.com/hashicorp/yamux",
    ),
    (
        "golang-github-xtaci-smux-dev",
        "/usr/share/gocode/src/github.com/xtaci/smux",
    ),
];

/// The protocol the Go peer speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoProto {
    /// hashicorp/yamux (Debian version).
    Yamux,
    /// xtaci/smux, protocol version 1.
    Smux1,
    /// xtaci/smux, protocol version 2.
    Smux2,
}

impl GoProto {
    /// The `-proto` argument.
    pub fn arg(self) -> &'static str {
        match self {
            GoProto::Yamux => "yamux",
            GoProto::Smux1 => "smux1",
            GoProto::Smux2 => "smux2",
        }
    }
}

impl fmt::Display for GoProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go-{}", self.arg())
    }
}

/// `crates/polymux-testkit/go`.
pub fn go_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// Builds the Go peer (once per process) and returns the binary's path. Blocking.
pub fn go_peer_binary() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> Result<PathBuf, String> {
    let dir = go_dir();
    let script = dir.join("build.sh");
    if !script.exists() {
        return Err(format!(
            "{} does not exist: the Go peer program's build script is missing from this checkout",
            script.display()
        ));
    }
    match StdCommand::new("go").arg("version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(format!(
                "`go version` failed ({}): {}; install the Go toolchain: {INSTALL_HINT}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
        Err(e) => {
            return Err(format!(
                "cannot run `go` ({e}); install the Go toolchain and libraries: {INSTALL_HINT}"
            ))
        }
    }
    let missing: Vec<&str> = GO_LIBS
        .iter()
        .filter(|(_, path)| !Path::new(path).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing Go libraries for the Go peer: apt-get install {}",
            missing.join(" ")
        ));
    }

    let mut child = StdCommand::new("sh")
        .arg(&script)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let out = drain_in_thread(child.stdout.take());
    let err = drain_in_thread(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if start.elapsed() > BUILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "{} did not finish within {} s",
                    script.display(),
                    BUILD_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => break Err(format!("waiting for {}: {e}", script.display())),
        }
    };
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    let status = status.map_err(|e| format!("{e}; output:\n{output}"))?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}); if Go or its libraries are missing: {INSTALL_HINT}; \
             output:\n{output}",
            script.display()
        ));
    }
    let bin = dir.join("bin").join("polymux-go-peer");
    if !bin.exists() {
        return Err(format!(
            "{} succeeded but {} does not exist",
            script.display(),
            bin.display()
        ));
    }
    Ok(bin)
}

fn drain_in_thread<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// A running Go peer process.
pub struct GoProcess {
    child: Child,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<Vec<String>>>,
    listening: Option<SocketAddr>,
    what: String,
}

fn collect_lines<R: AsyncRead + Unpin + Send + 'static>(
    pipe: R,
    mut listening: Option<oneshot::Sender<String>>,
) -> JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix("LISTENING ") {
                if let Some(tx) = listening.take() {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
            all.push(line);
        }
        all
    })
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

impl GoProcess {
    /// Starts the Go peer; as server, waits for its `LISTENING` line. `Err` is the program's
    /// final outcome if it could not start or ended early (e.g. exit 2: unsupported).
    pub async fn spawn(
        bin: &Path,
        proto: GoProto,
        role: Role,
        addr: &str,
        scenario: Scenario,
    ) -> Result<GoProcess, Outcome> {
        let what = format!("{proto} {role} ({})", scenario.name());
        let args = [
            "-proto",
            proto.arg(),
            "-role",
            role.as_str(),
            "-addr",
            addr,
            "-scenario",
            scenario.name(),
        ];
        GoProcess::start(bin, &args, what, role == Role::Server).await
    }

    /// Starts the Go peer's echo-server mode on 127.0.0.1 (any port): every TCP connection
    /// becomes a `proto` session whose inbound streams are echoed until EOF, then closed. It
    /// exits 0 by itself after `lifetime` (whole seconds, at least 1); dropping the handle
    /// kills it earlier. See crates/polymux-testkit/go/README.md.
    pub async fn echo_server(
        bin: &Path,
        proto: GoProto,
        lifetime: Duration,
    ) -> Result<GoProcess, Outcome> {
        let lifetime = format!("{}s", lifetime.as_secs().max(1));
        let args = [
            "-proto",
            proto.arg(),
            "-scenario",
            "echo-server",
            "-addr",
            "127.0.0.1:0",
            "-for",
            &lifetime,
        ];
        GoProcess::start(bin, &args, format!("{proto} echo-server"), true).await
    }

    async fn start(
        bin: &Path,
        args: &[&str],
        what: String,
        listens: bool,
    ) -> Result<GoProcess, Outcome> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Outcome::Failed(format!("cannot start {}: {e}", bin.display())))?;
        let (tx, rx) = oneshot::channel();
        let stdout = collect_lines(child.stdout.take().expect("piped"), Some(tx));
        let stderr = collect_lines(child.stderr.take().expect("piped"), None);
        let mut p = GoProcess {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            listening: None,
            what,
        };
        if listens {
            let addr = match tokio::time::timeout(LISTEN_TIMEOUT, rx).await {
                Ok(Ok(addr)) => addr,
                // Stdout closed without LISTENING: the program is ending; take its verdict.
                Ok(Err(_)) => return Err(p.outcome().await),
                Err(_) => {
                    let out = p.finish_output().await;
                    return Err(Outcome::Failed(format!(
                        "{} printed no LISTENING line within {} s: {out}",
                        p.what,
                        LISTEN_TIMEOUT.as_secs()
                    )));
                }
            };
            p.listening = Some(addr.parse().map_err(|e| {
                Outcome::Failed(format!("{}: bad LISTENING address {addr:?}: {e}", p.what))
            })?);
        }
        Ok(p)
    }

    /// The server's listening address.
    pub fn listening(&self) -> Option<SocketAddr> {
        self.listening
    }

    /// Kills the process (if still running) and returns everything it printed, as (stdout,
    /// stderr) lines.
    pub async fn kill(mut self) -> (Vec<String>, Vec<String>) {
        let _ = self.child.kill().await;
        self.output().await
    }

    /// Kills the process (if running) and returns the tail of its output.
    async fn finish_output(&mut self) -> String {
        let _ = self.child.kill().await;
        let (out, err) = self.output().await;
        format!("stdout: {} / stderr: {}", tail(&out, 5), tail(&err, 5))
    }

    /// The lines collected so far (complete once the process has exited).
    async fn output(&mut self) -> (Vec<String>, Vec<String>) {
        async fn join(h: Option<JoinHandle<Vec<String>>>) -> Vec<String> {
            match h {
                Some(h) => match tokio::time::timeout(Duration::from_secs(2), h).await {
                    Ok(Ok(lines)) => lines,
                    _ => Vec::new(),
                },
                None => Vec::new(),
            }
        }
        (
            join(self.stdout.take()).await,
            join(self.stderr.take()).await,
        )
    }

    /// Waits (bounded) for the process to exit and turns its verdict into an [`Outcome`].
    pub async fn outcome(mut self) -> Outcome {
        let status = match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Outcome::Failed(format!("{}: wait failed: {e}", self.what)),
            Err(_) => {
                let out = self.finish_output().await;
                return Outcome::Failed(format!(
                    "{} did not exit within {} s (killed): {out}",
                    self.what,
                    EXIT_TIMEOUT.as_secs()
                ));
            }
        };
        let (out, err) = self.output().await;
        let verdict = out
            .iter()
            .rev()
            .find(|l| l.trim() == "OK" || l.starts_with("FAIL"))
            .map(|l| l.trim().to_string());
        let reason = || {
            verdict
                .as_deref()
                .and_then(|v| v.strip_prefix("FAIL:"))
                .map(|r| r.trim().to_string())
                .unwrap_or_else(|| format!("stdout: {} / stderr: {}", tail(&out, 5), tail(&err, 5)))
        };
        match status.code() {
            Some(0) if verdict.as_deref() == Some("OK") => Outcome::Ok,
            Some(0) => Outcome::Failed(format!("exited 0 without printing OK: {}", reason())),
            Some(1) => Outcome::Failed(reason()),
            Some(2) => {
                let why = reason();
                Outcome::Unsupported(
                    why.strip_prefix("unsupported:")
                        .unwrap_or(&why)
                        .trim()
                        .into(),
                )
            }
            _ => Outcome::Failed(format!(
                "exited with {status}: {} / stderr: {}",
                reason(),
                tail(&err, 5)
            )),
        }
    }
}
