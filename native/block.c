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

int lsm_block_encode_v(const char *const *keys, const size_t *key_lens,
                       const char *const *values, const size_t *value_lens,
                       size_t n, uint32_t restart_interval,
                       char *out, size_t cap, size_t *out_len)
{
    uint8_t *o = (uint8_t *)out;
    const uint8_t *prev = NULL;
    size_t prev_len = 0, p = 0, i, nr = 0, j;
    uint32_t small[64], *restarts = small;
    size_t max_restarts;

    if (restart_interval == 0)
        return LSM_ERR_TOO_LARGE;
    max_restarts = n ? (n + restart_interval - 1) / restart_interval : 1;
    /* every length must fit a u32, and the whole block the capacity */
    {
        size_t ks = 0, vs = 0;
        for (i = 0; i < n; i++) {
            if (key_lens[i] > 0xFFFFFFFFu || value_lens[i] > 0xFFFFFFFFu)
                return LSM_ERR_TOO_LARGE;
            ks += key_lens[i];
            vs += value_lens[i];
        }
        if (cap < lsm_block_encode_bound(n, ks, vs, restart_interval))
            return LSM_ERR_TOO_LARGE;
    }
    if (max_restarts > sizeof small / sizeof small[0]) {
        restarts = (uint32_t *)malloc(max_restarts * sizeof(uint32_t));
        if (restarts == NULL)
            return LSM_ERR_NO_MEMORY;
    }
    for (i = 0; i < n; i++) {
        const uint8_t *key = (const uint8_t *)keys[i];
        size_t klen = key_lens[i], vlen = value_lens[i];
        size_t shared = 0;
        if (i % restart_interval == 0) {
            if (p > 0xFFFFFFFFu) {
                if (restarts != small)
                    free(restarts);
                return LSM_ERR_TOO_LARGE;
            }
            restarts[nr++] = (uint32_t)p;
        } else {
            size_t limit = prev_len < klen ? prev_len : klen;
            while (shared < limit && prev[shared] == key[shared])
                shared++;
        }
        if (shared < 0x80 && klen - shared < 0x80 && vlen < 0x80) {
            o[p] = (uint8_t)shared;
            o[p + 1] = (uint8_t)(klen - shared);
            o[p + 2] = (uint8_t)vlen;
            p += 3;
        } else {
            p += lsm_put_v32(o + p, (uint32_t)shared);
            p += lsm_put_v32(o + p, (uint32_t)(klen - shared));
            p += lsm_put_v32(o + p, (uint32_t)vlen);
        }
        memcpy(o + p, key + shared, klen - shared);
        p += klen - shared;
        if (vlen)
            memcpy(o + p, values[i], vlen);
        p += vlen;
        prev = key;
        prev_len = klen;
    }
    if (nr == 0)
        restarts[nr++] = 0;
    for (j = 0; j < nr; j++) {
        lsm_wr32(o + p, restarts[j]);
        p += 4;
    }
    lsm_wr32(o + p, (uint32_t)nr);
    p += 4;
    if (restarts != small)
        free(restarts);
    *out_len = p;
    return 0;
}

int lsm_block_encode(const char *keys, size_t keys_len, const uint64_t *key_lens,
                     const char *values, size_t values_len, const uint64_t *value_lens,
                     size_t n, uint32_t restart_interval,
                     char *out, size_t cap, size_t *out_len)
{
    const char **kp, **vp;
    size_t *kl, *vl, i, ko = 0, vo = 0;
    int rc = LSM_ERR_TOO_LARGE;

    kp = (const char **)malloc((n ? n : 1) * 2 * sizeof(char *));
    kl = (size_t *)malloc((n ? n : 1) * 2 * sizeof(size_t));
    if (kp == NULL || kl == NULL) {
        free(kp);
        free(kl);
        return LSM_ERR_NO_MEMORY;
    }
    vp = kp + n;
    vl = kl + n;
    for (i = 0; i < n; i++) {
        if (key_lens[i] > keys_len - ko || value_lens[i] > values_len - vo)
            goto done;
        kp[i] = keys + ko;
        kl[i] = (size_t)key_lens[i];
        vp[i] = values + vo;
        vl[i] = (size_t)value_lens[i];
        ko += kl[i];
        vo += vl[i];
    }
    rc = lsm_block_encode_v(kp, kl, vp, vl, n, restart_interval, out, cap, out_len);
done:
    free(kp);
    free(kl);
    return rc;
}

/* ---------------------------------------------------------------- decode */

/* Write v in decimal followed by 's'; returns the length (at most 21). */
static size_t put_count(char *o, size_t v)
{
    char tmp[24];
    if (v < 10) {
        o[0] = (char)('0' + v);
        o[1] = 's';
        return 2;
    }
    if (v < 100) {
        o[0] = (char)('0' + v / 10);
        o[1] = (char)('0' + v % 10);
        o[2] = 's';
        return 3;
    }
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
    return lsm_block_seek_ex(block, len, target, target_len, cmp, keybuf, info, 1);
}

int lsm_block_seek_ex(const char *block, size_t len, const char *target, size_t target_len,
                      int cmp, char *keybuf, size_t *info, int want_index)
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
    if (lo > 0 && want_index) {
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

/* ------------------------------------------------------------------- get */

int lsm_block_get(const char *block, size_t len, const char *user_key, size_t ukl,
                  uint64_t read_seq, char *scratch, uint64_t *info)
{
    /* scratch: the found key (up to len bytes), then the lookup key */
    uint8_t *lk = (uint8_t *)scratch + len;
    uint64_t t = (read_seq << 8) | 0xFF;
    size_t si[5];
    int rc;

    info[0] = info[1] = info[2] = info[3] = 0;
    if (ukl)
        memcpy(lk, user_key, ukl);
    lsm_wr32(lk + ukl, (uint32_t)t);
    lsm_wr32(lk + ukl + 4, (uint32_t)(t >> 32));
    rc = lsm_block_seek_ex(block, len, (const char *)lk, ukl + 8, 1, scratch, si, 0);
    if (rc < 0) {
        info[3] = si[4];
        return rc;
    }
    if (rc == 0 || si[1] != ukl + 8 || (ukl && memcmp(scratch, lk, ukl) != 0))
        return 0;
    info[0] = lsm_rd64((const uint8_t *)scratch + ukl);
    info[1] = si[2];
    info[2] = si[3];
    return 1;
}
