//! The config file's tests: parsing, validation errors with file, line and key, and the
//! merge of file and flags.

use super::*;
use crate::error::{exit_code, EXIT_CONFIG};
use crate::noise::{ClientNoiseArgs, ServerNoiseArgs};
use crate::tls::{ClientTlsArgs, ServerTlsArgs};

fn err(text: &str, side: Side) -> String {
    let e = parse(text, Path::new("/etc/polymux/s.toml"), side).expect_err("invalid");
    assert_eq!(exit_code(&e), EXIT_CONFIG);
    format!("{e:#}")
}

#[test]
fn a_two_service_server_file_parses() {
    let text = r#"
listen = "127.0.0.1:7000"
token = "default-token-0123456789"
max_clients = 4
wait_for_client = "2s"

[services.web]
bind = "127.0.0.1:8080"
token = "web-token-0123456789abc"
max_connections = 10

[services.api]
bind = "127.0.0.1:8081"
"#;
    let f = parse(text, Path::new("s.toml"), Side::TunnelServer).expect("valid");
    assert_eq!(f.listen.as_deref(), Some("127.0.0.1:7000"));
    assert_eq!(f.max_clients, Some(4));
    assert_eq!(f.wait, Some(Duration::from_secs(2)));
    let names: Vec<&str> = f.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    assert!(f.services[0].token.is_none());
    assert_eq!(f.services[1].max_connections, Some(10));
    assert!(f.services[1].token.is_some());
}

#[test]
fn errors_name_the_file_line_and_key() {
    let e = err(
        "listen = \"127.0.0.1:7000\"\n[services.web]\nbind = \"nope\"\n",
        Side::TunnelServer,
    );
    assert!(
        e.contains("/etc/polymux/s.toml") && e.contains("line 3"),
        "{e}"
    );
    assert!(e.contains("bind") && e.contains("HOST:PORT"), "{e}");

    let e = err(
        "listen = \"127.0.0.1:7000\"\n\n[services.web]\ntarget = \"127.0.0.1:1\"\n",
        Side::TunnelServer,
    );
    assert!(e.contains("s.toml:4: services.web.target"), "{e}");

    let e = err("server = \"127.0.0.1:7000\"\n", Side::TunnelServer);
    assert!(e.contains("s.toml:1: server: is for clients"), "{e}");

    let e = err(
        "[services.web]\nbind = \"127.0.0.1:1\"\nmax_connections = 0\n",
        Side::TunnelServer,
    );
    assert!(
        e.contains("s.toml:3: services.web.max_connections: must be at least 1"),
        "{e}"
    );

    let e = err(
        "[services.web]\nbind = \"127.0.0.1:1\"\ntokn = \"x\"\n",
        Side::TunnelServer,
    );
    assert!(e.contains("line 3") && e.contains("tokn"), "{e}");

    let e = err(
        "[services.\"bad name\"]\ntarget = \"127.0.0.1:1\"\n",
        Side::TunnelClient,
    );
    assert!(e.contains("line 1") && e.contains("bad name"), "{e}");

    let e = err(
        "[services.web]\ntarget = \"127.0.0.1:1\"\ntoken = \"\"\n",
        Side::TunnelClient,
    );
    assert!(
        e.contains("s.toml:3: services.web.token") && e.contains("empty"),
        "{e}"
    );

    let e = err(
        "[services.a]\nbind = \"127.0.0.1:5\"\n[services.b]\nbind = \"127.0.0.1:5\"\n",
        Side::ForwardClient,
    );
    assert!(
        e.contains("s.toml:4: services.b.bind") && e.contains("service a"),
        "{e}"
    );

    let e = err("[services.web]\n", Side::ForwardServer);
    assert!(e.contains("s.toml:1: services.web: needs `target"), "{e}");
}

#[test]
fn flags_replace_file_services_by_name() {
    let file = parse(
        "[services.web]\nbind = \"127.0.0.1:1\"\ntoken = \"web-token-0123456789\"\n[services.api]\nbind = \"127.0.0.1:2\"\n",
        Path::new("s.toml"),
        Side::TunnelServer,
    )
    .expect("valid");
    let flags: Vec<ServiceSpec> = vec!["web=127.0.0.1:9".parse().expect("spec")];
    let merged = effective_services(Some(&file), &flags, true);
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[1].addr, "127.0.0.1:9");
    assert!(
        merged[1].token.is_none(),
        "a flag service uses the default token"
    );
}

