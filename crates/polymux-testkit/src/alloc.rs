//! The counting allocator: the one [`GlobalAlloc`] wrapper every test and bench binary of the
//! workspace installs when it measures heap use. The library never installs it; a binary does,
//! with `#[global_allocator] static A: polymux_testkit::alloc::Counting = Counting;`.
//!
//! It forwards every call unchanged to [`System`] and keeps two sets of counters:
//!
//! - **process-wide**, only while [`enable`]d (one relaxed load per call otherwise, so the
//!   throughput runs of the bench keep the plain allocator's speed): net bytes ([`net_bytes`])
//!   and allocation calls ([`calls`]);
//! - **per thread**, always: net bytes ([`thread_net`]), their high-water mark
//!   ([`thread_peak`], [`reset_thread_peak`]) and allocation calls ([`thread_calls`]). Tests
//!   that drive everything on their own thread read these and do not see each other.
//!
//! An allocation call is `alloc`, `alloc_zeroed` or `realloc`. A per-thread [`set_thread_hook`]
//! sees the size of each call on its thread (the bench's allocation test records backtraces
//! with it); what the hook itself allocates is not counted anywhere (invariant kept by the
//! `BUSY` flag), so hooks may allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

static ENABLED: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicI64 = AtomicI64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_NET: Cell<i64> = const { Cell::new(0) };
    static THREAD_PEAK: Cell<i64> = const { Cell::new(0) };
    static THREAD_CALLS: Cell<u64> = const { Cell::new(0) };
    static HOOK: Cell<Option<fn(usize)>> = const { Cell::new(None) };
    /// Inside a hook: nothing is counted (the hook's own allocations are bookkeeping).
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting (see the module docs).
pub struct Counting;

/// Records one change of `delta` bytes; `call` for an allocation call of `size` bytes.
fn record(delta: i64, call: Option<usize>) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    if BUSY.try_with(Cell::get) != Ok(false) {
        return;
    }
    if ENABLED.load(Relaxed) {
        NET_BYTES.fetch_add(delta, Relaxed);
        if call.is_some() {
            CALLS.fetch_add(1, Relaxed);
        }
    }
    let _ = THREAD_NET.try_with(|n| {
        n.set(n.get() + delta);
        let _ = THREAD_PEAK.try_with(|p| p.set(p.get().max(n.get())));
    });
    if let Some(size) = call {
        let _ = THREAD_CALLS.try_with(|c| c.set(c.get() + 1));
        if let Ok(Some(hook)) = HOOK.try_with(Cell::get) {
            BUSY.with(|b| b.set(true));
            hook(size);
            BUSY.with(|b| b.set(false));
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added, and they
// never touch the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            record(layout.size() as i64, Some(layout.size()));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            record(layout.size() as i64, Some(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        record(-(layout.size() as i64), None);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            record(new_size as i64 - layout.size() as i64, Some(new_size));
        }
        p
    }
}

/// Starts the process-wide counting.
pub fn enable() {
    ENABLED.store(true, Relaxed);
}

/// Net bytes allocated process-wide since [`enable`] (only differences are meaningful).
pub fn net_bytes() -> i64 {
    NET_BYTES.load(Relaxed)
}

/// Allocation calls process-wide since [`enable`].
pub fn calls() -> u64 {
    CALLS.load(Relaxed)
}

/// Net bytes allocated by this thread (allocations minus frees; only differences mean
/// anything, and frees of another thread's blocks count where they happen).
pub fn thread_net() -> i64 {
    THREAD_NET.with(Cell::get)
}

/// The highest [`thread_net`] since the last [`reset_thread_peak`].
pub fn thread_peak() -> i64 {
    THREAD_PEAK.with(Cell::get)
}

/// Starts a new high-water mark at the current [`thread_net`].
pub fn reset_thread_peak() {
    THREAD_PEAK.with(|p| p.set(thread_net()));
}

/// Allocation calls made by this thread.
pub fn thread_calls() -> u64 {
    THREAD_CALLS.with(Cell::get)
}

/// Calls `hook` with the size of every allocation call this thread makes from now on (`None`
/// removes it). Whatever the hook allocates is not counted.
pub fn set_thread_hook(hook: Option<fn(usize)>) {
    HOOK.with(|h| h.set(hook));
}
