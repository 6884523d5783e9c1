#!/usr/bin/env bash
# wanmux set-up commands for a fresh Debian 12 machine (run as root, or with
# the packages below already installed):
#   ./run.sh demo    install, build, run the pair end to end and report
#   ./run.sh test    install, build (normal, ASan+UBSan, libFuzzer), run the whole suite
#   ./run.sh build   install and build only
#   ./run.sh bench   loopback throughput and CPU cost of the pair
#   ./run.sh package build the Debian package (build-deb/*.deb) and run lintian
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(build-essential cmake pkg-config libsodium-dev libevent-dev liblz4-dev
	zlib1g-dev libcmocka-dev python3 clang curl openssl nftables iproute2 procps valgrind
	libsystemd-dev systemd debhelper dpkg-dev lintian prometheus chromium)

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "run.sh: missing packages: ${missing[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "run.sh: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR [cmake options...]
build() {
	local dir=$1
	shift
	echo "run.sh: building in $dir/"
	if ! { cmake -S . -B "$dir" -DWM_WERROR=ON "$@" &&
		cmake --build "$dir" -j "$(nproc)"; } >"$dir.log" 2>&1; then
		tail -n 60 "$dir.log" >&2
		echo "run.sh: build in $dir/ failed (full log: $dir.log)" >&2
		exit 1
	fi
}

# Builds the .deb from a copy of the tracked files (dpkg-buildpackage writes
# to the parent directory), so the result is what a fresh clone gives.
package() {
	local work=build-deb version
	version=$(dpkg-parsechangelog -S Version)
	rm -rf "$work"
	mkdir -p "$work/src/wanmux-$version"
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$work/src/wanmux-$version"
	else
		tar --exclude='./build*' -cf - . | tar -xf - -C "$work/src/wanmux-$version"
	fi
	echo "run.sh: dpkg-buildpackage -us -uc -b in $work/src/wanmux-$version"
	if ! (cd "$work/src/wanmux-$version" && dpkg-buildpackage -us -uc -b) >"$work.log" 2>&1; then
		tail -n 60 "$work.log" >&2
		echo "run.sh: package build failed (full log: $work.log)" >&2
		exit 1
	fi
	mv "$work"/src/*.deb "$work"/src/*.changes "$work"/src/*.buildinfo "$work"/
	rm -rf "$work/src"
	echo "== lintian (errors fail the build; warnings and notes are listed)"
	lintian --fail-on error --pedantic "$work"/*.changes
	echo "run.sh: built $(ls "$work"/wanmux_*.deb); install with: apt install ./$(ls "$work"/wanmux_*.deb)"
}

cmd=${1:-help}
case "$cmd" in
build)
	install_packages
	build build
	;;
test)
	install_packages
	build build
	build build-asan -DWM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	echo "== tests (release build)"
	ctest --test-dir build --output-on-failure -j 2
	echo "== tests (ASan+UBSan build)"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --test-dir build-asan --output-on-failure -j 2
	echo "== fuzz targets, ${WM_FUZZ_TIME:-20} s each (libFuzzer, clang)"
	build build-fuzz -DCMAKE_C_COMPILER=clang -DWM_FUZZ=ON -DWM_FUZZ_TIME="${WM_FUZZ_TIME:-20}" \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo
	ctest --test-dir build-fuzz --output-on-failure -j 2 -L fuzz
	echo "== Debian package"
	package
	;;
package)
	install_packages
	package
	;;
demo)
	install_packages
	build build
	python3 scripts/demo.py --bindir build
	;;
bench)
	install_packages
	build build
	python3 scripts/bench.py --bindir build "${@:2}"
	;;
*)
	echo "usage: ./run.sh demo|test|build|bench|package" >&2
	exit 2
	;;
esac
