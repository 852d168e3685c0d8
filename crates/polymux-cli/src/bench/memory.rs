//! Memory for the idle scenario, which measures RSS growth (`polymux_testkit::bench::rss_bytes`):
//! [`trim`] returns the allocator's free pages to the system first. The shipped binary has no
//! counting allocator (that is for the test and bench binaries, `polymux_testkit::alloc`), so
//! there is no exact heap figure here. Also raises the open-file limit, which thousands of TCP
//! connections need (every subcommand).

#![allow(unsafe_code)]

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
