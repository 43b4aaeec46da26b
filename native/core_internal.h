/*
 * core_internal.h - helpers shared by the native core's sources (not API).
 *
 * Little-endian loads assembled byte by byte (portable; compilers turn them
 * into single loads), bounded varint decoders, and the key comparisons.
 */
#ifndef LSM_CORE_INTERNAL_H
#define LSM_CORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "lsm_core.h"

static inline uint32_t lsm_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t lsm_rd64(const uint8_t *p)
{
    return (uint64_t)lsm_rd32(p) | ((uint64_t)lsm_rd32(p + 4) << 32);
}

static inline void lsm_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Decode a varint32 at b[*p], reading only below limit.  Advances *p. */
static inline int lsm_dv32(const uint8_t *b, size_t *p, size_t limit, uint32_t *out)
{
    size_t q = *p;
    uint32_t result = 0;
    int shift;
    for (shift = 0;; shift += 7) {
        uint8_t c;
        if (q >= limit)
            return LSM_ERR_VARINT32_TRUNCATED;
        c = b[q++];
        if (shift == 28) {
            if (c & 0x80)
                return LSM_ERR_VARINT32_TOO_LONG;
            if (c > 0x0F)
                return LSM_ERR_VARINT32_OVERFLOW;
        }
        result |= (uint32_t)(c & 0x7F) << shift;
        if (c < 0x80) {
            *out = result;
            *p = q;
            return 0;
        }
    }
}

/* Decode a varint64 at b[*p], reading only below limit.  Advances *p. */
static inline int lsm_dv64(const uint8_t *b, size_t *p, size_t limit, uint64_t *out)
{
    size_t q = *p;
    uint64_t result = 0;
    int shift;
    for (shift = 0;; shift += 7) {
        uint8_t c;
        if (q >= limit)
            return LSM_ERR_VARINT64_TRUNCATED;
        c = b[q++];
        if (shift == 63) {
            if (c & 0x80)
                return LSM_ERR_VARINT64_TOO_LONG;
            if (c > 0x01)
                return LSM_ERR_VARINT64_OVERFLOW;
        }
        result |= (uint64_t)(c & 0x7F) << shift;
        if (c < 0x80) {
            *out = result;
            *p = q;
            return 0;
        }
    }
}

/* Bytewise three-way compare (memcmp, then the shorter first). */
static inline int lsm_cmp_bytes(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0)
        return c < 0 ? -1 : 1;
    return al < bl ? -1 : (al > bl ? 1 : 0);
}

/* Internal order: user key ascending, trailer descending.  Requires both
 * lengths >= 8. */
static inline int lsm_cmp_internal(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = lsm_cmp_bytes(a, al - 8, b, bl - 8);
    uint64_t ta, tb;
    if (c != 0)
        return c;
    ta = lsm_rd64(a + al - 8);
    tb = lsm_rd64(b + bl - 8);
    return ta > tb ? -1 : (ta < tb ? 1 : 0);
}

uint64_t lsm_xxh64_u8(const uint8_t *p, size_t len, uint64_t seed);

#endif
