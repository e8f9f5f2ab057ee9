//! The SPEC §7 workloads, the same as `bench/cpp/workloads.hpp` operation for operation,
//! generic over [`RawAlloc`]. Each returns the elapsed time and a checksum of the work
//! done (values written, bytes asked for, nodes freed), kept in registers: the C++ loops
//! read nothing back, so neither may these. Equal checksums for every allocator show that
//! each did the same work.

use crate::alloc::RawAlloc;
use std::hint::black_box;
use std::ptr::NonNull;
use std::time::Instant;

/// One timed run: when its timed part started, nanoseconds for all of its operations, and
/// what the blocks held. The start lets a threaded row time the span of all its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: Instant,
    pub ns: u64,
    pub checksum: u64,
}

impl Run {
    fn since(start: Instant, checksum: u64) -> Self {
        Run {
            start,
            ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
            checksum,
        }
    }

    /// When the timed part ended.
    pub fn end(&self) -> Instant {
        self.start + std::time::Duration::from_nanos(self.ns)
    }
}

/// Writes `v` into the first byte of `p` and hides `p` from the optimizer, as the C++
/// `p[0] = char(i); escape(p)`. Returns the byte written, for the checksum: reading it
/// back would be a load the C++ loop does not make (a quarter of pair24's time).
///
/// # Safety
/// `p` must be a live block of at least one byte.
#[inline(always)]
unsafe fn touch(p: NonNull<u8>, v: u64) -> u64 {
    // SAFETY: the caller guarantees `p` is a live, writable block.
    unsafe { p.as_ptr().write(v as u8) };
    escape(p.as_ptr());
    v & 0xff
}

/// The C++ `escape(p)`: an empty asm statement that takes `p` in a register and may read
/// or write any memory, so the block and every write before it must exist. Unlike
/// `black_box(p)`, it does not spill `p` to the stack first.
#[inline(always)]
fn escape<T>(p: *const T) {
    // SAFETY: the asm is empty: it reads no register but `p`'s, changes nothing.
    unsafe { std::arch::asm!("/* {0} */", in(reg) p, options(nostack, preserves_flags)) };
}

/// The C++ `SplitMix64`: the churn sequence must match `bench/cpp` draw for draw.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// pairN: allocate and at once deallocate one `N`-byte block, `iters` times.
pub fn pair<A: RawAlloc, const N: usize>(a: &mut A, iters: u64) -> Run {
    let mut sum = 0u64;
    let t0 = Instant::now();
    for i in 0..iters {
        let p = a.allocate(N);
        // SAFETY: `p` is a fresh block of N >= 1 bytes, freed once right after.
        unsafe {
            sum = sum.wrapping_add(touch(p, i));
            a.deallocate(p, N);
        }
    }
    Run::since(t0, sum)
}

/// A `std::list` node: prev, next, an 8-byte value. 24 bytes, one allocation each.
#[repr(C)]
struct Node {
    prev: *mut Node,
    next: *mut Node,
    value: i64,
}

/// The bits of `std::list<i64>` the workloads use: `push_back` and destruction.
pub struct List<'a, A: RawAlloc> {
    alloc: &'a mut A,
    head: *mut Node,
    tail: *mut Node,
}

impl<'a, A: RawAlloc> List<'a, A> {
    pub fn new(alloc: &'a mut A) -> Self {
        Self {
            alloc,
            head: std::ptr::null_mut(),
            tail: std::ptr::null_mut(),
        }
    }

    #[inline]
    pub fn push_back(&mut self, value: i64) {
        let node = self
            .alloc
            .allocate(std::mem::size_of::<Node>())
            .cast::<Node>()
            .as_ptr();
        // SAFETY: `node` is a fresh block of `size_of::<Node>()` bytes aligned to 8 (the
        // alignment of `Node`); `tail`, when not null, is a live node of this list.
        unsafe {
            node.write(Node {
                prev: self.tail,
                next: std::ptr::null_mut(),
                value,
            });
            match self.tail.is_null() {
                true => self.head = node,
                false => (*self.tail).next = node,
            }
        }
        self.tail = node;
    }

    /// Frees every node front to back, as `std::list::~list` does; returns how many.
    pub fn destroy(mut self) -> u64 {
        self.clear()
    }

