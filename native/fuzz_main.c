/*
 * fuzz_main.c - standalone fuzzer of the native core under AddressSanitizer
 * and UBSan (run by native/fuzz_asan.sh; not part of the extension).
 *
 * Every input lives in a heap buffer of exactly its size, so any read past
 * the end is reported.  Inputs: random bytes, and valid blocks (built by
 * lsm_block_encode) with random damage.  Merge: random runs whose keys are
 * random bytes, half of them sorted.  Log records and batches: random
 * payloads at random block offsets into buffers of exactly the bound.
 * LZ4 (lz4.c): round trips through exactly-sized buffers, damaged streams
 * decoded into buffers of exactly the expected size, physical blocks sealed
 * into exactly the documented bound and opened, damaged, with small and
 * exact capacities.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm_core.h"

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static char *dup_exact(const char *src, size_t n)
{
    char *p = malloc(n ? n : 1);
    memcpy(p, src, n);
    return p;
}

static void run_decoders(const char *data, size_t n)
{
    char *b = dup_exact(data, n);
    char *t = dup_exact("c\x01\x01\x01\x01\x01\x01\x01\x01", 9);
    size_t info[5];
    char *kb = malloc(n ? n : 1);
    uint64_t v64[2];
    lsm_decode_varint32(b, n, 0);
    lsm_decode_varint64(b, n, 0, v64);
    lsm_bloom_may_contain(b, n, t, 9);
    lsm_block_seek(b, n, t, 1, 0, kb, info);
    lsm_block_seek(b, n, t, 9, 1, kb, info);
    lsm_block_seek_ex(b, n, t, 9, 1, kb, info, 0);
    {
        /* scratch of exactly len + user key + 8 bytes */
        char *sc = malloc(n + 1 + 8);
        uint64_t gi[4];
        lsm_block_get(b, n, t, 1, rnd() % 1000, sc, gi);
        free(sc);
    }
    if (lsm_block_decode(b, n, info, NULL, NULL) == 0 && info[0] > 0) {
        size_t size = info[1] + info[3], flen = info[4];
        char *o = malloc(size ? size : 1), *f = malloc(flen + 44);
        info[0] = size;
        info[1] = flen + 44;
        if (lsm_block_decode(b, n, info, o, f) != 0 || info[4] != flen) {
            fprintf(stderr, "second decode pass disagrees\n");
            abort();
        }
        free(o);
        free(f);
    }
    free(kb);
    free(t);
    free(b);
}

static void fuzz_merge(void)
{
    size_t nruns = 1 + rnd() % 4, total = 0, r, i;
    uint64_t starts[6], klens[64], vlens[64], snaps[3] = {5, 50, 500};
    char kbuf[64 * 12], vbuf[64 * 4];
    size_t kb = 0, vb = 0;
    starts[0] = 0;
    for (r = 0; r < nruns; r++) {
        size_t n = rnd() % 12;
        for (i = 0; i < n; i++, total++) {
            size_t kl = (rnd() % 5 == 0) ? rnd() % 8 : 8 + rnd() % 3;
            size_t j;
            for (j = 0; j < kl; j++)
                kbuf[kb + j] = (char)(j + 1 >= kl ? rnd() % 3 : (j < kl - 8 ? 'a' + rnd() % 3 : rnd() % 4));
            klens[total] = kl;
            kb += kl;
            vlens[total] = rnd() % 4;
            for (j = 0; j < vlens[total]; j++)
                vbuf[vb + j] = (char)('a' + rnd() % 4);
            vb += vlens[total];
        }
        starts[r + 1] = total;
    }
    {
        char *k = dup_exact(kbuf, kb), *v = dup_exact(vbuf, vb);
        uint64_t *out = malloc((total ? total : 1) * sizeof(uint64_t));
        size_t err[2];
        int mode;
        for (mode = 0; mode < 2; mode++) {
            lsm_merge(nruns, starts, k, kb, klens, v, vb, vlens, rnd() % 600, snaps, rnd() % 4,
                      mode, (int)(rnd() & 1), out, err);
            /* without values: only LSM_ERR_NEED_VALUES may stop it early */
            lsm_merge(nruns, starts, k, kb, klens, NULL, 0, NULL, rnd() % 600, snaps,
                      rnd() % 4, mode, (int)(rnd() & 1), out, err);
        }
        {
            /* user-key formats: room for 25 per key + 1, exactly */
            char *fmt = malloc(25 * total + 1);
            size_t e;
            lsm_user_keys_format(klens, total, fmt, &e);
            free(fmt);
        }
        free(out);
        free(k);
        free(v);
    }
}

