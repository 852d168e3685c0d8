//! `NAME=ADDR` service specs (`--expose`, `--target`, `--listen` of the forward client) and
//! the name → target lookup on the side that dials targets.
//!
//! A spec without a name is the `default` service on the listening side; on the dialling side
//! an unnamed target is a catch-all for every service without its own target.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use crate::auth::{Expectation, Grants};
use crate::error::config_error;
use crate::metrics::Metrics;

/// The service name of an unnamed listening spec.
pub const DEFAULT_SERVICE: &str = "default";
/// The longest service name (it travels in a one-byte length).
pub const MAX_NAME_LEN: usize = 64;

/// `[NAME=]HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The name, if given.
    pub name: Option<String>,
    /// `HOST:PORT`.
    pub addr: String,
}

impl ServiceSpec {
    /// The name used on the wire for a listening spec.
    pub fn wire_name(&self) -> &str {
        self.name.as_deref().unwrap_or(DEFAULT_SERVICE)
    }
}

/// Whether `name` is a valid service name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl FromStr for ServiceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, addr) = match s.split_once('=') {
            Some((name, addr)) => {
                if !valid_name(name) {
                    return Err(format!(
                        "service name {name:?} must be 1-{MAX_NAME_LEN} letters, digits, '.', '_' or '-'"
                    ));
                }
                (Some(name.to_owned()), addr)
            }
            None => (None, s),
        };
        let valid_port = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid_port {
            return Err(format!(
                "{addr:?} is not HOST:PORT (e.g. 127.0.0.1:8080 or web=127.0.0.1:8080)"
            ));
        }
        Ok(ServiceSpec {
            name,
            addr: addr.to_owned(),
        })
    }
}

/// Parses a listening spec (`--expose`, the forward client's `--listen`): a [`ServiceSpec`]
/// whose host is an address of this machine. A host that does not resolve is a usage error
/// here (exit 2), with the likely slip named: `web:8080` where `web=0.0.0.0:8080` was meant.
pub fn parse_listen_spec(s: &str) -> Result<ServiceSpec, String> {
    let spec: ServiceSpec = s.parse()?;
    // `udp://HOST:PORT` (a tunnel server's UDP service) resolves like HOST:PORT.
    let addr = crate::udp::udp_target(&spec.addr).unwrap_or(&spec.addr);
    check_listen_host(addr, spec.name.is_none())?;
    Ok(spec)
}

/// Parses a server's `--listen HOST:PORT`, resolved like [`parse_listen_spec`].
pub fn parse_listen_addr(s: &str) -> Result<String, String> {
    let valid = s
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !valid {
        return Err(format!("{s:?} is not HOST:PORT (e.g. 0.0.0.0:7000)"));
    }
    check_listen_host(s, false)?;
    Ok(s.to_owned())
}

/// Checks that `addr` (HOST:PORT) resolves; IP literals and `localhost` need no lookup.
fn check_listen_host(addr: &str, may_be_a_name: bool) -> Result<(), String> {
    use std::net::{SocketAddr, ToSocketAddrs};
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    // Blocking resolution is fine here: it runs once, while the command line is parsed.
    if addr
        .to_socket_addrs()
        .is_ok_and(|mut addrs| addrs.next().is_some())
    {
        return Ok(());
    }
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let mut message = format!(
        "cannot resolve {host:?} in {addr:?}: listen on an address of this machine (e.g. \
         0.0.0.0:PORT or 127.0.0.1:PORT)"
    );
    if may_be_a_name && valid_name(host) {
        let port = addr.rsplit_once(':').map_or("PORT", |(_, port)| port);
        message.push_str(&format!(
            "; to name a service write NAME=ADDR, e.g. {host}=0.0.0.0:{port}"
        ));
    }
    Err(message)
}

/// Checks that listening specs have distinct names.
pub fn check_unique(specs: &[ServiceSpec], flag: &str) -> anyhow::Result<()> {
    let mut seen = HashMap::new();
    for spec in specs {
        if let Some(previous) = seen.insert(spec.wire_name(), &spec.addr) {
            return Err(config_error(format!(
                "{flag}: service {:?} is given twice ({previous} and {}); name them NAME=ADDR",
                spec.wire_name(),
                spec.addr
            )));
        }
    }
    Ok(())
}

/// Where the dialling side connects each service. Clones share the map, which a reload
/// replaces ([`Targets::replace`]); streams already relaying keep their target.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    map: Arc<RwLock<TargetMap>>,
    metrics: Metrics,
    /// On a server: what the session's client proved, checked per stream.
    auth: Option<(Arc<Grants>, Expectation)>,
}

#[derive(Clone, Debug, Default)]
struct TargetMap {
    named: HashMap<String, String>,
    catch_all: Option<String>,
}

