// SPEC section 7 workloads, templated on an allocator policy (allocators.hpp).
// Timed workloads return elapsed nanoseconds for `iters` operations; the caller
// divides. listmem_child runs in a fresh process and returns resident bytes per node.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace bench {

// Keep the compiler from eliding a block or a container.
inline void escape(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

inline std::uint64_t now_ns() {
    return std::uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count());
}

struct SplitMix64 {
    std::uint64_t s;
    std::uint64_t next() {
        std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
};

// pairN: allocate and at once deallocate one N-byte block, `iters` times.
template <class P, std::size_t N>
std::uint64_t pair(std::uint64_t iters) {
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < iters; ++i) {
        char* p = static_cast<char*>(P::allocate(N));
        p[0] = char(i);
        escape(p);
        P::deallocate(p, N);
    }
    return now_ns() - t0;
}

// list: push_back `nodes` int64 values, then destroy. Per node.
template <class P>
std::uint64_t list(std::uint64_t nodes) {
    using L = typename P::template list<std::int64_t>;
    std::uint64_t t0 = now_ns();
    {
        L l = P::template make<L>();
        for (std::uint64_t i = 0; i < nodes; ++i) l.push_back(std::int64_t(i));
        escape(&l);
    }
    return now_ns() - t0;
}

// vec16: 16 push_backs of int64 from empty, destroy; `iters` times. Per vector.
template <class P>
std::uint64_t vec16(std::uint64_t iters) {
    using V = typename P::template vector<std::int64_t>;
    std::uint64_t t0 = now_ns();
    for (std::uint64_t r = 0; r < iters; ++r) {
        V v = P::template make<V>();
        for (std::int64_t k = 0; k < 16; ++k) v.push_back(k);
        escape(v.data());
    }
    return now_ns() - t0;
}

// churn: 10k live blocks of sizes uniform in 1..128. One splitmix64 draw (seed 42)
// per block / step: slot = (low32 * 10000) >> 32, size = 1 + (draw >> 57).
// Each step frees the slot's block and allocates a new size into it. Per step.
// The fill before and the frees after the timed loop are not timed.
constexpr std::size_t kChurnLive = 10000;

template <class P>
std::uint64_t churn(std::uint64_t steps) {
    std::vector<void*> ptr(kChurnLive);
    std::vector<std::uint32_t> sz(kChurnLive);
    SplitMix64 rng{42};
    for (std::size_t i = 0; i < kChurnLive; ++i) {
        std::uint32_t n = 1 + std::uint32_t(rng.next() >> 57);
        char* p = static_cast<char*>(P::allocate(n));
        p[0] = char(i);
        ptr[i] = p;
        sz[i] = n;
    }
    std::uint64_t t0 = now_ns();
    for (std::uint64_t s = 0; s < steps; ++s) {
        std::uint64_t r = rng.next();
        std::size_t slot = std::size_t(((r & 0xffffffffULL) * kChurnLive) >> 32);
        std::uint32_t n = 1 + std::uint32_t(r >> 57);
        P::deallocate(ptr[slot], sz[slot]);
        char* p = static_cast<char*>(P::allocate(n));
        p[0] = char(s);
        ptr[slot] = p;
        sz[slot] = n;
    }
    escape(ptr.data());
    std::uint64_t t = now_ns() - t0;
    for (std::size_t i = 0; i < kChurnLive; ++i) P::deallocate(ptr[i], sz[i]);
    return t;
}

// batch32: allocate `n` 32-byte blocks, then free them in allocation order. Per block.
template <class P>
std::uint64_t batch32(std::uint64_t n) {
    std::vector<void*> ptr(n);  // std::allocator, outside the timing
    std::uint64_t t0 = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
        char* p = static_cast<char*>(P::allocate(32));
        p[0] = char(i);
        ptr[i] = p;
    }
    escape(ptr.data());
    for (std::uint64_t i = 0; i < n; ++i) P::deallocate(ptr[i], 32);
    return now_ns() - t0;
}

// Anonymous resident bytes from /proc/self/statm: resident - shared (fields 2 and 3,
// in pages). File-backed pages are left out: the first call into libstdc++/libc code
// (PLT binding, list hook, pmr pool code) faults in library pages with fault-around
// (~128 KiB), which is not heap. Raw open/read so measuring does not allocate.
inline std::size_t rss_bytes() {
    int fd = ::open("/proc/self/statm", O_RDONLY);
    if (fd < 0) return 0;
    char buf[128];
    ssize_t k = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (k <= 0) return 0;
    buf[k] = 0;
    unsigned long field[3] = {0, 0, 0};  // size resident shared
    const char* q = buf;
    for (int f = 0; f < 3; ++f) {
        while (*q == ' ') ++q;
        while (*q >= '0' && *q <= '9') field[f] = field[f] * 10 + unsigned(*q++ - '0');
    }
    return std::size_t(field[1] - field[2]) * std::size_t(sysconf(_SC_PAGESIZE));
}

// listmem: resident bytes per node of a live list of `nodes` int64 values.
// Meant to run in a freshly exec'd process (see main.cpp).
template <class P>
double listmem_child(std::uint64_t nodes) {
    using L = typename P::template list<std::int64_t>;
    L l = P::template make<L>();
    std::size_t before = rss_bytes();
    for (std::uint64_t i = 0; i < nodes; ++i) l.push_back(std::int64_t(i));
    std::size_t after = rss_bytes();
    escape(&l);
    return (double(after) - double(before)) / double(nodes);
}

}  // namespace bench