static void fuzz_records(void)
{
    /* sizes around the block edges, at offsets around the block end */
    size_t sizes[] = {0, 1, 6, 7, 100, 32761, 32762, 32768, 70000};
    size_t n = sizes[rnd() % 9] + rnd() % 3, off = rnd() % 2 ? rnd() % 32768 : 32768 - rnd() % 9;
    size_t bound = lsm_log_encode_bound(n), len, kl = rnd() % 300, vl = rnd() % 300;
    char *p = malloc(n ? n : 1), *o = malloc(bound), *k = malloc(kl ? kl : 1);
    char *v = malloc(vl ? vl : 1), *b = malloc(23 + kl + vl);
    memset(p, 'p', n);
    len = lsm_log_encode(p, n, off % 32768, o);
    if (len > bound)
        abort();
    memset(k, 'k', kl);
    memset(v, 'v', vl);
    if (lsm_batch_encode_single(rnd() % 1000, (int)(rnd() % 3), k, kl, v, vl, b) > 23 + kl + vl)
        abort();
    {
        /* a batch of two records (key/value split at random) in exactly
         * its bound, with random kinds (some invalid) */
        uint8_t kinds[2] = {(uint8_t)(rnd() % 4), (uint8_t)(rnd() % 3)};
        uint64_t kls[2], vls[2];
        size_t cap = 12 + 22 + kl + vl;
        char *ob = malloc(cap);
        int64_t r;
        kls[0] = kl ? rnd() % kl : 0;
        kls[1] = kl - kls[0];
        vls[0] = vl ? rnd() % vl : 0;
        vls[1] = vl - vls[0];
        r = lsm_batch_encode(rnd() % 1000, 2, kinds, k, kl, kls, v, vl, vls, ob, cap);
        if (r > (int64_t)cap)
            abort();
        free(ob);
    }
    free(p);
    free(o);
    free(k);
    free(v);
    free(b);
}

/* Compressible random data: pieces of a small pool, repeated. */
static size_t lz4_data(char *buf, size_t cap)
{
    char pool[8][24];
    size_t plen[8], n = 0, i, want = rnd() % cap;
    for (i = 0; i < 8; i++) {
        size_t j;
        plen[i] = 1 + rnd() % 24;
        for (j = 0; j < plen[i]; j++)
            pool[i][j] = (char)(rnd() % 4 == 0 ? rnd() : 'a' + i);
    }
    while (n < want) {
        size_t p = rnd() % 8, k = 1 + rnd() % 6;
        while (k-- > 0 && n + plen[p] <= want) {
            memcpy(buf + n, pool[p], plen[p]);
            n += plen[p];
        }
        if (rnd() % 32 == 0)
            break;
    }
    return n;
}

