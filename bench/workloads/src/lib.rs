//! stlalloc-workloads: the workloads of SPEC §7 over the allocators of stlalloc-core,
//! system `malloc` and mimalloc (feature `mimalloc`), for the `stlalloc-bench` binary and
//! for the Python extension (`stlalloc._native._bench`), which share this one
//! implementation.
//!
//! Workloads and allocators are named as in `bench/cpp`, so the reports line up; [`run`]
//! runs one workload once on one allocator's process-wide instance.

pub mod alloc;
pub mod workloads;

use alloc::{core_pool, shared_pool, Malloc, RawAlloc};
use std::sync::Barrier;
use workloads::Run;

/// What a workload's figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Nanoseconds per operation (per pair, node, vector, step or block).
    NsPerOp,
    /// Resident bytes per list node.
    BytesPerNode,
    /// Millions of operations per second, all threads together.
    MopsPerSec,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::NsPerOp => "ns/op",
            Unit::BytesPerNode => "bytes/node",
            Unit::MopsPerSec => "Mop/s",
        }
    }
}

/// listmem's fewest nodes: with fewer, whole pages (and what a fresh process already has
/// resident) would blur bytes per node.
pub const LISTMEM_MIN_NODES: u64 = 100_000;

/// The SPEC §7 workloads, plus the 2-, 4- and 8-thread variants of pair24 and churn (each
/// thread allocating and freeing its own blocks on one shared allocator) and xfree_2t
/// (one thread allocates, another frees: see `workloads::xfree`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Pair8,
    Pair24,
    Pair64,
    Pair128,
    List,
    Vec16,
    Churn,
    Batch32,
    Listmem,
    Pair24Threads2,
    ChurnThreads2,
    Pair24Threads4,
    ChurnThreads4,
    Pair24Threads8,
    ChurnThreads8,
    XfreeThreads2,
}

impl Workload {
    pub const ALL: [Workload; 16] = [
        Workload::Pair8,
        Workload::Pair24,
        Workload::Pair64,
        Workload::Pair128,
        Workload::List,
        Workload::Vec16,
        Workload::Churn,
        Workload::Batch32,
        Workload::Listmem,
        Workload::Pair24Threads2,
        Workload::ChurnThreads2,
        Workload::Pair24Threads4,
        Workload::ChurnThreads4,
        Workload::Pair24Threads8,
        Workload::ChurnThreads8,
        Workload::XfreeThreads2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Pair8 => "pair8",
            Workload::Pair24 => "pair24",
            Workload::Pair64 => "pair64",
            Workload::Pair128 => "pair128",
            Workload::List => "list",
            Workload::Vec16 => "vec16",
            Workload::Churn => "churn",
            Workload::Batch32 => "batch32",
            Workload::Listmem => "listmem",
            Workload::Pair24Threads2 => "pair24_2t",
            Workload::ChurnThreads2 => "churn_2t",
            Workload::Pair24Threads4 => "pair24_4t",
            Workload::ChurnThreads4 => "churn_4t",
            Workload::Pair24Threads8 => "pair24_8t",
            Workload::ChurnThreads8 => "churn_8t",
            Workload::XfreeThreads2 => "xfree_2t",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }

    pub fn unit(self) -> Unit {
        match self {
            Workload::Listmem => Unit::BytesPerNode,
            _ if self.threads() > 1 => Unit::MopsPerSec,
            _ => Unit::NsPerOp,
        }
    }

    /// Operations at scale 1 (per thread for the threaded variants), as in `bench/cpp`.
    pub fn base_iterations(self) -> u64 {
        match self {
            Workload::Pair8 | Workload::Pair24 | Workload::Pair64 | Workload::Pair128 => 20_000_000,
            Workload::Pair24Threads2 | Workload::Pair24Threads4 | Workload::Pair24Threads8 => {
                20_000_000
            }
            Workload::Churn
            | Workload::ChurnThreads2
            | Workload::ChurnThreads4
            | Workload::ChurnThreads8 => 10_000_000,
            Workload::XfreeThreads2 => 10_000_000,
            Workload::List | Workload::Vec16 | Workload::Batch32 | Workload::Listmem => 1_000_000,
        }
    }

    /// `base_iterations * scale`, at least 1; for listmem at least [`LISTMEM_MIN_NODES`].
    pub fn iterations(self, scale: f64) -> u64 {
        let n = ((self.base_iterations() as f64 * scale).round() as u64).max(1);
        match self {
            Workload::Listmem => n.max(LISTMEM_MIN_NODES),
            _ => n,
        }
    }

    pub fn threads(self) -> usize {
        match self {
            Workload::Pair24Threads2 | Workload::ChurnThreads2 | Workload::XfreeThreads2 => 2,
            Workload::Pair24Threads4 | Workload::ChurnThreads4 => 4,
            Workload::Pair24Threads8 | Workload::ChurnThreads8 => 8,
            _ => 1,
        }
    }

