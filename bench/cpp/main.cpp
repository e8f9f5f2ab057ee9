// stlbench: SPEC section 7 workloads over the C++ reference allocators.
//   stlbench [--workloads a,b] [--allocators x,y] [--runs N] [--scale F] [--json]
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <gnu/libc-version.h>
#include <map>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "allocators.hpp"
#include "workloads.hpp"

namespace {

using TimedFn = std::uint64_t (*)(std::uint64_t);
using ListmemFn = double (*)(std::uint64_t);

struct WorkloadDef {
    const char* name;
    const char* unit;
    std::uint64_t base_iters;
};

const WorkloadDef kWorkloads[] = {
    {"pair8", "ns/op", 20000000},  {"pair24", "ns/op", 20000000},
    {"pair64", "ns/op", 20000000}, {"pair128", "ns/op", 20000000},
    {"list", "ns/op", 1000000},    {"vec16", "ns/op", 1000000},
    {"churn", "ns/op", 10000000},  {"batch32", "ns/op", 1000000},
    {"listmem", "bytes/node", 1000000},
};

struct AllocDef {
    const char* name;
    std::map<std::string, TimedFn> timed;
    ListmemFn listmem;
};

template <class P>
AllocDef make_alloc() {
    AllocDef a;
    a.name = P::name;
    a.timed["pair8"] = &bench::pair<P, 8>;
    a.timed["pair24"] = &bench::pair<P, 24>;
    a.timed["pair64"] = &bench::pair<P, 64>;
    a.timed["pair128"] = &bench::pair<P, 128>;
    a.timed["list"] = &bench::list<P>;
    a.timed["vec16"] = &bench::vec16<P>;
    a.timed["churn"] = &bench::churn<P>;
    a.timed["batch32"] = &bench::batch32<P>;
    a.listmem = &bench::listmem_child<P>;
    return a;
}

std::vector<AllocDef> all_allocators() {
    return {make_alloc<bench::StdAllocator>(), make_alloc<bench::PoolAlloc>(),
            make_alloc<bench::MtAlloc>(), make_alloc<bench::PmrPool>(),
            make_alloc<bench::SgiFreeList>()};
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        std::size_t c = s.find(',', start);
        if (c == std::string::npos) c = s.size();
        if (c > start) out.push_back(s.substr(start, c - start));
        start = c + 1;
    }
    return out;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

[[noreturn]] void usage(int code) {
    std::fprintf(code ? stderr : stdout,
                 "usage: stlbench [--workloads a,b,...] [--allocators x,y,...] [--runs N]\n"
                 "                [--scale F] [--json]\n"
                 "workloads: pair8 pair24 pair64 pair128 list vec16 churn batch32 listmem\n"
                 "allocators: std::allocator __pool_alloc __mt_alloc "
                 "pmr::unsynchronized_pool sgi_free_list\n");
    std::exit(code);
}

// Runs listmem for one allocator in a freshly exec'd copy of this program, so
// that no allocator's heap (or this process's earlier workloads) blurs another.
double run_listmem_child(const char* self, const char* alloc, std::uint64_t nodes) {
    int fds[2];
    if (pipe(fds) != 0) {
        std::perror("pipe");
        std::exit(1);
    }
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        std::exit(1);
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        close(fds[1]);
        std::string n = std::to_string(nodes);
        execl(self, self, "--listmem-child", alloc, n.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    close(fds[1]);
    std::string out;
    char buf[256];
    for (;;) {
        ssize_t k = read(fds[0], buf, sizeof buf);
        if (k > 0) out.append(buf, std::size_t(k));
        else if (k < 0 && errno == EINTR) continue;
        else break;
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.empty()) {
        std::fprintf(stderr, "listmem child for %s failed (status %d)\n", alloc, status);
        std::exit(1);
    }
    return std::strtod(out.c_str(), nullptr);
}

struct Result {
    std::string alloc, workload, unit;
    std::uint64_t iters;
    std::vector<double> runs;
};

void print_json(const Result& r) {
    std::printf("{\"lang\":\"cpp\",\"allocator\":\"%s\",\"workload\":\"%s\",\"unit\":\"%s\","
                "\"median\":%.3f,\"runs\":[",
                r.alloc.c_str(), r.workload.c_str(), r.unit.c_str(), median(r.runs));
    for (std::size_t i = 0; i < r.runs.size(); ++i)
        std::printf("%s%.3f", i ? "," : "", r.runs[i]);
    std::printf("],\"iterations\":%llu}\n", static_cast<unsigned long long>(r.iters));
    std::fflush(stdout);
}

void print_row(const Result& r) {
    std::printf("%-9s %-26s %10.2f %-10s %11llu  [", r.workload.c_str(), r.alloc.c_str(),
                median(r.runs), r.unit.c_str(), static_cast<unsigned long long>(r.iters));
    for (std::size_t i = 0; i < r.runs.size(); ++i)
        std::printf("%s%.2f", i ? " " : "", r.runs[i]);
    std::printf("]\n");
    std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<AllocDef> allocs = all_allocators();

    // Hidden mode: one listmem measurement in this (fresh) process.
    if (argc == 4 && std::strcmp(argv[1], "--listmem-child") == 0) {
        for (const AllocDef& a : allocs) {
            if (a.name == std::string(argv[2])) {
                double v = a.listmem(std::strtoull(argv[3], nullptr, 10));
                std::printf("%.6f\n", v);
                return 0;
            }
        }
        return 2;
    }

    std::vector<std::string> want_w, want_a;
    int runs = 5;
    double scale = 1.0;
    bool json = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(2);
            return argv[++i];
        };
        if (arg == "--workloads") want_w = split(value());
        else if (arg == "--allocators") want_a = split(value());
        else if (arg == "--runs") runs = std::atoi(value().c_str());
        else if (arg == "--scale") scale = std::strtod(value().c_str(), nullptr);
        else if (arg == "--json") json = true;
        else if (arg == "--help" || arg == "-h") usage(0);
        else usage(2);
    }
    if (runs < 1 || !(scale > 0)) usage(2);

