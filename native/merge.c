/*
 * merge.c - the k-way merge of sorted runs of internal entries.
 *
 * Semantics: docs/architecture.md "The k-way merge"; reference: merge() in
 * lsm/_twins.py.  Design: validate every run first (run by run, entry by
 * entry: key length, kind, order), then pop entries from a binary heap of
 * run cursors ordered by (internal key, run index) and process one user key
 * (a "group") at a time, keeping a list of the range tombstones whose
 * [start, end) contains the current user key.  Output: global entry
 * indices, in merged order.  O(N log k) heap work for N entries in k runs,
 * plus O(active tombstones) per user key.
 */
#include <stdlib.h>

#include "core_internal.h"

typedef struct {
    const uint8_t *end;
    size_t end_len;
    uint64_t seq;
    size_t stripe;
} tomb_t;

typedef struct {
    const uint8_t *const *keys, *const *vals;
    const size_t *klen, *vlen;
    size_t *cur, *stop, *heap;
    size_t heap_n;
} merge_t;

static inline const uint8_t *key_of(const merge_t *m, size_t g)
{
    return m->keys[g];
}

static inline uint64_t trailer_of(const merge_t *m, size_t g)
{
    return lsm_rd64(m->keys[g] + m->klen[g] - 8);
}

/* heap order: internal key, then run index */
static inline int run_less(const merge_t *m, size_t ra, size_t rb)
{
    size_t ga = m->cur[ra], gb = m->cur[rb];
    int c = lsm_cmp_internal(key_of(m, ga), (size_t)m->klen[ga], key_of(m, gb),
                             (size_t)m->klen[gb]);
    if (c != 0)
        return c < 0;
    return ra < rb;
}

static void sift_down(merge_t *m, size_t i)
{
    size_t n = m->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i, tmp;
        if (l < n && run_less(m, m->heap[l], m->heap[best]))
            best = l;
        if (r < n && run_less(m, m->heap[r], m->heap[best]))
            best = r;
        if (best == i)
            return;
        tmp = m->heap[i];
        m->heap[i] = m->heap[best];
        m->heap[best] = tmp;
        i = best;
    }
}

/* Take the smallest entry; returns its global index. */
static inline size_t heap_pop(merge_t *m)
{
    size_t r = m->heap[0];
    size_t g = m->cur[r]++;
    if (m->cur[r] == m->stop[r])
        m->heap[0] = m->heap[--m->heap_n];
    if (m->heap_n > 0)
        sift_down(m, 0);
    return g;
}

