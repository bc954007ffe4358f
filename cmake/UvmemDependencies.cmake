# Every third-party dependency is found here, once, from Debian 12 packages:
#   libabsl-dev libfmt-dev libgtest-dev libbenchmark-dev libnuma-dev nlohmann-json3-dev
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(fmt REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)   # the JSON statistics report (lib/report)
find_package(PkgConfig REQUIRED)
pkg_check_modules(NUMA REQUIRED IMPORTED_TARGET numa)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)  # swap slot checksums
if(UVMEM_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(UVMEM_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
