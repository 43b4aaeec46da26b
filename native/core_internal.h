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

/* Encode v as a varint32 at o (room for 5 bytes); returns the byte count. */
static inline size_t lsm_put_v32(uint8_t *o, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        o[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[n++] = (uint8_t)v;
    return n;
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

/* ------------------------------------------------- data block scanning
 * Shared by block.c's decoder and seek: the trailer checks
 * (validation steps 1-4 of lsm/_twins.py) and one entry at a time with the
 * step-5 checks. */

typedef struct {
    const uint8_t *b;
    size_t len;
    size_t data_end;
    size_t nr;
} block_t;

static inline size_t restart_at(const block_t *bk, size_t j)
{
    return lsm_rd32(bk->b + bk->data_end + 4 * j);
}

/* Validation steps 1-4. */
static inline int parse_trailer(block_t *bk, const uint8_t *b, size_t len, size_t *err)
{
    size_t nr, data_end, j, prev = 0;
    bk->b = b;
    bk->len = len;
    if (len < 4) {
        *err = 0;
        return LSM_ERR_BLOCK_TOO_SHORT;
    }
    nr = lsm_rd32(b + len - 4);
    if (nr == 0) {
        *err = len - 4;
        return LSM_ERR_BLOCK_NO_RESTARTS;
    }
    if (nr > (len - 4) / 4) {
        *err = len - 4;
        return LSM_ERR_BLOCK_RESTARTS_OVERRUN;
    }
    data_end = len - 4 - 4 * nr;
    bk->data_end = data_end;
    bk->nr = nr;
    if (restart_at(bk, 0) != 0) {
        *err = data_end;
        return LSM_ERR_BLOCK_BAD_RESTART;
    }
    for (j = 1; j < nr; j++) {
        size_t r = restart_at(bk, j);
        if (r <= prev || r >= data_end) {
            *err = data_end + 4 * j;
            return LSM_ERR_BLOCK_BAD_RESTART;
        }
        prev = r;
    }
    return 0;
}

/* One entry of a scan, with the step-5 checks. */
typedef struct {
    size_t p;            /* offset of the next entry */
    size_t rj;           /* index of the next restart not yet reached */
    size_t next_restart; /* its offset, or SIZE_MAX */
    size_t prev_len;     /* length of the previous full key */
} scan_t;

typedef struct {
    size_t start, shared, unshared, key_at, value_at, value_end;
} entry_t;

static inline void scan_init(const block_t *bk, scan_t *s, size_t rj)
{
    s->rj = rj;
    s->p = restart_at(bk, rj);
    s->next_restart = s->p;
    s->prev_len = 0;
}

static inline int scan_next(const block_t *bk, scan_t *s, entry_t *e, size_t *err)
{
    const uint8_t *b = bk->b;
    size_t data_end = bk->data_end;
    size_t p = s->p;
    uint32_t shared, unshared, vlen;
    int rc;

    e->start = p;
    if (p < data_end && b[p] < 0x80) {
        shared = b[p++];
    } else {
        *err = p;
        if ((rc = lsm_dv32(b, &p, data_end, &shared)) != 0)
            return rc;
    }
    if (p < data_end && b[p] < 0x80) {
        unshared = b[p++];
    } else {
        *err = p;
        if ((rc = lsm_dv32(b, &p, data_end, &unshared)) != 0)
            return rc;
    }
    if (p < data_end && b[p] < 0x80) {
        vlen = b[p++];
    } else {
        *err = p;
        if ((rc = lsm_dv32(b, &p, data_end, &vlen)) != 0)
            return rc;
    }
    if (e->start == s->next_restart) {
        if (shared != 0) {
            *err = e->start;
            return LSM_ERR_BLOCK_RESTART_SHARED;
        }
        s->rj++;
        s->next_restart = s->rj < bk->nr ? restart_at(bk, s->rj) : SIZE_MAX;
    }
    if (shared > s->prev_len) {
        *err = e->start;
        return LSM_ERR_BLOCK_SHARED_TOO_LONG;
    }
    e->shared = shared;
    e->unshared = unshared;
    e->key_at = p;
    e->value_at = p + (size_t)unshared;
    e->value_end = e->value_at + (size_t)vlen;
    if (e->value_end > data_end) {
        *err = e->start;
        return LSM_ERR_BLOCK_ENTRY_OVERRUN;
    }
    if (s->next_restart < e->value_end) {
        *err = data_end + 4 * s->rj;
        return LSM_ERR_BLOCK_RESTART_MISALIGNED;
    }
    s->prev_len = (size_t)shared + (size_t)unshared;
    s->p = e->value_end;
    return 0;
}


#endif
