//! The binary's allocator: mimalloc for everyday blocks, a mapping of
//! its own for each large one, and the tuning that hands freed memory back
//! to the OS after a burst. Only the binary chooses an allocator; the
//! library and its tests keep their own.

use std::alloc::{GlobalAlloc, Layout};

/// The daemon's global allocator: [`mimalloc`] for blocks under [`LARGE`],
/// the C allocator, which maps each of them on its own (see
/// [`MALLOC_OPTIONS`]), for larger ones.
///
/// Why mimalloc: a daemon's allocations are many, small and often freed on
/// another worker thread than the one that made them. Under the
/// 64-conversation load of `benches/latency.rs`, glibc's malloc and free took
/// about a sixth of the process's time, and the daemon answers about a tenth
/// more turns per second with mimalloc, for about 30 MiB more resident memory
/// at a thousand conversations (`benches/scale.rs`).
///
/// Why not for large blocks: a block mimalloc hands out belongs to the
/// thread that allocated it, and one freed on another thread goes back to
/// the OS only when its own thread next collects its heap. Upload bodies,
/// the blobs the store reads and writes and the buffers that carry them are
/// allocated on one worker and freed on another; when the worker that
/// allocated them parked right after a burst, before its next collect was
/// due ([`collect_when_idle`]), it kept them: after 16 uploads of 10 MiB on
/// Postgres the daemon stayed at 136–200 MiB over an idle 28 MiB in half of
/// the runs. A block mapped on its own is unmapped by whichever thread frees
/// it, and one that grows is moved by `mremap`, not copied; at 256 KiB and
/// more, the `mmap` and `munmap` cost less than the pages they bring.
pub struct Allocator;

/// The size from which a block is mapped on its own (on glibc; elsewhere
/// mimalloc serves every block).
const LARGE: usize = 256 * 1024;

/// The alignment `malloc` guarantees on the 64-bit targets glibc supports.
const MALLOC_ALIGN: usize = 16;

/// Whether `layout` is served by the C allocator rather than mimalloc.
/// Decided by the layout alone, so a block is freed by the allocator that
/// made it (Rust frees with the layout it allocated with).
#[inline]
fn is_large(layout: Layout) -> bool {
    cfg!(all(target_os = "linux", target_env = "gnu"))
        && layout.size() >= LARGE
        && layout.align() <= MALLOC_ALIGN
}

