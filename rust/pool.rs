//! The thread pool the core's parallel work runs on, safe across `fork()`.
//!
//! PyTorch DataLoader workers are forked from the training process, which has usually used
//! the pool already (validating takes parses their JSONL). A forked child inherits the pool's
//! bookkeeping but none of its threads, so work handed to rayon's global pool there waits
//! forever. This pool remembers the process that built it and is rebuilt in a new process.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use rayon::{ThreadPool, ThreadPoolBuilder};

struct OwnedPool {
    pid: u32,
    pool: ThreadPool,
}

static CURRENT: AtomicPtr<OwnedPool> = AtomicPtr::new(ptr::null_mut());

/// The pool of this process (built on first use, rebuilt after a fork).
pub fn pool() -> &'static ThreadPool {
    let pid = std::process::id();
    let current = CURRENT.load(Ordering::Acquire);
    // SAFETY: pools are leaked, never freed, so a published pointer stays valid.
    if let Some(owned) = unsafe { current.as_ref() } {
        if owned.pid == pid {
            return &owned.pool;
        }
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("koemorph-{i}"))
        .build()
        .expect("cannot start the koemorph_data thread pool");
    // Leaked on purpose: the parent's pool cannot be dropped in a child (its threads do not
    // exist there), and a pool lives as long as its process anyway. Two threads racing here
    // both build one; the loser's is leaked, once.
    let owned: &'static OwnedPool = Box::leak(Box::new(OwnedPool { pid, pool }));
    CURRENT.store(owned as *const OwnedPool as *mut OwnedPool, Ordering::Release);
    &owned.pool
}

/// Threads in this process's pool.
pub fn threads() -> usize {
    pool().current_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn runs_parallel_work_and_is_reused() {
        let a = pool() as *const ThreadPool;
        let sum: u64 = pool().install(|| (0..1000u64).into_par_iter().sum());
        assert_eq!(sum, 499_500);
        assert_eq!(a, pool() as *const ThreadPool);
        assert!(threads() >= 1);
    }
}
