//! A reader about to wait reads the transport itself, on the driver's behalf.
//!
//! When a stream has nothing queued, the bytes its task waits for may already be in the
//! transport (a reply that came back while the task was writing). The driver would learn so
//! only at the executor's next pass over its I/O events, then read, decode, and wake the
//! reader: an event-loop pass and a task hand-off per message that an application reading a
//! socket itself does not pay. So the reader first tries one read, as the driver would make
//! it, and decodes what comes.
//!
//! Rules, so that this stays the driver's input and never a second one:
//! - it reads only while the driver waits (its waker is in the engine), the engine wants
//!   input, and the driver's buffers are free (with the transport's lock) and hold no
//!   undecoded bytes;
//! - the transport is polled with the driver's waker, or, when the reader waits for a reply
//!   (its stream wrote since it last read), with an [`InputWaker`], which wakes the reader
//!   *and* the driver: when the reply arrives, the reader is woken by the transport itself and
//!   reads it (the driver's read, decode and wake-up are no longer on the way), while the
//!   driver, woken too, keeps the session's input watched even if the reader's future was
//!   dropped (the transport keeps one read waker). Left to the driver are a reader that only
//!   receives, and one whose waker has the driver's vtable (a task of the same executor,
//!   which runs right after the driver wakes it, on the same worker): woken together, two
//!   tasks would race for the same input, and a multi-threaded executor would wake a second
//!   worker to take one of them. (Equal vtables are a hint, never needed for correctness: a
//!   false "different" only wakes the reader too.)
//! - the end of input or an error it meets is handed to the driver (`Io::read_end`), which is
//!   woken; so is the driver whenever the input left it work (output to write, bytes of a
//!   frame still to come, an earlier deadline).

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use crate::driver::read_size;
use crate::session::Shared;

/// Tries one read of the transport for the driver; if there is nothing to read, the transport
/// will wake the driver, and `reader` (the caller's task, when it waits for a reply) too. The
/// caller looks at its stream again afterwards, having registered no waker for it before (so
/// the tasks woken here are others, or other futures of its own task).
pub(crate) fn read_for_driver(shared: &Shared, reader: Option<&Waker>) {
    let Some(mut io) = shared.try_lock_io() else {
        return;
    };
    let io = &mut *io;
    let (Some(transport), Some(buffers)) = (io.transport.as_mut(), io.rx.as_mut()) else {
        return;
    };
    if !buffers.current.is_empty() || io.read_end.is_some() {
        return;
    }
    let (driver, want, deadline) = {
        let conn = shared.lock();
        let Some(driver) = conn.driver_waker().filter(|_| conn.wants_input()) else {
            return;
        };
        let want = read_size(&conn, 0, true, 0);
        (driver.clone(), want, conn.poll_timeout())
    };
    buffers.reserve(want);
    // See the module doc: a task of the driver's executor is left to the driver.
    let reader = reader.filter(|reader| reader.vtable() != driver.vtable());
    let mut cx = match reader {
        Some(reader) => {
            io.input_waker.set(reader, &driver);
            Context::from_waker(&io.input_waker.waker)
        }
        None => Context::from_waker(&driver),
    };
    let n = match transport.poll_read_into(&mut cx, &mut buffers.current, want) {
        Poll::Pending => return,
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => {
            io.read_end = Some(Err(e));
            shared.lock().wake_driver();
            return;
        }
    };
    let mut conn = shared.lock();
    if n == 0 {
        io.read_end = Some(Ok(()));
        conn.wake_driver();
        return;
    }
    let arrived = Instant::now();
    buffers.last_read = arrived;
    conn.handle_input_deferring(&mut buffers.current, arrived, &mut io.woken);
    let earlier = match (conn.poll_timeout(), deadline) {
        (Some(now), Some(before)) => now < before,
        (now, before) => now.is_some() && before.is_none(),
    };
    // Work left for the driver: output the input caused (window updates, pongs, refusals), a
    // frame not yet complete (it reads the rest), a timer to arm sooner, more input (a full
    // read), or the end of the session. A paused input is resumed by the engine itself.
    let work = conn.has_pending_output() || conn.is_ended() || earlier;
    if work || !buffers.current.is_empty() || n == want {
        conn.wake_driver();
    }
    drop(conn);
    for waker in io.woken.drain(..) {
        waker.wake();
    }
}

/// The waker a reader's read leaves with the transport (one per session, made once): when
/// input arrives it wakes the last reader that registered it, once, and the driver.
pub(crate) struct InputWaker {
    wakers: Arc<InputWakers>,
    waker: Waker,
}

impl Default for InputWaker {
    fn default() -> Self {
        let wakers = Arc::new(InputWakers::default());
        let waker = Waker::from(wakers.clone());
        InputWaker { wakers, waker }
    }
}

impl std::fmt::Debug for InputWaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputWaker").finish_non_exhaustive()
    }
}

impl InputWaker {
    /// The next input wakes `reader` and `driver`.
    fn set(&self, reader: &Waker, driver: &Waker) {
        let mut guard = self
            .wakers
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let wakers = &mut *guard;
        for (slot, waker) in [(&mut wakers.reader, reader), (&mut wakers.driver, driver)] {
            if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *slot = Some(waker.clone());
            }
        }
    }
}

#[derive(Default)]
struct InputWakers {
    wakers: Mutex<ReaderAndDriver>,
}

#[derive(Default)]
struct ReaderAndDriver {
    reader: Option<Waker>,
    driver: Option<Waker>,
}

impl Wake for InputWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let (reader, driver) = {
            let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            (wakers.reader.take(), wakers.driver.clone())
        };
        // The reader first: it is what the reply waits for.
        if let Some(reader) = reader {
            reader.wake();
        }
        if let Some(driver) = driver {
            driver.wake();
        }
    }
}
