#!/usr/bin/env bash
# Makes a Debian bookworm arm64 root that runs picoface's aarch64 wheel and its tests under
# qemu (tools/aarch64/wheel_test.sh): python3 with numpy and pytest from Debian, onnx and
# onnxruntime from PyPI (their aarch64 wheels) so the engine is checked against onnxruntime
# on aarch64 too. About 3-5 minutes and 1 GB; needs root (debootstrap, chroot, binfmt_misc)
# and the Debian and PyPI registries. An existing ROOT with all of that is left as it is.
#
# Usage: tools/aarch64/make_root.sh ROOT
set -euo pipefail

root_dir="${1:?usage: make_root.sh ROOT}"

if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null ||
   ! command -v update-binfmts >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq debootstrap qemu-user-static binfmt-support >/dev/null
fi
# Builds and pip inside the root spawn aarch64 executables: the kernel must hand them to qemu.
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
  { echo "error: could not enable binfmt_misc for qemu-aarch64" >&2; exit 2; }

in_root() {  # a clean environment: host PIP_*/PYTHON* variables must not leak in
  chroot "$root_dir" /usr/bin/env -i PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
}

if [[ ! -x "$root_dir/usr/bin/python3" ]]; then
  debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-numpy,python3-pytest,python3-pip,ca-certificates bookworm "$root_dir" \
    http://deb.debian.org/debian >/dev/null
  cp "$(command -v qemu-aarch64-static)" "$root_dir/usr/bin/"
  in_root /debootstrap/debootstrap --second-stage >/dev/null
fi

# pip inside the root trusts the host's CA bundle (the host may sit behind its own CA).
mkdir -p "$root_dir/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root_dir/etc/ssl/certs/host-ca.crt"
printf '[global]\ncert = /etc/ssl/certs/host-ca.crt\nbreak-system-packages = true\nroot-user-action = ignore\n' \
  > "$root_dir/etc/pip.conf"
if ! in_root python3 -c "import onnx, onnxruntime" 2>/dev/null; then
  # QEMU_CPU names a real core: qemu's default "max" CPU gives wrong int8 results in
  # onnxruntime (../shared/TOOLCHAIN.md).
  in_root QEMU_CPU=neoverse-n1 python3 -m pip install -q "onnxruntime>=1.17" "onnx>=1.15"
fi
in_root python3 -c "import numpy, pytest, onnx, onnxruntime; print('arm64 root:', 'numpy', numpy.__version__, 'onnxruntime', onnxruntime.__version__)"
