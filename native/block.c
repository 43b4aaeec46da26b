/*
 * block.c - varints and data blocks (encode, decode, seek).
 *
 * Block layout and the validation order are specified in lsm/_twins.py
 * (the twin is the reference); this file follows it step for step so that
 * both report the same error at the same offset.  Every read is checked
 * against data_end (entries) or len (trailer).
 */
#include <stdlib.h>

#include "core_internal.h"

size_t lsm_encode_varint(uint64_t value, char *out)
{
    uint8_t *o = (uint8_t *)out;
    size_t n = 0;
    while (value >= 0x80) {
        o[n++] = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    o[n++] = (uint8_t)value;
    return n;
}

int64_t lsm_decode_varint32(const char *buf, size_t len, size_t offset)
{
    size_t p = offset;
    uint32_t value;
    int rc = lsm_dv32((const uint8_t *)buf, &p, len, &value);
    if (rc != 0)
        return rc;
    return ((int64_t)value << 3) | (int64_t)(p - offset);
}

int lsm_decode_varint64(const char *buf, size_t len, size_t offset, uint64_t *out)
{
    size_t p = offset;
    int rc = lsm_dv64((const uint8_t *)buf, &p, len, &out[0]);
    if (rc == 0)
        out[1] = (uint64_t)p;
    return rc;
}

/* ---------------------------------------------------------------- encode */

size_t lsm_block_encode_bound(size_t n, size_t key_bytes, size_t value_bytes,
                              uint32_t restart_interval)
{
    size_t ri = restart_interval ? restart_interval : 1;
    size_t restarts = n ? (n + ri - 1) / ri : 1;
    return 15 * n + key_bytes + value_bytes + 4 * restarts + 4;
}

static size_t put_varint(uint8_t *o, uint32_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        o[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[n++] = (uint8_t)v;
    return n;
}

int lsm_block_encode(const char *keys, size_t keys_len, const uint64_t *key_lens,
                     const char *values, size_t values_len, const uint64_t *value_lens,
                     size_t n, uint32_t restart_interval,
                     char *out, size_t cap, size_t *out_len)
{
    const uint8_t *kp = (const uint8_t *)keys;
    const uint8_t *vp = (const uint8_t *)values;
    uint8_t *o = (uint8_t *)out;
    const uint8_t *prev = NULL;
    size_t prev_len = 0, koff = 0, voff = 0, p = 0, i, nr = 0, j;
    uint32_t *restarts;
    size_t max_restarts;

    if (restart_interval == 0)
        return LSM_ERR_TOO_LARGE;
    max_restarts = n ? (n + restart_interval - 1) / restart_interval : 1;
    /* every length must fit the buffers, and the whole block the capacity */
    {
        size_t ks = 0, vs = 0;
        for (i = 0; i < n; i++) {
            if (key_lens[i] > 0xFFFFFFFFu || value_lens[i] > 0xFFFFFFFFu)
                return LSM_ERR_TOO_LARGE;
            ks += (size_t)key_lens[i];
            vs += (size_t)value_lens[i];
            if (ks > keys_len || vs > values_len)
                return LSM_ERR_TOO_LARGE;
        }
        if (cap < lsm_block_encode_bound(n, ks, vs, restart_interval))
            return LSM_ERR_TOO_LARGE;
    }
    restarts = (uint32_t *)malloc(max_restarts * sizeof(uint32_t));
    if (restarts == NULL)
        return LSM_ERR_NO_MEMORY;
    for (i = 0; i < n; i++) {
        const uint8_t *key = kp + koff;
        size_t klen = (size_t)key_lens[i], vlen = (size_t)value_lens[i];
        size_t shared = 0;
        if (i % restart_interval == 0) {
            if (p > 0xFFFFFFFFu) {
                free(restarts);
                return LSM_ERR_TOO_LARGE;
            }
            restarts[nr++] = (uint32_t)p;
        } else {
            size_t limit = prev_len < klen ? prev_len : klen;
            while (shared < limit && prev[shared] == key[shared])
                shared++;
        }
        p += put_varint(o + p, (uint32_t)shared);
        p += put_varint(o + p, (uint32_t)(klen - shared));
        p += put_varint(o + p, (uint32_t)vlen);
        memcpy(o + p, key + shared, klen - shared);
        p += klen - shared;
        memcpy(o + p, vp + voff, vlen);
        p += vlen;
        prev = key;
        prev_len = klen;
        koff += klen;
        voff += vlen;
    }
    if (nr == 0)
        restarts[nr++] = 0;
    for (j = 0; j < nr; j++) {
        lsm_wr32(o + p, restarts[j]);
        p += 4;
    }
    lsm_wr32(o + p, (uint32_t)nr);
    p += 4;
    free(restarts);
    *out_len = p;
    return 0;
}

/* ---------------------------------------------------------------- decode */

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
static int parse_trailer(block_t *bk, const uint8_t *b, size_t len, size_t *err)
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

/* Write v in decimal followed by 's'; returns the length (at most 21). */
static size_t put_count(char *o, size_t v)
{
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        o[i] = tmp[n - 1 - i];
    o[n] = 's';
    return n + 1;
}

static size_t count_len(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n + 1;
}

int lsm_block_decode(const char *block, size_t len, size_t *info, char *out, char *fmt)
{
    block_t bk;
    scan_t s;
    entry_t e;
    size_t count = 0, key_bytes = 0, value_bytes = 0, fmt_len = 0, pos = 0;
    size_t cap_out = 0, cap_fmt = 0, prev_at = 0;
    uint8_t *o = (uint8_t *)out;
    int rc;

    if (o != NULL) {
        cap_out = info[0];
        cap_fmt = info[1];
    }
    info[0] = info[1] = info[2] = info[3] = info[4] = 0;
    if ((rc = parse_trailer(&bk, (const uint8_t *)block, len, &info[2])) != 0)
        return rc;
    scan_init(&bk, &s, 0);
    while (s.p < bk.data_end) {
        size_t klen, vlen;
        if ((rc = scan_next(&bk, &s, &e, &info[2])) != 0)
            return rc;
        klen = e.shared + e.unshared;
        vlen = e.value_end - e.value_at;
        if (o != NULL) {
            if (klen + vlen > cap_out - pos || 44 > cap_fmt - fmt_len) {
                info[2] = e.start;
                return LSM_ERR_TOO_LARGE;
            }
            /* the previous key starts at prev_at; shared <= its length */
            memmove(o + pos, o + prev_at, e.shared);
            memcpy(o + pos + e.shared, bk.b + e.key_at, e.unshared);
            prev_at = pos;
            memcpy(o + pos + klen, bk.b + e.value_at, vlen);
            pos += klen + vlen;
            fmt_len += put_count(fmt + fmt_len, klen);
            fmt_len += put_count(fmt + fmt_len, vlen);
        } else {
            fmt_len += count_len(klen) + count_len(vlen);
        }
        key_bytes += klen;
        value_bytes += vlen;
        count++;
    }
    info[0] = count;
    info[1] = key_bytes;
    info[3] = value_bytes;
    info[4] = fmt_len;
    return 0;
}

/* ------------------------------------------------------------------ seek */

/* *lt = (key < target) under cmp; a short internal key is corrupt. */
static inline int key_less(const uint8_t *k, size_t kl, const uint8_t *t, size_t tl, int cmp,
                           int *lt)
{
    if (cmp == 0) {
        *lt = lsm_cmp_bytes(k, kl, t, tl) < 0;
        return 0;
    }
    if (kl < 8)
        return LSM_ERR_BLOCK_SHORT_INTERNAL_KEY;
    *lt = lsm_cmp_internal(k, kl, t, tl) < 0;
    return 0;
}

int lsm_block_seek(const char *block, size_t len, const char *target, size_t target_len,
                   int cmp, char *keybuf, size_t *info)
{
    const uint8_t *t = (const uint8_t *)target;
    uint8_t *kb = (uint8_t *)keybuf;
    block_t bk;
    scan_t s;
    entry_t e;
    size_t lo, hi, base = 0, steps = 0;
    size_t *err = &info[4];
    int rc, lt;

    info[0] = info[1] = info[2] = info[3] = info[4] = 0;
    if (cmp == 1 && target_len < 8)
        return LSM_ERR_TOO_LARGE; /* the wrapper rejects it first */
    if ((rc = parse_trailer(&bk, (const uint8_t *)block, len, err)) != 0)
        return rc;
    if (bk.data_end == 0)
        return 0;
    lo = 0;
    hi = bk.nr - 1;
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        size_t p = restart_at(&bk, mid), q = p;
        uint32_t shared, unshared, vlen;
        *err = q;
        if ((rc = lsm_dv32(bk.b, &q, bk.data_end, &shared)) != 0)
            return rc;
        *err = q;
        if ((rc = lsm_dv32(bk.b, &q, bk.data_end, &unshared)) != 0)
            return rc;
        *err = q;
        if ((rc = lsm_dv32(bk.b, &q, bk.data_end, &vlen)) != 0)
            return rc;
        *err = p;
        if (shared != 0)
            return LSM_ERR_BLOCK_RESTART_SHARED;
        if (q + (size_t)unshared + (size_t)vlen > bk.data_end)
            return LSM_ERR_BLOCK_ENTRY_OVERRUN;
        if ((rc = key_less(bk.b + q, unshared, t, target_len, cmp, &lt)) != 0)
            return rc;
        if (lt)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (lo > 0) {
        size_t stop = restart_at(&bk, 1), count = 0;
        scan_init(&bk, &s, 0);
        while (s.p < stop) {
            if ((rc = scan_next(&bk, &s, &e, err)) != 0)
                return rc;
            count++;
        }
        base = lo * count;
    }
    scan_init(&bk, &s, lo);
    while (s.p < bk.data_end) {
        size_t klen;
        if ((rc = scan_next(&bk, &s, &e, err)) != 0)
            return rc;
        klen = e.shared + e.unshared;
        if (klen > len) { /* impossible: every key byte comes from the block */
            *err = e.start;
            return LSM_ERR_TOO_LARGE;
        }
        memcpy(kb + e.shared, bk.b + e.key_at, e.unshared);
        *err = e.start;
        if ((rc = key_less(kb, klen, t, target_len, cmp, &lt)) != 0)
            return rc;
        if (!lt) {
            *err = 0;
            info[0] = base + steps;
            info[1] = klen;
            info[2] = e.value_at;
            info[3] = e.value_end;
            return 1;
        }
        steps++;
    }
    *err = 0;
    return 0;
}
