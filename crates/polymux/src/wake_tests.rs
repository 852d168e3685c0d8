//! Wake-up counts of a round trip, pinned with counting wakers (issue 10 item 4: the rpc and
//! open-rate latency). Two sessions over an in-memory pipe, every future polled by hand on
//! one thread, so the counts are exact and the test deterministic.
//!
//! Rules checked: a task the driver's input made ready is woken only after the driver has
//! released the engine's lock (woken earlier, on another worker thread it would only wake up
//! to sleep on that lock); the driver never wakes itself while it hands over input (that
//! would reschedule it for nothing); a request/response round trip wakes each side's
//! driver once (the reply's arrival) and each reader once; and when input woke tasks of the
//! driver's own executor, its next write waits one turn for their replies (the driver's
//! "settling"), and only then.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::io::{AsyncRead, AsyncWrite};
use futures::task::{waker, ArcWake};
use polymux_proto::{Config, Dialect};
use polymux_testkit::pipe::{pipe, Pipe};

use crate::session::Shared;
use crate::{Driver, Session, Stream};

/// A task's waker that counts its wake-ups, and those that came while the engine was locked
/// or while the task itself was being polled.
struct Probe {
    shared: Arc<Shared>,
    woken: AtomicUsize,
    woken_locked: AtomicUsize,
    woken_in_poll: AtomicUsize,
    in_poll: AtomicBool,
}

impl Probe {
    fn new(session: &Session) -> Arc<Probe> {
        Arc::new(Probe {
            shared: session.shared().clone(),
            woken: AtomicUsize::new(0),
            woken_locked: AtomicUsize::new(0),
            woken_in_poll: AtomicUsize::new(0),
            in_poll: AtomicBool::new(false),
        })
    }

    fn woken(&self) -> usize {
        self.woken.load(Ordering::SeqCst)
    }
}

// `futures`' `ArcWake`, not `std::task::Wake`: its wakers keep one vtable through clones, as
// an executor's do (std's clones get another vtable, which would hide "the driver's executor"
// from the driver's comparison of the wakers it stores).
impl ArcWake for Probe {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.woken.fetch_add(1, Ordering::SeqCst);
        if arc_self.shared.engine_locked() {
            arc_self.woken_locked.fetch_add(1, Ordering::SeqCst);
        }
        if arc_self.in_poll.load(Ordering::SeqCst) {
            arc_self.woken_in_poll.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The application task's waker: a type of its own, so that its vtable differs from the
/// driver's.
struct AppWaker(Arc<Probe>);

impl ArcWake for AppWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        ArcWake::wake_by_ref(&arc_self.0);
    }
}

/// One side: its session, driver, and the probes of the driver's task, of the application's
/// task, and of a task of the driver's own executor.
struct Side {
    session: Session,
    driver: Driver<Pipe>,
    driver_probe: Arc<Probe>,
    app_probe: Arc<Probe>,
    task_probe: Arc<Probe>,
}

impl Side {
    fn new(session: Session, driver: Driver<Pipe>) -> Side {
        let driver_probe = Probe::new(&session);
        let app_probe = Probe::new(&session);
        let task_probe = Probe::new(&session);
        Side {
            session,
            driver,
            driver_probe,
            app_probe,
            task_probe,
        }
    }

    /// Polls the driver until it waits (it never finishes here).
    fn run_driver(&mut self) {
        let waker = waker(self.driver_probe.clone());
        let mut cx = Context::from_waker(&waker);
        self.driver_probe.in_poll.store(true, Ordering::SeqCst);
        let polled = Pin::new(&mut self.driver).poll(&mut cx);
        self.driver_probe.in_poll.store(false, Ordering::SeqCst);
        assert!(polled.is_pending(), "the driver finished: {polled:?}");
    }

    /// Polls `f` once as the application's task, whose waker is of another kind than the
    /// driver's (as a thread blocked on the application's future is): `inline_read.rs` has
    /// the transport wake such a reader itself.
    fn poll_app<T>(&self, f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        let waker = waker(Arc::new(AppWaker(self.app_probe.clone())));
        let mut cx = Context::from_waker(&waker);
        f(&mut cx)
    }

    /// [`poll_task`](Self::poll_task) or [`poll_app`](Self::poll_app).
    fn poll_as<T>(
        &self,
        own_executor: bool,
        f: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if own_executor {
            self.poll_task(f)
        } else {
            self.poll_app(f)
        }
    }

    /// Polls `f` once as a task of the driver's own executor: its waker has the driver's
    /// vtable.
    fn poll_task<T>(&self, f: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        let waker = waker(self.task_probe.clone());
        let mut cx = Context::from_waker(&waker);
        f(&mut cx)
    }
}

