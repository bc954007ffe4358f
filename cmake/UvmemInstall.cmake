# `cmake --install` gives users find_package(uvmem) and pkg-config's uvmem.pc.
include(CMakePackageConfigHelpers)

install(DIRECTORY include/uvmem DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT uvmemTargets NAMESPACE uvmem::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/uvmem)
configure_package_config_file(cmake/uvmemConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/uvmemConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/uvmem)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/uvmemConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/uvmemConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/uvmemConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/uvmem)
file(RELATIVE_PATH UVMEM_PC_TO_PREFIX "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
configure_file(cmake/uvmem.pc.in ${CMAKE_CURRENT_BINARY_DIR}/uvmem.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/uvmem.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
