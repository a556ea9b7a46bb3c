#!/usr/bin/env bash
# test_install.sh - Sluice installs like a C library: `cmake --install` into a temporary
# prefix, then programs built out of tree against the installed copy only: with pkg-config
# (shared, then static), and with CMake's find_package(sluice). Checks the soname, that the
# shared library exports the public API only, and what the programs print.
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

prefix=$tmp/prefix
cmake --install "$SL_BUILD" --prefix "$prefix" >"$tmp/install.log" 2>&1 ||
    fail "cmake --install failed: $(tail -5 "$tmp/install.log")"

lib_a=$(find "$prefix" -name libsluice.a | head -1)
[[ -n $lib_a ]] || fail "no libsluice.a under $prefix"
libdir=$(dirname "$lib_a")
check "header installed" test -f "$prefix/include/sluice.h"
check "libsluice.so.0.1.0 installed" test -f "$libdir/libsluice.so.0.1.0"
check "libsluice.so.0 -> libsluice.so.0.1.0" \
    test "$(readlink "$libdir/libsluice.so.0")" = libsluice.so.0.1.0
check "libsluice.so -> libsluice.so.0" test "$(readlink "$libdir/libsluice.so")" = libsluice.so.0
check "pkg-config file installed" test -f "$libdir/pkgconfig/sluice.pc"
check "CMake package installed" test -f "$libdir/cmake/sluice/sluiceConfig.cmake" -a \
    -f "$libdir/cmake/sluice/sluiceConfigVersion.cmake"

soname=$(readelf -d "$libdir/libsluice.so.0.1.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "soname is libsluice.so.0 (got '$soname')" test "$soname" = libsluice.so.0
nm -D --defined-only "$libdir/libsluice.so.0.1.0" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' \
    >"$tmp/exports.txt"
grep -v '^sl_[^_]' "$tmp/exports.txt" >"$tmp/non-public.txt" || true
check "shared library exports sl_* only (others: $(head -5 "$tmp/non-public.txt" | xargs))" \
    test ! -s "$tmp/non-public.txt"
check "shared library exports sl_row_format" grep -qx sl_row_format "$tmp/exports.txt"

# A build tree configured with a sanitizer makes a library that needs its runtime.
san=()
if grep -q '^SL_SANITIZE:BOOL=ON' "$SL_BUILD/CMakeCache.txt" 2>/dev/null; then
    san=("-fsanitize=address,undefined")
elif grep -q '^SL_TSAN:BOOL=ON' "$SL_BUILD/CMakeCache.txt" 2>/dev/null; then
    san=(-fsanitize=thread)
fi

mkdir -p "$tmp/app"
cat >"$tmp/app/hello.c" <<'EOF'
/* Uses the installed public header only. */
#include <sluice.h>
#include <stdio.h>

int main(void)
{
    sl_value row[2] = {sl_str("北京"), SL_I64(6)};
    char buf[64];
    sl_row_format(row, 2, buf, sizeof buf);
    printf("%s\n%s\n", buf, sl_err_name(SL_EINVAL));
    return 0;
}
EOF
printf '(北京,6)\nEINVAL\n' >"$tmp/app/expected.txt"
export PKG_CONFIG_PATH=$libdir/pkgconfig
CFLAGS_APP=(-std=c11 -Wall -Wextra -Werror "${san[@]}")

check "pkg-config --modversion is 0.1.0" test "$(pkg-config --modversion sluice)" = 0.1.0
check "pkg-config prefix is the install prefix" \
    test "$(pkg-config --variable=prefix sluice)" = "$prefix"

# Shared, through pkg-config.
# shellcheck disable=SC2046 # pkg-config prints several words
if cc "${CFLAGS_APP[@]}" -o "$tmp/app/hello" "$tmp/app/hello.c" \
    $(pkg-config --cflags --libs sluice) 2>"$tmp/app/cc.log"; then
    pass "builds against the shared library with pkg-config"
    check "needs libsluice.so.0" grep -q 'NEEDED.*\[libsluice.so.0\]' \
        <(readelf -d "$tmp/app/hello")
    LD_LIBRARY_PATH=$libdir "$tmp/app/hello" >"$tmp/app/out.txt" 2>&1 || true
    check "shared program prints (北京,6)" diff -u "$tmp/app/expected.txt" "$tmp/app/out.txt"
else
    fail "cc with pkg-config --cflags --libs sluice failed: $(cat "$tmp/app/cc.log")"
fi

# Static, through pkg-config --static; -l:libsluice.a so the linker cannot pick the .so.
static_libs=$(pkg-config --static --libs sluice)
static_libs=${static_libs/-lsluice/-l:libsluice.a}
# shellcheck disable=SC2046,SC2086
if cc "${CFLAGS_APP[@]}" -o "$tmp/app/hello_static" "$tmp/app/hello.c" \
    $(pkg-config --cflags sluice) $static_libs 2>"$tmp/app/cc_static.log"; then
    pass "builds against the static library with pkg-config --static"
    check "static program does not need libsluice.so" \
        bash -c "! readelf -d '$tmp/app/hello_static' | grep -q libsluice"
    "$tmp/app/hello_static" >"$tmp/app/out_static.txt" 2>&1 || true
    check "static program prints (北京,6)" \
        diff -u "$tmp/app/expected.txt" "$tmp/app/out_static.txt"
else
    fail "cc with pkg-config --static failed: $(cat "$tmp/app/cc_static.log")"
fi

# An example job program, if there is one, compiles out of tree on the public API alone.
example=$SL_SRC/examples/state_demo_01.c
if [[ -f $example ]]; then
    # shellcheck disable=SC2046
    check "examples/state_demo_01.c builds against the installed library" \
        cc "${CFLAGS_APP[@]}" -o "$tmp/app/state_demo_01" "$example" \
        $(pkg-config --cflags --libs sluice)
fi

# CMake: find_package(sluice) and both exported targets.
mkdir -p "$tmp/cmake-app"
cp "$tmp/app/hello.c" "$tmp/cmake-app/"
cat >"$tmp/cmake-app/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(sluice_consumer C)
find_package(sluice 0.1 REQUIRED)
add_executable(hello_shared hello.c)
target_link_libraries(hello_shared PRIVATE sluice::sluice)
add_executable(hello_static hello.c)
target_link_libraries(hello_static PRIVATE sluice::sluice_static)
EOF
if cmake -S "$tmp/cmake-app" -B "$tmp/cmake-app/build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_FLAGS="${san[*]}" >"$tmp/cmake-app/log" 2>&1 &&
    cmake --build "$tmp/cmake-app/build" >>"$tmp/cmake-app/log" 2>&1; then
    pass "find_package(sluice) project configures and builds"
    for t in hello_shared hello_static; do
        LD_LIBRARY_PATH=$libdir "$tmp/cmake-app/build/$t" >"$tmp/cmake-app/$t.txt" 2>&1 || true
        check "$t (CMake) prints (北京,6)" diff -u "$tmp/app/expected.txt" "$tmp/cmake-app/$t.txt"
    done
else
    fail "CMake consumer failed: $(tail -20 "$tmp/cmake-app/log")"
fi
mkdir -p "$tmp/cmake-v1"
cat >"$tmp/cmake-v1/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.18)
project(sluice_consumer_v1 NONE)
find_package(sluice 1.0 REQUIRED)
EOF
check "find_package(sluice 1.0) refuses version 0.1.0" \
    bash -c "! cmake -S '$tmp/cmake-v1' -B '$tmp/cmake-v1/build' -DCMAKE_PREFIX_PATH='$prefix' \
        >'$tmp/cmake-v1/log' 2>&1"