    fn clear(&mut self) -> u64 {
        let mut freed = 0;
        while let Some(node) = NonNull::new(self.head) {
            // SAFETY: `node` is a live node of this list, allocated with its size, and
            // unlinked before it is freed.
            unsafe {
                self.head = (*node.as_ptr()).next;
                self.alloc
                    .deallocate(node.cast(), std::mem::size_of::<Node>());
            }
            freed += 1;
        }
        self.tail = std::ptr::null_mut();
        freed
    }
}

impl<A: RawAlloc> Drop for List<'_, A> {
    fn drop(&mut self) {
        self.clear();
    }
}

/// list: `push_back` `nodes` values, then destroy. Both timed. Checksum: the values
/// pushed and the nodes freed.
pub fn list<A: RawAlloc>(a: &mut A, nodes: u64) -> Run {
    let mut sum = 0u64;
    let t0 = Instant::now();
    let mut l = List::new(a);
    for i in 0..nodes {
        l.push_back(i as i64);
        sum = sum.wrapping_add(i);
    }
    black_box(&mut l);
    let freed = l.destroy();
    Run::since(t0, sum.wrapping_add(freed))
}

/// vec16: a `std::vector<i64>` gets 16 `push_back`s from empty, then is destroyed;
/// `iters` times. Growth as libstdc++: capacity `size + max(size, 1)`, i.e. blocks of 8,
/// 16, 32, 64 and 128 bytes, each growth allocating, moving, then freeing the old block.
/// Checksum: the bytes allocated.
pub fn vec16<A: RawAlloc>(a: &mut A, iters: u64) -> Run {
    let mut sum = 0u64;
    let t0 = Instant::now();
    for _ in 0..iters {
        let mut data: Option<NonNull<i64>> = None;
        let mut cap = 0usize;
        for (len, value) in (0..16i64).enumerate() {
            if len == cap {
                let new_cap = len + len.max(1);
                let new = a.allocate(new_cap * 8).cast::<i64>();
                sum = sum.wrapping_add(new_cap as u64 * 8);
                if let Some(old) = data {
                    // SAFETY: `old` holds `len` initialized values and `new` room for
                    // `new_cap > len`; distinct live blocks do not overlap. `old` is freed
                    // once, with the size it was allocated with.
                    unsafe {
                        std::ptr::copy_nonoverlapping(old.as_ptr(), new.as_ptr(), len);
                        a.deallocate(old.cast(), cap * 8);
                    }
                }
                data = Some(new);
                cap = new_cap;
            }
            let p = data.expect("allocated above");
            // SAFETY: `len < cap`, so the slot is inside the block.
            unsafe { p.as_ptr().add(len).write(value) };
        }
        let p = black_box(data.expect("16 values were pushed"));
        // SAFETY: the block is live and freed once, with its size.
        unsafe { a.deallocate(p.cast(), cap * 8) };
    }
    Run::since(t0, sum)
}

/// Live blocks of churn.
pub const CHURN_LIVE: usize = 10_000;

/// churn: 10k live blocks of sizes uniform in 1..=128. One splitmix64 draw per block /
/// step: slot = (low32 * 10000) >> 32, size = 1 + (draw >> 57). Each step frees the
/// slot's block and allocates a new size into it. The fill before and the frees after
/// the timed loop are not timed. `seed` is 42 single-threaded (the C++ sequence).
pub fn churn<A: RawAlloc>(a: &mut A, steps: u64, seed: u64) -> Run {
    let mut rng = SplitMix64(seed);
    let mut ptr = Vec::with_capacity(CHURN_LIVE);
    let mut sz = Vec::with_capacity(CHURN_LIVE);
    for i in 0..CHURN_LIVE {
        let n = 1 + (rng.next_u64() >> 57) as usize;
        let p = a.allocate(n);
        // SAFETY: `p` is a fresh block of `n >= 1` bytes.
        unsafe { touch(p, i as u64) };
        ptr.push(p);
        sz.push(n);
    }
    let mut sum = 0u64;
    let t0 = Instant::now();
    for s in 0..steps {
        let r = rng.next_u64();
        let slot = (((r & 0xffff_ffff) * CHURN_LIVE as u64) >> 32) as usize;
        let n = 1 + (r >> 57) as usize;
        // SAFETY: each slot holds a live block of the recorded size, replaced at once.
        unsafe { a.deallocate(ptr[slot], sz[slot]) };
        let p = a.allocate(n);
        // SAFETY: `p` is a fresh block of `n >= 1` bytes. As in `bench/cpp`, one byte is
        // written and the blocks escape once, after the loop, through the slot array.
        unsafe { p.as_ptr().write(s as u8) };
        sum = sum.wrapping_add(s & 0xff).wrapping_add(n as u64);
        ptr[slot] = p;
        sz[slot] = n;
    }
    black_box(ptr.as_ptr());
    let run = Run::since(t0, sum);
    for (p, n) in ptr.into_iter().zip(sz) {
        // SAFETY: every slot holds a live block of the recorded size, freed once.
        unsafe { a.deallocate(p, n) };
    }
    run
}

