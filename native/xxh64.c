/*
 * xxh64.c - XXH64, written from the published algorithm description
 * (xxHash specification: four 64-bit lanes over 32-byte stripes, then the
 * 8/4/1-byte tail and the avalanche).  Bit-identical to
 * xxhash.xxh64_intdigest.  O(len); reads exactly data[0..len).
 */
#include "core_internal.h"

#define PRIME1 0x9E3779B185EBCA87ULL
#define PRIME2 0xC2B2AE3D27D4EB4FULL
#define PRIME3 0x165667B19E3779F9ULL
#define PRIME4 0x85EBCA77C2B2AE63ULL
#define PRIME5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t lane(uint64_t acc, uint64_t input)
{
    acc += input * PRIME2;
    acc = rotl64(acc, 31);
    return acc * PRIME1;
}

static inline uint64_t fold(uint64_t h, uint64_t v)
{
    h ^= lane(0, v);
    return h * PRIME1 + PRIME4;
}

uint64_t lsm_xxh64_u8(const uint8_t *p, size_t len, uint64_t seed)
{
    const uint8_t *end = p + len;
    uint64_t h;

    if (len >= 32) {
        const uint8_t *limit = end - 32;
        uint64_t v1 = seed + PRIME1 + PRIME2;
        uint64_t v2 = seed + PRIME2;
        uint64_t v3 = seed;
        uint64_t v4 = seed - PRIME1;
        do {
            v1 = lane(v1, lsm_rd64(p));
            v2 = lane(v2, lsm_rd64(p + 8));
            v3 = lane(v3, lsm_rd64(p + 16));
            v4 = lane(v4, lsm_rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = fold(h, v1);
        h = fold(h, v2);
        h = fold(h, v3);
        h = fold(h, v4);
    } else {
        h = seed + PRIME5;
    }
    h += (uint64_t)len;
    while ((size_t)(end - p) >= 8) {
        h ^= lane(0, lsm_rd64(p));
        h = rotl64(h, 27) * PRIME1 + PRIME4;
        p += 8;
    }
    if ((size_t)(end - p) >= 4) {
        h ^= (uint64_t)lsm_rd32(p) * PRIME1;
        h = rotl64(h, 23) * PRIME2 + PRIME3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * PRIME5;
        h = rotl64(h, 11) * PRIME1;
        p++;
    }
    h ^= h >> 33;
    h *= PRIME2;
    h ^= h >> 29;
    h *= PRIME3;
    h ^= h >> 32;
    return h;
}

uint64_t lsm_xxh64(const char *data, size_t len, uint64_t seed)
{
    return lsm_xxh64_u8((const uint8_t *)data, len, seed);
}
