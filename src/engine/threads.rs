//! The engine's own worker pool: `run(n, f)` calls `f(0) … f(n−1)` spread over the pool's
//! threads and returns when all have finished.
//!
//! Why not rayon (already in the tree): its global injector queue allocates a block every 63
//! jobs, which breaks the plan's guarantee that a frame allocates nothing, and a pool of our
//! own keeps the kernels off the threads the stream pipeline uses for capture and
//! post-processing. A pool of N threads is the caller plus N − 1 workers. Between kernels the
//! workers spin for a short while (kernels follow each other within microseconds), then yield
//! the core for a while, then sleep on a condition variable, so an idle pool costs no CPU.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker waits for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(200);

/// How long of [`SPIN`] it busy-spins; after that it yields the core on each round. In a
/// training step the kernels alternate with Candle's ops on rayon's threads, and a worker
/// spinning for all of `SPIN` after each convolution took a core from them (3.4 % of a lite seg
/// step's samples were that spin).
const HOT_SPIN: Duration = Duration::from_micros(20);

/// Whether a thread idle since `start` should go on waiting actively (spinning, then yielding).
fn keep_waiting(start: Instant) -> bool {
    let waited = start.elapsed();
    if waited < HOT_SPIN {
        std::hint::spin_loop();
    } else if waited < SPIN {
        std::thread::yield_now();
    } else {
        return false;
    }
    true
}

/// The job of one `run` call: a borrowed closure whose lifetime `run` erases. Sound because
/// `run` does not return before every worker has finished with it.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize, usize) + Sync),
    tasks: usize,
}

// SAFETY: the closure is `Sync`, and the pointer is only dereferenced while `run` waits.
unsafe impl Send for Job {}

struct Shared {
    /// The current job and its generation; workers start a job when the generation changes.
    job: Mutex<Option<Job>>,
    wake: Condvar,
    generation: AtomicUsize,
    next_task: AtomicUsize,
    /// Workers still inside the current job.
    busy: AtomicUsize,
    done: Condvar,
    done_lock: Mutex<()>,
    panicked: AtomicBool,
    quit: AtomicBool,
}

/// A fixed set of threads that run the kernels of one plan at a time.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadPool({} threads)", self.threads())
    }
}

impl ThreadPool {
    /// A pool of `threads` threads in all (the caller counts as one), at least 1.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            job: Mutex::new(None),
            wake: Condvar::new(),
            generation: AtomicUsize::new(0),
            next_task: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            done: Condvar::new(),
            done_lock: Mutex::new(()),
            panicked: AtomicBool::new(false),
            quit: AtomicBool::new(false),
        });
        let workers = (1..threads.max(1))
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("srsnet-kernel-{i}"))
                    .spawn(move || worker(&shared, i))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Self { shared, workers })
    }

    /// Threads in the pool, the caller included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Calls `f(i)` for every `i < tasks`, in any order and on any of the pool's threads.
    pub fn run(&self, tasks: usize, f: &(dyn Fn(usize) + Sync)) {
        self.run_on_threads(tasks, &|task, _| f(task));
    }

    /// Calls `f(i, thread)` for every `i < tasks`; `thread < self.threads()` identifies the
    /// pool thread running the task (0 is the caller), for per-thread scratch.
    pub fn run_on_threads(&self, tasks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.workers.is_empty() || tasks <= 1 {
            (0..tasks).for_each(|i| f(i, 0));
            return;
        }
        let s = &*self.shared;
        // SAFETY (lifetime erasure): we wait below until `busy` is 0, i.e. until no worker can
        // still call `f`, before returning.
        let f: *const (dyn Fn(usize, usize) + Sync) = unsafe { std::mem::transmute(f) };
        s.next_task.store(0, Ordering::SeqCst);
        s.busy.store(self.workers.len(), Ordering::SeqCst);
        {
            let mut job = s.job.lock().unwrap_or_else(|e| e.into_inner());
            *job = Some(Job { f, tasks });
            s.generation.fetch_add(1, Ordering::SeqCst);
        }
        s.wake.notify_all();
        // SAFETY: `f` is alive for the whole call. A panic here must still wait for the workers.
        let mine = catch_unwind(AssertUnwindSafe(|| take_tasks(s, unsafe { &*f }, tasks, 0)));
        let start = Instant::now();
        while s.busy.load(Ordering::Acquire) != 0 {
            if keep_waiting(start) {
                continue;
            }
            let guard = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            if s.busy.load(Ordering::Acquire) != 0 {
                let _ = s.done.wait_timeout(guard, Duration::from_millis(1));
            }
        }
        if s.panicked.swap(false, Ordering::SeqCst) || mine.is_err() {
            panic!("a kernel panicked on an engine worker thread");
        }
    }
}

fn take_tasks(s: &Shared, f: &(dyn Fn(usize, usize) + Sync), tasks: usize, thread: usize) {
    loop {
        let i = s.next_task.fetch_add(1, Ordering::Relaxed);
        if i >= tasks {
            return;
        }
        f(i, thread);
    }
}

fn worker(s: &Shared, thread: usize) {
    let mut seen = 0usize;
    loop {
        // Wait briefly on the generation counter, then sleep until a new job is published.
        let start = Instant::now();
        while s.generation.load(Ordering::Acquire) == seen && keep_waiting(start) {
            if s.quit.load(Ordering::Relaxed) {
                return;
            }
        }
        let job = {
            let mut guard = s.job.lock().unwrap_or_else(|e| e.into_inner());
            while s.generation.load(Ordering::Acquire) == seen && !s.quit.load(Ordering::Relaxed) {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            if s.quit.load(Ordering::Relaxed) {
                return;
            }
            seen = s.generation.load(Ordering::Acquire);
            *guard
        };
        if let Some(job) = job {
            // SAFETY: `run` keeps the closure alive until `busy` reaches 0.
            let f = unsafe { &*job.f };
            if catch_unwind(AssertUnwindSafe(|| take_tasks(s, f, job.tasks, thread))).is_err() {
                s.panicked.store(true, Ordering::SeqCst);
            }
        }
        if s.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _guard = s.done_lock.lock().unwrap_or_else(|e| e.into_inner());
            s.done.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        {
            let _guard = self.shared.job.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The default thread count: the machine's physical cores.
pub fn default_threads() -> usize {
    num_cpus::get_physical().max(1)
}

/// A raw pointer to an output buffer that tasks write disjoint parts of.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub *mut f32);

impl SharedOut {
    /// The pointer. (A method, so closures capture the whole `Sync` wrapper, not its field.)
    #[inline(always)]
    pub fn ptr(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: every user writes only the region its task owns (see each kernel's task split).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_exactly_once() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads).unwrap();
            for tasks in [0, 1, 2, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                pool.run(tasks, &|i| {
                    hits[i].fetch_add(1, Ordering::SeqCst);
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::SeqCst) == 1),
                    "{threads} threads, {tasks} tasks"
                );
            }
        }
    }

    #[test]
    fn a_panicking_task_is_reported_not_hung() {
        let pool = ThreadPool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(64, &|i| {
                if i == 63 {
                    panic!("boom")
                }
            })
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        pool.run(10, &|_| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 10);
    }
}
