// Tests of KernelReport: parsing, and that the report agrees with itself and with what
// the kernel actually lets this process do.
#include "platform/kernel_info.h"

#include <gtest/gtest.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "platform/pagemap.h"
#include "platform/userfaultfd.h"

namespace uvmem::internal {
namespace {

TEST(ParseKernelRelease, ParsesDistributionStrings) {
  absl::StatusOr<KernelVersion> v = ParseKernelRelease("6.18.44-fc-v595");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (KernelVersion{6, 18, 44}));
  EXPECT_EQ(*ParseKernelRelease("6.1.0-56-amd64"), (KernelVersion{6, 1, 0}));
  EXPECT_EQ(*ParseKernelRelease("5.15"), (KernelVersion{5, 15, 0}));
  EXPECT_EQ(*ParseKernelRelease("6.8.0-rc3+"), (KernelVersion{6, 8, 0}));
  EXPECT_EQ(*ParseKernelRelease("4.19.0.123"), (KernelVersion{4, 19, 0}));
}

TEST(ParseKernelRelease, RejectsGarbage) {
  EXPECT_FALSE(ParseKernelRelease("").ok());
  EXPECT_FALSE(ParseKernelRelease("linux").ok());
  EXPECT_FALSE(ParseKernelRelease("6").ok());
  EXPECT_FALSE(ParseKernelRelease("6.").ok());
  EXPECT_FALSE(ParseKernelRelease(".18").ok());
}

TEST(KernelVersion, Orders) {
  EXPECT_TRUE((KernelVersion{6, 8, 0}).AtLeast(6, 8));
  EXPECT_TRUE((KernelVersion{6, 18, 1}).AtLeast(6, 8));
  EXPECT_FALSE((KernelVersion{6, 7, 12}).AtLeast(6, 8));
  EXPECT_FALSE((KernelVersion{5, 19, 0}).AtLeast(6, 1));
  EXPECT_LT((KernelVersion{6, 1, 0}), (KernelVersion{6, 1, 1}));
}

TEST(ParseSysfsChoice, PicksTheBracketedWord) {
  EXPECT_EQ(ParseSysfsChoice("always [madvise] never\n"), "madvise");
  EXPECT_EQ(ParseSysfsChoice("[always] madvise never"), "always");
  EXPECT_EQ(ParseSysfsChoice("always madvise [never]"), "never");
  EXPECT_EQ(ParseSysfsChoice("always madvise never"), "");
  EXPECT_EQ(ParseSysfsChoice(""), "");
}

TEST(KernelReport, ReleaseIsThisKernels) {
  KernelReport r = GatherKernelReport();
  struct utsname uts {};
  ASSERT_EQ(::uname(&uts), 0);
  EXPECT_FALSE(r.release.empty());
  EXPECT_EQ(r.release, uts.release);
  ASSERT_TRUE(r.version.has_value()) << r.release;
  EXPECT_GE(r.version->major, 4);
}

TEST(KernelReport, IsConsistent) {
  KernelReport r = GatherKernelReport();
  EXPECT_EQ(r.euid, static_cast<unsigned>(::geteuid()));
  const bool can_open = r.uffd_access != UffdAccess::kNone;
  EXPECT_EQ(r.uffd_error.empty(), can_open) << r.uffd_error;
  // A feature is usable exactly when offered and a uffd can be opened.
  EXPECT_EQ(r.move_usable, can_open && r.features.move());
  EXPECT_EQ(r.poison_usable, can_open && r.features.poison());
  EXPECT_EQ(r.write_protect_usable, can_open && r.features.pagefault_flag_wp());
  EXPECT_EQ(r.event_fork_usable, can_open && r.features.event_fork() && r.cap_sys_ptrace);
  EXPECT_EQ(r.dirty_tracking_usable, r.write_protect_usable && r.pagemap_scan_usable);
  EXPECT_EQ(r.pagemap_scan_usable, ProbePagemapScan());
  if (!r.dev_userfaultfd_exists) {
    EXPECT_FALSE(r.dev_userfaultfd_accessible);
  }
  if (!r.thp_enabled.empty()) {
    EXPECT_TRUE(r.thp_enabled == "always" || r.thp_enabled == "madvise" || r.thp_enabled == "never")
        << r.thp_enabled;
  }
  EXPECT_FALSE(UffdAccessMeaning(r.uffd_access).empty());
}

TEST(KernelReport, AccessFollowsThePrivilegeRules) {
  KernelReport r = GatherKernelReport();
  if (r.uffd_access == UffdAccess::kNone) GTEST_SKIP() << "no userfaultfd: " << r.uffd_error;
  // The kernel's rule (fs/userfaultfd.c): full mode via the syscall for CAP_SYS_PTRACE or
  // when the sysctl allows it; otherwise via an accessible /dev/userfaultfd.
  const bool syscall_full = r.cap_sys_ptrace || r.unprivileged_userfaultfd == 1;
  if (syscall_full) {
    EXPECT_EQ(r.uffd_access, UffdAccess::kFull);
    EXPECT_EQ(r.uffd_path, UffdOpenPath::kSyscall);
  } else if (r.dev_userfaultfd_accessible) {
    EXPECT_EQ(r.uffd_access, UffdAccess::kFull);
    EXPECT_EQ(r.uffd_path, UffdOpenPath::kDevNode);
  } else if (r.unprivileged_userfaultfd == 0) {
    EXPECT_EQ(r.uffd_access, UffdAccess::kUserModeOnly);
  }
}

TEST(KernelReport, FeaturesMatchTheKernelVersion) {
  KernelReport r = GatherKernelReport();
  if (r.uffd_access == UffdAccess::kNone || !r.version) GTEST_SKIP() << "no userfaultfd";
  // Features the kernel offers from a version on (when built in, as on distro kernels).
  if (r.version->AtLeast(6, 8)) {
    EXPECT_TRUE(r.features.move());
  }
  if (r.version->AtLeast(6, 7)) {
    EXPECT_TRUE(r.features.wp_async());
    EXPECT_TRUE(r.pagemap_scan_usable);
  }
  if (r.version->AtLeast(6, 6)) {
    EXPECT_TRUE(r.features.poison());
  }
  if (!r.version->AtLeast(6, 8)) {
    EXPECT_FALSE(r.features.move());
  }
  if (!r.version->AtLeast(6, 7)) {
    EXPECT_FALSE(r.pagemap_scan_usable);
  }
  EXPECT_TRUE(r.features.event_fork());
  EXPECT_TRUE(r.features.event_remap());
  EXPECT_TRUE(r.features.event_remove());
  EXPECT_TRUE(r.features.event_unmap());
}

}  // namespace
}  // namespace uvmem::internal