    std::vector<const WorkloadDef*> workloads;
    if (want_w.empty())
        for (const WorkloadDef& w : kWorkloads) workloads.push_back(&w);
    for (const std::string& n : want_w) {
        const WorkloadDef* found = nullptr;
        for (const WorkloadDef& w : kWorkloads)
            if (n == w.name) found = &w;
        if (!found) {
            std::fprintf(stderr, "unknown workload: %s\n", n.c_str());
            usage(2);
        }
        workloads.push_back(found);
    }
    std::vector<const AllocDef*> selected;
    if (want_a.empty())
        for (const AllocDef& a : allocs) selected.push_back(&a);
    for (const std::string& n : want_a) {
        const AllocDef* found = nullptr;
        for (const AllocDef& a : allocs)
            if (n == a.name) found = &a;
        if (!found) {
            std::fprintf(stderr, "unknown allocator: %s\n", n.c_str());
            usage(2);
        }
        selected.push_back(found);
    }

    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        std::perror("readlink /proc/self/exe");
        return 1;
    }
    self[sl] = 0;

    // Context: on glibc >= 2.34 libstdc++ makes __gthread_active_p() a constant 1,
    // so __pool_alloc locks its mutex and __mt_alloc takes its threaded path.
    std::FILE* meta = json ? stderr : stdout;
    std::fprintf(meta,
                 "# stlbench: glibc %s, g++ %d.%d, __gthread_active_p()=%d, "
                 "GLIBCXX_FORCE_NEW=%s, runs=%d, scale=%g\n",
                 gnu_get_libc_version(), __GNUC__, __GNUC_MINOR__, __gthread_active_p(),
                 std::getenv("GLIBCXX_FORCE_NEW") ? "set" : "unset", runs, scale);
    if (!json)
        std::printf("%-9s %-26s %10s %-10s %11s  %s\n", "workload", "allocator", "median",
                    "unit", "iterations", "runs");

    std::vector<Result> results;
    for (const WorkloadDef* w : workloads) {
        std::uint64_t iters =
            std::max<std::uint64_t>(1, std::uint64_t(std::llround(double(w->base_iters) * scale)));
        std::vector<Result> rs;
        for (const AllocDef* a : selected) rs.push_back({a->name, w->name, w->unit, iters, {}});
        // Interleave allocators run by run so slow drift on a shared machine
        // spreads over all of them.
        for (int r = 0; r < runs; ++r) {
            for (std::size_t k = 0; k < selected.size(); ++k) {
                const AllocDef* a = selected[k];
                double v;
                if (std::strcmp(w->name, "listmem") == 0)
                    v = run_listmem_child(self, a->name, iters);
                else
                    v = double(a->timed.at(w->name)(iters)) / double(iters);
                rs[k].runs.push_back(v);
            }
        }
        for (const Result& r : rs) {
            if (json) print_json(r);
            else print_row(r);
            results.push_back(r);
        }
    }

    if (!json && !results.empty()) {
        // Summary matrix of medians.
        std::printf("\nmedians (ns/op; listmem in bytes/node)\n%-9s", "");
        for (const AllocDef* a : selected) std::printf(" %26s", a->name);
        std::printf("\n");
        for (const WorkloadDef* w : workloads) {
            std::printf("%-9s", w->name);
            for (const AllocDef* a : selected)
                for (const Result& r : results)
                    if (r.workload == w->name && r.alloc == a->name)
                        std::printf(" %26.2f", median(r.runs));
            std::printf("\n");
        }
    }
    return 0;
}