/* Index of the first snapshot >= seq (len when none). */
static inline size_t stripe_of(const uint64_t *snaps, size_t n, uint64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (snaps[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int grow(void **p, size_t *cap, size_t need, size_t item)
{
    size_t ncap;
    void *np;
    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    np = realloc(*p, ncap * item);
    if (np == NULL)
        return LSM_ERR_NO_MEMORY;
    *p = np;
    *cap = ncap;
    return 0;
}

int64_t lsm_merge_v(size_t nruns, const uint64_t *run_starts,
                    const char *const *keys, const size_t *key_lens,
                    const char *const *values, const size_t *value_lens,
                    uint64_t read_seq, const uint64_t *snapshots, size_t nsnapshots,
                    int mode, int bottom, uint64_t *out, size_t *err)
{
    merge_t m;
    size_t total, r, g, n_out = 0;
    size_t *grp = NULL, grp_cap = 0;
    uint8_t *keep = NULL;
    size_t keep_cap = 0;
    tomb_t *act = NULL;
    size_t act_n = 0, act_cap = 0;
    int64_t rc = 0;

    err[0] = err[1] = 0;
    if (nruns == 0)
        return 0;
    total = (size_t)run_starts[nruns];
    if (run_starts[0] != 0)
        return LSM_ERR_TOO_LARGE;
    for (r = 0; r < nruns; r++)
        if (run_starts[r + 1] < run_starts[r])
            return LSM_ERR_TOO_LARGE;
    if (total == 0)
        return 0;

    memset(&m, 0, sizeof m);
    m.keys = (const uint8_t *const *)keys;
    m.vals = (const uint8_t *const *)values;
    m.klen = key_lens;
    m.vlen = value_lens;
    m.cur = (size_t *)malloc(3 * nruns * sizeof(size_t));
    if (!m.cur) {
        rc = LSM_ERR_NO_MEMORY;
        goto done;
    }
    m.stop = m.cur + nruns;
    m.heap = m.stop + nruns;

    /* validation: run by run, entry by entry: length, kind, order */
    for (r = 0; r < nruns; r++) {
        size_t first = (size_t)run_starts[r], last = (size_t)run_starts[r + 1];
        for (g = first; g < last; g++) {
            uint64_t t;
            if (key_lens[g] < 8) {
                rc = LSM_ERR_MERGE_SHORT_KEY;
            } else {
                t = trailer_of(&m, g);
                if ((t & 0xFF) > 2)
                    rc = LSM_ERR_MERGE_BAD_KIND;
                else if (g > first &&
                         lsm_cmp_internal(key_of(&m, g - 1), (size_t)key_lens[g - 1],
                                          key_of(&m, g), (size_t)key_lens[g]) > 0)
                    rc = LSM_ERR_MERGE_UNSORTED;
            }
            if (rc != 0) {
                err[0] = r;
                err[1] = g - first;
                goto done;
            }
        }
    }

    for (r = 0; r < nruns; r++) {
        m.cur[r] = (size_t)run_starts[r];
        m.stop[r] = (size_t)run_starts[r + 1];
        if (m.cur[r] < m.stop[r])
            m.heap[m.heap_n++] = r;
    }
    for (r = m.heap_n / 2; r-- > 0;)
        sift_down(&m, r);

    while (m.heap_n > 0) {
        size_t grp_n = 0, i, j, u_len;
        const uint8_t *u;
        size_t g0 = heap_pop(&m);

        u = key_of(&m, g0);
        u_len = (size_t)key_lens[g0] - 8;
        if ((rc = grow((void **)&grp, &grp_cap, 1, sizeof(size_t))) != 0)
            goto done;
        grp[grp_n++] = g0;
        while (m.heap_n > 0) {
            size_t gn = m.cur[m.heap[0]];
            if (lsm_cmp_bytes(key_of(&m, gn), (size_t)key_lens[gn] - 8, u, u_len) != 0)
                break;
            if ((rc = grow((void **)&grp, &grp_cap, grp_n + 1, sizeof(size_t))) != 0)
                goto done;
            grp[grp_n++] = heap_pop(&m);
        }
        /* drop the range tombstones that end at or before u */
        for (i = 0, j = 0; i < act_n; i++)
            if (lsm_cmp_bytes(act[i].end, act[i].end_len, u, u_len) > 0)
                act[j++] = act[i];
        act_n = j;

        if (mode == 0) { /* MERGE_READ */
            int have_pick = 0, pick_value = 0;
            size_t pick = 0;
            uint64_t pick_seq = 0;
            for (i = 0; i < grp_n; i++) {
                size_t gi = grp[i];
                uint64_t t = trailer_of(&m, gi), seq = t >> 8;
                unsigned kind = (unsigned)(t & 0xFF);
                if (kind == 2) {
                    if (seq <= read_seq &&
                        lsm_cmp_bytes(m.vals[gi], (size_t)value_lens[gi], u, u_len) > 0) {
                        if ((rc = grow((void **)&act, &act_cap, act_n + 1, sizeof(tomb_t))) != 0)
                            goto done;
                        act[act_n].end = m.vals[gi];
                        act[act_n].end_len = (size_t)value_lens[gi];
                        act[act_n].seq = seq;
                        act[act_n].stripe = 0;
                        act_n++;
                    }
                } else if (!have_pick && seq <= read_seq) {
                    have_pick = 1;
                    pick_value = kind == 1;
                    pick = gi;
                    pick_seq = seq;
                }
            }
            if (have_pick && pick_value) {
                int covered = 0;
                for (i = 0; i < act_n; i++)
                    if (act[i].seq > pick_seq) {
                        covered = 1;
                        break;
                    }
                if (!covered)
                    out[n_out++] = pick;
            }
            continue;
        }

        /* MERGE_COMPACT */
        if ((rc = grow((void **)&keep, &keep_cap, grp_n, 1)) != 0)
            goto done;
        for (i = 0; i < grp_n; i++) {
            size_t gi = grp[i];
            uint64_t t = trailer_of(&m, gi), seq = t >> 8;
            keep[i] = 1;
            if ((t & 0xFF) == 2) {
                size_t st = stripe_of(snapshots, nsnapshots, seq);
                if (lsm_cmp_bytes(m.vals[gi], (size_t)value_lens[gi], u, u_len) > 0) {
                    if ((rc = grow((void **)&act, &act_cap, act_n + 1, sizeof(tomb_t))) != 0)
                        goto done;
                    act[act_n].end = m.vals[gi];
                    act[act_n].end_len = (size_t)value_lens[gi];
                    act[act_n].seq = seq;
                    act[act_n].stripe = st;
                    act_n++;
                }
                if (bottom && st == 0)
                    keep[i] = 0;
            }
        }
        {
            size_t last = SIZE_MAX;
            for (i = 0; i < grp_n; i++) {
                uint64_t t = trailer_of(&m, grp[i]), seq = t >> 8;
                size_t st;
                if ((t & 0xFF) == 2)
                    continue;
                st = stripe_of(snapshots, nsnapshots, seq);
                if (st == last) {
                    keep[i] = 0;
                    continue;
                }
                last = st;
                for (j = 0; j < act_n; j++)
                    if (act[j].stripe == st && act[j].seq > seq) {
                        keep[i] = 0;
                        break;
                    }
            }
        }
        if (bottom) {
            int older_kept = 0;
            for (i = grp_n; i-- > 0;) {
                unsigned kind = (unsigned)(trailer_of(&m, grp[i]) & 0xFF);
                if (kind == 2 || !keep[i])
                    continue;
                if (kind == 0 && !older_kept)
                    keep[i] = 0;
                else
                    older_kept = 1;
            }
        }
        for (i = 0; i < grp_n; i++)
            if (keep[i])
                out[n_out++] = grp[i];
    }
    rc = (int64_t)n_out;

done:
    free(m.cur);
    free(grp);
    free(keep);
    free(act);
    return rc;
}

int64_t lsm_merge(size_t nruns, const uint64_t *run_starts,
                  const char *keys, size_t keys_len, const uint64_t *key_lens,
                  const char *values, size_t values_len, const uint64_t *value_lens,
                  uint64_t read_seq, const uint64_t *snapshots, size_t nsnapshots,
                  int mode, int bottom, uint64_t *out, size_t *err)
{
    size_t total, g, ko = 0, vo = 0;
    const char **kp;
    size_t *kl;
    int64_t rc;

    err[0] = err[1] = 0;
    if (nruns == 0)
        return 0;
    total = (size_t)run_starts[nruns];
    kp = (const char **)malloc((total ? total : 1) * 2 * sizeof(char *));
    kl = (size_t *)malloc((total ? total : 1) * 2 * sizeof(size_t));
    if (kp == NULL || kl == NULL) {
        free(kp);
        free(kl);
        return LSM_ERR_NO_MEMORY;
    }
    for (g = 0; g < total; g++) {
        if (key_lens[g] > keys_len - ko ||
            (values != NULL && value_lens[g] > values_len - vo)) {
            free(kp);
            free(kl);
            return LSM_ERR_TOO_LARGE;
        }
        kp[g] = keys + ko;
        kl[g] = (size_t)key_lens[g];
        if (values == NULL) {
            /* only range tombstones read their values (the end key) */
            if (kl[g] >= 8 && (uint8_t)kp[g][kl[g] - 8] == 2) {
                free(kp);
                free(kl);
                return LSM_ERR_NEED_VALUES;
            }
            kp[total + g] = keys; /* never read */
            kl[total + g] = 0;
        } else {
            kp[total + g] = values + vo;
            kl[total + g] = (size_t)value_lens[g];
        }
        ko += kl[g];
        vo += kl[total + g];
    }
    rc = lsm_merge_v(nruns, run_starts, kp, kl, kp + total, kl + total, read_seq, snapshots,
                     nsnapshots, mode, bottom, out, err);
    free(kp);
    free(kl);
    return rc;
}

/* ------------------------------------------------------------ user keys */

int64_t lsm_user_keys_format(const uint64_t *key_lens, size_t n, char *fmt, size_t *err)
{
    size_t i, p = 0;
    *err = 0;
    for (i = 0; i < n; i++) {
        uint64_t u;
        char tmp[24];
        size_t d = 0;
        if (key_lens[i] < 8) {
            *err = i;
            return LSM_ERR_MERGE_SHORT_KEY;
        }
        u = key_lens[i] - 8;
        do {
            tmp[d++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        while (d)
            fmt[p++] = tmp[--d];
        fmt[p++] = 's';
        fmt[p++] = '8';
        fmt[p++] = 'x';
    }
    fmt[p] = '\0';
    return (int64_t)p;
}
