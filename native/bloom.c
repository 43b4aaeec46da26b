/*
 * bloom.c - bloom filter build and probe (format in lsm/_twins.py):
 *   bits[nbytes] || k;  probes h, h+delta, h+2*delta, ... (mod 2**64),
 *   h = XXH64(key, 0), delta = rotr64(h, 17), bit = h mod (8 * nbytes).
 * O(k) per key; reads only filter[0..len) and key[0..key_len).
 */
#include "core_internal.h"

size_t lsm_bloom_nbytes(size_t n, uint32_t bits_per_key)
{
    size_t nbytes = (n * (size_t)bits_per_key + 7) / 8;
    return nbytes < 8 ? 8 : nbytes;
}

int lsm_bloom_k(uint32_t bits_per_key)
{
    uint64_t k = ((uint64_t)bits_per_key * 693147u + 500000u) / 1000000u;
    if (k < 1)
        k = 1;
    if (k > 30)
        k = 30;
    return (int)k;
}

/* Set the k probe bits of the key whose XXH64 is h. */
static inline void bloom_set(uint8_t *bits, uint64_t nbits, int k, uint64_t h)
{
    uint64_t delta = (h >> 17) | (h << 47);
    int j;
    for (j = 0; j < k; j++) {
        uint64_t pos = h % nbits;
        bits[pos >> 3] |= (uint8_t)(1u << (pos & 7));
        h += delta;
    }
}

void lsm_bloom_add(char *filter, size_t nbytes, int k, const char *key, size_t key_len)
{
    bloom_set((uint8_t *)filter, (uint64_t)nbytes * 8, k,
              lsm_xxh64_u8((const uint8_t *)key, key_len, 0));
}

/* The filter of keys given by their hashes (table.c's table_blocks emits
 * them); lsm_bloom_build is this over the hashes of its keys. */
int lsm_bloom_build_hashes(const uint64_t *hashes, size_t n, uint32_t bits_per_key, char *out)
{
    uint8_t *bits = (uint8_t *)out;
    size_t nbytes = lsm_bloom_nbytes(n, bits_per_key);
    int k = lsm_bloom_k(bits_per_key);
    size_t i;

    memset(bits, 0, nbytes);
    for (i = 0; i < n; i++)
        bloom_set(bits, (uint64_t)nbytes * 8, k, hashes[i]);
    bits[nbytes] = (uint8_t)k;
    return 0;
}

int lsm_bloom_build(const char *keys, size_t keys_len, const uint64_t *key_lens, size_t n,
                    uint32_t bits_per_key, char *out)
{
    uint8_t *bits = (uint8_t *)out;
    size_t nbytes = lsm_bloom_nbytes(n, bits_per_key);
    int k = lsm_bloom_k(bits_per_key);
    size_t i, off = 0;

    for (i = 0; i < n; i++) {
        if (key_lens[i] > keys_len - off)
            return LSM_ERR_TOO_LARGE;
        off += (size_t)key_lens[i];
    }
    memset(bits, 0, nbytes);
    off = 0;
    for (i = 0; i < n; i++) {
        lsm_bloom_add(out, nbytes, k, keys + off, (size_t)key_lens[i]);
        off += (size_t)key_lens[i];
    }
    bits[nbytes] = (uint8_t)k;
    return 0;
}

int lsm_bloom_may_contain(const char *filter, size_t len, const char *key, size_t key_len)
{
    const uint8_t *f = (const uint8_t *)filter;
    uint64_t nbits, h, delta;
    int k, j;

    if (len < 2)
        return LSM_ERR_BLOOM_TOO_SHORT;
    k = f[len - 1];
    if (k > 30)
        return 1;
    nbits = (uint64_t)(len - 1) * 8;
    h = lsm_xxh64_u8((const uint8_t *)key, key_len, 0);
    delta = (h >> 17) | (h << 47);
    for (j = 0; j < k; j++) {
        uint64_t pos = h % nbits;
        if (!(f[pos >> 3] & (1u << (pos & 7))))
            return 0;
        h += delta;
    }
    return 1;
}
