# Cross-compiling picoface for 64-bit ARM Linux with Debian's GNU cross toolchain
# (apt-get install g++-aarch64-linux-gnu). Test binaries run under qemu-aarch64-static.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(PICOFACE_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "Prefix of the cross toolchain")
set(CMAKE_C_COMPILER "${PICOFACE_CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${PICOFACE_CROSS_PREFIX}g++")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static)

# Libraries and headers come from the cross sysroot only; programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
