//! Builds the Go bench peer (`go/src/polymux-bench-go`) in GOPATH mode against the Debian Go
//! packages, offline, like `interop/go/build.sh` does for the interop peer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GOCODE: &str = "/usr/share/gocode";
const BUILD_LIMIT: Duration = Duration::from_secs(300);
pub const INSTALL_HINT: &str =
    "apt-get install golang-go golang-github-hashicorp-yamux-dev golang-github-xtaci-smux-dev";

/// The GOPATH root holding `src/polymux-bench-go`.
fn go_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("go")
}

/// Builds the Go peer into `out_dir` and returns the binary, or why it cannot be built.
pub fn build(out_dir: &Path) -> Result<PathBuf, String> {
    let version = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(version, Ok(s) if s.success()) {
        return Err(format!(
            "Go is not installed (no working `go` in PATH): {INSTALL_HINT}"
        ));
    }
    for lib in ["github.com/hashicorp/yamux", "github.com/xtaci/smux"] {
        let dir = Path::new(GOCODE).join("src").join(lib);
        if !dir.join("session.go").is_file() {
            return Err(format!(
                "the Go library {lib} is not installed in {}: {INSTALL_HINT}",
                dir.display()
            ));
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|e| format!("create {}: {e}", out_dir.display()))?;
    let root = go_root();
    let bin = out_dir.join("polymux-bench-go");
    let mut child = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(root.join("src/polymux-bench-go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:{GOCODE}", root.display()))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("GOSUMDB", "off")
        .env("GOTOOLCHAIN", "local")
        .env("GOENV", "off")
        .env("CGO_ENABLED", "0")
        .env("GOCACHE", out_dir.join("go-build-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn go build: {e}"))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(bin),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read as _;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("go build failed ({status}): {}", err.trim()));
            }
            Ok(None) if start.elapsed() > BUILD_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("go build took longer than {BUILD_LIMIT:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("wait for go build: {e}")),
        }
    }
}
