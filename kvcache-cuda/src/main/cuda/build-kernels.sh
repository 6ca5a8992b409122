#!/usr/bin/env bash
# Regenerates the committed kernel binaries from the .cu sources in this folder:
#   src/main/resources/dev/kvcache/cuda/kvcache_kernels.fatbin   SASS for sm_80 and sm_90, PTX for compute_90
#   src/main/resources/dev/kvcache/cuda/kvcache_kernels.properties  hashes that KernelBinariesTest checks
# A Maven build never runs nvcc; it packages these files. KernelBinariesTest fails when a .cu file
# changed after the last run of this script, so run it (needs nvcc, no GPU) and commit both files.
# sm_80 SASS also runs on sm_86/sm_89; newer GPUs JIT-compile the compute_90 PTX.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../resources/dev/kvcache/cuda"
NVCC="${NVCC:-$(command -v nvcc || true)}"
if [ -z "$NVCC" ]; then
  for c in /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc; do [ -x "$c" ] && NVCC="$c" && break; done
fi
[ -n "$NVCC" ] && [ -x "$NVCC" ] || { echo "nvcc not found (set NVCC=/path/to/nvcc)" >&2; exit 1; }
mkdir -p "$out"
archs="-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]"
"$NVCC" -fatbin -O3 -std=c++17 $archs -o "$out/kvcache_kernels.fatbin" "$here/kvcache_kernels.cu"
src_hash=$(cd "$here" && LC_ALL=C ls *.cu | LC_ALL=C sort | while read -r f; do printf '%s\n' "$f"; cat "$f"; done | sha256sum | cut -d' ' -f1)
bin_hash=$(sha256sum "$out/kvcache_kernels.fatbin" | cut -d' ' -f1)
nvcc_version=$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p')
cat > "$out/kvcache_kernels.properties" <<PROPS
# Written by src/main/cuda/build-kernels.sh; checked by KernelBinariesTest. Do not edit by hand.
sources.sha256=$src_hash
fatbin.sha256=$bin_hash
nvcc.version=$nvcc_version
archs=sm_80,sm_90,compute_90
PROPS
echo "wrote $out/kvcache_kernels.fatbin ($(stat -c %s "$out/kvcache_kernels.fatbin") bytes), nvcc $nvcc_version"