static void fuzz_lz4(void)
{
    char data[3000];
    size_t n = lz4_data(data, sizeof data), bound = n + n / 255 + 16, err, d;
    char *src = dup_exact(data, n), *comp = malloc(bound), *back = malloc(n ? n : 1);
    int64_t clen = lsm_lz4_compress(src, n, comp, bound), r;
    if (clen < 0 || (size_t)clen > bound)
        abort();
    if (lsm_lz4_decompress(comp, (size_t)clen, back, n, &err) != (int64_t)n ||
        memcmp(back, data, n) != 0) {
        fprintf(stderr, "lz4 round trip failed\n");
        abort();
    }
    {
        /* damage, then decode into a buffer of exactly the claimed size */
        size_t blen = (size_t)clen, size = n;
        char *bad = dup_exact(comp, blen), *o;
        for (d = 1 + rnd() % 3; d-- > 0;) {
            switch (rnd() % 4) {
            case 0:
                if (blen)
                    bad[rnd() % blen] = (char)rnd();
                break;
            case 1:
                blen = blen ? rnd() % blen : 0;
                break;
            case 2:
                size = rnd() % (n + 40);
                break;
            default:
                if (blen)
                    bad[rnd() % blen] ^= (char)(1 << (rnd() % 8));
            }
        }
        {
            char *exact = dup_exact(bad, blen);
            o = malloc(size ? size : 1);
            r = lsm_lz4_decompress(exact, blen, o, size, &err);
            if (r >= 0 ? r != (int64_t)size : err > blen)
                abort();
            free(o);
            free(exact);
        }
        free(bad);
    }
    {
        /* physical blocks: up to 4 blocks cut from data, sealed into exactly
         * the bound, opened (damaged or not) with random capacities */
        uint64_t ends[4], sizes[4], offs[4], oends[4];
        size_t nb = rnd() % 5, b, cap = n + n / 255 + 5 * nb + 32, total = 0, e[2];
        char *out = malloc(cap), *phys, *dst;
        int64_t plen, need;
        int damaged = 0;
        for (b = 0; b < nb; b++)
            ends[b] = b + 1 == nb ? n : (n ? rnd() % (n + 1) : 0);
        for (b = 1; b < nb; b++)   /* sort */
            if (ends[b] < ends[b - 1]) {
                size_t c = b;
                while (c > 0 && ends[c] < ends[c - 1]) {
                    uint64_t t = ends[c];
                    ends[c] = ends[c - 1];
                    ends[c - 1] = t;
                    c--;
                }
            }
        if (nb && ends[nb - 1] != n)
            abort();
        plen = lsm_blocks_seal(src, nb ? n : 0, ends, nb, (int)(rnd() & 1), out, nb ? cap : 32, sizes);
        if (plen < 0 || (size_t)plen > cap)
            abort();
        for (b = 0; b < nb; b++) {
            offs[b] = total;
            total += sizes[b] + 5;
        }
        if (total != (size_t)plen)
            abort();
        if (rnd() % 2 && plen > 0) {
            damaged = 1;
            for (d = 1 + rnd() % 3; d-- > 0;)
                out[rnd() % (size_t)plen] = (char)rnd();
        }
        if (rnd() % 4 == 0 && plen > 0) {
            damaged = 1;
            plen = (int64_t)(rnd() % (size_t)plen);
        }
        if (rnd() % 8 == 0 && nb) {
            damaged = 1;
            sizes[rnd() % nb] += rnd() % 8;
        }
        phys = dup_exact(out, (size_t)plen);
        {
            size_t c = rnd() % 2 ? n : rnd() % (n + 1);
            dst = malloc(c ? c : 1);
            need = lsm_blocks_open(phys, (size_t)plen, offs, sizes, nb, (int)(rnd() & 1), dst,
                                   c, oends, e);
            if (need > (int64_t)c) {
                char *dst2 = malloc((size_t)need);
                free(dst);
                dst = dst2;
                need = lsm_blocks_open(phys, (size_t)plen, offs, sizes, nb, 1, dst,
                                       (size_t)need, oends, e);
            }
            if (!damaged && (need != (int64_t)(nb ? n : 0) || (nb && memcmp(dst, data, n) != 0))) {
                fprintf(stderr, "blocks_open round trip failed\n");
                abort();
            }
            free(dst);
        }
        free(phys);
        free(out);
    }
    free(src);
    free(comp);
    free(back);
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? atol(argv[1]) : 200000;
    long it;
    for (it = 0; it < iters; it++) {
        char buf[512];
        size_t n = rnd() % 200, i;
        if (it % 2 == 0) {
            for (i = 0; i < n; i++)
                buf[i] = (char)rnd();
            run_decoders(buf, n);
        } else {
            /* a valid block with damage */
            char keys[40 * 6], vals[40 * 3], out[4096];
            uint64_t kl[40], vl[40];
            size_t cnt = rnd() % 40, kb = 0, vb = 0, blen = 0, d;
            for (i = 0; i < cnt; i++) {
                size_t j;
                kl[i] = 1 + rnd() % 5;
                for (j = 0; j < kl[i]; j++)
                    keys[kb + j] = (char)('a' + (i * 7 + j) % 26);
                kb += kl[i];
                vl[i] = rnd() % 3;
                memset(vals + vb, 'v', vl[i]);
                vb += vl[i];
            }
            if (lsm_block_encode(keys, kb, kl, vals, vb, vl, cnt, 1 + rnd() % 4, out, sizeof out,
                                 &blen) != 0)
                abort();
            for (d = rnd() % 4; d-- > 0;) {
                if (blen && rnd() % 2)
                    out[rnd() % blen] = (char)rnd();
                else if (blen)
                    blen = rnd() % blen;
            }
            run_decoders(out, blen);
        }
        if (it % 4 == 0)
            fuzz_merge();
        if (it % 8 == 0)
            fuzz_records();
        if (it % 2 == 1)
            fuzz_lz4();
    }
    printf("fuzz: %ld iterations, no error\n", iters);
    return 0;
}
