#!/usr/bin/env bash
# Cross-compiles the picoface C++ core and the kernel test driver for AArch64 (static) and
# runs the driver under qemu-aarch64-static on two emulated cores:
#   cortex-a53   no dot product   -> dispatch must choose neon
#   neoverse-n1  dot product      -> dispatch must choose neondot
# The driver compares every ISA the (emulated) CPU supports with the scalar reference.
# Exit status: 0 all passed, 1 a mismatch or wrong dispatch, 2 missing tools or files.
# Usage: tools/aarch64/kernel_test.sh [build-dir]   (default: build/aarch64)
# Timings under qemu are meaningless; this script checks correctness only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build/aarch64}"
cross_cxx="aarch64-linux-gnu-g++"
qemu="qemu-aarch64-static"

missing_pkgs=()
command -v "$cross_cxx" >/dev/null || missing_pkgs+=(g++-aarch64-linux-gnu)
command -v "$qemu" >/dev/null || missing_pkgs+=(qemu-user-static)
command -v cmake >/dev/null || missing_pkgs+=(cmake)
if ((${#missing_pkgs[@]})); then
  echo "error: missing tools; install them with: sudo apt-get install -y ${missing_pkgs[*]}" >&2
  exit 2
fi
if [[ ! -f "$root/tests/cpp/kernel_tests.cc" ]]; then
  echo "error: $root/tests/cpp/kernel_tests.cc (the kernel test driver) not found" >&2
  exit 2
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
echo "== configure + build in $build"
mkdir -p "$build"
log="$build/configure.log"
cmake -S "$root" -B "$build" "${generator[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$root/tools/aarch64/toolchain.cmake" \
  -DCMAKE_BUILD_TYPE=Release \
  -DPICOFACE_BUILD_PYTHON=OFF -DPICOFACE_BUILD_TESTS=ON \
  -DCMAKE_EXE_LINKER_FLAGS=-static >"$log" 2>&1 ||
  { cat "$log" >&2; exit 1; }
grep -E '^-- picoface:' "$log" || true
cmake --build "$build" --target picoface_kernel_tests -j "$(nproc)"
"$cross_cxx" -std=c++17 -O2 -static -I"$root/cpp/include" "$root/tools/aarch64/isa_probe.cc" \
  "$build/libpicoface_core.a" -o "$build/isa_probe"

status=0
summary=()
run_core() {
  local cpu="$1" want_dp="$2" want_isa="$3"
  echo
  echo "== QEMU_CPU=$cpu (expect HWCAP_ASIMDDP=$want_dp, dispatch $want_isa)"
  local probe
  probe="$(env -u PICOFACE_ISA QEMU_CPU="$cpu" "$qemu" "$build/isa_probe")"
  echo "$probe"
  local dp isa supported
  dp="$(sed -n 's/^hwcap_asimddp=//p' <<<"$probe")"
  isa="$(sed -n 's/^default=//p' <<<"$probe")"
  supported="$(sed -n 's/^supported=//p' <<<"$probe")"
  if [[ "$dp" != "$want_dp" || "$isa" != "$want_isa" ]]; then
    echo "FAIL: QEMU_CPU=$cpu reports asimddp=$dp and dispatches $isa" >&2
    status=1
  fi
  local out rc=0
  out="$(env -u PICOFACE_ISA QEMU_CPU="$cpu" "$qemu" "$build/picoface_kernel_tests" 2>&1)" || rc=$?
  echo "$out"
  local line
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1 || true)"
  local pass_re='^[1-9][0-9]* passed, 0 failed$'
  if [[ $rc -ne 0 || ! "$line" =~ $pass_re ]]; then
    echo "FAIL: QEMU_CPU=$cpu: driver exit status $rc, summary '${line:-none}'" >&2
    status=1
  fi
  summary+=("QEMU_CPU=$cpu  ISAs tested: $supported  default: $isa" \
    "  -> ${line:-no summary} (exit $rc)")
}

run_core cortex-a53 0 neon
run_core neoverse-n1 1 neondot

echo
echo "== summary"
printf '%s%s\n' "${summary[@]}"
[[ $status -eq 0 ]] && echo "aarch64 kernel tests: OK" || echo "aarch64 kernel tests: FAILED" >&2
exit "$status"
