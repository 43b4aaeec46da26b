/*
 * memtab.c - memtable segments: a write batch kept as one sorted, packed run.
 *
 * A large write batch used to cost two Python objects and a dict insert per
 * entry (lsm/memtable.py), about half a microsecond of GIL-held work.  The
 * memtable now keeps such a batch as a *segment*: its entries sorted in
 * internal order (user key ascending, then sequence descending) in four
 * plain buffers, built, searched and merged here with the GIL released.
 *
 * Segment layout (in memory only, never on disk):
 *
 *   keys   user keys back to back, in internal order (a key written twice in
 *          one batch appears twice, newest first)
 *   koffs  n + 1 u64: entry i's key is keys[koffs[i] : koffs[i+1]]
 *   ents   entries back to back: u64le(seq << 8 | kind) || value
 *   eoffs  n + 1 u64: entry i is ents[eoffs[i] : eoffs[i+1]]
 *
 *   lsm_segment_build     a batch (kinds, packed keys and values, first
 *                         sequence) -> one segment;
 *   lsm_segments_get      newest entry of a user key visible at read_seq
 *                         over segments given oldest first;
 *   lsm_segments_merge    k segments -> one, internal order.
 *
 * Segments are built by lsm_segment_build from validated input and never
 * change afterwards; lsm_segments_get and lsm_segments_merge trust their
 * offsets (Requires: segments made by this file).  lsm_segment_build checks
 * every length against its buffer and returns LSM_ERR_INVALID on
 * inconsistent input (the binding then raises the twin's error).
 *
 * Reference semantics: the twins in lsm/_memseg.py.
 */
#include <stdlib.h>

#include "core_internal.h"

#define SEG_MAX_SEQUENCE ((UINT64_C(1) << 56) - 1)   /* as dbformat.MAX_SEQUENCE */

/* entry i of the input batch: key at koff[i], length key_lens[i] */
struct batch_view {
    const uint8_t *keys;
    const uint64_t *key_lens;
    const uint64_t *koff;
};

static inline int batch_less(const struct batch_view *v, uint64_t a, uint64_t b)
{
    int c = lsm_cmp_bytes(v->keys + v->koff[a], v->key_lens[a], v->keys + v->koff[b],
                          v->key_lens[b]);
    /* equal user keys: the later record (higher sequence) sorts first */
    return c < 0 || (c == 0 && a > b);
}

int lsm_segment_build(uint64_t seq, size_t n, const uint8_t *kinds, const char *keys,
                      size_t keys_len, const uint64_t *key_lens, const char *values,
                      size_t values_len, const uint64_t *value_lens, char *keys_out,
                      uint64_t *koffs_out, char *ents_out, uint64_t *eoffs_out,
                      uint64_t *scratch)
{
    uint64_t *koff = scratch, *voff = scratch + n, *order = scratch + 2 * n,
             *tmp = scratch + 3 * n;
    uint64_t kt = 0, vt = 0, kp = 0, ep = 0;
    struct batch_view view;
    size_t i, width;
    int sorted = 1;

    if (n == 0) {
        koffs_out[0] = 0;
        eoffs_out[0] = 0;
        return 0;
    }
    if (seq > SEG_MAX_SEQUENCE || n - 1 > SEG_MAX_SEQUENCE - seq)
        return LSM_ERR_INVALID;
    for (i = 0; i < n; i++) {
        if (kinds[i] > 1)
            return LSM_ERR_INVALID;
        if (key_lens[i] > keys_len - kt || value_lens[i] > values_len - vt)
            return LSM_ERR_INVALID;
        koff[i] = kt;
        voff[i] = vt;
        kt += key_lens[i];
        vt += value_lens[i];
        order[i] = i;
    }
    if (kt != keys_len || vt != values_len)
        return LSM_ERR_INVALID;
    view.keys = (const uint8_t *)keys;
    view.key_lens = key_lens;
    view.koff = koff;
    for (i = 1; i < n && sorted; i++)
        sorted = batch_less(&view, i - 1, i);
    if (!sorted) {
        /* bottom-up merge sort of the indices (total order: no ties) */
        uint64_t *src = order, *dst = tmp;
        for (width = 1; width < n; width *= 2) {
            size_t lo;
            for (lo = 0; lo < n; lo += 2 * width) {
                size_t mid = lo + width < n ? lo + width : n;
                size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
                size_t a = lo, b = mid, o = lo;
                while (a < mid && b < hi)
                    dst[o++] = batch_less(&view, src[b], src[a]) ? src[b++] : src[a++];
                while (a < mid)
                    dst[o++] = src[a++];
                while (b < hi)
                    dst[o++] = src[b++];
            }
            uint64_t *t = src;
            src = dst;
            dst = t;
        }
        order = src;
    }
    for (i = 0; i < n; i++) {
        uint64_t j = order[i];
        uint64_t trailer = ((seq + j) << 8) | kinds[j];
        koffs_out[i] = kp;
        eoffs_out[i] = ep;
        memcpy(keys_out + kp, keys + koff[j], key_lens[j]);
        kp += key_lens[j];
        lsm_wr32((uint8_t *)ents_out + ep, (uint32_t)trailer);
        lsm_wr32((uint8_t *)ents_out + ep + 4, (uint32_t)(trailer >> 32));
        memcpy(ents_out + ep + 8, values + voff[j], value_lens[j]);
        ep += 8 + value_lens[j];
    }
    koffs_out[n] = kp;
    eoffs_out[n] = ep;
    return 0;
}