fn pair(dialect: Dialect) -> (Side, Side) {
    let (a, b) = pipe(1 << 20);
    let (client, cd) = Session::client(a, Config::for_dialect(dialect));
    let (server, sd) = Session::server(b, Config::for_dialect(dialect));
    (Side::new(client, cd), Side::new(server, sd))
}

#[track_caller]
fn ready<T>(polled: Poll<T>, what: &str) -> T {
    match polled {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("{what}: pending"),
    }
}

/// Opens a stream from `client` and accepts it on `server`, running both drivers.
fn open(client: &mut Side, server: &mut Side) -> (Stream, Stream) {
    let (opener, acceptor) = (client.session.clone(), server.session.clone());
    let mut opening = Box::pin(async move { opener.open().await });
    let mut accepting = Box::pin(async move { acceptor.accept().await });
    let (mut opened, mut accepted) = (None, None);
    for _ in 0..10 {
        if opened.is_none() {
            if let Poll::Ready(s) = client.poll_app(|cx| opening.as_mut().poll(cx)) {
                opened = Some(s.expect("open"));
            }
        }
        if accepted.is_none() {
            if let Poll::Ready(s) = server.poll_app(|cx| accepting.as_mut().poll(cx)) {
                accepted = Some(s.expect("accept"));
            }
        }
        if let (Some(_), Some(_)) = (&opened, &accepted) {
            return (opened.expect("opened"), accepted.expect("accepted"));
        }
        client.run_driver();
        server.run_driver();
    }
    panic!("the open did not complete");
}

#[track_caller]
fn write(side: &Side, stream: &mut Stream, buf: &[u8]) {
    let n = ready(
        side.poll_app(|cx| Pin::new(&mut *stream).poll_write(cx, buf)),
        "write",
    )
    .expect("write");
    assert_eq!(n, buf.len(), "a small write goes whole");
}

#[track_caller]
fn read_pending(side: &Side, stream: &mut Stream) {
    let mut buf = [0u8; 256];
    let polled = side.poll_app(|cx| Pin::new(&mut *stream).poll_read(cx, &mut buf));
    assert!(polled.is_pending(), "nothing to read yet: {polled:?}");
}

#[track_caller]
fn read(side: &Side, stream: &mut Stream, len: usize) {
    let mut buf = [0u8; 256];
    let n = ready(
        side.poll_app(|cx| Pin::new(&mut *stream).poll_read(cx, &mut buf)),
        "read",
    )
    .expect("read");
    assert_eq!(n, len);
}

const DIALECTS: [Dialect; 4] = [
    Dialect::Yamux,
    Dialect::SmuxV1,
    Dialect::SmuxV2,
    Dialect::NetMux,
];

/// Both sides of one open stream, settled: whatever the open left queued (ACKs, window
/// announcements) has gone out, and neither reader has anything to read.
fn settled_stream(dialect: Dialect) -> (Side, Side, Stream, Stream) {
    let (mut client, mut server) = pair(dialect);
    let (mut c, mut s) = open(&mut client, &mut server);
    for _ in 0..4 {
        client.run_driver();
        server.run_driver();
    }
    read_pending(&server, &mut s);
    read_pending(&client, &mut c);
    (client, server, c, s)
}

#[test]
fn a_round_trip_wakes_each_task_once_after_the_engine_is_released() {
    const MSG: [u8; 64] = [0x3C; 64];
    for dialect in DIALECTS {
        let (mut client, mut server, mut c, mut s) = settled_stream(dialect);
        for round in 0..20 {
            let before = [
                client.driver_probe.woken(),
                client.app_probe.woken(),
                server.driver_probe.woken(),
                server.app_probe.woken(),
            ];
            // The request: written by the application's task itself (the output is idle).
            write(&client, &mut c, &MSG);
            client.run_driver();
            server.run_driver();
            read(&server, &mut s, MSG.len());
            read_pending(&server, &mut s);
            // The echo.
            write(&server, &mut s, &MSG);
            server.run_driver();
            client.run_driver();
            read(&client, &mut c, MSG.len());
            read_pending(&client, &mut c);
            let after = [
                client.driver_probe.woken(),
                client.app_probe.woken(),
                server.driver_probe.woken(),
                server.app_probe.woken(),
            ];
            let delta: Vec<usize> = after.iter().zip(before).map(|(a, b)| a - b).collect();
            if round == 0 {
                // Smux v2's first read announces the window (a control frame the driver
                // writes): the steady state starts with the second round trip.
                continue;
            }
            assert_eq!(
                delta,
                [1, 1, 1, 1],
                "{} round {round}: wake-ups of [client driver, client reader, server driver, \
                 server reader]",
                dialect.name()
            );
        }
        for side in [&client, &server] {
            for probe in [&side.driver_probe, &side.app_probe] {
                assert_eq!(
                    probe.woken_locked.load(Ordering::SeqCst),
                    0,
                    "{}",
                    dialect.name()
                );
            }
            assert_eq!(
                side.driver_probe.woken_in_poll.load(Ordering::SeqCst),
                0,
                "{}: the driver woke itself",
                dialect.name()
            );
        }
    }
}

