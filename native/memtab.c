/*
 * memtab.c - memtable segments: a write batch kept whole, hash-indexed.
 *
 * A large write batch used to cost two Python objects and a dict insert per
 * entry (lsm/memtable.py), about half a microsecond of GIL-held work.  The
 * memtable now keeps such a batch as a *segment*: its records in batch
 * (= sequence) order in flat buffers, plus an open-addressing hash index of
 * its user keys; nothing is sorted on the write path (a flush sorts the
 * whole memtable once, in lsm_sort_entries).
 *
 * Segment layout (in memory only, never on disk; lsm/_memseg.py):
 *
 *   keys   user keys back to back, in sequence order
 *   koffs  n + 1 u64: entry i's key is keys[koffs[i] : koffs[i+1]]
 *   ents   entries back to back: u64le(seq << 8 | kind) || value
 *   eoffs  n + 1 u64: entry i is ents[eoffs[i] : eoffs[i+1]]
 *   table  cap u64 slots (cap a power of two >= 2n): 0 = empty, otherwise
 *          (XXH64(key) >> 32) << 32 | (i + 1); linear probing from slot
 *          XXH64(key) & (cap - 1), entries inserted in index order
 *
 *   lsm_segment_entries   kinds + values of a batch -> ents, elens;
 *   lsm_segment_index     key and entry lengths -> koffs, eoffs, table
 *                         (a new segment, or adjacent segments concatenated);
 *   lsm_segments_get      newest entry of a user key visible at read_seq
 *                         over segments given oldest first.
 *
 * lsm_segment_entries and lsm_segment_index check every length against its
 * buffer and return LSM_ERR_INVALID on inconsistent input (the binding then
 * raises the twin's error); lsm_segments_get trusts segments made by them
 * (Requires).  Reference semantics: the twins in lsm/_memseg.py.
 */
#include "core_internal.h"

#define SEG_MAX_SEQUENCE ((UINT64_C(1) << 56) - 1)   /* as dbformat.MAX_SEQUENCE */

int lsm_segment_entries(uint64_t seq, size_t n, const uint8_t *kinds, const char *values,
                        size_t values_len, const uint64_t *value_lens, char *ents_out,
                        uint64_t *elens_out)
{
    uint64_t vt = 0, ep = 0;
    size_t i;
    if (n && (seq > SEG_MAX_SEQUENCE || n - 1 > SEG_MAX_SEQUENCE - seq))
        return LSM_ERR_INVALID;
    for (i = 0; i < n; i++) {
        if (kinds[i] > 1 || (kinds[i] == 0 && value_lens[i] != 0))
            return LSM_ERR_INVALID;
        if (value_lens[i] > values_len - vt)
            return LSM_ERR_INVALID;
        vt += value_lens[i];
    }
    if (vt != values_len)
        return LSM_ERR_INVALID;
    vt = 0;
    for (i = 0; i < n; i++) {
        uint64_t trailer = ((seq + i) << 8) | kinds[i];
        uint8_t *o = (uint8_t *)ents_out + ep;
        lsm_wr32(o, (uint32_t)trailer);
        lsm_wr32(o + 4, (uint32_t)(trailer >> 32));
        memcpy(o + 8, values + vt, value_lens[i]);
        vt += value_lens[i];
        elens_out[i] = 8 + value_lens[i];
        ep += 8 + value_lens[i];
    }
    return 0;
}

int lsm_segment_index(size_t n, const char *keys, size_t keys_len, const uint64_t *key_lens,
                      size_t ents_len, const uint64_t *ent_lens, uint64_t *koffs_out,
                      uint64_t *eoffs_out, uint64_t *table, size_t cap)
{
    uint64_t kt = 0, et = 0;
    size_t i;
    if (cap == 0 || (cap & (cap - 1)) != 0 || cap < 2 * (uint64_t)n || n > 0xFFFFFFFEu)
        return LSM_ERR_INVALID;
    for (i = 0; i < n; i++) {
        if (key_lens[i] > keys_len - kt || ent_lens[i] > ents_len - et || ent_lens[i] < 8)
            return LSM_ERR_INVALID;
        koffs_out[i] = kt;
        eoffs_out[i] = et;
        kt += key_lens[i];
        et += ent_lens[i];
    }
    if (kt != keys_len || et != ents_len)
        return LSM_ERR_INVALID;
    koffs_out[n] = kt;
    eoffs_out[n] = et;
    memset(table, 0, cap * sizeof(uint64_t));
    for (i = 0; i < n; i++) {
        uint64_t h = lsm_xxh64(keys + koffs_out[i], key_lens[i], 0);
        size_t slot = (size_t)(h & (cap - 1));
        while (table[slot])
            slot = (slot + 1) & (cap - 1);
        table[slot] = ((h >> 32) << 32) | (uint64_t)(i + 1);
    }
    return 0;
}

int lsm_segments_get(size_t nseg, const char *const *keys, const uint64_t *const *koffs,
                     const char *const *ents, const uint64_t *const *eoffs,
                     const uint64_t *const *tables, const uint64_t *caps, const char *key,
                     size_t klen, uint64_t read_seq, uint64_t *out)
{
    uint64_t h = lsm_xxh64(key, klen, 0);
    uint64_t tag = (h >> 32) << 32;
    size_t s = nseg;
    while (s-- > 0) {
        const uint64_t *table = tables[s], *ko = koffs[s];
        size_t mask = (size_t)caps[s] - 1, slot = (size_t)(h & mask);
        uint64_t best = 0, best_trailer = 0;
        int found = 0;
        for (; table[slot]; slot = (slot + 1) & mask) {
            uint64_t v = table[slot], i, trailer;
            if ((v & UINT64_C(0xFFFFFFFF00000000)) != tag)
                continue;
            i = (v & 0xFFFFFFFFu) - 1;
            if (ko[i + 1] - ko[i] != klen || memcmp(keys[s] + ko[i], key, klen) != 0)
                continue;
            trailer = lsm_rd64((const uint8_t *)ents[s] + eoffs[s][i]);
            if ((trailer >> 8) <= read_seq && (!found || trailer > best_trailer)) {
                found = 1;
                best = i;
                best_trailer = trailer;
            }
        }
        if (found) {
            out[0] = s;
            out[1] = best;
            out[2] = best_trailer;
            return 1;
        }
    }
    return 0;
}
