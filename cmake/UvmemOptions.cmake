# Compiler warnings and the sanitizer switch, applied to every uvmem target through
# the interface target uvmem_build_flags (linked PRIVATE, so it never leaks to users).
add_library(uvmem_build_flags INTERFACE)
target_compile_options(uvmem_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wno-missing-field-initializers -Werror=return-type)
if(UVMEM_DEBUG_FULL)
  target_compile_definitions(uvmem_build_flags INTERFACE UVMEM_DEBUG_FULL=1)
endif()

if(UVMEM_SANITIZER)
  string(REPLACE ";" "," _san "${UVMEM_SANITIZER}")
  foreach(_s IN ITEMS ${UVMEM_SANITIZER})
    if(NOT _s MATCHES "^(address|undefined|thread)(,(address|undefined|thread))*$")
      message(FATAL_ERROR "UVMEM_SANITIZER must be address, undefined, thread or a comma list; got '${UVMEM_SANITIZER}'")
    endif()
  endforeach()
  message(STATUS "uvmem: building with -fsanitize=${_san}")
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=${_san})
  add_compile_definitions(UVMEM_SANITIZER_BUILD=1)
endif()
