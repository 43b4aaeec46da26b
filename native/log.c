/*
 * log.c - WAL records and single-record write batches, as bytes.
 *
 * Log record (format of lsm/wal.py, do not change: on-disk): the log is cut
 * into 32 KiB blocks; a record is FULL or FIRST MIDDLE* LAST fragments, each
 * checksum u32 LE | length u16 LE | type u8 | payload, where checksum is the
 * low 32 bits of XXH64(fragment payload, seed = type).  A fragment never
 * starts in the last 6 bytes of a block: they are zero-filled and the next
 * fragment starts the next block.  A fragment may carry 0 bytes (a FIRST
 * written when exactly 7 bytes are left).
 *
 * Write batch with one record (format of lsm/batch.py, do not change:
 * on-disk): sequence u64 LE | count u32 LE (= 1) | kind u8 | varint32 klen |
 * key [| varint32 vlen | value] (the value part for kinds 1 and 2).
 *
 * Both are pure functions of their inputs, O(output bytes).
 */
#include "core_internal.h"

#define LOG_BLOCK 32768u
#define LOG_HEADER 7u

size_t lsm_log_encode_bound(size_t n)
{
    /* at most n / (LOG_BLOCK - LOG_HEADER) + 2 fragments, each with a
     * header and at most 6 bytes of padding before it */
    return n + (LOG_HEADER + LOG_HEADER - 1) * (n / (LOG_BLOCK - LOG_HEADER) + 2);
}

size_t lsm_log_encode(const char *payload, size_t n, size_t block_offset, char *out)
{
    const uint8_t *pl = (const uint8_t *)payload;
    uint8_t *o = (uint8_t *)out;
    size_t pos = 0, p = 0, off = block_offset % LOG_BLOCK;
    for (;;) {
        size_t leftover = LOG_BLOCK - off, frag, type;
        int end;
        uint32_t crc;
        if (leftover < LOG_HEADER) {
            memset(o + p, 0, leftover);
            p += leftover;
            off = 0;
            leftover = LOG_BLOCK;
        }
        frag = n - pos;
        if (frag > leftover - LOG_HEADER)
            frag = leftover - LOG_HEADER;
        end = pos + frag == n;
        type = pos == 0 ? (end ? 1 : 2) : (end ? 4 : 3);
        crc = (uint32_t)lsm_xxh64_u8(pl + pos, frag, type);
        lsm_wr32(o + p, crc);
        o[p + 4] = (uint8_t)frag;
        o[p + 5] = (uint8_t)(frag >> 8);
        o[p + 6] = (uint8_t)type;
        if (frag)
            memcpy(o + p + LOG_HEADER, pl + pos, frag);
        p += LOG_HEADER + frag;
        off += LOG_HEADER + frag;
        pos += frag;
        if (end)
            return p;
    }
}

size_t lsm_batch_record(int kind, const char *key, size_t key_len, const char *value,
                        size_t value_len, char *out)
{
    uint8_t *o = (uint8_t *)out;
    size_t p;
    o[0] = (uint8_t)kind;
    p = 1 + lsm_put_v32(o + 1, (uint32_t)key_len);
    if (key_len)
        memcpy(o + p, key, key_len);
    p += key_len;
    if (kind != 0) {
        p += lsm_put_v32(o + p, (uint32_t)value_len);
        if (value_len)
            memcpy(o + p, value, value_len);
        p += value_len;
    }
    return p;
}

void lsm_batch_header(uint64_t sequence, uint32_t count, char *out)
{
    uint8_t *o = (uint8_t *)out;
    lsm_wr32(o, (uint32_t)sequence);
    lsm_wr32(o + 4, (uint32_t)(sequence >> 32));
    lsm_wr32(o + 8, count);
}

size_t lsm_batch_encode_single(uint64_t sequence, int kind, const char *key, size_t key_len,
                               const char *value, size_t value_len, char *out)
{
    lsm_batch_header(sequence, 1, out);
    return 12 + lsm_batch_record(kind, key, key_len, value, value_len, out + 12);
}

int64_t lsm_batch_encode(uint64_t sequence, size_t n, const uint8_t *kinds,
                         const char *keys, size_t keys_len, const uint64_t *key_lens,
                         const char *values, size_t values_len, const uint64_t *value_lens,
                         char *out, size_t cap)
{
    size_t i, ko = 0, vo = 0, p = 12;
    if (cap < 12 || n > 0xFFFFFFFFu)
        return LSM_ERR_TOO_LARGE;
    lsm_batch_header(sequence, (uint32_t)n, out);
    for (i = 0; i < n; i++) {
        size_t kl = (size_t)key_lens[i], vl = (size_t)value_lens[i];
        int kind = kinds[i];
        if (key_lens[i] > keys_len - ko || value_lens[i] > values_len - vo)
            return LSM_ERR_TOO_LARGE;
        if (kind > 2 || key_lens[i] > 0xFFFFFFFFu || value_lens[i] > 0xFFFFFFFFu ||
            (kind == 0 && vl != 0) ||
            (kind == 2 && lsm_cmp_bytes((const uint8_t *)keys + ko, kl,
                                        (const uint8_t *)values + vo, vl) >= 0))
            return LSM_ERR_INVALID;
        if (11 + kl + vl > cap - p)
            return LSM_ERR_TOO_LARGE;
        p += lsm_batch_record(kind, keys + ko, kl, values + vo, vl, out + p);
        ko += kl;
        vo += vl;
    }
    return (int64_t)p;
}
