//! The counting allocator's contract, with it installed as this binary's global allocator:
//! per-thread counters see exactly this thread's allocations, the process-wide ones count only
//! once enabled, and a hook sees every allocation call of its thread without its own
//! allocations being counted. One test, so no other test allocates on the same counters.

use std::sync::atomic::{AtomicUsize, Ordering};

use polymux_testkit::alloc::{self, Counting};

#[global_allocator]
static GLOBAL: Counting = Counting;

static HOOKED: AtomicUsize = AtomicUsize::new(0);
static HOOKED_BYTES: AtomicUsize = AtomicUsize::new(0);

fn hook(size: usize) {
    HOOKED.fetch_add(1, Ordering::Relaxed);
    HOOKED_BYTES.fetch_add(size, Ordering::Relaxed);
    // The hook's own allocations are bookkeeping: not counted, not hooked.
    drop(Vec::<u8>::with_capacity(1000));
}

#[test]
fn counters_and_hook_see_exactly_what_they_promise() {
    // Per thread: net bytes, peak and calls.
    let (net0, calls0) = (alloc::thread_net(), alloc::thread_calls());
    alloc::reset_thread_peak();
    let block = vec![0u8; 4096];
    assert_eq!(alloc::thread_net() - net0, 4096);
    assert_eq!(alloc::thread_calls() - calls0, 1);
    drop(block);
    assert_eq!(alloc::thread_net(), net0);
    assert_eq!(
        alloc::thread_peak() - net0,
        4096,
        "the peak keeps the high-water mark"
    );

    // Another thread's allocations are its own.
    let net = alloc::thread_net();
    let kept = std::thread::spawn(|| {
        let before = alloc::thread_net();
        let v = vec![1u8; 10_000];
        assert_eq!(alloc::thread_net() - before, 10_000);
        v.len()
    })
    .join()
    .expect("thread");
    assert_eq!(kept, 10_000);
    // Spawning and joining allocate a little here (and free some of it there), but the other
    // thread's 10,000 bytes never show on this thread.
    assert!(
        (alloc::thread_net() - net).abs() < 10_000,
        "{}",
        alloc::thread_net() - net
    );

    // Process-wide: nothing before `enable`, then everything.
    let before = (alloc::net_bytes(), alloc::calls());
    let unseen = vec![0u8; 512];
    assert_eq!((alloc::net_bytes(), alloc::calls()), before);
    alloc::enable();
    let seen = vec![0u8; 512];
    assert_eq!(alloc::net_bytes() - before.0, 512);
    assert_eq!(alloc::calls() - before.1, 1);
    drop((unseen, seen));

    // The hook: every call of this thread, sizes as asked, its own allocations left out.
    let calls = alloc::thread_calls();
    alloc::set_thread_hook(Some(hook));
    let mut v: Vec<u8> = Vec::with_capacity(100);
    v.reserve_exact(300); // a realloc to 300 bytes
    alloc::set_thread_hook(None);
    assert_eq!(HOOKED.load(Ordering::Relaxed), 2);
    assert_eq!(HOOKED_BYTES.load(Ordering::Relaxed), 100 + 300);
    assert_eq!(alloc::thread_calls() - calls, 2);
    drop(v);
}
