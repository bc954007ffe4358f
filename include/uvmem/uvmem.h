/* uvmem/uvmem.h — the C API of uvmem.
 *
 * The same runtime and ranges as uvmem/runtime.h, for C and other languages:
 *
 *   uvmem_runtime_options o;
 *   uvmem_runtime_options_init(&o);
 *   uvmem_runtime* rt;
 *   if (uvmem_runtime_create(&o, &rt) != 0) { fprintf(stderr, "%s\n", uvmem_last_error()); }
 *   uvmem_range* r;
 *   uvmem_reserve(rt, 1 << 30, NULL, &r);      // 1 GiB, filled on first touch
 *   memset(uvmem_range_data(r), 1, 4096);
 *   uvmem_range_release(r);
 *   uvmem_runtime_destroy(rt);
 *
 * Errors: functions returning int return 0 on success or a positive errno value
 * (EINVAL bad argument, EPERM userfaultfd not permitted, ENOSYS no userfaultfd, ENOMEM
 * no memory or address space, EOPNOTSUPP a kernel feature is missing, EIO anything
 * else); the calling thread's
 * uvmem_last_error() then says why in words. No C++ exception crosses this API.
 * Units: lengths in bytes; page counts in 4 KiB pages; times in nanoseconds.
 * Thread-safety: as the C++ API — everything is thread-safe except releasing a range
 * while another thread uses its handle. */
#ifndef UVMEM_UVMEM_H_
#define UVMEM_UVMEM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uvmem_runtime uvmem_runtime;
typedef struct uvmem_range uvmem_range;

typedef struct uvmem_runtime_options {
  size_t pool_bytes_total;    /* frame pool over all nodes (default 1 GiB) */
  size_t pool_bytes_per_node; /* if non-zero, overrides pool_bytes_total */
  int fault_threads;          /* 0: one per NUMA node */
  size_t fault_around_pages;  /* power of two, 1..512 (default 64) */
  size_t readahead_pages;     /* filled ahead of sequential faults (default 256; 0 off) */
  int use_move;               /* non-zero: UFFDIO_MOVE where available (default 1) */
  int allow_user_mode_only;   /* accept EFAULT for syscalls into missing pages */
  int prefault_pool;          /* back every pool frame at creation (MOVE path only) */
  /* Resident budget and swap (RuntimeOptions in uvmem/runtime.h says more). */
  size_t budget_bytes;        /* most bytes of range pages resident at once, at most the
                               * pool and at least 1 MiB; cold pages beyond it go to swap
                               * (default 0: no budget, no swap) */
  const char* swap_path;      /* a directory (an unlinked swap file is made in it), an
                               * existing file or a block device; NULL or "": $TMPDIR,
                               * else /tmp. Copied by uvmem_runtime_create. */
  size_t swap_max_bytes;      /* most bytes of swap (default 0: a device's or existing
                               * file's size, else the pool's size, at least 4 x
                               * budget_bytes; at least 1 MiB when set) */
  int clones_with_budget;     /* 1: uvmem_range_clone works under a budget, at the cost of
                               * a fault per first write to a page reclaim watches
                               * (RuntimeOptions::clones_with_budget); default 0 */
} uvmem_runtime_options;

enum uvmem_numa_kind {
  UVMEM_NUMA_LOCAL = 0,
  UVMEM_NUMA_BIND = 1,
  UVMEM_NUMA_PREFERRED = 2,
  UVMEM_NUMA_INTERLEAVE = 3,
};

typedef struct uvmem_range_options {
  const char* name;     /* NULL: "anon" */
  int numa_kind;        /* enum uvmem_numa_kind */
  const int* nodes;     /* numa_kind's nodes (one for BIND/PREFERRED); NULL if none */
  size_t num_nodes;
} uvmem_range_options;

typedef struct uvmem_range_stats {
  uint64_t faults, pages_filled, fault_around_pages, pages_moved, pages_copied, races_lost;
  uint64_t resident_pages, peak_resident_pages, page_table_bytes, oom_kills;
  uint64_t discarded_refills;
  uint64_t swapped_pages;     /* pages in swap now (not resident) */
  uint64_t pages_swapped_out; /* evictions to swap (written or dropped clean) */
  uint64_t pages_swapped_in;  /* pages read back from swap */
  uint64_t shared_pages;      /* pages sharing a frame with another range now (clones) */
  uint64_t cow_copies;        /* shared pages this range copied on write or touch */
  uint64_t cow_moves;         /* shared pages this range received without a copy */
} uvmem_range_stats;

