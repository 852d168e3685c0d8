//! A counting global allocator for the idle scenario's heap figure.
//!
//! Counting is off until [`enable`] is called (a relaxed load per allocation otherwise), so the
//! throughput scenarios run on the plain system allocator's speed. While on, it tracks the net
//! bytes allocated (allocations minus frees, including frees of older blocks) and the number of
//! allocation calls; the idle scenario reads the net growth across opening its streams.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

static ENABLED: AtomicBool = AtomicBool::new(false);
static NET_BYTES: AtomicI64 = AtomicI64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting while [`enable`]d.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && ENABLED.load(Relaxed) {
            NET_BYTES.fetch_add(layout.size() as i64, Relaxed);
            CALLS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && ENABLED.load(Relaxed) {
            NET_BYTES.fetch_add(layout.size() as i64, Relaxed);
            CALLS.fetch_add(1, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        if ENABLED.load(Relaxed) {
            NET_BYTES.fetch_sub(layout.size() as i64, Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && ENABLED.load(Relaxed) {
            NET_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
            CALLS.fetch_add(1, Relaxed);
        }
        p
    }
}

/// Starts counting.
pub fn enable() {
    ENABLED.store(true, Relaxed);
}

/// Net bytes allocated since counting started.
pub fn net_bytes() -> i64 {
    NET_BYTES.load(Relaxed)
}

/// Allocation calls (alloc, alloc_zeroed, realloc) since counting started.
pub fn calls() -> u64 {
    CALLS.load(Relaxed)
}