// SAFETY: each block is allocated, resized and freed by the same allocator,
// chosen by its layout's size and alignment (`is_large`); `malloc`,
// `calloc` and `realloc` return blocks aligned to `MALLOC_ALIGN`, at least
// the layout's alignment whenever `is_large` holds.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // SAFETY: a plain C allocation of a non-zero size.
            unsafe { libc::malloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // SAFETY: as `alloc`; fresh mappings are zero, so `calloc`
            // writes nothing.
            unsafe { libc::calloc(1, layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout) {
            // SAFETY: `ptr` came from `malloc`, `calloc` or `realloc`
            // (its layout is large).
            unsafe { libc::free(ptr.cast()) }
        } else {
            // SAFETY: `ptr` came from mimalloc with this layout.
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (of the layout): the caller guarantees `new_size`, rounded
        // up to the alignment, does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(layout), is_large(new_layout)) {
            // SAFETY: `ptr` came from the C allocator.
            (true, true) => unsafe { libc::realloc(ptr.cast(), new_size).cast() },
            // SAFETY: `ptr` came from mimalloc with this layout.
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            _ => {
                // Across the boundary: a new block from the other allocator.
                // SAFETY: `new_layout` has a non-zero size (`new_size` is
                // non-zero by the caller's contract).
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks hold at least the smaller size and
                    // do not overlap; the old one is freed with its layout.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

/// mimalloc's options the daemon sets, as numbered in `mi_option_t`
/// (`mimalloc.h` of the v2 sources `libmimalloc-sys` builds, whose Rust
/// bindings name neither), each with the variable that overrides it and
/// the value set when that variable is unset.
///
/// Why: by default mimalloc returns freed memory to the OS only 10 ms (and
/// 100 ms for whole segments) after the free, and only when the same thread
/// calls the allocator again; a worker that goes quiet after a burst keeps
/// what it freed, and a thread that exits leaves its free pages committed.
/// After a flood of image previews the daemon stayed at 725 MiB of a 1.1 GiB
/// peak a minute later. Purging at once, and on a thread's exit, costs a few
/// `madvise` calls on large frees and gives the memory back as it is freed.
/// (A delay of a second was tried: a worker that parks for good right after
/// a burst runs its last collect before the delay is over, and 16 uploads
/// of 10 MiB left 137 MiB more than idle 20 s later.)
const ALLOCATOR_OPTIONS: [(std::ffi::c_int, &str, std::ffi::c_long); 2] = [
    // mi_option_abandoned_page_purge: purge a thread's free pages when it exits.
    (12, "MIMALLOC_ABANDONED_PAGE_PURGE", 1),
    // mi_option_purge_delay: purge freed memory at once (milliseconds).
    (15, "MIMALLOC_PURGE_DELAY", 0),
];

unsafe extern "C" {
    /// `mi_option_set` of the mimalloc linked in by `libmimalloc-sys`.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    /// `mi_collect`: frees what other threads freed of this thread's heap,
    /// and the pages that left empty, to the OS (with `purge_delay` 0).
    fn mi_collect(force: bool);
}

/// How often a runtime thread that goes idle collects its heap at most.
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Run by each runtime thread as it parks: at most once per
/// [`COLLECT_EVERY`], hands what the thread's heap holds free back to the
/// OS. A block freed on another thread than the one that allocated it
/// (the rule for buffers of tasks that move between workers) is only
/// reclaimed when its own thread next allocates from that page, so a worker
/// that goes quiet after a burst kept a burst's worth of memory: 16 uploads
/// of 10 MiB left the daemon at 300 of a 370 MiB peak 20 s later. Blocks of
/// [`LARGE`] and more do not wait for this: [`Allocator`] maps them.
pub fn collect_when_idle() {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    LAST.with(|last| {
        let now = std::time::Instant::now();
        if last
            .get()
            .is_none_or(|at| now.duration_since(at) >= COLLECT_EVERY)
        {
            last.set(Some(now));
            // SAFETY: `mi_collect` works on the calling thread's own heap.
            unsafe { mi_collect(false) };
        }
    });
}

/// glibc's malloc, which SQLite allocates with and [`Allocator`] hands
/// large blocks to, tuned to give back what is freed: each `(parameter,
/// variable that overrides it, value)`.
///
/// Why: glibc raises its mmap threshold to the largest block freed (up to
/// 32 MiB), after which SQLite's copies of 10 MiB blobs were carved from the
/// heaps of its connection threads and stayed there: 16 previews at once on
/// SQLite took the daemon from 87 to 265 MiB. A fixed threshold keeps large
/// blocks mapped (unmapped on free): the same flood peaked at 115 MiB. It is
/// under [`LARGE`], so every block `Allocator` passes on is mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MALLOC_OPTIONS: [(std::ffi::c_int, &str, std::ffi::c_int); 1] =
    [(libc::M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", 128 * 1024)];

/// Sets [`ALLOCATOR_OPTIONS`] and the C allocator's `MALLOC_OPTIONS`, each
/// unless the environment sets it; called first thing in `main`, while
/// there is one thread.
pub fn tune() {
    for (option, variable, value) in ALLOCATOR_OPTIONS {
        if std::env::var_os(variable).is_none() {
            // SAFETY: `mi_option_set` stores a value in mimalloc's option
            // table; the option numbers are those of the linked mimalloc,
            // and no other thread runs yet.
            unsafe { mi_option_set(option, value) };
        }
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (parameter, variable, value) in MALLOC_OPTIONS {
        if std::env::var_os(variable).is_none() {
            // SAFETY: `mallopt` sets a parameter of glibc's malloc; no other
            // thread allocates yet.
            unsafe { libc::mallopt(parameter, value) };
        }
    }
}
