/*
 * lz4.c - an LZ4 block codec and the SSTable physical-block seal/open of
 * many blocks in one call (GIL released by cffi).
 *
 * Written for this project from the LZ4 block format description (token,
 * literal length, literals, u16 LE offset, match length; lengths of 15 and
 * more continue in extension bytes); no code taken from the LZ4 library.
 *
 *   lsm_lz4_compress     greedy single-pass compressor: a 4096-entry hash
 *                        table of u32 words (last position per hash), skip
 *                        acceleration on misses, forward and backward match
 *                        extension, the format's end rules.  Deterministic:
 *                        lz4_compress in lsm/_twins.py is its exact replica
 *                        (same hash, table, skip rule, extension and
 *                        table updates), so both emit identical bytes;
 *   lsm_lz4_decompress   strict decoder: exactly `expected` bytes, the end
 *                        rules the reference decoder enforces, every read
 *                        and write bounds-checked;
 *   lsm_blocks_seal      make_physical_block (lsm/sstable/format.py) for
 *                        many blocks: optional LZ4 with the u32 size prefix
 *                        when it saves 1/8, type byte, XXH64 checksum;
 *   lsm_blocks_open      unwrap_physical_block for many blocks, same checks
 *                        in the same order.
 *
 * Reference semantics, check order and error offsets: the section "LZ4 and
 * physical blocks" at the end of lsm/_twins.py.
 */
#include <string.h>

#include "core_internal.h"

#define HASH_LOG 12
#define HASH_SIZE (1u << HASH_LOG)
#define HASH_PRIME 2654435761u
#define MIN_MATCH 4
#define MFLIMIT 12
#define LAST_LITERALS 5
#define MAX_OFFSET 65535
#define SKIP_SHIFT 6
#define MAX_INPUT ((size_t)0x7E000000)
#define TRAILER 5

static inline uint32_t lz_hash(uint32_t word)
{
    return (uint32_t)(word * HASH_PRIME) >> (32 - HASH_LOG);
}

static inline uint64_t rd64_any(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Length of the common run of a[0..) and b[0..), at most limit: 8 bytes
 * at a time, the first differing byte found from the XOR of two words. */
static size_t common_run(const uint8_t *a, const uint8_t *b, size_t limit)
{
    size_t m = 0;
    while (m + 8 <= limit) {
        uint64_t x = rd64_any(a + m) ^ rd64_any(b + m);
        if (x != 0) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return m + ((size_t)__builtin_ctzll(x) >> 3);
#else
            break;
#endif
        }
        m += 8;
    }
    while (m < limit && a[m] == b[m])
        m++;
    return m;
}

static inline uint8_t *put_ext(uint8_t *o, size_t v)
{
    while (v >= 255) {
        *o++ = 255;
        v -= 255;
    }
    *o++ = (uint8_t)v;
    return o;
}

static inline size_t lz_bound(size_t n)
{
    return n + n / 255 + 16;
}

/* The compressor; dst has room for lz_bound(n) bytes, n <= MAX_INPUT.
 * table: HASH_SIZE positions, all set to 0 here (position 0 is everybody's
 * first candidate, so the search starts at 1 and needs no "empty" test:
 * one unpredictable branch less per position). */
static size_t compress_core(const uint8_t *src, size_t n, uint8_t *dst, uint32_t *table)
{
    uint8_t *o = dst;
    size_t anchor = 0, lit;
    if (n >= MFLIMIT + 1) {
        size_t limit = n - MFLIMIT, mlimit = n - LAST_LITERALS, p = 0, misses = 0;
        memset(table, 0, HASH_SIZE * sizeof(uint32_t));
        p = 1;
        while (p <= limit) {
            uint32_t seq = lsm_rd32(src + p);
            uint32_t h = lz_hash(seq);
            size_t ref = table[h], end, s, r, ml, off, q;
            table[h] = (uint32_t)p;
            if ((p - ref > MAX_OFFSET) | (lsm_rd32(src + ref) != seq)) {
                p += 1 + (misses >> SKIP_SHIFT);
                misses++;
                continue;
            }
            end = p + MIN_MATCH + common_run(src + ref + MIN_MATCH, src + p + MIN_MATCH,
                                             mlimit - p - MIN_MATCH);
            s = p;
            r = ref;
            while (s > anchor && r > 0 && src[s - 1] == src[r - 1]) {
                s--;
                r--;
            }
            lit = s - anchor;
            ml = end - s - MIN_MATCH;
            off = p - ref;
            *o++ = (uint8_t)(((lit >= 15 ? 15 : lit) << 4) | (ml >= 15 ? 15 : ml));
            if (lit >= 15)
                o = put_ext(o, lit - 15);
            {
                /* 8 bytes at a time, up to 7 past the literals: reads stay
                 * below s + 8 <= n - 4, writes below o + lit + 8, which the
                 * rest of the output (offset, final token, >= 5 final
                 * literals) will cover, so they stay inside the bound */
                size_t k;
                for (k = 0; k < lit; k += 8)
                    memcpy(o + k, src + anchor + k, 8);
            }
            o += lit;
            *o++ = (uint8_t)(off & 0xFF);
            *o++ = (uint8_t)(off >> 8);
            if (ml >= 15)
                o = put_ext(o, ml - 15);
            anchor = p = end;
            misses = 0;
            q = p - 2;
            table[lz_hash(lsm_rd32(src + q))] = (uint32_t)q;
        }
    }
    lit = n - anchor;
    *o++ = (uint8_t)((lit >= 15 ? 15 : lit) << 4);
    if (lit >= 15)
        o = put_ext(o, lit - 15);
    memcpy(o, src + anchor, lit);
    o += lit;
    return (size_t)(o - dst);
}