typedef struct uvmem_runtime_stats {
  uint64_t faults, pages_filled, fault_around_pages, pages_moved, pages_copied, races_lost;
  uint64_t oom_kills, ranges, resident_pages, metadata_bytes;
  uint64_t fault_latency_p50_ns, fault_latency_p99_ns;
  uint64_t pool_total_frames, pool_free_frames, pool_peak_used_frames; /* all nodes */
  int uffd_full;  /* 1: full userfaultfd; 0: user-mode-only (syscalls into holes: EFAULT) */
  int move_used;  /* 1: UFFDIO_MOVE path; 0: UFFDIO_COPY */
  int num_nodes;  /* NUMA nodes of the pool: indices for uvmem_runtime_node_stats_get */
  /* Swap and reclaim (SwapStats in uvmem/runtime.h); all 0 without a budget. Counters are
   * cumulative; *_pages (budget, watermarks) and slots_* are current. */
  int swap_enabled; /* 1: a budget is set and swapping is on */
  uint64_t swap_budget_pages, swap_low_watermark_pages, swap_high_watermark_pages;
  uint64_t swap_slots_total, swap_slots_used;           /* 4 KiB slots on the device */
  uint64_t swap_pages_swapped_out, swap_pages_swapped_in;
  uint64_t swap_bytes_written, swap_bytes_read;
  uint64_t swap_clean_pages_dropped, swap_refaults;
  uint64_t swap_readahead_pages, swap_readahead_hits;
  uint64_t swap_write_errors, swap_read_errors, swap_checksum_errors;
  uint64_t swap_reclaim_passes, swap_direct_reclaims, swap_budget_exhausted;
  uint64_t swap_swapin_latency_p50_ns, swap_swapin_latency_p99_ns;
  uint64_t swap_busy_pages, swap_swap_full; /* evictions refused: page busy, no free slot */
  /* Copy-on-write clones (CloneStats in uvmem/runtime.h); shared_* and bytes_saved are
   * current, the rest cumulative. */
  uint64_t clone_clones, clone_shared_frames, clone_shared_pages;
  uint64_t clone_cow_copies_source_side, clone_cow_copies_clone_side, clone_cow_moves;
  uint64_t clone_shared_swap_slots, clone_bytes_saved;
} uvmem_runtime_stats;

typedef struct uvmem_node_stats {
  int node; /* the kernel's node number */
  uint64_t total_frames, free_frames, used_frames, peak_used_frames; /* 4 KiB frames */
} uvmem_node_stats;

/* Fills *options with the defaults. */
void uvmem_runtime_options_init(uvmem_runtime_options* options) __attribute__((nonnull));

/* Creates a runtime (options NULL: defaults) into *out. */
__attribute__((nonnull(2), warn_unused_result)) int uvmem_runtime_create(
    const uvmem_runtime_options* options, uvmem_runtime** out);
/* Destroys a runtime. Every range must have been released (else the process aborts with
 * a message). NULL is ignored. */
void uvmem_runtime_destroy(uvmem_runtime* runtime);

/* Reserves length_bytes (rounded up to 4 KiB) into *out; options NULL: local, "anon". */
__attribute__((nonnull(1, 4), warn_unused_result)) int uvmem_reserve(
    uvmem_runtime* runtime, size_t length_bytes, const uvmem_range_options* options,
    uvmem_range** out);
/* Start and length of a range. */
void* uvmem_range_data(const uvmem_range* range) __attribute__((nonnull));
size_t uvmem_range_size(const uvmem_range* range) __attribute__((nonnull));
/* Releases a range and frees its handle: on success the handle must not be used again
 * (a second release is a use-after-free, as free(3) twice is). Returns EIO, and keeps
 * the range live and the handle valid, when the kernel refused to unregister it. */
int uvmem_range_release(uvmem_range* range) __attribute__((nonnull));
/* A copy-on-write clone of `source` into *out (Range::Clone in uvmem/runtime.h): same
 * size, policy and bytes; independent from then on — a write on either side is never
 * seen by the other. Pages are shared until one side writes them; the clone's first
 * touch of a shared page (a read too) copies it. name NULL or "": the source's name +
 * "-clone". Release the two in any order. Returns 0; EINVAL (a released source),
 * EOPNOTSUPP (no userfaultfd write-protection on this kernel), ENOMEM (no address
 * space or page tables), EIO (the kernel refused). Thread-safe. */
__attribute__((nonnull(1, 3), warn_unused_result)) int uvmem_range_clone(
    const uvmem_range* source, const char* name, uvmem_range** out);

/* Snapshots of the counters (see RangeStats / RuntimeStats in uvmem/runtime.h).
 * pool_peak_used_frames sums each node's own peak; the swap device's name
 * (SwapStats::device) is C++ only. Return 0, or ENOMEM. */
int uvmem_range_stats_get(const uvmem_range* range, uvmem_range_stats* out)
    __attribute__((nonnull));
int uvmem_runtime_stats_get(const uvmem_runtime* runtime, uvmem_runtime_stats* out)
    __attribute__((nonnull));

/* One NUMA node's share of the pool; index in [0, uvmem_runtime_stats.num_nodes).
 * Returns 0, EINVAL for a bad index, or ENOMEM. */
