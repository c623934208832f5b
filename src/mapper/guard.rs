//! Bounds on a running Jsonnet evaluation: wall time and allocated bytes.
//!
//! jrsonnet has no cancellation, timeout or memory API (docs/crates.md §2.1), and its state is
//! `!Send`, so an evaluation can only be stopped from inside its own thread. Two facts make that
//! possible without patching the evaluator:
//!
//! - every Jsonnet function call and frame goes through `jrsonnet_evaluator::stack::check_depth`,
//!   which fails once the thread-local depth limit is reached, and the limit can be lowered to the
//!   current depth at any moment with `set_stack_depth_limit(0)` (a `Cell` write, no allocation);
//! - a runaway evaluation allocates: every thunk, context, array and string does.
//!
//! So the process's global allocator counts the bytes an *armed* thread allocates and, every few
//! allocations, looks at the clock. When the time or the byte budget is exhausted it "trips": it
//! records why and drops the depth limit, and the evaluation unwinds through its own `Result`
//! with a stack-overflow error that [`disarm`] reports as the real cause. Threads that are not
//! armed pay one thread-local read per allocation.
//!
//! Allocations of [`HUGE_ALLOCATION`] bytes or more, on any thread, are served by an anonymous
//! `MAP_NORESERVE` mapping rather than `malloc`. Such a request is only ever made by something
//! like `std.makeArray(4e9, ...)`, which reserves its whole capacity up front: with `malloc` the
//! kernel's overcommit check refuses it and Rust aborts the process; a no-reserve mapping costs
//! nothing until touched, and the budget trips before it is filled.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Requests at least this large bypass `malloc` (see the module docs).
pub const HUGE_ALLOCATION: usize = 1 << 30;

/// Why an armed evaluation was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trip {
    Time,
    Memory,
}

struct Budget {
    armed: Cell<bool>,
    remaining_bytes: Cell<u64>,
    deadline: Cell<Option<Instant>>,
    allocations: Cell<u32>,
    tripped: Cell<Option<Trip>>,
}

thread_local! {
    static BUDGET: Budget = const {
        Budget {
            armed: Cell::new(false),
            remaining_bytes: Cell::new(0),
            deadline: Cell::new(None),
            allocations: Cell::new(0),
            tripped: Cell::new(None),
        }
    };
}

/// How often (in allocations) an armed thread reads the clock.
const CLOCK_EVERY: u32 = 64;

/// Arms the current thread: from now on its allocations count against `max_bytes` and the
/// evaluation must end by `timeout`. The Jsonnet depth limit is (re)set to `max_stack`.
pub fn arm(timeout: Duration, max_bytes: u64, max_stack: usize) {
    jrsonnet_evaluator::stack::set_stack_depth_limit(max_stack);
    BUDGET.with(|b| {
        b.remaining_bytes.set(max_bytes);
        b.deadline.set(Some(Instant::now() + timeout));
        b.allocations.set(0);
        b.tripped.set(None);
        b.armed.set(true);
    });
}

/// Disarms the current thread and tells whether (and why) the evaluation was stopped.
pub fn disarm(max_stack: usize) -> Option<Trip> {
    let tripped = BUDGET.with(|b| {
        b.armed.set(false);
        b.deadline.set(None);
        b.tripped.take()
    });
    // A trip lowered the depth limit to whatever depth the evaluation had then; restore it.
    jrsonnet_evaluator::stack::set_stack_depth_limit(max_stack);
    tripped
}

#[inline]
fn charge(bytes: usize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = BUDGET.try_with(|b| {
        if !b.armed.get() {
            return;
        }
        let remaining = b.remaining_bytes.get();
        if bytes as u64 > remaining {
            b.remaining_bytes.set(0);
            trip(b, Trip::Memory);
        } else {
            b.remaining_bytes.set(remaining - bytes as u64);
        }
        let n = b.allocations.get().wrapping_add(1);
        b.allocations.set(n);
        if n % CLOCK_EVERY == 0
            && let Some(deadline) = b.deadline.get()
            && Instant::now() >= deadline
        {
            trip(b, Trip::Time);
        }
    });
}

#[inline]
fn trip(b: &Budget, why: Trip) {
    if b.tripped.get().is_none() {
        b.tripped.set(Some(why));
    }
    // Every further `check_depth` on this thread fails, so the evaluation unwinds.
    jrsonnet_evaluator::stack::set_stack_depth_limit(0);
}

/// The process-wide allocator: mimalloc plus the accounting above.
///
/// mimalloc rather than glibc's `malloc`: a Jsonnet evaluation makes and frees hundreds of small
/// objects, and with glibc a third of an evaluation's instructions went to `malloc`/`free`
/// (callgrind, bench/README.md).
pub struct GuardedAllocator;

unsafe fn map_huge(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping; no file descriptor or existing memory is involved.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe impl GlobalAlloc for GuardedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        charge(layout.size());
        if layout.size() >= HUGE_ALLOCATION && layout.align() <= 4096 {
            // SAFETY: see `map_huge`; page alignment satisfies any align <= 4096.
            return unsafe { map_huge(layout.size()) };
        }
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        charge(layout.size());
        if layout.size() >= HUGE_ALLOCATION && layout.align() <= 4096 {
            // SAFETY: anonymous mappings are zero-filled.
            return unsafe { map_huge(layout.size()) };
        }
        // SAFETY: forwarded unchanged to mimalloc.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= HUGE_ALLOCATION && layout.align() <= 4096 {
            // SAFETY: blocks of this size were mapped by `map_huge` with exactly this length.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: blocks below the threshold came from mimalloc.
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_huge = layout.size() >= HUGE_ALLOCATION && layout.align() <= 4096;
        let new_huge = new_size >= HUGE_ALLOCATION && layout.align() <= 4096;
        if !old_huge && !new_huge {
            charge(new_size.saturating_sub(layout.size()));
            // SAFETY: both blocks belong to mimalloc.
            return unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        }
        // Crossing (or staying above) the threshold: move the bytes by hand.
        // SAFETY: `new_layout` has the caller's alignment and a non-zero size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: allocation through our own `alloc`, which picks the right backend.
        let new_ptr = unsafe { self.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new_ptr
    }
}