/// batch32: allocate `n` 32-byte blocks, then free them in allocation order. Both timed;
/// the pointer array is allocated before the clock starts.
pub fn batch32<A: RawAlloc>(a: &mut A, n: u64) -> Run {
    let mut ptr = Vec::with_capacity(usize::try_from(n).expect("fits in memory"));
    let mut sum = 0u64;
    let t0 = Instant::now();
    for i in 0..n {
        let p = a.allocate(32);
        // SAFETY: `p` is a fresh 32-byte block.
        sum = sum.wrapping_add(unsafe { touch(p, i) });
        ptr.push(p);
    }
    black_box(ptr.as_ptr());
    for &p in &ptr {
        // SAFETY: each block is live and freed once, with its size.
        unsafe { a.deallocate(p, 32) };
    }
    Run::since(t0, sum)
}

/// Blocks a producer hands over at a time in `xfree`.
pub const XFREE_BATCH: usize = 64;

/// xfree: cross-thread frees. A producer allocates `blocks` 24-byte blocks, writing one
/// byte each, and sends them in batches of [`XFREE_BATCH`] over a channel of 4 batches to
/// a consumer, which frees every one (a block freed by a thread other than the one that
/// allocated it, as in a producer/consumer queue). Timed from the first allocation until
/// the consumer has freed the last block; the checksum is that of the bytes written.
pub fn xfree<A: RawAlloc + Copy + Send>(a: A, blocks: u64) -> Run {
    // Raw addresses: a block handed to another thread is just a number to the channel.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(4);
    let t0 = Instant::now();
    let checksum = std::thread::scope(|s| {
        s.spawn(move || {
            let mut a = a;
            for batch in rx {
                for p in batch {
                    let p = NonNull::new(p as *mut u8).expect("blocks are not null");
                    // SAFETY: `p` is a live 24-byte block from `a`, handed over once.
                    unsafe { a.deallocate(p, 24) };
                }
            }
        });
        let mut a = a;
        let mut sum = 0u64;
        let mut batch = Vec::with_capacity(XFREE_BATCH);
        for i in 0..blocks {
            let p = a.allocate(24);
            // SAFETY: `p` is a fresh 24-byte block.
            sum = sum.wrapping_add(unsafe { touch(p, i) });
            batch.push(p.as_ptr() as usize);
            if batch.len() == XFREE_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(XFREE_BATCH));
                tx.send(full)
                    .expect("the consumer lives until the channel closes");
            }
        }
        if !batch.is_empty() {
            tx.send(batch)
                .expect("the consumer lives until the channel closes");
        }
        drop(tx);
        sum
    });
    Run::since(t0, checksum)
}

/// Anonymous resident bytes: `(resident - shared)` pages of `/proc/self/statm`, as the
/// C++ bench measures them (file-backed library pages faulted in by the first call into
/// some code are not heap). Read without allocating, so that measuring moves nothing.
pub fn anon_resident_bytes() -> usize {
    let mut buf = [0u8; 128];
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return 0;
    }
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes.
    let k = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    let Ok(k) = usize::try_from(k) else { return 0 };
    let mut fields = buf[..k]
        .split(|&b| b == b' ')
        .map(|f| f.iter().take_while(|b| b.is_ascii_digit()))
        .map(|digits| digits.fold(0usize, |v, &d| v * 10 + usize::from(d - b'0')));
    let (_size, resident, shared) = (fields.next(), fields.next(), fields.next());
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    resident.unwrap_or(0).saturating_sub(shared.unwrap_or(0)) * page
}

/// listmem: resident bytes per node of a live list of `nodes` values. Meaningful only in a
/// fresh process (nothing freed earlier to reuse); the checksum is the nodes freed.
pub fn listmem<A: RawAlloc>(a: &mut A, nodes: u64) -> (f64, u64) {
    let mut l = List::new(a);
    let before = anon_resident_bytes();
    for i in 0..nodes {
        l.push_back(i as i64);
    }
    let after = anon_resident_bytes();
    black_box(&mut l);
    let per_node = (after as f64 - before as f64) / nodes as f64;
    (per_node, l.destroy())
}
