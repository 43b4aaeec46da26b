/*
 * table.c - the bulk write path of flush and compaction: whole runs of
 * entries in, encoded data blocks out, with no Python object per entry.
 *
 * A flush or a compaction used to hand Python lists of keys and values to
 * TableBuilder, so every entry cost Python work under the GIL, on the
 * writer's core.  These three leaf functions take the same entries as
 * concatenated buffers plus length arrays ("packed" runs) and do the
 * per-entry work in C with the GIL released:
 *
 *   lsm_blocks_unpack      data blocks -> packed internal entries, filtered to
 *                          a user-key window [lo, hi) (compaction input);
 *   lsm_sort_entries       a memtable's (user key, u64le(trailer) || value)
 *                          pairs -> their internal order (flush input);
 *   lsm_table_blocks       packed entries in a given order -> data blocks cut
 *                          exactly as TableBuilder.add cuts them, the index
 *                          keys, the bloom hashes of the new user keys and the
 *                          table statistics; stops at output-file boundaries
 *                          (a byte budget, or LevelDB's grandparent-overlap
 *                          rule) so one call never crosses a file cut.
 *
 * The filter is built from those hashes by bloom.c's lsm_bloom_build_hashes.
 *
 * Reference semantics, validation order and error offsets: the twins in
 * lsm/_twins.py (blocks_unpack, sort_entries, table_blocks).  Every read is bounds-checked: lengths are checked
 * against their buffers before any entry is touched, and blocks are parsed
 * with the same checks as lsm_block_decode.
 */
#include <stdlib.h>

#include "core_internal.h"

/* ------------------------------------------------------------ unpack */

static inline int user_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    return lsm_cmp_bytes(a, al, b, bl);
}

int lsm_blocks_unpack(const char *blocks, size_t blocks_len, const uint64_t *block_lens,
                      size_t nblocks, size_t nruns, const uint64_t *run_nblocks,
                      const char *lo, size_t lo_len, const char *hi, size_t hi_len, int bounds,
                      char *keys_out, uint64_t *key_lens_out, char *values_out,
                      uint64_t *value_lens_out, uint64_t *run_starts_out, uint64_t *info)
{
    const uint8_t *lo_u = (const uint8_t *)lo, *hi_u = (const uint8_t *)hi;
    uint8_t *ko = (uint8_t *)keys_out, *vo = (uint8_t *)values_out;
    uint64_t cap_n = 0, cap_k = 0, cap_v = 0;
    size_t b, r, off = 0, total = 0, kpos = 0, vpos = 0, nkept = 0, rb = 0;
    uint8_t *scratch = NULL;
    size_t scratch_cap = 0;
    int rc = 0;

    if (ko != NULL) {
        cap_n = info[0];
        cap_k = info[1];
        cap_v = info[2];
    }
    info[0] = info[1] = info[2] = info[3] = info[4] = 0;
    for (b = 0; b < nblocks; b++) {
        if (block_lens[b] > blocks_len - total)
            return LSM_ERR_TOO_LARGE;
        total += (size_t)block_lens[b];
    }
    for (r = 0; r < nruns; r++) {
        if (run_nblocks[r] > nblocks - rb)
            return LSM_ERR_TOO_LARGE;
        rb += (size_t)run_nblocks[r];
    }
    if (rb != nblocks)
        return LSM_ERR_TOO_LARGE;
    b = 0;
    for (r = 0; r < nruns; r++) {
        size_t end_b = b + (size_t)run_nblocks[r];
        if (run_starts_out != NULL)
            run_starts_out[r] = nkept;
        for (; b < end_b; b++) {
            size_t len = (size_t)block_lens[b];
            const uint8_t *blk = (const uint8_t *)blocks + off;
            block_t bk;
            scan_t s;
            entry_t e;
            size_t err = 0;
            off += len;
            if ((rc = parse_trailer(&bk, blk, len, &err)) != 0)
                goto fail;
            if (scratch_cap < len) {
                uint8_t *ns = (uint8_t *)realloc(scratch, len ? len : 1);
                if (ns == NULL) {
                    rc = LSM_ERR_NO_MEMORY;
                    goto out;
                }
                scratch = ns;
                scratch_cap = len;
            }
            /* pass 1: every check of lsm_block_decode, then the first key
             * shorter than 8 bytes (the twin's order) */
            {
                size_t short_at = SIZE_MAX;
                scan_init(&bk, &s, 0);
                while (s.p < bk.data_end) {
                    if ((rc = scan_next(&bk, &s, &e, &err)) != 0)
                        goto fail;
                    if (e.shared + e.unshared < 8 && short_at == SIZE_MAX)
                        short_at = e.start;
                }
                if (short_at != SIZE_MAX) {
                    err = short_at;
                    rc = LSM_ERR_BLOCK_SHORT_INTERNAL_KEY;
                    goto fail;
                }
            }
            /* pass 2: the block is valid; keep the entries in [lo, hi) */
            scan_init(&bk, &s, 0);
            while (s.p < bk.data_end) {
                size_t klen, vlen;
                int keep = 1;
                (void)scan_next(&bk, &s, &e, &err);
                klen = e.shared + e.unshared;   /* <= len: the key fits scratch */
                memcpy(scratch + e.shared, bk.b + e.key_at, e.unshared);
                vlen = e.value_end - e.value_at;
                if ((bounds & 1) && user_cmp(scratch, klen - 8, lo_u, lo_len) < 0)
                    keep = 0;
                if ((bounds & 2) && user_cmp(scratch, klen - 8, hi_u, hi_len) >= 0)
                    keep = 0;
                if (!keep)
                    continue;
                if (ko != NULL) {
                    if (nkept >= cap_n || klen > cap_k - kpos || vlen > cap_v - vpos) {
                        rc = LSM_ERR_TOO_LARGE;
                        goto out;
                    }
                    memcpy(ko + kpos, scratch, klen);
                    memcpy(vo + vpos, bk.b + e.value_at, vlen);
                    key_lens_out[nkept] = klen;
                    value_lens_out[nkept] = vlen;
                }
                kpos += klen;
                vpos += vlen;
                nkept++;
            }
            continue;
        fail:
            info[3] = b;
            info[4] = err;
            goto out;
        }
    }
    if (run_starts_out != NULL)
        run_starts_out[nruns] = nkept;
    info[0] = nkept;
    info[1] = kpos;
    info[2] = vpos;
out:
    free(scratch);
    return rc;
}