    /// listmem measures resident memory, which only a fresh process shows truly.
    pub fn needs_fresh_process(self) -> bool {
        self == Workload::Listmem
    }
}

/// The allocators under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocator {
    /// System `malloc`/`free`.
    Malloc,
    /// The core's single-threaded unchecked SGI pool, `Pool<LibcMalloc, Sgi>` (SGI's
    /// parameters as constants).
    Pool,
    /// The thread-safe checked pool that Python uses, `SharedPool`.
    SharedPool,
    #[cfg(feature = "mimalloc")]
    Mimalloc,
}

impl Allocator {
    pub const ALL: &'static [Allocator] = &[
        Allocator::Malloc,
        Allocator::Pool,
        Allocator::SharedPool,
        #[cfg(feature = "mimalloc")]
        Allocator::Mimalloc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Allocator::Malloc => "malloc",
            Allocator::Pool => "pool",
            Allocator::SharedPool => "shared_pool",
            #[cfg(feature = "mimalloc")]
            Allocator::Mimalloc => "mimalloc",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// Whether threads may share it (the core pool is single-threaded by design).
    pub fn thread_safe(self) -> bool {
        self != Allocator::Pool
    }

    pub fn supports(self, w: Workload) -> bool {
        w.threads() == 1 || self.thread_safe()
    }
}

/// One measurement: the figure in the workload's unit, and the checksum of what the
/// blocks held (equal for every allocator when the work is the same).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub checksum: u64,
}

/// The churn seed of `bench/cpp`; thread `t` of a threaded run uses `CHURN_SEED + t`.
pub const CHURN_SEED: u64 = 42;

/// Runs `w` once with `iters` operations on `a`'s process-wide instance. `None` when the
/// allocator cannot run it (threads on the single-threaded pool).
pub fn run(w: Workload, a: Allocator, iters: u64) -> Option<Sample> {
    match a {
        Allocator::Malloc => run_on(w, Malloc, iters),
        Allocator::SharedPool => run_on(w, shared_pool(), iters),
        #[cfg(feature = "mimalloc")]
        Allocator::Mimalloc => run_on(w, alloc::Mimalloc, iters),
        Allocator::Pool => run_single_threaded(w, &mut *core_pool(), iters),
    }
}

/// Runs a workload on an allocator whose handles may go to other threads.
fn run_on<A: RawAlloc + Copy + Send>(w: Workload, mut a: A, iters: u64) -> Option<Sample> {
    match w.threads() {
        1 => run_single_threaded(w, &mut a, iters),
        t => Some(run_threads(w, a, t, iters)),
    }
}

fn per_op(r: Run, ops: u64) -> Sample {
    Sample {
        value: r.ns as f64 / ops as f64,
        checksum: r.checksum,
    }
}

/// Runs a single-threaded workload once on any allocator (`None` for the threaded ones):
/// how the Python binding runs them on the pool as Python holds it.
pub fn run_single_threaded<A: RawAlloc>(w: Workload, a: &mut A, iters: u64) -> Option<Sample> {
    use workloads::*;
    Some(match w {
        Workload::Pair8 => per_op(pair::<A, 8>(a, iters), iters),
        Workload::Pair24 => per_op(pair::<A, 24>(a, iters), iters),
        Workload::Pair64 => per_op(pair::<A, 64>(a, iters), iters),
        Workload::Pair128 => per_op(pair::<A, 128>(a, iters), iters),
        Workload::List => per_op(list(a, iters), iters),
        Workload::Vec16 => per_op(vec16(a, iters), iters),
        Workload::Churn => per_op(churn(a, iters, CHURN_SEED), iters),
        Workload::Batch32 => per_op(batch32(a, iters), iters),
        Workload::Listmem => {
            let (value, checksum) = listmem(a, iters);
            Sample { value, checksum }
        }
        _ => return None,
    })
}

