//! tokio convenience: sessions over tokio I/O, with the driver spawned on the current runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let tcp = tokio::net::TcpStream::connect("127.0.0.1:4000").await?;
//! let (session, driver) = polymux::tokio::client(tcp, polymux::Config::yamux());
//! let mut stream = session.open().await?;
//! stream.write_all(b"ping").await?;
//! stream.shutdown().await?;
//! let mut reply = Vec::new();
//! stream.read_to_end(&mut reply).await?;
//! session.close().await;
//! driver.await??;
//! # Ok(()) }
//! ```

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::{Config, Driver, Error, Role, Session, TokioIo};

/// The driver type for a tokio transport.
pub type TokioDriver<T> = Driver<TokioIo<T>>;

/// A client session on tokio I/O; the driver is spawned with `tokio::spawn`.
pub fn client<T>(io: T, config: Config) -> (Session, JoinHandle<Result<(), Error>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    spawn(io, config, Role::Client)
}

/// A server session on tokio I/O; the driver is spawned with `tokio::spawn`.
pub fn server<T>(io: T, config: Config) -> (Session, JoinHandle<Result<(), Error>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    spawn(io, config, Role::Server)
}

/// A session on tokio I/O whose driver the caller runs.
pub fn session<T>(io: T, config: Config, role: Role) -> (Session, TokioDriver<T>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Session::new(TokioIo(io), config, role)
}

fn spawn<T>(io: T, config: Config, role: Role) -> (Session, JoinHandle<Result<(), Error>>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (session, driver) = session(io, config, role);
    (session, tokio::spawn(driver))
}