int uvmem_runtime_node_stats_get(const uvmem_runtime* runtime, int index, uvmem_node_stats* out)
    __attribute__((nonnull(1, 3)));

/* Why the calling thread's last failing uvmem call failed ("" when none). The string
 * stays valid until the thread's next uvmem call. */
const char* uvmem_last_error(void);


/* ---- The malloc front end ------------------------------------------------------------
 *
 * The same contract as the C library's malloc family, served by uvmem's heap: every
 * block lives in a userfaultfd-registered heap range whose pages the runtime fills on
 * first touch (see uvmem/malloc.h for the design). The heap starts on the first call,
 * configured by the UVMEM_* environment variables (docs/preload.md); it never stops.
 *
 * Errors: NULL with errno ENOMEM when memory (or address space) is exhausted, including
 * a size or size product that overflows; EINVAL for an alignment that is not a power of
 * two (aligned_alloc, posix_memalign — which returns the code instead of setting errno).
 * free(NULL) does nothing. Freeing a pointer twice, or one uvmem never returned, aborts
 * the process with a message naming the address, as glibc does.
 * Alignment: every block is aligned to 16 bytes (max_align_t).
 * Thread-safety: every function is thread-safe; a block may be freed by any thread.
 * Sizes are bytes. */

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define UVMEM_MALLOC_ATTRS(...) \
  __attribute__((malloc, malloc(uvmem_free, 1), warn_unused_result __VA_OPT__(, ) __VA_ARGS__))
#else
#define UVMEM_MALLOC_ATTRS(...) \
  __attribute__((malloc, warn_unused_result __VA_OPT__(, ) __VA_ARGS__))
#endif

void uvmem_free(void* p);
UVMEM_MALLOC_ATTRS(alloc_size(1)) void* uvmem_malloc(size_t size);
/* count * size bytes, all zero. */
UVMEM_MALLOC_ATTRS(alloc_size(1, 2)) void* uvmem_calloc(size_t count, size_t size);
/* realloc(3): p NULL → malloc; size 0 → frees p and returns NULL (as glibc); on failure
 * NULL with errno ENOMEM and p untouched. */
__attribute__((warn_unused_result, alloc_size(2))) void* uvmem_realloc(void* p, size_t size);
/* realloc(p, count * size), ENOMEM when the product overflows. */
__attribute__((warn_unused_result, alloc_size(2, 3))) void* uvmem_reallocarray(void* p,
                                                                              size_t count,
                                                                              size_t size);
/* `alignment` a power of two (else EINVAL); size need not be a multiple of it. */
UVMEM_MALLOC_ATTRS(alloc_align(1), alloc_size(2)) void* uvmem_aligned_alloc(size_t alignment,
                                                                           size_t size);
/* Returns 0, EINVAL (alignment not a power of two multiple of sizeof(void*)) or ENOMEM;
 * *out is written only on success. */
__attribute__((nonnull(1), warn_unused_result)) int uvmem_posix_memalign(void** out,
                                                                        size_t alignment,
                                                                        size_t size);
/* As glibc: an alignment that is not a power of two is rounded up to one. */
UVMEM_MALLOC_ATTRS(alloc_align(1), alloc_size(2)) void* uvmem_memalign(size_t alignment,
                                                                      size_t size);
/* Page-aligned (4 KiB); pvalloc also rounds the size up to whole pages. */
UVMEM_MALLOC_ATTRS(alloc_size(1)) void* uvmem_valloc(size_t size);
UVMEM_MALLOC_ATTRS() void* uvmem_pvalloc(size_t size);
/* Bytes usable at p (at least what was asked for); 0 for NULL. */
size_t uvmem_malloc_usable_size(const void* p);
/* A block whose frames come from NUMA node `node` (the kernel's number); NULL with errno
 * EINVAL when the node does not exist. Freed with uvmem_free like any other. */
UVMEM_MALLOC_ATTRS(alloc_size(1)) void* uvmem_malloc_onnode(size_t size, int node);
/* Gives every free span's frames back to the pool now instead of after the purge delay
 * (malloc_trim(3)). Returns the number of 4 KiB pages given back. */
size_t uvmem_malloc_trim(void);

typedef struct uvmem_malloc_stats {
  uint64_t malloc_calls, free_calls, thread_heaps;
  uint64_t small_pages_now, large_spans_now, spans_bytes_now, purged_pages;
  uint64_t heap_reserved_bytes, heap_resident_pages, heap_peak_resident_pages;
  int paged; /* 1: heap pages served by the runtime; 0: by the kernel (after fork, or the
              * runtime could not start) */
} uvmem_malloc_stats;
/* The heap's counters (see uvmem::MallocStats). Returns 0. */
int uvmem_malloc_stats_get(uvmem_malloc_stats* out) __attribute__((nonnull));

#ifdef __cplusplus
}
#endif

#endif /* UVMEM_UVMEM_H_ */