/// `threads` threads each run `iters` operations of their own on `a`, started together
/// (each on a CPU of its own when there are CPUs enough); the figure is the total
/// throughput over the slowest thread's time.
/// xfree_2t's figure is the blocks handed over per second.
fn run_threads<A: RawAlloc + Copy + Send>(w: Workload, a: A, threads: usize, iters: u64) -> Sample {
    if w == Workload::XfreeThreads2 {
        let r = workloads::xfree(a, iters);
        return Sample {
            value: iters as f64 * 1e3 / r.ns.max(1) as f64,
            checksum: r.checksum,
        };
    }
    let start = Barrier::new(threads);
    let cpus = allowed_cpus();
    let pin = threads <= cpus.len();
    let runs: Vec<Run> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let start = &start;
                let cpus = &cpus;
                let mut a = a;
                s.spawn(move || {
                    if pin {
                        pin_to(cpus[t as usize]);
                    }
                    start.wait();
                    match w {
                        Workload::Pair24Threads2
                        | Workload::Pair24Threads4
                        | Workload::Pair24Threads8 => workloads::pair::<A, 24>(&mut a, iters),
                        Workload::ChurnThreads2
                        | Workload::ChurnThreads4
                        | Workload::ChurnThreads8 => {
                            workloads::churn(&mut a, iters, CHURN_SEED + t)
                        }
                        _ => unreachable!("{} is single-threaded", w.name()),
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| h.join().expect("a benchmark thread panicked"))
            .collect()
    });
    // The span from the first thread's start to the last one's end: threads that barely
    // overlap (one finishing before another is scheduled) count as the serial run they were.
    let first = runs
        .iter()
        .map(|r| r.start)
        .min()
        .expect("at least one thread");
    let last = runs
        .iter()
        .map(Run::end)
        .max()
        .expect("at least one thread");
    let span = u64::try_from((last - first).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    Sample {
        value: (threads as u64 * iters) as f64 * 1e3 / span as f64,
        checksum: runs.iter().fold(0, |s, r| s.wrapping_add(r.checksum)),
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the call fills it for this thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c < CPU_SETSIZE`, inside the set.
        .filter(|&c| ok && unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Keeps the calling thread on `cpu`: a threaded row with no more threads than CPUs gives
/// each thread a CPU of its own, so that it times the allocator rather than where the
/// kernel happened to put two threads (both on one CPU, now and then, for a whole run).
fn pin_to(cpu: usize) {
    // SAFETY: as in `allowed_cpus`; `cpu` came from the allowed set, below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        // A refusal leaves the thread where the kernel puts it: the row is then unpinned.
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_allocator_does_the_same_work() {
        for w in Workload::ALL {
            // Small counts: the checksums are exact, the timings are not the point.
            let iters = w.iterations(0.002);
            let mut expected = None;
            for &a in Allocator::ALL {
                let Some(sample) = run(w, a, iters) else {
                    assert!(!a.thread_safe() && w.threads() > 1);
                    continue;
                };
                assert!(sample.value.is_finite(), "{} on {}", w.name(), a.name());
                let want = *expected.get_or_insert(sample.checksum);
                assert_eq!(sample.checksum, want, "{} on {}", w.name(), a.name());
            }
        }
    }

    #[test]
    fn checksums_are_those_of_the_work() {
        // pair: byte i of every block; list: 0 + 1 + ... + (n-1) and n nodes freed; vec16:
        // 8 + 16 + 32 + 64 + 128 bytes per vector.
        let s = run(Workload::Pair24, Allocator::Pool, 1000).unwrap();
        assert_eq!(s.checksum, (0..1000u64).map(|i| i & 0xff).sum::<u64>());
        let s = run(Workload::List, Allocator::Malloc, 1000).unwrap();
        assert_eq!(s.checksum, 999 * 1000 / 2 + 1000);
        let s = run(Workload::Vec16, Allocator::SharedPool, 10).unwrap();
        assert_eq!(s.checksum, 10 * 248);
        let s = run(Workload::Pair24Threads2, Allocator::SharedPool, 1000).unwrap();
        assert_eq!(s.checksum, 2 * (0..1000u64).map(|i| i & 0xff).sum::<u64>());
        let s = run(Workload::Pair24Threads8, Allocator::SharedPool, 1000).unwrap();
        assert_eq!(s.checksum, 8 * (0..1000u64).map(|i| i & 0xff).sum::<u64>());
        let s = run(Workload::XfreeThreads2, Allocator::SharedPool, 1000).unwrap();
        assert_eq!(s.checksum, (0..1000u64).map(|i| i & 0xff).sum::<u64>());
    }

    #[test]
    fn churn_follows_the_cpp_sequence() {
        // The first draws of splitmix64(42), as bench/cpp computes them.
        let mut rng = workloads::SplitMix64(CHURN_SEED);
        assert_eq!(rng.next_u64(), 0xbdd7_3226_2feb_6e95);
        assert_eq!(rng.next_u64(), 0x28ef_e333_b266_f103);
    }

    #[test]
    fn a_pinned_thread_runs_on_its_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "the process runs somewhere");
        // Ten times each: an unpinned thread lands on a given CPU by chance now and then.
        for &c in cpus.iter().cycle().take(10 * cpus.len()) {
            let on = std::thread::spawn(move || {
                pin_to(c);
                // SAFETY: no arguments; returns the calling thread's CPU.
                unsafe { libc::sched_getcpu() }
            });
            assert_eq!(on.join().unwrap(), c as i32);
        }
    }

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
        for &a in Allocator::ALL {
            assert_eq!(Allocator::from_name(a.name()), Some(a));
        }
        assert!(!Allocator::Pool.supports(Workload::ChurnThreads2));
    }
}
