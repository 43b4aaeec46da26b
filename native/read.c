/*
 * read.c - the read path's point-lookup probe over a set of tables
 * (lsm/sstable/probe.py builds the inputs; the pure-Python twin and the
 * exact layout are in lsm/_twins.py, "read path" section).
 *
 * lsm_tables_probe answers, in one call, the part of a DB get that does not
 * need a data block: which tables may hold a user key (their extents, in
 * the order a get searches them), which of those their bloom filter does not
 * rule out, and, in each, which data block an index search lands on.  A
 * table is described by a "probe blob" (in memory only, never on disk):
 *
 *   u32 nblocks | u32 filter_len | u32 lo_len | u32 hi_len | u32 flags |
 *   u32 keys_len | filter[filter_len] | lo[lo_len] | hi[hi_len] |
 *   u64 trailer[nblocks] | u32 key_end[nblocks] | keys[keys_len]
 *
 * (little endian; flags bit 0: the extent ends just before hi; key i of the
 * index is keys[key_end[i-1] .. key_end[i]), key_end[-1] = 0, the user key
 * of block i's last internal key, trailer[i] that key's trailer).
 *
 * Every read is bounds-checked: a blob whose section lengths do not add up
 * to its length is rejected when the probe first reads it, a key_end is
 * checked when its key is read (so a probe may answer on a blob with a bad
 * key_end it never reads, exactly as the twin does).  O(tables x (log
 * files + k + log blocks)) per call.
 */
#include "core_internal.h"

#define HDR 24u

typedef struct {
    const uint8_t *b;
    uint64_t len;
    uint32_t n, flen, lolen, hilen, flags, klen;
    const uint8_t *filter, *lo, *hi, *trailers, *ends, *keys;
} ptab_t;

/* Parse the header of blob t; 0 or LSM_ERR_PROBE_HEADER (err[1] = 0). */
static int ptab_open(const char *const *tabs, const uint64_t *lens, size_t t, ptab_t *p,
                     size_t *err)
{
    const uint8_t *b = (const uint8_t *)tabs[t];
    uint64_t need;

    p->b = b;
    p->len = lens[t];
    if (p->len < HDR) {
        err[0] = t;
        err[1] = 0;
        return LSM_ERR_PROBE_HEADER;
    }
    p->n = lsm_rd32(b);
    p->flen = lsm_rd32(b + 4);
    p->lolen = lsm_rd32(b + 8);
    p->hilen = lsm_rd32(b + 12);
    p->flags = lsm_rd32(b + 16);
    p->klen = lsm_rd32(b + 20);
    need = (uint64_t)HDR + p->flen + p->lolen + p->hilen + 12u * (uint64_t)p->n + p->klen;
    if (need != p->len || p->flen == 1 || p->flags > 1) {
        err[0] = t;
        err[1] = 0;
        return LSM_ERR_PROBE_HEADER;
    }
    p->filter = b + HDR;
    p->lo = p->filter + p->flen;
    p->hi = p->lo + p->lolen;
    p->trailers = p->hi + p->hilen;
    p->ends = p->trailers + 8u * (uint64_t)p->n;
    p->keys = p->ends + 4u * (uint64_t)p->n;
    return 0;
}

/* Index key i of table t: its start and length; 0 or LSM_ERR_PROBE_KEY_END
 * (err[1] = offset of key_end[i] in the blob). */
static int ptab_key(const ptab_t *p, size_t t, uint32_t i, const uint8_t **k, size_t *kl,
                    size_t *err)
{
    uint32_t start = i ? lsm_rd32(p->ends + 4u * (i - 1)) : 0;
    uint32_t end = lsm_rd32(p->ends + 4u * i);
    if (start > end || end > p->klen) {
        err[0] = t;
        err[1] = (size_t)(p->ends - p->b) + 4u * i;
        return LSM_ERR_PROBE_KEY_END;
    }
    *k = p->keys + start;
    *kl = end - start;
    return 0;
}

/* Bloom filter test (the format of bloom.c); 1 may contain, 0 not. */
static int ptab_bloom(const ptab_t *p, const uint8_t *key, size_t kl)
{
    if (p->flen == 0)
        return 1;
    return lsm_bloom_may_contain((const char *)p->filter, p->flen, (const char *)key, kl) != 0;
}

/* Index search in table t: the first block whose last key >= the lookup
 * key (key, read_seq); *blk = nblocks when none.  0 or a negative code. */