#[test]
fn control_frames_queued_by_input_do_not_wake_the_driver_handling_it() {
    // A ping's answer is queued while the peer's driver hands over input: it writes it in the
    // same poll, without waking (rescheduling) itself.
    let (mut client, mut server) = pair(Dialect::Yamux);
    let pinger = client.session.clone();
    let mut ping = Box::pin(async move { pinger.ping().await });
    assert!(client.poll_app(|cx| ping.as_mut().poll(cx)).is_pending());
    for _ in 0..4 {
        client.run_driver();
        server.run_driver();
    }
    ready(client.poll_app(|cx| ping.as_mut().poll(cx)), "ping").expect("ping answered");
    assert_eq!(server.driver_probe.woken_in_poll.load(Ordering::SeqCst), 0);
    assert_eq!(client.app_probe.woken_locked.load(Ordering::SeqCst), 0);
}

/// A reply already in the transport when its reader looks is read by the reader itself
/// (`inline_read.rs`): no driver has to run for it, no reader is woken for it. A reader that
/// waits for a reply (its stream wrote since it last read) is woken by the transport itself
/// when bytes come, once, and reads them itself; a reader that only receives is left to the
/// driver. The driver is woken for the bytes either way, whether or not the reader still
/// waits.
#[test]
fn a_reader_reads_a_reply_already_in_the_transport_itself() {
    const MSG: [u8; 64] = [0x5A; 64];
    for dialect in DIALECTS {
        let (mut client, mut server, mut c, mut s) = settled_stream(dialect);
        for round in 0..10 {
            let readers = [client.app_probe.woken(), server.app_probe.woken()];
            // Neither driver runs: each reader finds its bytes in the pipe.
            write(&client, &mut c, &MSG);
            read(&server, &mut s, MSG.len());
            write(&server, &mut s, &MSG);
            read(&client, &mut c, MSG.len());
            assert_eq!(
                [client.app_probe.woken(), server.app_probe.woken()],
                readers,
                "{} round {round}: a reader was woken for bytes it read itself",
                dialect.name()
            );
            // The drivers still own the input: they run (finding nothing, or the window
            // announcement smux v2 writes after a first read) and wait again.
            client.run_driver();
            server.run_driver();
        }
        // The server's stream wrote last (the echo): its reader waits for a reply. The next
        // bytes wake it and the driver (which keeps the input watched should the reader have
        // gone), and it reads them itself, no driver running.
        for awaits_reply in [true, false] {
            read_pending(&server, &mut s);
            let drivers = server.driver_probe.woken();
            let readers = server.app_probe.woken();
            write(&client, &mut c, &MSG);
            assert!(
                server.driver_probe.woken() > drivers,
                "{}: the bytes woke the server's driver",
                dialect.name()
            );
            assert_eq!(
                server.app_probe.woken() - readers,
                usize::from(awaits_reply),
                "{}: wake-ups of a reader {} a reply",
                dialect.name(),
                if awaits_reply {
                    "waiting for"
                } else {
                    "not waiting for"
                }
            );
            // Then (having read, it no longer waits for a reply) only the driver is woken.
            if !awaits_reply {
                server.run_driver();
            }
            read(&server, &mut s, MSG.len());
        }
    }
}

/// A writer and a reader of one task (`join`ed, as `Stream::halves` allows) share its waker.
/// When the reader's own read of the transport decodes the window update the writer waits
/// for, the task is woken: that the reader is about to look at its stream does not mean the
/// writer will be polled again.
#[test]
fn a_readers_own_read_wakes_its_tasks_writer_waiting_for_credit() {
    for dialect in [Dialect::Yamux, Dialect::SmuxV2, Dialect::NetMux] {
        let (mut client, mut server, mut c, mut s) = settled_stream(dialect);
        // Spend the stream's credit: the writer waits, its waker the task's.
        let chunk = [7u8; 16 * 1024];
        let mut sent = 0;
        while let Poll::Ready(n) = client.poll_app(|cx| Pin::new(&mut c).poll_write(cx, &chunk)) {
            sent += n.expect("write");
            client.run_driver();
            assert!(sent <= 64 << 20, "{}: credit never ran out", dialect.name());
        }
        server.run_driver();
        // The server's application reads everything: its credit goes back on the wire.
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < sent {
            match server.poll_app(|cx| Pin::new(&mut s).poll_read(cx, &mut buf)) {
                Poll::Ready(n) => got += n.expect("read"),
                Poll::Pending => server.run_driver(),
            }
        }
        server.run_driver();
        // The client's driver does not run: the reader's own read takes the window update.
        let woken = client.app_probe.woken();
        read_pending(&client, &mut c);
        assert!(
            client.app_probe.woken() > woken,
            "{}: the writer waiting for credit was not woken",
            dialect.name()
        );
        let more = client.poll_app(|cx| Pin::new(&mut c).poll_write(cx, &chunk));
        assert!(more.is_ready(), "{}: the credit came back", dialect.name());
    }
}

