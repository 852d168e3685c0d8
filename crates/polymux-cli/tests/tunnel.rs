//! End to end: `polymux tunnel server` + `polymux tunnel client` (the real binary) carrying
//! HTTP-like request/response traffic to local targets, with byte-exact checks.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{http_like_request, http_like_server, Proc, Proxy, TOKEN};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Starts a tunnel server exposing `services` and returns it with the exposed addresses.
async fn tunnel_server(
    protocol: &str,
    services: &[&str],
    extra: &[&str],
) -> (Proc, Vec<std::net::SocketAddr>, std::net::SocketAddr) {
    let mut args = vec![
        "--protocol",
        protocol,
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
    ];
    let specs: Vec<String> = services
        .iter()
        .map(|s| format!("{s}=127.0.0.1:0"))
        .collect();
    for spec in &specs {
        args.extend(["--expose", spec.as_str()]);
    }
    args.extend(extra);
    let server = Proc::spawn("tunnel server", &args, &[("POLYMUX_TOKEN", TOKEN)]);
    let control = server.addr_after("listening on ").await;
    let mut exposed = Vec::new();
    for s in services {
        exposed.push(
            server
                .addr_after(&format!("exposing service {s} on "))
                .await,
        );
    }
    (server, exposed, control)
}

/// The tunnel carries concurrent request/response traffic for two services; midway the
/// tunnel connection is cut (as a network failure would), the client reconnects with
/// back-off, and every request eventually gets its exact response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_like_traffic_survives_a_tunnel_drop() {
    let web = http_like_server("web").await;
    let api = http_like_server("api").await;
    let (server, exposed, control) = tunnel_server("yamux", &["web", "api"], &[]).await;
    let proxy = Proxy::start(control).await;
    let proxy_addr = proxy.addr.to_string();
    let (web_target, api_target) = (format!("web={web}"), format!("api={api}"));
    let client = Proc::spawn(
        "tunnel client",
        &[
            "tunnel",
            "client",
            "--server",
            &proxy_addr,
            "--target",
            &web_target,
            "--target",
            &api_target,
            "--max-backoff",
            "2s",
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    client.wait_for("tunnel up", SECS(20)).await;

    const REQUESTS: u64 = 240;
    const CONCURRENCY: u64 = 16;
    let completed = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..CONCURRENCY {
        let completed = completed.clone();
        let retries = retries.clone();
        let exposed = exposed.clone();
        workers.push(tokio::spawn(async move {
            let mut id = w;
            while id < REQUESTS {
                let (addr, tag) = if id.is_multiple_of(2) {
                    (exposed[0], "web")
                } else {
                    (exposed[1], "api")
                };
                let mut last_error = String::new();
                let mut ok = false;
                for _attempt in 0..8 {
                    match http_like_request(addr, id, tag).await {
                        Ok(()) => {
                            ok = true;
                            break;
                        }
                        Err(e) => {
                            last_error = e;
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                    }
                }
                if !ok {
                    return Err(format!("request {id} failed 8 times; last: {last_error}"));
                }
                completed.fetch_add(1, Ordering::Relaxed);
                id += CONCURRENCY;
            }
            Ok(())
        }));
    }

    // Cut the tunnel once a third of the requests are done.
    let deadline = tokio::time::Instant::now() + SECS(60);
    while completed.load(Ordering::Relaxed) < REQUESTS / 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "traffic did not start; client logs:\n{}",
            client.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.cut();
    let cut_at = completed.load(Ordering::Relaxed);

    for worker in workers {
        let result = tokio::time::timeout(SECS(90), worker)
            .await
            .expect("requests finish within 90 s")
            .expect("worker task");
        if let Err(e) = result {
            panic!(
                "{e}\nclient logs:\n{}\nserver logs:\n{}",
                client.logs(),
                server.logs()
            );
        }
    }
    assert_eq!(completed.load(Ordering::Relaxed), REQUESTS);
    assert!(cut_at < REQUESTS, "the cut happened mid-run");
    assert!(
        retries.load(Ordering::Relaxed) > 0,
        "requests in flight at the cut failed and were retried"
    );
    // The client saw the drop and came back.
    client.wait_for("dropped", SECS(5)).await;
    assert!(
        client.count("tunnel up") >= 2,
        "the client reconnected; logs:\n{}",
        client.logs()
    );
    assert!(
        server.count("connected (session") >= 2,
        "server logs:\n{}",
        server.logs()
    );
    eprintln!(
        "tunnel cut after {cut_at} of {REQUESTS} requests; {} retries",
        retries.load(Ordering::Relaxed)
    );
}

/// The other protocols carry the same traffic (without a drop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_carries_a_tunnel() {
    let web = http_like_server("web").await;
    for protocol in ["smux1", "smux2", "netmux"] {
        let (server, exposed, control) = tunnel_server(protocol, &["web"], &[]).await;
        let (control, target) = (control.to_string(), format!("web={web}"));
        let client = Proc::spawn(
            "tunnel client",
            &[
                "--protocol",
                protocol,
                "tunnel",
                "client",
                "--server",
                &control,
                "--target",
                &target,
            ],
            &[("POLYMUX_TOKEN", TOKEN)],
        );
        client.wait_for("tunnel up", SECS(20)).await;
        let requests: Vec<_> = (0..40u64)
            .map(|id| tokio::spawn(http_like_request(exposed[0], id, "web")))
            .collect();
        for request in requests {
            if let Err(e) = request.await.expect("task") {
                panic!(
                    "{protocol}: {e}\nclient:\n{}\nserver:\n{}",
                    client.logs(),
                    server.logs()
                );
            }
        }
    }
}

/// A service without a target on the client is refused with messages on both sides; an
/// unnamed target catches every service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_services_are_reported_and_catch_all_targets_work() {
    let web = http_like_server("web").await;
    let (server, exposed, control) = tunnel_server("yamux", &["web", "db"], &[]).await;
    let (control_s, target) = (control.to_string(), format!("web={web}"));
    let client = Proc::spawn(
        "tunnel client",
        &[
            "tunnel", "client", "--server", &control_s, "--target", &target,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    client.wait_for("tunnel up", SECS(20)).await;
    http_like_request(exposed[0], 1, "web")
        .await
        .expect("web works");
    // The connection is closed without a response (an empty read or a reset).
    http_like_request(exposed[1], 2, "web")
        .await
        .expect_err("db has no target");
    client
        .wait_for("no target for service \"db\"", SECS(10))
        .await;
    server.wait_for("unknown service", SECS(10)).await;
    drop(client);

    // A catch-all target serves "db" too.
    let catch_all = web.to_string();
    let client = Proc::spawn(
        "tunnel client",
        &[
            "tunnel", "client", "--server", &control_s, "--target", &catch_all,
        ],
        &[("POLYMUX_TOKEN", TOKEN)],
    );
    client.wait_for("tunnel up", SECS(20)).await;
    // The server routes to the newest session; the old one may still be winding down.
    let mut last = Err(String::new());
    for _ in 0..20 {
        last = http_like_request(exposed[1], 3, "web").await;
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last.expect("catch-all target serves db");
}
