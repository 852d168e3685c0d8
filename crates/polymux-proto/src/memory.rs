//! Receive memory: what a session holds for received-but-unread data, charged against its own
//! [`session_recv_budget`](crate::Config::session_recv_budget) and, optionally, a process-wide
//! [`MemoryBudget`] that many sessions share.
//!
//! Rule implemented (DESIGN §3, "budgets count memory, not payload"): what is charged is the
//! heap a piece of received data keeps alive, not its payload length:
//! - bytes copied into a stream's own chunks are charged the chunks' whole allocations, and
//!   the stream's slot ring its whole capacity (see `recv_queue`);
//! - a zero-copy slice of the caller's input buffer is charged the *whole input buffer* it
//!   keeps alive, once per buffer however many slices share it ([`Pins`]). A slice whose
//!   buffer would not fit the budget is copied out instead. Charging (rather than always
//!   copying) keeps the bulk path zero-copy: large frames fill the driver's buffers with
//!   slices, so a buffer's charge is close to the payload it carries, while a small slice
//!   pinning a large buffer costs the whole buffer. Before input would pause, buffers charged
//!   well beyond their unread slices have those slices copied out and are freed
//!   (`Connection::compact_pins`), so the budget pauses a peer on its payload, not on the
//!   buffers around it.
//!
//! Invariant (kept by [`RecvMemory::try_charge`], the only way `held` grows): `held`, the
//! heap this session keeps for received data, never exceeds `session_recv_budget`; when the
//! next piece does not fit, the session stops reading its transport until memory is freed
//! (back-pressure, never loss). Not charged, and bounded per stream or per session instead:
//! the stream table entry and a drained stream's retained slot ring (`recv_queue`), the pin
//! table (one entry per pinned buffer) and the input buffer the caller is decoding from.
//!
//! Shared budget rule ([`MemoryBudget`]): every session charges what it holds to the shared
//! pool too. A session may always hold its *guaranteed share*, `max(limit / sessions,
//! min_share)`; beyond that it takes memory only while the pool is under its limit. So when the
//! pool is full, the sessions holding more than their share pause and the others go on. The
//! minimum share exists for liveness: a session must be able to hold what its peer may send
//! within one stream's credit, or an application that writes before it reads (an echo) can
//! deadlock — its input paused, the peer's window update stuck behind data in the transport.
//! Hence the pool's use is at most `limit + sessions × guaranteed share` (each session's
//! charge beyond the limit was admitted within its share). A session paused on the pool
//! registers its driver's waker there and is woken when memory is freed anywhere in the pool
//! and the pool drops below its limit (or a session leaves, which raises everyone's share); its
//! own reads wake it directly.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::Waker;

use bytes::BytesMut;

/// The default minimum share of a [`MemoryBudget`]: two 256 KiB stream windows, enough for one
/// stream's credit of data and the receive buffers it may pin.
pub const DEFAULT_MIN_SHARE: usize = 512 * 1024;

/// A memory limit shared by many sessions (e.g. every connection of a server): a cheap,
/// cloneable handle. Set it with [`ConfigBuilder::memory_budget`](crate::ConfigBuilder::memory_budget).
///
/// Each session charges the receive memory it holds to its own
/// [`session_recv_budget`](crate::Config::session_recv_budget) and to this pool. A session may
/// always hold its [`fair_share`](Self::fair_share), `max(limit / sessions, min_share)`; beyond
/// it, only while the pool's use is below the limit. When the pool is full, sessions above
/// their share stop reading their transports (their peers see back-pressure) and resume when
/// memory is freed in the pool. The pool's use therefore stays within `limit + sessions ×
/// fair_share` (bound the number of sessions, e.g. a server's connection limit, to bound it).
/// The minimum share keeps every session live: it should cover one stream window of data and
/// the buffers that data may pin (default [`DEFAULT_MIN_SHARE`], capped at the limit).
/// Accounting is lock-free (atomics); a lock is taken only to park and wake paused sessions.
///
/// Two handles are equal when they are clones of the same pool.
///
/// ```
/// use polymux_proto::{Config, MemoryBudget};
///
/// let pool = MemoryBudget::new(256 << 20);
/// let config = Config::yamux().to_builder().memory_budget(Some(pool.clone())).build().unwrap();
/// assert_eq!(config.memory_budget(), Some(&pool));
/// assert_eq!(pool.in_use(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryBudget {
    pool: Arc<Pool>,
}

struct Pool {
    limit: usize,
    min_share: usize,
    used: AtomicUsize,
    sessions: AtomicUsize,
    next_id: AtomicU64,
    /// Sessions paused on the pool: their drivers' wakers, at most one per session.
    waiters: Mutex<Vec<(u64, Waker)>>,
    /// `waiters.len()`, readable without the lock on the release path.
    waiting: AtomicUsize,
}