int lsm_segments_get(size_t nseg, const char *const *keys, const uint64_t *const *koffs,
                     const char *const *ents, const uint64_t *const *eoffs,
                     const uint64_t *counts, const char *key, size_t klen, uint64_t read_seq,
                     uint64_t *out)
{
    size_t s = nseg;
    while (s-- > 0) {
        const uint8_t *kb = (const uint8_t *)keys[s];
        const uint64_t *ko = koffs[s];
        size_t lo = 0, hi = counts[s];
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (lsm_cmp_bytes(kb + ko[mid], ko[mid + 1] - ko[mid], (const uint8_t *)key,
                              klen) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < counts[s]; lo++) {
            uint64_t trailer;
            if (lsm_cmp_bytes(kb + ko[lo], ko[lo + 1] - ko[lo], (const uint8_t *)key, klen))
                break;
            trailer = lsm_rd64((const uint8_t *)ents[s] + eoffs[s][lo]);
            if ((trailer >> 8) <= read_seq) {
                out[0] = s;
                out[1] = lo;
                out[2] = trailer;
                return 1;
            }
        }
    }
    return 0;
}

int lsm_segments_merge(size_t nseg, const char *const *keys, const uint64_t *const *koffs,
                       const char *const *ents, const uint64_t *const *eoffs,
                       const uint64_t *counts, char *keys_out, uint64_t *koffs_out,
                       char *ents_out, uint64_t *eoffs_out, uint64_t *pos)
{
    uint64_t kp = 0, ep = 0, o = 0;
    size_t s;
    for (s = 0; s < nseg; s++)
        pos[s] = 0;
    for (;;) {
        size_t best = nseg;
        const uint8_t *bk = NULL;
        uint64_t bl = 0, bt = 0;
        for (s = 0; s < nseg; s++) {
            uint64_t i = pos[s];
            const uint8_t *k;
            uint64_t kl, t;
            int c;
            if (i >= counts[s])
                continue;
            k = (const uint8_t *)keys[s] + koffs[s][i];
            kl = koffs[s][i + 1] - koffs[s][i];
            t = lsm_rd64((const uint8_t *)ents[s] + eoffs[s][i]);
            if (best == nseg) {
                best = s;
                bk = k;
                bl = kl;
                bt = t;
                continue;
            }
            c = lsm_cmp_bytes(k, kl, bk, bl);
            if (c < 0 || (c == 0 && t > bt)) {
                best = s;
                bk = k;
                bl = kl;
                bt = t;
            }
        }
        if (best == nseg)
            break;
        {
            uint64_t i = pos[best]++;
            uint64_t el = eoffs[best][i + 1] - eoffs[best][i];
            koffs_out[o] = kp;
            eoffs_out[o] = ep;
            memcpy(keys_out + kp, bk, bl);
            memcpy(ents_out + ep, ents[best] + eoffs[best][i], el);
            kp += bl;
            ep += el;
            o++;
        }
    }
    koffs_out[o] = kp;
    eoffs_out[o] = ep;
    return 0;
}