static int ptab_seek(const ptab_t *p, size_t t, const uint8_t *key, size_t kl, uint64_t lt,
                     uint32_t *blk, size_t *err)
{
    uint32_t lo = 0, hi = p->n;
    const uint8_t *k;
    size_t klen;
    int rc;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if ((rc = ptab_key(p, t, mid, &k, &klen, err)) < 0)
            return rc;
        if (lsm_cmp_bytes(k, klen, key, kl) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    while (lo < p->n) {
        if ((rc = ptab_key(p, t, lo, &k, &klen, err)) < 0)
            return rc;
        if (lsm_cmp_bytes(k, klen, key, kl) != 0 || lsm_rd64(p->trailers + 8u * lo) <= lt)
            break;
        lo++;
    }
    *blk = lo;
    return 0;
}

/* Probe table t (extent already checked): bloom, then index. */
static int ptab_probe(const ptab_t *p, size_t t, const uint8_t *key, size_t kl, uint64_t lt,
                      uint32_t *out, size_t cap, size_t *count, size_t *err)
{
    uint32_t blk;
    int rc;

    if (!ptab_bloom(p, key, kl))
        return 0;
    if ((rc = ptab_seek(p, t, key, kl, lt, &blk, err)) < 0)
        return rc;
    if (blk < p->n && *count < cap) {
        out[2 * *count] = (uint32_t)t;
        out[2 * *count + 1] = blk;
        (*count)++;
    }
    return 0;
}

/* hi bound of p vs key: 1 when the extent ends before key (hi < key, or
 * hi == key and exclusive). */
static int ptab_ends_before(const ptab_t *p, const uint8_t *key, size_t kl)
{
    int c = lsm_cmp_bytes(p->hi, p->hilen, key, kl);
    return c < 0 || (c == 0 && (p->flags & 1));
}

int64_t lsm_tables_probe(const char *const *tabs, const uint64_t *tab_lens, size_t ntabs,
                         const uint32_t *groups, size_t ngroups,
                         const char *user_key, size_t key_len, uint64_t read_seq,
                         uint32_t *out, size_t cap, size_t *err)
{
    const uint8_t *key = (const uint8_t *)user_key;
    uint64_t lt = (read_seq << 8) | 0xFF;
    size_t g, base = 0, count = 0, total = 0;
    ptab_t p;
    int rc;

    err[0] = err[1] = 0;
    for (g = 0; g < ngroups; g++) {
        if (groups[2 * g] > 1)
            return LSM_ERR_INVALID;
        total += groups[2 * g + 1];
    }
    if (total != ntabs || read_seq > 0x00FFFFFFFFFFFFFFull)
        return LSM_ERR_INVALID;
    for (g = 0; g < ngroups; g++) {
        uint32_t kind = groups[2 * g], n = groups[2 * g + 1];
        if (kind == 0) {
            uint32_t j;
            for (j = 0; j < n; j++) {
                size_t t = base + j;
                if ((rc = ptab_open(tabs, tab_lens, t, &p, err)) < 0)
                    return rc;
                if (lsm_cmp_bytes(p.lo, p.lolen, key, key_len) > 0 ||
                    ptab_ends_before(&p, key, key_len))
                    continue;
                if ((rc = ptab_probe(&p, t, key, key_len, lt, out, cap, &count, err)) < 0)
                    return rc;
            }
        } else {
            uint32_t lo = 0, hi = n;
            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;
                if ((rc = ptab_open(tabs, tab_lens, base + mid, &p, err)) < 0)
                    return rc;
                if (ptab_ends_before(&p, key, key_len))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < n) {
                size_t t = base + lo;
                if ((rc = ptab_open(tabs, tab_lens, t, &p, err)) < 0)
                    return rc;
                if (lsm_cmp_bytes(p.lo, p.lolen, key, key_len) <= 0) {
                    if ((rc = ptab_probe(&p, t, key, key_len, lt, out, cap, &count, err)) < 0)
                        return rc;
                }
            }
        }
        base += n;
    }
    return (int64_t)count;
}

/* ------------------------------------------------------ blocks_decode */

/* Several data blocks decoded as lsm_block_decode decodes one, into one
 * out / fmt pair (so a scan's readahead costs one struct.unpack in Python):
 * block i is data[ends[i-1] : ends[i]] (ends[-1] = 0), its entries go to
 * out after those of block i-1 and counts[i] is their number. */
int lsm_blocks_decode(const char *data, size_t data_len, const uint64_t *ends, size_t nblocks,
                      size_t *info, char *out, char *fmt, uint64_t *counts)
{
    size_t cap_out = 0, cap_fmt = 0, pos = 0, fpos = 0, total = 0, kb = 0, vb = 0;
    uint64_t start = 0;
    size_t b;
    if (out != NULL) {
        cap_out = info[0];
        cap_fmt = info[1];
    }
    info[0] = info[1] = info[2] = info[3] = info[4] = info[5] = 0;
    for (b = 0; b < nblocks; b++) {     /* the twin checks every end first */
        if (ends[b] < start || ends[b] > data_len)
            return LSM_ERR_INVALID;
        start = ends[b];
    }
    start = 0;
    for (b = 0; b < nblocks; b++) {
        size_t sub[8] = {0};
        int rc;
        if (out != NULL) {
            sub[0] = cap_out - pos;
            sub[1] = cap_fmt - fpos;
            rc = lsm_block_decode(data + start, (size_t)(ends[b] - start), sub, out + pos,
                                  fmt + fpos);
        } else {
            rc = lsm_block_decode(data + start, (size_t)(ends[b] - start), sub, NULL, NULL);
        }
        if (rc != 0) {
            info[2] = (size_t)start + sub[2];
            info[5] = b;
            return rc;
        }
        counts[b] = sub[0];
        total += sub[0];
        kb += sub[1];
        vb += sub[3];
        pos += sub[1] + sub[3];
        fpos += sub[4];
        start = ends[b];
    }
    info[0] = total;
    info[1] = kb;
    info[3] = vb;
    info[4] = fpos;
    return 0;
}
