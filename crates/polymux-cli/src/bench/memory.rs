//! Memory measurement for the idle-streams scenario: live heap bytes (a counting wrapper
//! around the system allocator, active only while the bench runs) and the process RSS
//! (`/proc/self/statm`). Also raises the open-file limit, which thousands of TCP connections
//! need.
//!
//! The heap counter is exact (bytes allocated minus bytes freed between two points); RSS also
//! sees allocator caching and page granularity, so it is the noisier of the two (the
//! allocator's cached free memory is returned to the system before the baseline is taken).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// The system allocator, counting live bytes while [`enable`]d.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ENABLED: AtomicBool = AtomicBool::new(false);

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the only
// addition is bookkeeping on atomics, which neither allocates nor touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && ENABLED.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && ENABLED.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        if ENABLED.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && ENABLED.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

/// Starts counting. Deltas of [`heap_live`] taken after this are exact.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Live heap bytes counted since [`enable`] (only differences are meaningful).
pub fn heap_live() -> i64 {
    LIVE.load(Ordering::Relaxed) as i64
}

/// Returns freed heap memory to the operating system (glibc keeps it cached otherwise, and
/// a later RSS delta would then measure reuse of the cache rather than growth).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only releases free pages of the allocator's own arenas;
        // it takes no pointers and is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Resident set size in bytes, if the platform tells.
pub fn rss() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

#[cfg(unix)]
fn page_size() -> i64 {
    rustix::param::page_size() as i64
}

#[cfg(not(unix))]
fn page_size() -> i64 {
    4096
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current != limit.maximum {
            limit.current = limit.maximum;
            if setrlimit(Resource::Nofile, limit).is_err() {
                return getrlimit(Resource::Nofile).current;
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    {
        None
    }
}
