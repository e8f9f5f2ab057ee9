// The allocators under test, each as a policy with one interface:
//   name, allocate(n)/deallocate(p, n) for raw bytes,
//   list<T>/vector<T> container types and make<C>() to construct one.
#pragma once

#include <cstddef>
#include <ext/mt_allocator.h>
#include <ext/pool_allocator.h>
#include <list>
#include <memory>
#include <memory_resource>
#include <vector>

#include "sgi_free_list.hpp"

namespace bench {

struct StdAllocator {
    static constexpr const char* name = "std::allocator";
    static void* allocate(std::size_t n) { return std::allocator<char>().allocate(n); }
    static void deallocate(void* p, std::size_t n) {
        std::allocator<char>().deallocate(static_cast<char*>(p), n);
    }
    template <class T> using list = std::list<T, std::allocator<T>>;
    template <class T> using vector = std::vector<T, std::allocator<T>>;
    template <class C> static C make() { return C(); }
};

struct PoolAlloc {
    static constexpr const char* name = "__pool_alloc";
    static void* allocate(std::size_t n) { return __gnu_cxx::__pool_alloc<char>().allocate(n); }
    static void deallocate(void* p, std::size_t n) {
        __gnu_cxx::__pool_alloc<char>().deallocate(static_cast<char*>(p), n);
    }
    template <class T> using list = std::list<T, __gnu_cxx::__pool_alloc<T>>;
    template <class T> using vector = std::vector<T, __gnu_cxx::__pool_alloc<T>>;
    template <class C> static C make() { return C(); }
};

struct MtAlloc {
    static constexpr const char* name = "__mt_alloc";
    static void* allocate(std::size_t n) { return __gnu_cxx::__mt_alloc<char>().allocate(n); }
    static void deallocate(void* p, std::size_t n) {
        __gnu_cxx::__mt_alloc<char>().deallocate(static_cast<char*>(p), n);
    }
    template <class T> using list = std::list<T, __gnu_cxx::__mt_alloc<T>>;
    template <class T> using vector = std::vector<T, __gnu_cxx::__mt_alloc<T>>;
    template <class C> static C make() { return C(); }
};

// One process-wide resource, default pool_options, upstream new_delete_resource.
inline std::pmr::unsynchronized_pool_resource g_pmr_pool{std::pmr::new_delete_resource()};

struct PmrPool {
    static constexpr const char* name = "pmr::unsynchronized_pool";
    static void* allocate(std::size_t n) { return g_pmr_pool.allocate(n, 8); }
    static void deallocate(void* p, std::size_t n) { g_pmr_pool.deallocate(p, n, 8); }
    template <class T> using list = std::pmr::list<T>;
    template <class T> using vector = std::pmr::vector<T>;
    template <class C> static C make() {
        return C(typename C::allocator_type(&g_pmr_pool));
    }
};

struct SgiFreeList {
    static constexpr const char* name = "sgi_free_list";
    static void* allocate(std::size_t n) { return sgi::sgi_pool()->allocate(n); }
    static void deallocate(void* p, std::size_t n) { sgi::sgi_pool()->deallocate(p, n); }
    template <class T> using list = std::list<T, sgi::sgi_allocator<T>>;
    template <class T> using vector = std::vector<T, sgi::sgi_allocator<T>>;
    template <class C> static C make() { return C(); }
};

}  // namespace bench