impl MemoryBudget {
    /// A pool of `limit` bytes, with the default minimum share.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget::with_min_share(limit, DEFAULT_MIN_SHARE)
    }

    /// A pool of `limit` bytes where every session may hold at least `min_share` (capped at
    /// `limit`) even when the pool is full.
    pub fn with_min_share(limit: usize, min_share: usize) -> MemoryBudget {
        MemoryBudget {
            pool: Arc::new(Pool {
                limit,
                min_share: min_share.min(limit),
                used: AtomicUsize::new(0),
                sessions: AtomicUsize::new(0),
                next_id: AtomicU64::new(0),
                waiters: Mutex::new(Vec::new()),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.pool.limit
    }

    /// What every session may hold even when the pool is full (at most the limit).
    pub fn min_share(&self) -> usize {
        self.pool.min_share
    }

    /// Bytes the sessions sharing this pool hold now.
    pub fn in_use(&self) -> usize {
        self.pool.used.load(SeqCst)
    }

    /// Live sessions sharing this pool.
    pub fn sessions(&self) -> usize {
        self.pool.sessions.load(SeqCst)
    }

    /// What one session may hold even when the pool is full: `limit / sessions`, but at least
    /// the minimum share.
    pub fn fair_share(&self) -> usize {
        (self.pool.limit / self.sessions().max(1)).max(self.pool.min_share)
    }

    fn join(&self) -> u64 {
        self.pool.sessions.fetch_add(1, SeqCst);
        self.pool.next_id.fetch_add(1, SeqCst)
    }

    fn leave(&self, id: u64, held: usize) {
        self.pool.used.fetch_sub(held, SeqCst);
        self.pool.sessions.fetch_sub(1, SeqCst);
        let mut waiters = self.lock();
        waiters.retain(|(w, _)| *w != id);
        self.pool.waiting.store(waiters.len(), SeqCst);
        drop(waiters);
        // Everyone's fair share grew (and memory was freed).
        self.wake_all();
    }

    /// Charges `extra` for a session holding `held`, if the rule admits it.
    fn try_charge(&self, held: usize, extra: usize) -> bool {
        if held + extra <= self.fair_share() {
            self.pool.used.fetch_add(extra, SeqCst);
            return true;
        }
        let mut used = self.pool.used.load(SeqCst);
        loop {
            if used + extra > self.pool.limit {
                return false;
            }
            match self
                .pool
                .used
                .compare_exchange_weak(used, used + extra, SeqCst, SeqCst)
            {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// What a session holding `held` could take now.
    fn room(&self, held: usize) -> usize {
        let pool_room = self.pool.limit.saturating_sub(self.in_use());
        pool_room.max(self.fair_share().saturating_sub(held))
    }

    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.pool.used.fetch_sub(n, SeqCst);
        if self.pool.waiting.load(SeqCst) > 0 && before - n < self.pool.limit {
            self.wake_all();
        }
    }

    /// Parks session `id`'s driver until memory is freed. The caller checks for room again
    /// afterwards, so a release between its check and this call is not missed.
    fn wait(&self, id: u64, waker: &Waker) {
        let mut waiters = self.lock();
        match waiters.iter_mut().find(|(w, _)| *w == id) {
            Some((_, old)) => old.clone_from(waker),
            None => waiters.push((id, waker.clone())),
        }
        self.pool.waiting.store(waiters.len(), SeqCst);
    }

    fn wake_all(&self) {
        let mut waiters = self.lock();
        let woken = std::mem::take(&mut *waiters);
        self.pool.waiting.store(0, SeqCst);
        drop(waiters);
        for (_, w) in woken {
            w.wake();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Waker)>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        self.pool.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PartialEq for MemoryBudget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for MemoryBudget {}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.limit())
            .field("min_share", &self.pool.min_share)
            .field("in_use", &self.in_use())
            .field("sessions", &self.sessions())
            .finish()
    }
}

/// Identifies a pinned input buffer: the address one past its end (`as_ptr() + capacity()`),
/// fixed for the allocation's life and unique among live allocations. For a `BytesMut` that
/// owns its allocation's tail — a `with_capacity` buffer, and what remains of it after
/// `split_to` — that is the allocation's end, as in the async driver; a caller decoding from
/// a view that ends earlier (a `split_to` piece of a larger buffer) is charged that view only.
pub(crate) type PinKey = usize;

/// Input buffers kept alive by zero-copy slices queued in streams, each charged once.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    /// Pinned buffer → (slices queued, bytes charged for it).
    table: HashMap<PinKey, (usize, usize)>,
    /// The charges in `table`, summed.
    charged: usize,
    /// Unread bytes of the queued slices, summed (≤ `charged`: a slice lies in its buffer).
    live: usize,
    /// The input buffer seen last: its key and the lowest address seen in it, so that the
    /// bytes already decoded from its front are charged too when a slice pins it.
    current: (PinKey, usize),
}

impl Pins {
    /// Notes the buffer `rx` that input is decoded from.
    pub(crate) fn observe(&mut self, rx: &BytesMut) {
        let start = rx.as_ptr() as usize;
        let end = start + rx.capacity();
        if self.current.0 == end {
            self.current.1 = self.current.1.min(start);
        } else {
            self.current = (end, start);
        }
    }

    /// The key of a slice of the current buffer, and what pinning it would newly charge.
    pub(crate) fn cost(&self) -> (PinKey, usize) {
        let (key, low) = self.current;
        match self.table.get(&key) {
            Some(_) => (key, 0),
            None => (key, key - low + PIN_OVERHEAD),
        }
    }
}

/// Besides the buffer: the `bytes` crate's shared header and our table entry.
const PIN_OVERHEAD: usize = 64;

/// A session's receive memory account. See the module docs for the invariant.
#[derive(Debug)]
pub(crate) struct RecvMemory {
    budget: usize,
    /// Heap held for received data: stream queues plus pinned buffers (≤ `budget`).
    held: usize,
    pub(crate) pins: Pins,
    shared: Option<(MemoryBudget, u64)>,
}

impl RecvMemory {
    pub(crate) fn new(budget: usize, shared: Option<&MemoryBudget>) -> Self {
        RecvMemory {
            budget,
            held: 0,
            pins: Pins::default(),
            shared: shared.map(|s| (s.clone(), s.join())),
        }
    }

    /// What the sum of grown stream windows may reach: half of what this session can always
    /// hold (its budget, and its minimum share of the pool), the other half being headroom for
    /// the memory overhead of received pieces. A peer's credit must fit in memory the session
    /// can always get, or an application that writes before it reads could deadlock with its
    /// input paused (module docs).
    pub(crate) fn window_budget(&self) -> usize {
        let guaranteed = match &self.shared {
            Some((s, _)) => self.budget.min(s.min_share()),
            None => self.budget,
        };
        guaranteed / 2
    }

    /// Bytes charged now.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// The shared pool's use, if there is one.
    pub(crate) fn shared_in_use(&self) -> Option<usize> {
        self.shared.as_ref().map(|(s, _)| s.in_use())
    }

    /// What could be charged now without exceeding either budget.
    pub(crate) fn room(&self) -> usize {
        let own = self.budget - self.held;
        match &self.shared {
            Some((s, _)) => own.min(s.room(self.held)),
            None => own,
        }
    }

    /// Room in the session's own budget (ignoring the shared pool).
    pub(crate) fn own_room(&self) -> usize {
        self.budget - self.held
    }

    /// Charges `extra` bytes if both budgets admit them. The invariant's guard.
    pub(crate) fn try_charge(&mut self, extra: usize) -> bool {
        if extra == 0 {
            return true; // nothing new is held (e.g. an append into the tail's spare room)
        }
        if extra > self.own_room() {
            return false;
        }
        if let Some((s, _)) = &self.shared {
            if !s.try_charge(self.held, extra) {
                return false;
            }
        }
        self.held += extra;
        true
    }

    /// Returns `n` charged bytes.
    pub(crate) fn release(&mut self, n: usize) {
        self.held -= n;
        if let Some((s, _)) = &self.shared {
            s.release(n);
        }
    }

    /// Whether the shared pool would now admit `extra` more bytes (without charging them).
    pub(crate) fn shared_would_admit(&self, extra: usize) -> bool {
        match &self.shared {
            Some((s, _)) => extra <= s.room(self.held),
            None => true,
        }
    }

    /// Parks `waker` on the shared pool until memory is freed there.
    pub(crate) fn wait_shared(&self, waker: &Waker) {
        if let Some((s, id)) = &self.shared {
            s.wait(*id, waker);
        }
    }

    /// A slice of `len` bytes of the current input buffer was queued: charges the buffer on
    /// its first slice. The caller has already charged `cost().1` for it.
    pub(crate) fn pin(&mut self, key: PinKey, charge: usize, len: usize) {
        let entry = self.pins.table.entry(key).or_insert_with(|| {
            self.pins.charged += charge;
            (0, charge)
        });
        entry.0 += 1;
        self.pins.live += len;
    }

    /// `n` bytes of pinned slices were read or dropped (their pins are settled separately).
    pub(crate) fn pinned_consumed(&mut self, n: usize) {
        self.pins.live -= n;
    }

    /// What pinned buffers are charged beyond the unread bytes their slices still hold:
    /// memory [`unpin_copied`](Self::unpin_copied) could give back.
    pub(crate) fn pinned_waste(&self) -> usize {
        self.pins.charged.saturating_sub(self.pins.live)
    }

    /// A queued slice of buffer `key` was read or dropped: the buffer's charge is returned
    /// with its last slice.
    pub(crate) fn unpin(&mut self, key: PinKey) {
        let freed = match self.pins.table.get_mut(&key) {
            Some(entry) if entry.0 > 1 => {
                entry.0 -= 1;
                None
            }
            Some(_) => self.pins.table.remove(&key).map(|(_, charge)| charge),
            None => None,
        };
        if let Some(charge) = freed {
            self.pins.charged -= charge;
            self.release(charge);
        }
    }

    /// Every slice of buffer `key`, `unread` bytes in all, was replaced by copies the queues
    /// own, allocated `copies` bytes in all and fewer than the buffer is charged (the caller
    /// checks): the copies are charged in its place and the rest is freed. Returns the bytes
    /// freed.
    pub(crate) fn unpin_copied(&mut self, key: PinKey, unread: usize, copies: usize) -> usize {
        let Some((_, charge)) = self.pins.table.remove(&key) else {
            return 0;
        };
        debug_assert!(copies <= charge, "copies {copies} > buffer charge {charge}");
        self.pins.charged -= charge;
        self.pins.live -= unread;
        let freed = charge.saturating_sub(copies);
        self.release(freed);
        freed
    }

    /// The charge of pinned buffer `key` (0 if it is not pinned).
    pub(crate) fn pin_charge(&self, key: PinKey) -> usize {
        self.pins.table.get(&key).map_or(0, |&(_, charge)| charge)
    }
}

impl Drop for RecvMemory {
    fn drop(&mut self) {
        if let Some((s, id)) = self.shared.take() {
            s.leave(id, self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_is_always_admitted_beyond_it_only_with_room() {
        let pool = MemoryBudget::with_min_share(1000, 0);
        let mut a = RecvMemory::new(10_000, Some(&pool));
        let mut b = RecvMemory::new(10_000, Some(&pool));
        assert_eq!(pool.sessions(), 2);
        assert!(a.try_charge(1000));
        assert_eq!(pool.in_use(), 1000);
        // The pool is full: `a` is above its share (500) and pauses; `b` may take its share.
        assert!(!a.try_charge(1));
        assert!(b.try_charge(500));
        assert!(!b.try_charge(1));
        assert_eq!(pool.in_use(), 1500);
        a.release(1000);
        assert_eq!(pool.in_use(), 500);
        drop(b);
        assert_eq!((pool.in_use(), pool.sessions()), (0, 1));
        assert!(a.try_charge(1000));
        drop(a);
        assert_eq!((pool.in_use(), pool.sessions()), (0, 0));
    }

    #[test]
    fn the_minimum_share_is_admitted_even_when_the_pool_is_full() {
        let pool = MemoryBudget::with_min_share(1000, 400);
        let mut a = RecvMemory::new(10_000, Some(&pool));
        let mut b = RecvMemory::new(10_000, Some(&pool));
        let mut c = RecvMemory::new(10_000, Some(&pool));
        assert_eq!(pool.fair_share(), 400);
        assert!(a.try_charge(1000));
        assert!(b.try_charge(400) && c.try_charge(400));
        assert!(!b.try_charge(1) && !c.try_charge(1));
        assert_eq!(pool.in_use(), 1800);
        a.release(1000);
        b.release(400);
        c.release(400);
    }

    #[test]
    fn handles_compare_by_pool() {
        let a = MemoryBudget::new(1);
        assert_eq!(a, a.clone());
        assert_ne!(a, MemoryBudget::new(1));
    }

    #[test]
    fn a_paused_session_is_woken_when_memory_is_freed() {
        use std::sync::atomic::AtomicBool;
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, SeqCst);
            }
        }
        let pool = MemoryBudget::with_min_share(100, 0);
        let mut a = RecvMemory::new(1000, Some(&pool));
        let b = RecvMemory::new(1000, Some(&pool));
        assert!(a.try_charge(100));
        assert!(!b.shared_would_admit(51));
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        b.wait_shared(&Waker::from(flag.clone()));
        a.release(60);
        assert!(flag.0.load(SeqCst));
        assert!(b.shared_would_admit(51));
    }
}
