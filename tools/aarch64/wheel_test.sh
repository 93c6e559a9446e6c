#!/usr/bin/env bash
# Installs a picoface aarch64 wheel into a Debian arm64 root (tools/aarch64/make_root.sh) and
# runs it under qemu on two emulated cores: cortex-a53 (no dot product -> dispatch must choose
# neon) and neoverse-n1 (dot product -> neondot). Runs `picoface info`, then the kernel,
# engine, importer, quantisation and pipeline tests: every kernel on every ISA the core has
# against the scalar reference, every engine op and the imported public models against
# onnxruntime's aarch64 build, int8 against the integer reference. ../shared (beside the
# repository) is mounted read-only in the root when present, so the model tests run; without
# it they skip, as on any machine.
#
# Each MODEL.pface (e.g. the shipped ones) also runs on the native engine with every ISA of
# each core against reference outputs made here on x86_64 (tools/aarch64/engine_smoke.py;
# HOST_PYTHON, default python3, must have picoface installed): float outputs within 1e-5 of
# the largest reference value, integer outputs bit-exact.
#
# Usage: tools/aarch64/wheel_test.sh ROOT WHEEL [MODEL.pface ...]
# Needs root (chroot, mounts) and binfmt_misc with qemu-aarch64 enabled (make_root.sh does
# both). Timings under qemu are meaningless; this checks correctness only.
set -euo pipefail

root_dir="${1:?usage: wheel_test.sh ROOT WHEEL}"
wheel="${2:?usage: wheel_test.sh ROOT WHEEL}"
models=("${@:3}")
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[[ -x "$root_dir/usr/bin/python3" ]] || { echo "error: no python3 in $root_dir" >&2; exit 2; }
[[ -f "$wheel" ]] || { echo "error: wheel not found: $wheel" >&2; exit 2; }
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null ||
  { echo "error: binfmt_misc qemu-aarch64 not enabled (update-binfmts --enable qemu-aarch64)" >&2; exit 2; }

work="$root_dir/opt/picoface-test"
rm -rf "$work"
mkdir -p "$work"
cp "$wheel" "$work/"
cp -r "$repo/tests" "$work/tests"
cp "$repo/tools/aarch64/engine_smoke.py" "$work/"
for i in "${!models[@]}"; do
  cp "${models[$i]}" "$work/model$i.pface"
  "${HOST_PYTHON:-python3}" "$repo/tools/aarch64/engine_smoke.py" make "${models[$i]}" "$work/ref$i.npz"
done

# Mounts, undone on exit: /proc (onnxruntime reads it), ../shared read-only at the path the
# tests expect (tests/../../shared), and a /proc/cpuinfo for the emulated core: inside the
# root the host's x86 cpuinfo shows through, and onnxruntime picks its kernels from it
# (a mismatch with QEMU_CPU gives SIGILL in its int8 paths; ../shared/TOOLCHAIN.md).
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
if ! mountpoint -q "$root_dir/proc"; then
  mount -t proc proc "$root_dir/proc"
  mounts+=("$root_dir/proc")
fi
if [[ -d "$repo/../shared" ]]; then
  mkdir -p "$root_dir/opt/shared"
  mountpoint -q "$root_dir/opt/shared" || { mount --bind -o ro "$repo/../shared" "$root_dir/opt/shared"
                                           mounts+=("$root_dir/opt/shared"); }
fi
fake_cpuinfo() {  # core -> a /proc/cpuinfo of that core (ARM's part numbers, Linux's feature names)
  local part features="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
  case "$1" in
    cortex-a53) part=0xd03 ;;
    neoverse-n1) part=0xd0c features="$features atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp" ;;
  esac
  printf 'processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 1\n\n' \
    "$features" "$part"
}
in_root() {  # a clean environment: host PIP_*/PYTHON* variables must not leak in
  chroot "$root_dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    PIP_ROOT_USER_ACTION=ignore "$@"
}
# pip checks the wheel's tags against the aarch64 interpreter: a wrong platform tag or
# extension suffix fails here or at import.
in_root python3 -m pip install -q --no-deps --no-index --force-reinstall \
  --break-system-packages "/opt/picoface-test/$(basename "$wheel")"

tests=(test_kernels.py test_engine.py test_importer.py test_modelfile.py test_quantize.py
       test_shipped_models.py test_detector.py test_preprocess.py test_decode_nms.py test_align.py
       test_gallery.py test_build_info.py test_bad_input.py)
status=0
for cpu in cortex-a53:neon neoverse-n1:neondot; do
  core="${cpu%%:*}" want="${cpu##*:}"
  echo "== QEMU_CPU=$core (dispatch must choose $want)"
  fake_cpuinfo "$core" > "$work/cpuinfo"
  mount --bind "$work/cpuinfo" "$root_dir/proc/cpuinfo"
  info="$(in_root QEMU_CPU="$core" python3 -m picoface info --json)"
  selected="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["isa_selected"])' <<<"$info")"
  python3 -c 'import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in ("machine","compiler","isa_compiled","isa_supported","isa_selected")})' <<<"$info"
  if [[ "$selected" != "$want" ]]; then
    echo "FAIL: $core selected $selected" >&2
    status=1
  fi
  for i in "${!models[@]}"; do
    echo "-- ${models[$i]}"
    in_root QEMU_CPU="$core" python3 /opt/picoface-test/engine_smoke.py check \
      "/opt/picoface-test/model$i.pface" "/opt/picoface-test/ref$i.npz" || status=1
  done
  in_root QEMU_CPU="$core" sh -c "cd /opt/picoface-test && python3 -m pytest -q -p no:cacheprovider ${tests[*]/#/tests/}" ||
    status=1
  umount "$root_dir/proc/cpuinfo"
done
exit "$status"