int64_t lsm_lz4_compress(const char *src, size_t n, char *dst, size_t cap)
{
    uint32_t table[HASH_SIZE];
    if (n > MAX_INPUT)
        return LSM_ERR_TOO_LARGE;
    if (cap < lz_bound(n))
        return LSM_ERR_INVALID;
    return (int64_t)compress_core((const uint8_t *)src, n, (uint8_t *)dst, table);
}

/* A literal or match length whose token nibble is 15: add the 255-run
 * bytes at *ip to *len.  0, or -1 when the input ends inside the run. */
static inline int read_ext(const uint8_t *src, size_t n, size_t *ip, size_t *len)
{
    unsigned b;
    do {
        if (*ip >= n)
            return -1;
        b = src[(*ip)++];
        *len += b;
    } while (b == 255);
    return 0;
}

/* The decoder (checks and offsets: lsm/_twins.py).  0 or a code, *err. */
static int decompress_core(const uint8_t *src, size_t n, uint8_t *dst, size_t size, size_t *err)
{
    size_t ip = 0, op = 0;
    if (size == 0 && n > 0 && (n != 1 || src[0] != 0)) {
        *err = 0;
        return LSM_ERR_LZ4_EMPTY;
    }
    for (;;) {
        size_t t = ip, lit, ml, off;
        unsigned token;
        if (ip >= n) {
            *err = t;
            return LSM_ERR_LZ4_TRUNCATED;
        }
        token = src[ip++];
        lit = token >> 4;
        if (lit == 15 && read_ext(src, n, &ip, &lit) < 0) {
            *err = t;
            return LSM_ERR_LZ4_TRUNCATED;
        }
        if (lit > n - ip) {
            *err = t;
            return LSM_ERR_LZ4_LITERALS_OVERRUN;
        }
        if (lit > size - op) {
            *err = t;
            return LSM_ERR_LZ4_OUTPUT_OVERRUN;
        }
        if (lit <= 16 && n - ip >= 16 && size - op >= 16) {
            /* short literals: one fixed 16-byte copy (the bytes past lit
             * are rewritten by what follows, all inside dst) */
            memcpy(dst + op, src + ip, 16);
        } else {
            memcpy(dst + op, src + ip, lit);
        }
        ip += lit;
        op += lit;
        if (ip == n) {
            if (op != size) {
                *err = n;
                return LSM_ERR_LZ4_SIZE_MISMATCH;
            }
            return 0;
        }
        if (size - op < MFLIMIT || n - ip < 8) {
            *err = t;
            return LSM_ERR_LZ4_END_LIMIT;
        }
        off = (size_t)src[ip] | ((size_t)src[ip + 1] << 8);
        if (off == 0 || off > op) {
            *err = ip;
            return LSM_ERR_LZ4_BAD_OFFSET;
        }
        ip += 2;
        ml = token & 15;
        if (ml == 15 && read_ext(src, n, &ip, &ml) < 0) {
            *err = t;
            return LSM_ERR_LZ4_TRUNCATED;
        }
        ml += MIN_MATCH;
        /* size - op >= MFLIMIT here, so the subtraction cannot wrap */
        if (ml > size - op - LAST_LITERALS) {
            *err = t;
            return LSM_ERR_LZ4_MATCH_END;
        }
        {
            uint8_t *d = dst + op;
            const uint8_t *m = d - off;
            if (off >= 8 && size - op >= ml + 16) {
                /* 8-byte steps, the first two unconditional: each reads
                 * bytes at least 8 back, already written; up to 15 bytes
                 * past the match, rewritten later */
                size_t k;
                memcpy(d, m, 8);
                memcpy(d + 8, m + 8, 8);
                for (k = 16; k < ml; k += 8)
                    memcpy(d + k, m + k, 8);
            } else if (off >= ml) {
                memcpy(d, m, ml);
            } else {
                /* overlapping: the output repeats with period off, hence
                 * with any multiple P of off; copy from P back with P the
                 * largest multiple <= k + off (sources written or before
                 * d, chunks <= P never overlap): O(log) memcpy calls */
                size_t k = 0, period = off;
                while (k < ml) {
                    size_t chunk = ml - k < period ? ml - k : period;
                    memcpy(d + k, d + k - period, chunk);
                    k += chunk;
                    period = (k + off) / off * off;
                }
            }
        }
        op += ml;
    }
}

