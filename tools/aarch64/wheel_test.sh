#!/usr/bin/env bash
# Installs a picoface aarch64 wheel into a Debian arm64 root and runs it under qemu on two
# emulated cores: cortex-a53 (no dot product -> dispatch must choose neon) and neoverse-n1
# (dot product -> neondot). Runs `picoface info`, then the kernel, engine and pipeline tests
# that need neither onnxruntime nor ../shared (every kernel on every ISA the core has,
# against the scalar reference).
#
# With MODEL.pface, also runs that model on the native engine with every ISA of each core
# against reference outputs made here (tools/aarch64/engine_smoke.py; HOST_PYTHON, default
# python3, must have picoface installed): fp32 within 1e-5 of the largest reference value.
#
# Usage: tools/aarch64/wheel_test.sh ROOT WHEEL [MODEL.pface]
# ROOT: a bookworm arm64 root with python3, python3-numpy, python3-pytest, python3-pip, made
# e.g. with `debootstrap --arch=arm64 --foreign --variant=minbase bookworm ROOT` + the second
# stage in the chroot (see ../shared/TOOLCHAIN.md); binfmt_misc must be mounted with
# qemu-aarch64 enabled (apt-get install qemu-user-static binfmt-support). Needs root (chroot).
# Timings under qemu are meaningless; this checks correctness only.
set -euo pipefail

root_dir="${1:?usage: wheel_test.sh ROOT WHEEL}"
wheel="${2:?usage: wheel_test.sh ROOT WHEEL}"
model="${3:-}"
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
if [[ -n "$model" ]]; then
  cp "$model" "$work/model.pface"
  cp "$repo/tools/aarch64/engine_smoke.py" "$work/"
  "${HOST_PYTHON:-python3}" "$repo/tools/aarch64/engine_smoke.py" make "$model" "$work/ref.npz"
fi
in_root() {  # a clean environment: host PIP_*/PYTHON* variables must not leak in
  chroot "$root_dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    PIP_ROOT_USER_ACTION=ignore "$@"
}
# pip checks the wheel's tags against the aarch64 interpreter: a wrong platform tag or
# extension suffix fails here or at import.
in_root python3 -m pip install -q --no-deps --no-index --force-reinstall \
  --break-system-packages "/opt/picoface-test/$(basename "$wheel")"

tests=(test_kernels.py test_engine.py test_preprocess.py test_decode_nms.py test_align.py
       test_build_info.py test_bad_input.py)
status=0
for cpu in cortex-a53:neon neoverse-n1:neondot; do
  core="${cpu%%:*}" want="${cpu##*:}"
  echo "== QEMU_CPU=$core (dispatch must choose $want)"
  info="$(in_root QEMU_CPU="$core" python3 -m picoface info --json)"
  selected="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["isa_selected"])' <<<"$info")"
  python3 -c 'import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in ("machine","compiler","isa_compiled","isa_supported","isa_selected")})' <<<"$info"
  if [[ "$selected" != "$want" ]]; then
    echo "FAIL: $core selected $selected" >&2
    status=1
  fi
  if [[ -n "$model" ]]; then
    in_root QEMU_CPU="$core" python3 /opt/picoface-test/engine_smoke.py check \
      /opt/picoface-test/model.pface /opt/picoface-test/ref.npz || status=1
  fi
  in_root QEMU_CPU="$core" sh -c "cd /opt/picoface-test && python3 -m pytest -q -p no:cacheprovider ${tests[*]/#/tests/}" ||
    status=1
done
exit "$status"