/// An echo server's input batch: the client's FIN on one stream and a request on another. The
/// tasks it wakes are of the driver's own executor, so the driver's next write waits one turn
/// for them (it wakes itself and returns): the FIN the first task then queues and the reply of
/// the second leave together, the FIN first; with no reply, the driver's next poll writes the
/// FIN. Tasks of another executor run elsewhere anyway: their FIN is written at once.
#[test]
fn replies_to_one_input_from_tasks_of_the_drivers_executor_leave_in_one_write() {
    const MSG: [u8; 16] = [0x42; 16];
    for dialect in DIALECTS {
        for (own_executor, echo) in [(true, true), (true, false), (false, true)] {
            let what = format!(
                "{} ({} executor, {})",
                dialect.name(),
                if own_executor {
                    "the driver's"
                } else {
                    "another"
                },
                if echo { "echo" } else { "no echo" }
            );
            let (mut client, mut server) = pair(dialect);
            let (mut c1, mut s1) = open(&mut client, &mut server);
            let (mut c2, mut s2) = open(&mut client, &mut server);
            for _ in 0..4 {
                client.run_driver();
                server.run_driver();
            }
            let mut buf = [0u8; 64];
            for s in [&mut s1, &mut s2] {
                let polled =
                    server.poll_as(own_executor, |cx| Pin::new(&mut *s).poll_read(cx, &mut buf));
                assert!(polled.is_pending(), "{what}: nothing to read yet");
            }
            // The client closes the first stream and writes a request on the second.
            ready(
                client.poll_app(|cx| Pin::new(&mut c1).poll_close(cx)),
                "close",
            )
            .expect("close");
            write(&client, &mut c2, &MSG);
            client.run_driver();
            server.run_driver();
            read_pending(&client, &mut c1);
            // The first task sees EOF and closes: its FIN is queued.
            let eof = server.poll_as(own_executor, |cx| Pin::new(&mut s1).poll_read(cx, &mut buf));
            assert!(matches!(eof, Poll::Ready(Ok(0))), "{what}: EOF: {eof:?}");
            let closed = server.poll_as(own_executor, |cx| {
                Pin::new(&mut s1).poll_close(cx).map_ok(|()| 0)
            });
            assert!(closed.is_ready(), "{what}: close");
            let self_wakes = server.driver_probe.woken_in_poll.load(Ordering::SeqCst);
            server.run_driver();
            client.run_driver();
            let fin_seen = matches!(
                client.poll_app(|cx| Pin::new(&mut c1).poll_read(cx, &mut buf)),
                Poll::Ready(Ok(0))
            );
            let yielded = server.driver_probe.woken_in_poll.load(Ordering::SeqCst) - self_wakes;
            assert_eq!(
                (fin_seen, yielded),
                (!own_executor, usize::from(own_executor)),
                "{what}: (FIN written at once, driver woke itself to settle)"
            );
            if !echo {
                // Nothing joins the FIN: the driver, polled again after settling, writes it.
                server.run_driver();
                client.run_driver();
                ready(
                    client.poll_app(|cx| Pin::new(&mut c1).poll_read(cx, &mut buf)),
                    "the FIN",
                )
                .expect("EOF");
                continue;
            }
            // The second task echoes the request: its write carries the queued FIN ahead of
            // the reply, both in one direct write (no server driver runs before the client
            // sees them).
            let n = ready(
                server.poll_as(own_executor, |cx| Pin::new(&mut s2).poll_read(cx, &mut buf)),
                "read the request",
            )
            .expect("read");
            assert_eq!(&buf[..n], &MSG, "{what}");
            let echoed = server.poll_as(own_executor, |cx| Pin::new(&mut s2).poll_write(cx, &MSG));
            assert!(matches!(echoed, Poll::Ready(Ok(16))), "{what}: {echoed:?}");
            client.run_driver();
            if own_executor {
                ready(
                    client.poll_app(|cx| Pin::new(&mut c1).poll_read(cx, &mut buf)),
                    "the FIN",
                )
                .expect("EOF");
            }
            read(&client, &mut c2, MSG.len());
        }
    }
}
