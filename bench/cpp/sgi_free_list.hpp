// sgi_free_list: SGI STL 3.3 __default_alloc_template (stl_alloc.h), written from
// SPEC section 3. Unchecked, single-threaded, no lock. Names follow SGI.
//
// The chunk source is malloc, as in SGI; the first level (__malloc_alloc_template)
// is the last resort, with SGI's out-of-memory handler loop. `chunk_source` exists
// only so tests can make the "system" refuse memory and exercise the scan path.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>

namespace sgi {

// First level: __malloc_alloc_template (malloc + OOM handler loop).
struct malloc_alloc {
    using oom_handler = void (*)();
    static inline oom_handler malloc_alloc_oom_handler = nullptr;

    static oom_handler set_malloc_handler(oom_handler f) {
        oom_handler old = malloc_alloc_oom_handler;
        malloc_alloc_oom_handler = f;
        return old;
    }
    static void* allocate(std::size_t n) {
        void* result = std::malloc(n);
        if (result == nullptr) result = oom_malloc(n);
        return result;
    }
    static void deallocate(void* p, std::size_t /*n*/) { std::free(p); }
    static void* oom_malloc(std::size_t n) {
        for (;;) {
            oom_handler h = malloc_alloc_oom_handler;
            if (h == nullptr) throw std::bad_alloc();
            h();
            void* result = std::malloc(n);
            if (result) return result;
        }
    }
};

// Second level: __default_alloc_template<false, 0>.
class sgi_free_list {
public:
    enum { ALIGN = 8 };
    enum { MAX_BYTES = 128 };
    enum { NFREELISTS = MAX_BYTES / ALIGN };  // 16
    enum { NOBJS = 20 };                       // refill count

    union obj {
        union obj* free_list_link;
        char client_data[1];
    };

    static std::size_t round_up(std::size_t bytes) {
        return (bytes + std::size_t(ALIGN) - 1) & ~(std::size_t(ALIGN) - 1);
    }
    static std::size_t freelist_index(std::size_t bytes) {
        return (bytes + std::size_t(ALIGN) - 1) / std::size_t(ALIGN) - 1;
    }

    obj* free_list[NFREELISTS] = {};
    char* start_free = nullptr;
    char* end_free = nullptr;
    std::size_t heap_size = 0;
    void* (*chunk_source)(std::size_t) = &std::malloc;  // SGI: malloc

    void* allocate(std::size_t n) {
        if (n == 0) return nullptr;  // as libstdc++ __pool_alloc
        if (n > std::size_t(MAX_BYTES)) return malloc_alloc::allocate(n);
        obj** my_free_list = free_list + freelist_index(n);
        obj* result = *my_free_list;
        if (result == nullptr) return refill(round_up(n));
        *my_free_list = result->free_list_link;
        return result;
    }

    void deallocate(void* p, std::size_t n) {
        if (n == 0) return;
        if (n > std::size_t(MAX_BYTES)) {
            malloc_alloc::deallocate(p, n);
            return;
        }
        obj* q = static_cast<obj*>(p);
        obj** my_free_list = free_list + freelist_index(n);
        q->free_list_link = *my_free_list;  // LIFO
        *my_free_list = q;
    }

    void* reallocate(void* p, std::size_t old_sz, std::size_t new_sz);

    // Returns one object of size n (already rounded up) and links the rest of the
    // chunk onto free_list[index(n)], chunk+n at the head.
    void* refill(std::size_t n) {
        int nobjs = NOBJS;
        char* chunk = chunk_alloc(n, nobjs);
        if (nobjs == 1) return chunk;
        obj** my_free_list = free_list + freelist_index(n);
        obj* result = reinterpret_cast<obj*>(chunk);
        obj* next_obj = reinterpret_cast<obj*>(chunk + n);
        *my_free_list = next_obj;
        for (int i = 1;; ++i) {
            obj* current_obj = next_obj;
            next_obj = reinterpret_cast<obj*>(reinterpret_cast<char*>(next_obj) + n);
            if (nobjs - 1 == i) {
                current_obj->free_list_link = nullptr;
                break;
            }
            current_obj->free_list_link = next_obj;
        }
        return result;
    }

