//! Where the core's parallel work runs, safe across `fork()`.
//!
//! PyTorch DataLoader workers are forked from the training process. A forked child inherits
//! a thread pool's bookkeeping but none of its threads, so work handed to rayon's global pool
//! there waits forever; and Python 3.12+ warns about forking a process that has threads.
//! So:
//! - one-off work (parsing a large JSONL, which validating takes does in the training process
//!   right before torch forks) runs on scoped threads joined before the call returns
//!   ([`scoped_map`]): it leaves no thread behind;
//! - the in-process loader's many small gathers run on a persistent pool ([`pool`]; spawning
//!   threads per batch would cost more than the copy), which remembers the process that built
//!   it and is rebuilt in a new process.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

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
    let pool = ThreadPoolBuilder::new()
        .num_threads(threads())
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

/// Threads the core uses for parallel work (the pool's size; asking does not start the pool).
pub fn threads() -> usize {
    // Cached: available_parallelism reads cgroup files on Linux.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

/// `items.map(f)` in order, on up to `threads` threads: the calling thread and scoped threads
/// that are joined before this returns, each taking the next unclaimed item (so a thread that
/// was descheduled does not hold up the rest). A panic in `f` reaches the caller.
pub fn scoped_map<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let n = items.len();
    let threads = threads.clamp(1, n.max(1));
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let results: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            break;
        }
        let item = slots[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(item) = item {
            let r = f(item);
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    };
    std::thread::scope(|scope| {
        for k in 1..threads {
            // A thread that cannot start leaves its share to the others.
            let _ = std::thread::Builder::new()
                .name(format!("koemorph-scoped-{k}"))
                .spawn_scoped(scope, work);
        }
        work();
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every item was mapped")
        })
        .collect()
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

    #[test]
    fn scoped_map_keeps_order_with_any_thread_count() {
        for threads in [1, 2, 3, 8] {
            let items: Vec<u64> = (0..100).collect();
            let squares = scoped_map(items, threads, |x| x * x);
            assert_eq!(squares, (0..100u64).map(|x| x * x).collect::<Vec<_>>());
        }
        assert!(scoped_map(Vec::<u8>::new(), 4, |x| x).is_empty());
        // Mutable disjoint outputs, as the JSONL parse hands out.
        let mut out = vec![0u32; 12];
        let jobs: Vec<(usize, &mut [u32])> = out.chunks_mut(5).enumerate().collect();
        let lens = scoped_map(jobs, 2, |(k, part)| {
            part.iter_mut().for_each(|v| *v = k as u32 + 1);
            part.len()
        });
        assert_eq!(lens, vec![5, 5, 2]);
        assert_eq!(out, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3]);
    }

    #[test]
    fn scoped_map_passes_a_panic_on() {
        let result = std::panic::catch_unwind(|| {
            scoped_map((0..10).collect(), 3, |x: i32| if x == 7 { panic!("seven") } else { x })
        });
        assert!(result.is_err());
    }
}
