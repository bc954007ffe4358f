// uvmem/version.h — the library's version.
#ifndef UVMEM_VERSION_H_
#define UVMEM_VERSION_H_

#define UVMEM_VERSION_MAJOR 0
#define UVMEM_VERSION_MINOR 1
#define UVMEM_VERSION_PATCH 0
#define UVMEM_VERSION_STRING "0.1.0"

#endif  // UVMEM_VERSION_H_
