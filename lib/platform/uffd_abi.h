// uffd_abi.h — the kernel ABI for userfaultfd and PAGEMAP_SCAN, completed for old headers.
//
// Includes <linux/userfaultfd.h> and <linux/fs.h> and defines, once and only when the
// installed headers lack them, what newer kernels (6.6 .. 6.8) added: the features
// WP_UNPOPULATED, POISON, WP_ASYNC and MOVE, the UFFDIO_MOVE and UFFDIO_POISON ioctls with
// their argument structs, and the /proc/<pid>/pagemap PAGEMAP_SCAN ioctl (6.7) with
// struct pm_scan_arg, struct page_region and the PAGE_IS_* categories. Debian 12 ships
// 6.1 headers while the machines run 6.18, so the kernel supports more than the headers
// can name. Layouts follow include/uapi/linux/userfaultfd.h and include/uapi/linux/fs.h
// of Linux 6.18 and are checked with static_asserts below.
//
// PRIVATE TO lib/platform/*.cc: no header of uvmem includes this file, so policy code
// never sees <linux/userfaultfd.h>. Everything here is the kernel's C ABI, unchanged.
#ifndef UVMEM_PLATFORM_UFFD_ABI_H_
#define UVMEM_PLATFORM_UFFD_ABI_H_

#include <linux/fs.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>

// ---- userfaultfd features (uffdio_api.features) newer than Linux 6.1 ----------------------
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)  // 6.4: WP also marks unpopulated PTEs
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)  // 6.6: UFFDIO_POISON
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)  // 6.7: write faults on WP pages resolved by the kernel
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)  // 6.8: UFFDIO_MOVE
#endif

// ---- UFFDIO_MOVE (6.8) ---------------------------------------------------------------------
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef UFFDIO_MOVE
struct uffdio_move {
  __u64 dst;
  __u64 src;
  __u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
  __u64 mode;
  // Written by the kernel: bytes moved, or a negated errno. Must stay last: the kernel
  // does not read it.
  __s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

// ---- UFFDIO_POISON (6.6) -------------------------------------------------------------------
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif
#ifndef UFFDIO_POISON
struct uffdio_poison {
  struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
  __u64 mode;
  // Written by the kernel: bytes poisoned, or a negated errno.
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

// ---- PAGEMAP_SCAN on /proc/<pid>/pagemap (6.7) ---------------------------------------------
#ifndef PAGEMAP_SCAN
// Categories: masks in pm_scan_arg, reported in page_region.categories.
#define PAGE_IS_WPALLOWED (1 << 0)  // async write-protection is enabled for the page
#define PAGE_IS_WRITTEN (1 << 1)    // written since it was last write-protected
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

// One run of pages with equal categories; [start, end).
struct page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};

// Flags of the ioctl.
#define PM_SCAN_WP_MATCHING (1 << 0)    // write-protect the pages that matched
#define PM_SCAN_CHECK_WPASYNC (1 << 1)  // fail on a page without async WP enabled

struct pm_scan_arg {
  __u64 size;  // sizeof(struct pm_scan_arg)
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;  // written by the kernel: where the walk stopped
  __u64 vec;       // struct page_region array
  __u64 vec_len;
  __u64 max_pages;  // 0: no limit
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif  // PAGEMAP_SCAN

#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8)  // 6.14: a MADV_GUARD_INSTALL guard region
#endif

// Layout checks against the kernel's uapi (sizes are part of the ioctl numbers).
static_assert(sizeof(struct uffd_msg) == 32, "uffd_msg layout");
static_assert(sizeof(struct uffdio_move) == 40, "uffdio_move layout");
static_assert(sizeof(struct uffdio_poison) == 32, "uffdio_poison layout");
static_assert(sizeof(struct page_region) == 24, "page_region layout");
static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg layout");
static_assert(UFFDIO_MOVE == 0xc028aa05, "UFFDIO_MOVE number");
static_assert(UFFDIO_POISON == 0xc020aa08, "UFFDIO_POISON number");
static_assert(PAGEMAP_SCAN == 0xc0606610, "PAGEMAP_SCAN number");

#endif  // UVMEM_PLATFORM_UFFD_ABI_H_
