// Checks sgi_free_list against the SPEC section 3 worked example and invariants.
// Exits non-zero on the first failure.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "sgi_free_list.hpp"

using sgi::sgi_free_list;

static int failures = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                         #cond);                                                 \
            ++failures;                                                          \
        }                                                                        \
    } while (0)

// heap_size == live + sum(free_list lengths * class size) + bytes left in chunk
static std::size_t accounted(const sgi_free_list& a, std::size_t live) {
    std::size_t s = live + a.bytes_left();
    for (std::size_t i = 0; i < sgi_free_list::NFREELISTS; ++i)
        s += a.free_list_length(i) * (i + 1) * sgi_free_list::ALIGN;
    return s;
}

static void worked_example() {
    sgi_free_list a;
    char* p8 = static_cast<char*>(a.allocate(8));
    CHECK(a.heap_size == 320);
    CHECK(a.free_list_length(0) == 19);
    CHECK(a.bytes_left() == 160);
    CHECK(accounted(a, 8) == a.heap_size);

    char* p32 = static_cast<char*>(a.allocate(32));
    CHECK(p32 == p8 + 160);  // carved from the 160 bytes left in the first chunk
    CHECK(a.free_list_length(3) == 4);
    CHECK(a.bytes_left() == 0);
    CHECK(a.heap_size == 320);
    CHECK(accounted(a, 8 + 32) == a.heap_size);

    a.allocate(64);
    CHECK(a.heap_size == 2904);  // 320 + 2*1280 + round_up(320 >> 4)
    CHECK(a.free_list_length(7) == 19);
    CHECK(a.bytes_left() == 2584 - 1280);
    CHECK(accounted(a, 8 + 32 + 64) == a.heap_size);
}

static void lifo_and_edge_cases() {
    sgi_free_list a;
    CHECK(a.allocate(0) == nullptr);
    a.deallocate(nullptr, 0);
    void* p = a.allocate(17);  // class 24
    a.deallocate(p, 17);
    CHECK(a.allocate(24) == p);  // LIFO, same class
    CHECK(sgi_free_list::round_up(1) == 8 && sgi_free_list::round_up(128) == 128);
    CHECK(sgi_free_list::freelist_index(1) == 0 && sgi_free_list::freelist_index(128) == 15);
    std::size_t hs = a.heap_size;
    void* big = a.allocate(129);  // first level, not the pool
    CHECK(big != nullptr && a.heap_size == hs);
    a.deallocate(big, 129);
}

// A chunk source that refuses: chunk_alloc must scan larger lists, then fall
// back to the first level (malloc with SGI's OOM loop).
static bool refuse = false;
static void* refusing_source(std::size_t n) { return refuse ? nullptr : std::malloc(n); }

static void scan_larger_lists() {
    sgi_free_list a;
    a.chunk_source = &refusing_source;
    void* p = a.allocate(128);  // chunk 2*2560 = 5120: 20 + 20 objects of 128
    (void)p;
    // Drain the 128 list and the chunk so nothing is left but what we free.
    std::vector<void*> held;
    while (a.free_list_length(15) != 0 || a.bytes_left() >= 128) held.push_back(a.allocate(128));
    CHECK(a.bytes_left() == 0);
    a.deallocate(held.back(), 128);
    held.pop_back();
    CHECK(a.free_list_length(15) == 1);
    std::size_t hs = a.heap_size;
    refuse = true;
    void* q = a.allocate(8);  // source refuses; the 128 block becomes the chunk
    CHECK(q != nullptr);
    CHECK(a.heap_size == hs);
    CHECK(a.free_list_length(15) == 0);
    CHECK(a.free_list_length(0) == 15);  // 128/8 = 16 objects: 1 returned, 15 listed
    CHECK(a.bytes_left() == 0);
    // Nothing left anywhere larger than 8 free: falls to the first level.
    void* r = a.allocate(16);
    CHECK(r != nullptr);
    CHECK(a.heap_size > hs);
    refuse = false;
}

static void random_accounting() {
    sgi_free_list a;
    std::vector<std::pair<void*, std::size_t>> live;
    std::size_t live_bytes = 0;
    unsigned long long s = 42;
    for (int step = 0; step < 200000; ++step) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        unsigned r = unsigned(s >> 33);
        if (live.empty() || r % 3 != 0) {
            std::size_t n = 1 + (r >> 8) % 128;
            void* p = a.allocate(n);
            static_cast<char*>(p)[n - 1] = 1;
            live.push_back({p, n});
            live_bytes += sgi_free_list::round_up(n);
        } else {
            std::size_t k = (r >> 8) % live.size();
            a.deallocate(live[k].first, live[k].second);
            live_bytes -= sgi_free_list::round_up(live[k].second);
            live[k] = live.back();
            live.pop_back();
        }
        if (step % 997 == 0 && accounted(a, live_bytes) != a.heap_size) {
            CHECK(accounted(a, live_bytes) == a.heap_size);
            break;
        }
    }
    CHECK(accounted(a, live_bytes) == a.heap_size);
}

int main() {
    worked_example();
    lifo_and_edge_cases();
    scan_larger_lists();
    random_accounting();
    if (failures) {
        std::fprintf(stderr, "test_sgi: %d failure(s)\n", failures);
        return 1;
    }
    std::printf("test_sgi: ok\n");
    return 0;
}
