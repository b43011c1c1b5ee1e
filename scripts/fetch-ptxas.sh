#!/usr/bin/env bash
# Fetch NVIDIA's PTX assembler without installing anything: Debian bookworm's non-free
# nvidia-cuda-toolkit (CUDA 11.8) is downloaded with a private apt source list and unpacked
# under out/tools/cuda, so kernels-check can assemble the PTX of every kernel, inline PTX
# included (clang only emits it). Prints ptxas's path. Usage: scripts/fetch-ptxas.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dest=$PWD/out/tools/cuda
ptxas=$dest/usr/bin/ptxas
if [ -x "$ptxas" ]; then
	echo "$ptxas"
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$dest"
echo "deb http://deb.debian.org/debian bookworm non-free" >"$tmp/sources.list"
apt=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$tmp/lists"
	-o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${apt[@]}" update -qq >&2
(cd "$tmp" && apt-get "${apt[@]}" download -qq nvidia-cuda-toolkit >&2)
dpkg-deb -x "$tmp"/nvidia-cuda-toolkit_*.deb "$tmp/x"
mkdir -p "$dest/usr/bin"
cp "$tmp/x/usr/bin/ptxas" "$ptxas"
"$ptxas" --version >&2
echo "$ptxas"
