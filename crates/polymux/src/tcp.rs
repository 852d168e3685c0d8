//! Socket settings that keep a multiplexed TCP connection responsive under load.
//!
//! A session sends every stream over one socket, so whatever waits in the kernel's send
//! buffer delays every stream's next frame: on a 100 Mbit/s path the kernel grows that buffer
//! to megabytes, hundreds of milliseconds ahead of a small reply. [`tune`] limits the bytes
//! the kernel holds *unsent* (`TCP_NOTSENT_LOWAT`, Linux and Android), so the backlog stays in
//! the session, where streams are served round-robin and control frames go first, and it turns
//! off Nagle's delay (frames are already batched into large writes).

use std::io;

/// Unsent bytes the kernel may hold for a tuned socket: enough to keep a fast link busy
/// between two writes, little enough that a small frame queued behind them waits about a
/// millisecond at 1 Gbit/s and ten at 100 Mbit/s.
pub const NOTSENT_LOWAT: u32 = 128 * 1024;

/// Applies the settings above to a connected TCP socket (any type that exposes its file
/// descriptor: std's, tokio's, async-std's or smol's `TcpStream`).
///
/// ```no_run
/// # fn demo() -> std::io::Result<()> {
/// let tcp = std::net::TcpStream::connect("127.0.0.1:4000")?;
/// polymux::tcp::tune(&tcp)?;
/// # Ok(()) }
/// ```
#[cfg(unix)]
pub fn tune<S: std::os::fd::AsFd>(socket: &S) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    socket.set_tcp_nodelay(true)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    socket.set_tcp_notsent_lowat(NOTSENT_LOWAT)?;
    Ok(())
}