    // Allocates a chunk for nobjs objects of size `size`; nobjs may be reduced.
    char* chunk_alloc(std::size_t size, int& nobjs) {
        char* result;
        std::size_t total_bytes = size * std::size_t(nobjs);
        std::size_t bytes_left = std::size_t(end_free - start_free);

        if (bytes_left >= total_bytes) {
            result = start_free;
            start_free += total_bytes;
            return result;
        } else if (bytes_left >= size) {
            nobjs = int(bytes_left / size);
            total_bytes = size * std::size_t(nobjs);
            result = start_free;
            start_free += total_bytes;
            return result;
        } else {
            std::size_t bytes_to_get = 2 * total_bytes + round_up(heap_size >> 4);
            // Make use of the left-over piece.
            if (bytes_left > 0) {
                obj** my_free_list = free_list + freelist_index(bytes_left);
                reinterpret_cast<obj*>(start_free)->free_list_link = *my_free_list;
                *my_free_list = reinterpret_cast<obj*>(start_free);
            }
            start_free = static_cast<char*>(chunk_source(bytes_to_get));
            if (start_free == nullptr) {
                // Try what we already have on larger free lists.
                for (std::size_t i = size; i <= std::size_t(MAX_BYTES); i += std::size_t(ALIGN)) {
                    obj** my_free_list = free_list + freelist_index(i);
                    obj* p = *my_free_list;
                    if (p != nullptr) {
                        *my_free_list = p->free_list_link;
                        start_free = reinterpret_cast<char*>(p);
                        end_free = start_free + i;
                        return chunk_alloc(size, nobjs);
                    }
                }
                end_free = nullptr;  // in case of exception
                start_free = static_cast<char*>(malloc_alloc::allocate(bytes_to_get));
            }
            heap_size += bytes_to_get;
            end_free = start_free + bytes_to_get;
            return chunk_alloc(size, nobjs);
        }
    }

    // Introspection for tests.
    std::size_t free_list_length(std::size_t i) const {
        std::size_t k = 0;
        for (obj* p = free_list[i]; p; p = p->free_list_link) ++k;
        return k;
    }
    std::size_t bytes_left() const { return std::size_t(end_free - start_free); }
};

inline void* sgi_free_list::reallocate(void* p, std::size_t old_sz, std::size_t new_sz) {
    if (new_sz == 0) {
        deallocate(p, old_sz);
        return nullptr;
    }
    if (old_sz > std::size_t(MAX_BYTES) && new_sz > std::size_t(MAX_BYTES)) {
        void* r = std::realloc(p, new_sz);
        if (r == nullptr) throw std::bad_alloc();
        return r;
    }
    if (round_up(old_sz) == round_up(new_sz)) return p;
    void* result = allocate(new_sz);
    std::size_t copy_sz = new_sz > old_sz ? old_sz : new_sz;
    if (copy_sz) __builtin_memcpy(result, p, copy_sz);
    deallocate(p, old_sz);
    return result;
}

// The process-wide pool, like SGI's static members of __default_alloc_template.
inline sgi_free_list g_sgi_pool;

// The pool, reached as the Rust harness reaches its own: through an address in a register.
// Folded to a constant, its free-list heads become rip-relative operands; the loads and
// stores are the same, but an Intel core with memory renaming forwards a store to a later
// load through the same base register at no cost and through rip-relative operands not
// (pair24 0.55 vs 2.1 ns on the Xeon of issue 12): that measured the addressing mode.
// The empty asm hides the address from the optimizer once; it stays in a register.
inline sgi_free_list* sgi_pool() {
    sgi_free_list* p = &g_sgi_pool;
    asm("" : "+r"(p));
    return p;
}

// STL adapter over the global pool (SGI's simple_alloc / allocator<T>).
template <class T>
struct sgi_allocator {
    using value_type = T;
    sgi_allocator() noexcept = default;
    template <class U>
    sgi_allocator(const sgi_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(sgi_pool()->allocate(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) noexcept { sgi_pool()->deallocate(p, n * sizeof(T)); }
    template <class U>
    bool operator==(const sgi_allocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const sgi_allocator<U>&) const noexcept { return false; }
};

}  // namespace sgi
