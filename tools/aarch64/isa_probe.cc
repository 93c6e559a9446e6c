// Prints what the running (possibly emulated) AArch64 CPU reports and what picoface makes of
// it, one key=value per line, so kernel_test.sh can check dispatch under each QEMU_CPU.
#include <sys/auxv.h>

#include <cstdio>
#include <string>

#include "picoface/cpu.h"

int main() {
  const unsigned long hwcap = getauxval(AT_HWCAP);
  std::printf("hwcap=%#lx\n", hwcap);
  std::printf("hwcap_asimd=%lu\n", (hwcap >> 1) & 1);     // HWCAP_ASIMD
  std::printf("hwcap_asimddp=%lu\n", (hwcap >> 20) & 1);  // HWCAP_ASIMDDP
  std::string supported;
  for (picoface::Isa isa : picoface::supported_isas()) {
    supported += (supported.empty() ? "" : ",") + std::string(picoface::isa_name(isa));
  }
  std::printf("supported=%s\n", supported.c_str());
  std::printf("default=%s\n", picoface::isa_name(picoface::default_isa()));
  return 0;
}
