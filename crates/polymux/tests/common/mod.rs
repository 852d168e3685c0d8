//! What the smol-based stream tests share: the four dialects' configurations and a session
//! pair over a Unix socket pair with both drivers spawned.

use polymux::{Config, Session};

/// One configuration per dialect.
pub fn dialects() -> [Config; 4] {
    [
        Config::yamux(),
        Config::smux_v1(),
        Config::smux_v2(),
        Config::net_mux(),
    ]
}

/// A client and a server session over a Unix socket pair, drivers spawned on smol.
pub fn pair(config: Config) -> (Session, Session) {
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socket pair");
    let a = smol::Async::new(a).expect("async a");
    let b = smol::Async::new(b).expect("async b");
    let (client, client_driver) = Session::client(a, config.clone());
    let (server, server_driver) = Session::server(b, config);
    smol::spawn(client_driver).detach();
    smol::spawn(server_driver).detach();
    (client, server)
}