/* -------------------------------------------------------------- sort */

typedef struct {
    const uint8_t *k;   /* user key */
    size_t kl;
    uint64_t t;         /* trailer */
} skey_t;

/* internal order of (user key, trailer): user key ascending, trailer descending */
static inline int skey_less(const skey_t *a, const skey_t *b)
{
    int c = lsm_cmp_bytes(a->k, a->kl, b->k, b->kl);
    if (c != 0)
        return c < 0;
    return a->t > b->t;
}

int lsm_sort_entries(const char *keys, size_t keys_len, const uint64_t *key_lens,
                     const char *entries, size_t entries_len, const uint64_t *entry_lens,
                     size_t n, uint64_t *order, size_t *err)
{
    skey_t *sk;
    uint64_t *tmp;
    size_t i, ko = 0, eo = 0, width;

    *err = 0;
    for (i = 0; i < n; i++) {
        if (key_lens[i] > keys_len - ko || entry_lens[i] > entries_len - eo)
            return LSM_ERR_TOO_LARGE;
        ko += (size_t)key_lens[i];
        eo += (size_t)entry_lens[i];
    }
    for (i = 0; i < n; i++)
        if (entry_lens[i] < 8) {
            *err = i;
            return LSM_ERR_MERGE_SHORT_KEY;
        }
    if (n == 0)
        return 0;
    sk = (skey_t *)malloc(n * sizeof *sk);
    tmp = (uint64_t *)malloc(n * sizeof *tmp);
    if (sk == NULL || tmp == NULL) {
        free(sk);
        free(tmp);
        return LSM_ERR_NO_MEMORY;
    }
    ko = eo = 0;
    for (i = 0; i < n; i++) {
        sk[i].k = (const uint8_t *)keys + ko;
        sk[i].kl = (size_t)key_lens[i];
        sk[i].t = lsm_rd64((const uint8_t *)entries + eo);
        ko += (size_t)key_lens[i];
        eo += (size_t)entry_lens[i];
        order[i] = i;
    }
    /* bottom-up merge sort of the indices: stable, O(n log n), no recursion;
     * already-ordered neighbouring runs are joined with one comparison */
    for (width = 1; width < n; width *= 2) {
        size_t lo;
        for (lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width, hi = lo + 2 * width, a, c, o;
            if (mid >= n)
                break;
            if (hi > n)
                hi = n;
            if (!skey_less(&sk[order[mid]], &sk[order[mid - 1]]))
                continue;
            a = lo;
            c = mid;
            o = lo;
            while (a < mid && c < hi) {
                if (skey_less(&sk[order[c]], &sk[order[a]]))
                    tmp[o++] = order[c++];
                else
                    tmp[o++] = order[a++];
            }
            while (a < mid)
                tmp[o++] = order[a++];
            while (c < hi)
                tmp[o++] = order[c++];
            memcpy(order + lo, tmp + lo, (hi - lo) * sizeof *order);
        }
    }
    free(sk);
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------ blocks */

/* One block being encoded (the layout of lsm_block_encode). */
typedef struct {
    uint8_t *o;          /* output base */
    size_t start;        /* offset of this block in o */
    size_t p;            /* write offset in o */
    size_t count;        /* entries in the block */
    uint32_t *restarts;
    size_t nr;
    uint8_t *prev;       /* previous key of the block */
    size_t prev_len;
    uint64_t estimate;   /* TableBuilder's size estimate */
} bb_t;

static void bb_close(bb_t *bb)
{
    size_t j;
    if (bb->nr == 0)
        bb->restarts[bb->nr++] = 0;
    for (j = 0; j < bb->nr; j++) {
        lsm_wr32(bb->o + bb->p, bb->restarts[j]);
        bb->p += 4;
    }
    lsm_wr32(bb->o + bb->p, (uint32_t)bb->nr);
    bb->p += 4;
}

int lsm_table_blocks(const char *keys, size_t keys_len, const uint64_t *key_lens,
                     const char *values, size_t values_len, const uint64_t *value_lens,
                     size_t n_entries, int layout, const uint64_t *order, size_t pos,
                     size_t n_order, uint32_t block_size, uint32_t restart_interval,
                     uint64_t limit, const char *prev_key, size_t prev_len, int has_prev,
                     const char *gp_keys, size_t gp_len, const uint64_t *gp_key_lens,
                     const uint64_t *gp_sizes, size_t n_gp, uint64_t gp_limit,
                     uint64_t *gp_state, char *out, size_t cap, uint64_t *blocks,
                     char *last_keys, uint64_t *hashes, uint64_t *info)
{
    uint64_t *koff = NULL, *voff = NULL;
    uint8_t *prevbuf = NULL, *curbuf = NULL, *gpk = (uint8_t *)gp_keys;
    uint64_t *gpoff = NULL;
    size_t i, off, maxk = 0, nblocks = 0, nhashes = 0, taken = 0;
    uint64_t raw_k = 0, raw_v = 0, tombs = 0, min_seq = UINT64_MAX, max_seq = 0;
    uint64_t bytes_taken = 0, per_entry;
    uint64_t gp_index, gp_bytes, gp_seen;
    int have_prev = has_prev != 0, rc = 0, started = has_prev != 0;
    size_t prev_k = 0;       /* length of the previous internal key (in prevbuf) */
    uint64_t prev_t = 0;
    bb_t bb;
    size_t lk = 0;           /* bytes written to last_keys */

    memset(info, 0, 12 * sizeof *info);
    info[0] = pos;
    bb.restarts = NULL;
    if (layout != 0 && layout != 1)
        return LSM_ERR_INVALID;
    if (restart_interval == 0 || pos > n_order || (has_prev && prev_len < 8))
        return LSM_ERR_INVALID;
    /* lengths against their buffers */
    for (i = 0, off = 0; i < n_entries; i++) {
        if (key_lens[i] > keys_len - off)
            return LSM_ERR_TOO_LARGE;
        off += (size_t)key_lens[i];
    }
    for (i = 0, off = 0; i < n_entries; i++) {
        if (value_lens[i] > values_len - off)
            return LSM_ERR_TOO_LARGE;
        off += (size_t)value_lens[i];
    }
    for (i = 0, off = 0; i < n_gp; i++) {
        if (gp_key_lens[i] > gp_len - off)
            return LSM_ERR_TOO_LARGE;
        off += (size_t)gp_key_lens[i];
    }
    if (cap < keys_len + values_len + 32 * (n_order - pos) + 16)
        return LSM_ERR_TOO_LARGE;
    koff = (uint64_t *)malloc((n_entries + 1) * sizeof *koff);
    voff = (uint64_t *)malloc((n_entries + 1) * sizeof *voff);
    gpoff = (uint64_t *)malloc((n_gp + 1) * sizeof *gpoff);
    if (koff == NULL || voff == NULL || gpoff == NULL) {
        rc = LSM_ERR_NO_MEMORY;
        goto out;
    }
    koff[0] = voff[0] = gpoff[0] = 0;
    for (i = 0; i < n_entries; i++) {
        koff[i + 1] = koff[i] + key_lens[i];
        voff[i + 1] = voff[i] + value_lens[i];
        if (key_lens[i] > maxk)
            maxk = (size_t)key_lens[i];
    }
    for (i = 0; i < n_gp; i++)
        gpoff[i + 1] = gpoff[i] + gp_key_lens[i];
    maxk += 8;
    if (has_prev && prev_len > maxk)
        maxk = prev_len;
    prevbuf = (uint8_t *)malloc(maxk);
    curbuf = (uint8_t *)malloc(maxk);
    bb.restarts = (uint32_t *)malloc(((n_order - pos) / restart_interval + 2) * sizeof(uint32_t));
    if (prevbuf == NULL || curbuf == NULL || bb.restarts == NULL) {
        rc = LSM_ERR_NO_MEMORY;
        goto out;
    }
    if (has_prev) {
        memcpy(prevbuf, prev_key, prev_len);
        prev_k = prev_len;
        prev_t = lsm_rd64(prevbuf + prev_len - 8);
    }
    gp_index = gp_state[0];
    gp_bytes = gp_state[1];
    gp_seen = gp_state[2];
    per_entry = 3 + 4 / restart_interval;
    bb.o = (uint8_t *)out;
    bb.start = bb.p = 0;
    bb.count = bb.nr = 0;
    bb.estimate = 8;
    bb.prev = NULL;
    bb.prev_len = 0;

    for (i = pos; i < n_order; i++) {
        size_t g = order != NULL ? (size_t)order[i] : i;
        const uint8_t *kp, *vp;
        size_t ukl, klen, vlen, shared = 0;
        uint64_t t;
        int new_user;
        if (g >= n_entries) {
            info[9] = i;
            rc = LSM_ERR_INVALID;
            goto out;
        }
        kp = (const uint8_t *)keys + koff[g];
        vp = (const uint8_t *)values + voff[g];
        if (layout == 0) {
            klen = (size_t)key_lens[g];
            vlen = (size_t)value_lens[g];
            if (klen < 8) {
                info[9] = i;
                rc = LSM_ERR_MERGE_SHORT_KEY;
                goto out;
            }
            ukl = klen - 8;
            t = lsm_rd64(kp + ukl);
        } else {
            ukl = (size_t)key_lens[g];
            if (value_lens[g] < 8) {
                info[9] = i;
                rc = LSM_ERR_MERGE_SHORT_KEY;
                goto out;
            }
            klen = ukl + 8;
            t = lsm_rd64(vp);
            vlen = (size_t)value_lens[g] - 8;
        }
        if ((t & 0xFF) > 1) {
            info[9] = i;
            rc = LSM_ERR_MERGE_BAD_KIND;
            goto out;
        }
        if (klen > 0xFFFFFFFFu || vlen > 0xFFFFFFFFu) {
            info[9] = i;
            rc = LSM_ERR_TOO_LARGE;
            goto out;
        }
        new_user = 1;
        if (have_prev) {
            int c = lsm_cmp_bytes(kp, ukl, prevbuf, prev_k - 8);
            if (c < 0 || (c == 0 && t >= prev_t)) {
                info[9] = i;
                rc = LSM_ERR_MERGE_UNSORTED;
                goto out;
            }
            new_user = c != 0;
        }
        if (new_user) {
            /* LevelDB's grandparent rule (compaction.py _Output._past_grandparents) */
            int cut = 0;
            if (n_gp > 0) {
                while (gp_index < n_gp &&
                       lsm_cmp_bytes(gpk + gpoff[gp_index], (size_t)gp_key_lens[gp_index], kp,
                                     ukl) < 0) {
                    if (gp_seen)
                        gp_bytes += gp_sizes[gp_index];
                    gp_index++;
                }
                gp_seen = 1;
                if (gp_bytes > gp_limit) {
                    gp_bytes = 0;
                    cut = 1;
                }
            }
            if (cut && started) {
                info[8] = 2;
                break;
            }
            if (taken > 0 && bytes_taken >= limit) {
                info[8] = 1;
                break;
            }
        }
        /* the entry's internal key, contiguous */
        if (layout == 0) {
            memcpy(curbuf, kp, klen);
        } else {
            memcpy(curbuf, kp, ukl);
            memcpy(curbuf + ukl, vp, 8);
            vp += 8;
        }
        /* encode into the current block (lsm_block_encode's layout) */
        if (bb.count % restart_interval == 0) {
            bb.restarts[bb.nr++] = (uint32_t)(bb.p - bb.start);
        } else {
            size_t lim = bb.prev_len < klen ? bb.prev_len : klen;
            while (shared < lim && bb.prev[shared] == curbuf[shared])
                shared++;
        }
        bb.p += lsm_put_v32(bb.o + bb.p, (uint32_t)shared);
        bb.p += lsm_put_v32(bb.o + bb.p, (uint32_t)(klen - shared));
        bb.p += lsm_put_v32(bb.o + bb.p, (uint32_t)vlen);
        memcpy(bb.o + bb.p, curbuf + shared, klen - shared);
        bb.p += klen - shared;
        if (vlen)
            memcpy(bb.o + bb.p, vp, vlen);
        bb.p += vlen;
        bb.count++;
        /* the previous key, for the next entry's shared prefix and order check */
        {
            uint8_t *sw = prevbuf;
            prevbuf = curbuf;
            curbuf = sw;
        }
        bb.prev = prevbuf;
        bb.prev_len = klen;
        prev_k = klen;
        prev_t = t;
        have_prev = 1;
        started = 1;
        if (new_user)
            hashes[nhashes++] = lsm_xxh64_u8(kp, ukl, 0);
        raw_k += klen;
        raw_v += vlen;
        bytes_taken += klen + vlen;
        if (!(t & 1))
            tombs++;
        if ((t >> 8) < min_seq)
            min_seq = t >> 8;
        if ((t >> 8) > max_seq)
            max_seq = t >> 8;
        taken++;
        bb.estimate += klen + vlen + per_entry;
        if (bb.estimate >= block_size) {
            bb_close(&bb);
            blocks[3 * nblocks] = bb.p;
            blocks[3 * nblocks + 1] = i;
            blocks[3 * nblocks + 2] = klen;
            memcpy(last_keys + lk, prevbuf, klen);
            lk += klen;
            nblocks++;
            bb.start = bb.p;
            bb.count = bb.nr = 0;
            bb.estimate = 8;
            bb.prev = NULL;
            bb.prev_len = 0;
        }
    }
    if (bb.count > 0) {
        bb_close(&bb);
        blocks[3 * nblocks] = bb.p;
        blocks[3 * nblocks + 1] = pos + taken - 1;
        blocks[3 * nblocks + 2] = prev_k;
        memcpy(last_keys + lk, prevbuf, prev_k);
        lk += prev_k;
        nblocks++;
    }
    info[0] = pos + taken;
    info[1] = nblocks;
    info[2] = nhashes;
    info[3] = raw_k;
    info[4] = raw_v;
    info[5] = tombs;
    info[6] = min_seq;
    info[7] = max_seq;
    info[10] = bb.p;
    info[11] = lk;
    gp_state[0] = gp_index;
    gp_state[1] = gp_bytes;
    gp_state[2] = gp_seen;
out:
    free(koff);
    free(voff);
    free(gpoff);
    free(prevbuf);
    free(curbuf);
    free(bb.restarts);
    return rc;
}