int64_t lsm_lz4_decompress(const char *src, size_t n, char *dst, size_t expected, size_t *err)
{
    int rc;
    *err = 0;
    if (expected > MAX_INPUT)
        return LSM_ERR_INVALID;
    rc = decompress_core((const uint8_t *)src, n, (uint8_t *)dst, expected, err);
    return rc ? rc : (int64_t)expected;
}

int64_t lsm_blocks_seal(const char *data, size_t data_len, const uint64_t *ends, size_t nblocks,
                        int compress, char *out, size_t cap, uint64_t *sizes)
{
    uint32_t table[HASH_SIZE];
    const uint8_t *d = (const uint8_t *)data;
    uint8_t *o = (uint8_t *)out;
    size_t b, start = 0, pos = 0;
    for (b = 0; b < nblocks; b++) {
        if (ends[b] < start || ends[b] > data_len)
            return LSM_ERR_INVALID;
        if (compress && ends[b] - start > MAX_INPUT)
            return LSM_ERR_INVALID;
        start = (size_t)ends[b];
    }
    if (start != data_len)
        return LSM_ERR_INVALID;
    if (cap < data_len + data_len / 255 + 5 * nblocks + 32)
        return LSM_ERR_TOO_LARGE;
    start = 0;
    for (b = 0; b < nblocks; b++) {
        size_t n = (size_t)ends[b] - start, stored = 0;
        const uint8_t *c = d + start;
        uint8_t ctype = 0;
        start = (size_t)ends[b];
        if (compress && n >= 64) {
            /* room: pos <= sum of (previous n + 5) <= cap - bound tail */
            size_t clen = compress_core(c, n, o + pos + 4, table);
            if (4 + clen <= n - (n >> 3)) {
                lsm_wr32(o + pos, (uint32_t)n);
                stored = 4 + clen;
                ctype = 1;
            }
        }
        if (!ctype) {
            memcpy(o + pos, c, n);
            stored = n;
        }
        o[pos + stored] = ctype;
        lsm_wr32(o + pos + stored + 1,
                 (uint32_t)lsm_xxh64_u8(o + pos, stored + 1, 0));
        sizes[b] = stored;
        pos += stored + TRAILER;
    }
    return (int64_t)pos;
}

int64_t lsm_blocks_open(const char *buf, size_t buf_len, const uint64_t *offsets,
                        const uint64_t *sizes, size_t nblocks, int verify, char *out,
                        size_t cap, uint64_t *ends, size_t *err)
{
    const uint8_t *bb = (const uint8_t *)buf;
    uint8_t *o = (uint8_t *)out;
    uint64_t total = 0;
    int measuring = 0;
    size_t i;
    err[0] = err[1] = 0;
    for (i = 0; i < nblocks; i++) {
        uint64_t off = offsets[i], size = sizes[i], need;
        const uint8_t *blk;
        uint8_t ctype;
        err[0] = i;
        if (off > buf_len || buf_len - off < TRAILER || size > buf_len - off - TRAILER) {
            if (measuring)
                break;
            return LSM_ERR_PBLOCK_TRUNCATED;
        }
        blk = bb + off;
        if (verify && !measuring &&
            (uint32_t)lsm_xxh64_u8(blk, (size_t)size + 1, 0) != lsm_rd32(blk + size + 1))
            return LSM_ERR_PBLOCK_CHECKSUM;
        ctype = blk[size];
        if (ctype == 0) {
            need = size;
        } else if (ctype == 1) {
            if (size < 4) {
                if (measuring)
                    break;
                return LSM_ERR_PBLOCK_LZ4_SHORT;
            }
            need = lsm_rd32(blk);
            if (need > 255 * size + 64) {
                if (measuring)
                    break;
                return LSM_ERR_PBLOCK_LZ4_SIZE;
            }
        } else {
            if (measuring)
                break;
            err[1] = ctype;
            return LSM_ERR_PBLOCK_UNKNOWN_TYPE;
        }
        if (!measuring && need > cap - total)
            measuring = 1;
        if (!measuring) {
            if (ctype == 0) {
                memcpy(o + total, blk, (size_t)size);
            } else {
                size_t e = 0;
                int rc = decompress_core(blk + 4, (size_t)size - 4, o + total, (size_t)need, &e);
                if (rc) {
                    err[1] = 4 + e;
                    return rc;
                }
            }
            ends[i] = total + need;
        }
        total += need;
    }
    if (!measuring)
        err[0] = 0;
    return (int64_t)total;
}
