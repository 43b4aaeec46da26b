#!/usr/bin/env bash
# Fuzz the native core under AddressSanitizer + UBSan (a developer check, not
# run by CI).  Usage: native/fuzz_asan.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -std=c99 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -Wall \
   fuzz_main.c xxh64.c block.c bloom.c merge.c log.c lz4.c -o "$out/fuzz"
"$out/fuzz" "${1:-200000}"
