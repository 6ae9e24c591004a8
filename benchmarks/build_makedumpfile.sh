#!/bin/sh
# Build makedumpfile 1.7.2 (Debian 12's version) with zstd and snappy, for collect_bench.py
# only: bookworm's package is built without them.  SRC is a makedumpfile source tree at
# v1.7.2 (upstream commit 9fefc68, "[v1.7.2] Update version").  The -dev packages are
# downloaded with apt-get and unpacked in a scratch directory, so nothing is installed;
# the binary links the system's runtime libzstd1 and libsnappy1v5.
#
#   sh benchmarks/build_makedumpfile.sh SRC [OUT]   (OUT default: ~/.cache/kdumpy/bench/...)
#   python benchmarks/collect_bench.py --makedumpfile OUT ...
set -eu
src=$(cd "$1" && pwd)
out=${2:-$HOME/.cache/kdumpy/bench/makedumpfile-1.7.2-lzo-snappy-zstd}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get -qq download libzstd-dev libsnappy-dev libelf-dev libdw-dev 2>/dev/null
for deb in ./*.deb; do dpkg -x "$deb" dev; done
lib=$work/dev/usr/lib/x86_64-linux-gnu
for so in libdw.so.1 libelf.so.1 libsnappy.so.1 libzstd.so.1; do  # the -dev links' targets
    ln -sf "/usr/lib/x86_64-linux-gnu/$so" "$lib/$so"
done
ln -sf libzstd.so.1 "$lib/$(readlink "$lib/libzstd.so")"
cp -r "$src" build
cd build
make -s clean >/dev/null 2>&1 || true
CFLAGS="-I$work/dev/usr/include" LDFLAGS="-L$lib" \
    make -s LINKTYPE=dynamic USELZO=on USESNAPPY=on USEZSTD=on >/dev/null 2>&1
mkdir -p "$(dirname "$out")"
install -m 0755 makedumpfile "$out"
"$out" -v