impl Targets {
    /// Builds the map from `--target` specs.
    pub fn new(specs: &[ServiceSpec], flag: &str) -> anyhow::Result<Targets> {
        let mut targets = TargetMap::default();
        for spec in specs {
            match &spec.name {
                Some(name) => {
                    if targets
                        .named
                        .insert(name.clone(), spec.addr.clone())
                        .is_some()
                    {
                        return Err(config_error(format!(
                            "{flag}: service {name:?} is given twice"
                        )));
                    }
                }
                None => {
                    if targets.catch_all.replace(spec.addr.clone()).is_some() {
                        return Err(config_error(format!(
                            "{flag}: only one target may be unnamed; name the others NAME=ADDR"
                        )));
                    }
                }
            }
        }
        Ok(Targets {
            map: Arc::new(RwLock::new(targets)),
            ..Targets::default()
        })
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, TargetMap> {
        self.map
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every clone of `self` use `other`'s targets from now on (a reload).
    pub fn replace(&self, other: &Targets) {
        let new = other.map().clone();
        *self
            .map
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = new;
    }

    /// Counts per-service numbers into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Targets {
        self.metrics = metrics;
        self
    }

    /// The metrics to count into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A view for one session of a server: streams may use only the services whose token
    /// the client proved (checked against the tokens in force when the stream arrives).
    pub fn for_session(&self, grants: Arc<Grants>, expect: Expectation) -> Targets {
        Targets {
            auth: Some((grants, expect)),
            ..self.clone()
        }
    }

    /// Whether streams of `service` may be served (always, on a client).
    pub fn authorised(&self, service: &str) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|(grants, expect)| grants.allows(&expect.tokens(), service))
    }

    /// The target for `service`.
    pub fn lookup(&self, service: &str) -> Option<String> {
        let map = self.map();
        map.named.get(service).or(map.catch_all.as_ref()).cloned()
    }

    /// The configured service names, for messages.
    pub fn describe(&self) -> String {
        let map = self.map();
        let mut names: Vec<&str> = map.named.keys().map(String::as_str).collect();
        names.sort_unstable();
        if map.catch_all.is_some() {
            names.push("(any other)");
        }
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let s: ServiceSpec = "web=127.0.0.1:80".parse().expect("named");
        assert_eq!(s.name.as_deref(), Some("web"));
        assert_eq!(s.addr, "127.0.0.1:80");
        let s: ServiceSpec = "[::1]:7000".parse().expect("v6");
        assert_eq!((s.name.as_deref(), s.wire_name()), (None, DEFAULT_SERVICE));
        assert!("web=nope".parse::<ServiceSpec>().is_err());
        assert!("bad name=1.2.3.4:5".parse::<ServiceSpec>().is_err());
        assert!(":80".parse::<ServiceSpec>().is_err());
    }

    #[test]
    fn listen_specs_must_resolve() {
        assert!(parse_listen_spec("web=127.0.0.1:8080").is_ok());
        assert!(parse_listen_spec("[::1]:0").is_ok());
        assert!(parse_listen_spec("localhost:0").is_ok());
        let err = parse_listen_spec("no-such-host.invalid:8080").expect_err("unresolvable");
        assert!(err.contains("no-such-host.invalid=0.0.0.0:8080"), "{err}");
        assert!(parse_listen_addr("127.0.0.1:7000").is_ok());
        assert!(parse_listen_addr("7000").is_err());
        // A UDP service resolves its HOST:PORT.
        let udp = parse_listen_spec("dns=udp://127.0.0.1:5353").expect("udp spec");
        assert_eq!(udp.addr, "udp://127.0.0.1:5353");
        assert!(parse_listen_spec("dns=udp://no-such-host.invalid:53").is_err());
    }

    #[test]
    fn lookup_prefers_names_then_catch_all() {
        let specs = ["web=127.0.0.1:1", "127.0.0.1:2"].map(|s| s.parse().expect("valid"));
        let t = Targets::new(&specs, "--target").expect("valid");
        assert_eq!(t.lookup("web").as_deref(), Some("127.0.0.1:1"));
        assert_eq!(t.lookup("db").as_deref(), Some("127.0.0.1:2"));
        let only_named = Targets::new(&specs[..1], "--target").expect("valid");
        assert_eq!(only_named.lookup("db"), None);
        let view = t.clone();
        t.replace(&only_named);
        assert_eq!(view.lookup("db"), None, "clones see a reload");
        let dup = ["a=1.1.1.1:1", "a=1.1.1.1:2"].map(|s| s.parse().expect("valid"));
        assert!(check_unique(&dup, "--expose").is_err());
    }
}