#[test]
fn every_service_needs_a_token_unless_insecure() {
    let service = ServiceConfig {
        name: "web".into(),
        addr: "127.0.0.1:1".into(),
        token: None,
        max_connections: None,
    };
    let e = token_table(None, std::slice::from_ref(&service), false).expect_err("no token");
    assert!(
        format!("{e:#}").contains("service web has no token"),
        "{e:#}"
    );
    let table = token_table(None, std::slice::from_ref(&service), true).expect("insecure");
    assert!(table.open);
    let default = Token::from_secret("default-token-0123456789", "t").expect("token");
    let table = token_table(Some(&default), &[service], true).expect("valid");
    assert_eq!(
        table.services.get("web"),
        Some(&None),
        "uses the default token"
    );
}

#[test]
fn noise_and_udp_keys_parse_on_their_sides() {
    let pin = "9c".repeat(32);
    let f = parse(
        "noise_key = \"k/server.key\"\nudp_idle_timeout = \"5s\"\nudp_queue = 8\n\
         [services.dns]\nbind = \"udp://127.0.0.1:5353\"\n",
        Path::new("/etc/polymux/s.toml"),
        Side::TunnelServer,
    )
    .expect("valid");
    assert_eq!(
        f.noise_key.as_deref(),
        Some(Path::new("/etc/polymux/k/server.key")),
        "relative to the file"
    );
    assert_eq!(f.udp_idle_timeout, Some(Duration::from_secs(5)));
    assert_eq!(f.udp_queue, Some(8));
    assert_eq!(f.services[0].addr, "udp://127.0.0.1:5353");
    let f = parse(
        &format!("noise_pin = \"{pin}\"\n[services.dns]\ntarget = \"udp://127.0.0.1:53\"\n"),
        Path::new("c.toml"),
        Side::TunnelClient,
    )
    .expect("valid");
    assert_eq!(f.noise_pin, Some(pin.clone()));

    let e = err(&format!("noise_pin = \"{pin}\"\n"), Side::TunnelServer);
    assert!(e.contains("s.toml:1: noise_pin: is for clients"), "{e}");
    let e = err("noise_key = \"k\"\n", Side::ForwardClient);
    assert!(e.contains("s.toml:1: noise_key: is for servers"), "{e}");
    let e = err("noise_pin = \"abc\"\n", Side::TunnelClient);
    assert!(
        e.contains("s.toml:1: noise_pin") && e.contains("64 hex"),
        "{e}"
    );
    let e = err(
        "noise_key = \"k\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n",
        Side::ForwardServer,
    );
    assert!(e.contains("s.toml:1: noise_key: give either [tls]"), "{e}");
    let e = err("udp_queue = 4\n", Side::ForwardClient);
    assert!(
        e.contains("s.toml:1: udp_queue: is for the tunnel server only"),
        "{e}"
    );
    let e = err("udp_queue = 0\n", Side::TunnelServer);
    assert!(e.contains("udp_queue: must be at least 1"), "{e}");
    let e = err(
        "[services.dns]\nbind = \"udp://127.0.0.1:53\"\n",
        Side::ForwardClient,
    );
    assert!(
        e.contains(
            "s.toml:2: services.dns.bind: UDP services are carried by `polymux tunnel` only"
        ),
        "{e}"
    );
}

#[test]
fn a_security_flag_replaces_the_files_tls_and_noise() {
    let file = FileConfig {
        tls_cert: Some(("c.pem".into(), "k.pem".into())),
        noise_pin: Some("ab".repeat(32)),
        ..FileConfig::default()
    };
    let (tls, noise) = server_security(
        &ServerTlsArgs::default(),
        &ServerNoiseArgs::default(),
        &file,
    );
    assert_eq!(tls.tls_cert.as_deref(), Some(Path::new("c.pem")));
    assert!(noise.noise_key.is_none());
    let flag = ServerNoiseArgs {
        noise_key: Some("n.key".into()),
    };
    let (tls, noise) = server_security(&ServerTlsArgs::default(), &flag, &file);
    assert!(
        tls.tls_cert.is_none(),
        "the flag's Noise replaces the file's TLS"
    );
    assert_eq!(noise.noise_key.as_deref(), Some(Path::new("n.key")));

    let (tls, noise) = client_security(
        &ClientTlsArgs::default(),
        &ClientNoiseArgs::default(),
        &file,
    );
    assert!(!tls.tls && tls.tls_pin.is_none());
    assert_eq!(noise.noise_pin, file.noise_pin);
    let flag = ClientTlsArgs {
        tls: true,
        ..ClientTlsArgs::default()
    };
    let (tls, noise) = client_security(&flag, &ClientNoiseArgs::default(), &file);
    assert!(
        tls.tls && noise.noise_pin.is_none(),
        "the flag's TLS replaces the file's Noise"
    );
}
