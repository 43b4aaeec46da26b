/*
 * lsm_core.h - the native core of superdisk-lsm: public C API.
 *
 * Leaf functions over plain buffers; none of them touches Python objects.
 * native/build.py gives the prototypes between the CDEF markers below to
 * cffi (out-of-line API mode), which builds the module lsm._lsm_c; its
 * generated wrappers call every function with the GIL released.  The
 * Python side (argument checks, building Python objects) is lsm/_native.py.
 *
 * Contract: identical results to the pure-Python twins in lsm/_twins.py,
 * which document the formats (data block, bloom filter, varints, XXH64) and
 * the order in which inputs are validated.  Every read is bounds-checked:
 * corrupt input makes a function return a negative LSM_ERR_* code and the
 * offset of the problem through an out-parameter; it never reads outside
 * the buffers it is given.
 *
 * Buffers of several items ("keys", "values") are concatenations of the
 * items, with an array of item lengths; the *_len total lets the function
 * check that the lengths fit the buffer.
 *
 * Error codes: keep in sync with ERR_* in lsm/_twins.py (do not change).
 */
#ifndef LSM_CORE_H
#define LSM_CORE_H

#include <stddef.h>
#include <stdint.h>

#define LSM_ERR_VARINT32_TRUNCATED      (-1)
#define LSM_ERR_VARINT32_TOO_LONG       (-2)
#define LSM_ERR_VARINT32_OVERFLOW       (-3)
#define LSM_ERR_VARINT64_TRUNCATED      (-4)
#define LSM_ERR_VARINT64_TOO_LONG       (-5)
#define LSM_ERR_VARINT64_OVERFLOW       (-6)
#define LSM_ERR_BLOCK_TOO_SHORT         (-10)
#define LSM_ERR_BLOCK_NO_RESTARTS       (-11)
#define LSM_ERR_BLOCK_RESTARTS_OVERRUN  (-12)
#define LSM_ERR_BLOCK_BAD_RESTART       (-13)
#define LSM_ERR_BLOCK_RESTART_SHARED    (-14)
#define LSM_ERR_BLOCK_SHARED_TOO_LONG   (-15)
#define LSM_ERR_BLOCK_ENTRY_OVERRUN     (-16)
#define LSM_ERR_BLOCK_RESTART_MISALIGNED (-17)
#define LSM_ERR_BLOCK_SHORT_INTERNAL_KEY (-18)
#define LSM_ERR_BLOOM_TOO_SHORT         (-20)
#define LSM_ERR_MERGE_SHORT_KEY         (-30)
#define LSM_ERR_MERGE_BAD_KIND          (-31)
#define LSM_ERR_MERGE_UNSORTED          (-32)
#define LSM_ERR_NO_MEMORY               (-90)
#define LSM_ERR_TOO_LARGE               (-91)
/* An argument breaks a documented precondition (the Python binding then
 * runs the twin's validator, which raises the reference error). */
#define LSM_ERR_INVALID                 (-92)
/* lsm_merge was called without values, but a run holds a range tombstone. */
#define LSM_ERR_NEED_VALUES             (-93)
/* read path (read.c): a malformed probe blob (lsm_tables_probe). */
#define LSM_ERR_PROBE_HEADER            (-40)
#define LSM_ERR_PROBE_KEY_END           (-41)
/* LZ4 decoder (lz4.c, lsm_lz4_decompress / lsm_blocks_open). */
#define LSM_ERR_LZ4_TRUNCATED           (-50)
#define LSM_ERR_LZ4_LITERALS_OVERRUN    (-51)
#define LSM_ERR_LZ4_OUTPUT_OVERRUN      (-52)
#define LSM_ERR_LZ4_SIZE_MISMATCH       (-53)
#define LSM_ERR_LZ4_END_LIMIT           (-54)
#define LSM_ERR_LZ4_BAD_OFFSET          (-55)
#define LSM_ERR_LZ4_MATCH_END           (-56)
#define LSM_ERR_LZ4_EMPTY               (-57)
/* SSTable physical blocks (lz4.c, lsm_blocks_open). */
#define LSM_ERR_PBLOCK_TRUNCATED        (-60)
#define LSM_ERR_PBLOCK_CHECKSUM         (-61)
#define LSM_ERR_PBLOCK_UNKNOWN_TYPE     (-62)
#define LSM_ERR_PBLOCK_LZ4_SHORT        (-63)
#define LSM_ERR_PBLOCK_LZ4_SIZE         (-64)

/* CDEF BEGIN: everything from here to CDEF END is given to cffi's cdef
 * (plain prototypes only, no macros). */

/* XXH64 of data[0..len) with seed; equals xxhash.xxh64_intdigest. */
uint64_t lsm_xxh64(const char *data, size_t len, uint64_t seed);

/* LEB128 of value into out (10 bytes of room); returns the byte count. */
size_t lsm_encode_varint(uint64_t value, char *out);

/* Decode a varint32 at buf[offset..len): (value << 3) | byte_count on
 * success, a negative code on error (the error offset is `offset`). */
int64_t lsm_decode_varint32(const char *buf, size_t len, size_t offset);

/* Decode a varint64 at buf[offset..len): 0 and out[0] = value, out[1] =
 * next offset on success; a negative code on error (at `offset`). */
int lsm_decode_varint64(const char *buf, size_t len, size_t offset, uint64_t *out);

/* Upper bound of the size of the block lsm_block_encode builds. */
size_t lsm_block_encode_bound(size_t n, size_t key_bytes, size_t value_bytes,
                              uint32_t restart_interval);

/* Encode n entries given as arrays of pointers and lengths (same results
 * and codes as lsm_block_encode below, which takes concatenated buffers). */
int lsm_block_encode_v(const char *const *keys, const size_t *key_lens,
                       const char *const *values, const size_t *value_lens,
                       size_t n, uint32_t restart_interval,
                       char *out, size_t cap, size_t *out_len);

/* Encode n entries.  0 and *out_len on success; LSM_ERR_TOO_LARGE when
 * cap is too small, a length does not fit, or the block exceeds 4 GiB;
 * LSM_ERR_NO_MEMORY. */
int lsm_block_encode(const char *keys, size_t keys_len, const uint64_t *key_lens,
                     const char *values, size_t values_len, const uint64_t *value_lens,
                     size_t n, uint32_t restart_interval,
                     char *out, size_t cap, size_t *out_len);

/* Decode a block.  With out == NULL it only validates and measures:
 * info[0] = entry count, info[1] = total bytes of the full keys, info[3] =
 * total bytes of the values, info[4] = length of the format string.  With
 * out != NULL, on input info[0] / info[1] are the capacities of out and
 * fmt; it writes key0 value0 key1 value1 ... to out and the matching
 * struct format ("3s5s4s0s...") to fmt, so that Python splits out into
 * bytes objects with one struct.unpack call.  info[2] = error offset.
 * Returns 0 or a negative code. */
int lsm_block_decode(const char *block, size_t len, size_t *info, char *out, char *fmt);

/* Seek the first entry with key >= target under cmp (0 bytewise, 1
 * internal).  keybuf has room for len bytes (a key is never longer than
 * its block).  Returns 1 (found: info[0] index, info[1] key length,
 * info[2]/info[3] value start/end), 0 (every key < target) or a negative
 * code (info[4] = error offset). */
int lsm_block_seek(const char *block, size_t len, const char *target, size_t target_len,
                   int cmp, char *keybuf, size_t *info);

/* lsm_block_seek; with want_index == 0 it skips counting the entries of
 * the first restart interval (info[0] is then meaningless, and those
 * entries are not checked unless the scan reads them): block_get. */
int lsm_block_seek_ex(const char *block, size_t len, const char *target, size_t target_len,
                      int cmp, char *keybuf, size_t *info, int want_index);

/* Bloom filter: size of the bit array, number of probes. */
size_t lsm_bloom_nbytes(size_t n, uint32_t bits_per_key);
int lsm_bloom_k(uint32_t bits_per_key);

/* Build the filter of n keys into out (lsm_bloom_nbytes(n, bpk) + 1 bytes).
 * Returns 0 or LSM_ERR_TOO_LARGE when the lengths do not fit keys_len. */
int lsm_bloom_build(const char *keys, size_t keys_len, const uint64_t *key_lens,
                    size_t n, uint32_t bits_per_key, char *out);

/* Set the k probe bits of key in filter[0..nbytes) (the bit array). */
void lsm_bloom_add(char *filter, size_t nbytes, int k, const char *key, size_t key_len);

/* 1 may contain, 0 certainly not, LSM_ERR_BLOOM_TOO_SHORT (offset 0). */
int lsm_bloom_may_contain(const char *filter, size_t len, const char *key, size_t key_len);

/* The k-way merge (docs/architecture.md).  Run r holds the global entries
 * run_starts[r] .. run_starts[r+1]-1; entry g is key g / value g of the
 * concatenated buffers.  Writes the global indices of the emitted entries,
 * in order, to out (room for every entry) and returns their number, or a
 * negative code with err[0] = run, err[1] = entry index in the run.  Only
 * range tombstones (kind 2) read their value: values and value_lens may be
 * NULL, and then LSM_ERR_NEED_VALUES is returned (before the runs are
 * validated) if a key of at least 8 bytes has kind 2. */
int64_t lsm_merge(size_t nruns, const uint64_t *run_starts,
                  const char *keys, size_t keys_len, const uint64_t *key_lens,
                  const char *values, size_t values_len, const uint64_t *value_lens,
                  uint64_t read_seq, const uint64_t *snapshots, size_t nsnapshots,
                  int mode, int bottom, uint64_t *out, size_t *err);

/* lsm_merge over arrays of pointers and lengths (entry g is keys[g] /
 * values[g]); same results and codes. */
int64_t lsm_merge_v(size_t nruns, const uint64_t *run_starts,
                    const char *const *keys, const size_t *key_lens,
                    const char *const *values, const size_t *value_lens,
                    uint64_t read_seq, const uint64_t *snapshots, size_t nsnapshots,
                    int mode, int bottom, uint64_t *out, size_t *err);

/* WAL record (log.c): room needed for the record of an n-byte payload, and
 * the encoder (writes the padding and fragments that lsm/wal.py's
 * LogWriter appends at block_offset within a block; returns the length). */
size_t lsm_log_encode_bound(size_t n);
size_t lsm_log_encode(const char *payload, size_t n, size_t block_offset, char *out);

/* One-record write batch (log.c) into out (room for 23 + key_len +
 * value_len bytes); returns the length.  Requires kind 0..2, lengths <
 * 2**32; the value is written only for kinds 1 and 2. */
size_t lsm_batch_encode_single(uint64_t sequence, int kind, const char *key, size_t key_len,
                               const char *value, size_t value_len, char *out);

/* The parts of a batch: the 12-byte header, and one record (room for 11 +
 * key_len + value_len bytes; returns its length). */
void lsm_batch_header(uint64_t sequence, uint32_t count, char *out);
size_t lsm_batch_record(int kind, const char *key, size_t key_len, const char *value,
                        size_t value_len, char *out);

/* A write batch of n records (lsm/batch.py layout) at sequence: record i
 * is kinds[i] with key i / value i of the concatenated buffers (the value
 * is written only for kinds 1 and 2).  Writes at most 12 + 11 * n +
 * keys_len + values_len bytes to out; returns the length,
 * LSM_ERR_TOO_LARGE when the lengths do not fit the buffers or cap, or
 * LSM_ERR_INVALID when a record breaks batch_encode's rules (kind > 2, a
 * length >= 2**32, a kind-0 value that is not empty, a kind-2 range whose
 * start is not below its end). */
int64_t lsm_batch_encode(uint64_t sequence, size_t n, const uint8_t *kinds,
                         const char *keys, size_t keys_len, const uint64_t *key_lens,
                         const char *values, size_t values_len, const uint64_t *value_lens,
                         char *out, size_t cap);

/* Point lookup in a block of internal keys (block_get in lsm/_twins.py):
 * seeks user_key + u64le(read_seq << 8 | 0xFF) under the internal order
 * without computing an index (lsm_block_seek_ex, want_index 0).  scratch
 * has room for len + ukl + 8 bytes.  Returns 1 when the entry found has
 * user key user_key (info[0] = its trailer, info[1] / info[2] = value
 * start / end in the block), 0 when not, or a negative code (info[3] =
 * error offset). */
int lsm_block_get(const char *block, size_t len, const char *user_key, size_t ukl,
                  uint64_t read_seq, char *scratch, uint64_t *info);

/* The struct format that cuts the concatenation of n internal keys of
 * lengths key_lens into their user keys ("<l0-8>s8x<l1-8>s8x..."), into
 * fmt (room for 25 * n + 1 bytes).  Returns its length, or
 * LSM_ERR_MERGE_SHORT_KEY with *err = the index of the first key shorter
 * than 8 bytes. */
int64_t lsm_user_keys_format(const uint64_t *key_lens, size_t n, char *fmt, size_t *err);

/* ---- write path (table.c): flush and compaction without per-entry Python.
 * Reference semantics, validation order and error offsets: the twins
 * blocks_unpack, sort_entries, table_blocks, bloom_build_hashes in
 * lsm/_twins.py. */

/* Decode nblocks data blocks of internal keys (block b is the next
 * block_lens[b] bytes of blocks; runs of run_nblocks[r] consecutive blocks)
 * and keep the entries whose user key u has lo <= u (bounds bit 0) and
 * u < hi (bounds bit 1), in order.  Each block is checked as
 * lsm_block_decode checks it, and every key must be at least 8 bytes
 * (LSM_ERR_BLOCK_SHORT_INTERNAL_KEY at the entry).  With keys_out NULL it
 * only measures: info[0] entries kept, info[1] key bytes, info[2] value
 * bytes.  Otherwise info[0..2] are, on input, the capacities of the
 * outputs; it writes the kept keys and values back to back with their
 * lengths, and run_starts_out[0..nruns] (the first kept entry of each run,
 * then the total).  Errors: LSM_ERR_TOO_LARGE (lengths do not fit the
 * buffers or the capacities), block codes with info[3] = block index and
 * info[4] = offset in that block, LSM_ERR_NO_MEMORY. */
int lsm_blocks_unpack(const char *blocks, size_t blocks_len, const uint64_t *block_lens,
                      size_t nblocks, size_t nruns, const uint64_t *run_nblocks,
                      const char *lo, size_t lo_len, const char *hi, size_t hi_len, int bounds,
                      char *keys_out, uint64_t *key_lens_out, char *values_out,
                      uint64_t *value_lens_out, uint64_t *run_starts_out, uint64_t *info);

/* Internal order of a memtable's n entries: key i is a user key, entry i is
 * u64le(trailer) || value.  Writes to order[0..n) the indices sorted by user
 * key ascending, then trailer descending; stable.  Returns 0,
 * LSM_ERR_TOO_LARGE (lengths do not fit the buffers), LSM_ERR_MERGE_SHORT_KEY
 * (*err = index of the first entry shorter than 8 bytes), LSM_ERR_NO_MEMORY. */
int lsm_sort_entries(const char *keys, size_t keys_len, const uint64_t *key_lens,
                     const char *entries, size_t entries_len, const uint64_t *entry_lens,
                     size_t n, uint64_t *order, size_t *err);

/* Encode entries into data blocks exactly as TableBuilder.add cuts them (a
 * size estimate starting at 8, growing by key + value length + 3 +
 * 4 / restart_interval per entry; the block closes after the entry that
 * brings it to block_size), and close the last block when the call ends.
 * Entry g is key g / value g (layout 0: an internal key and its value;
 * layout 1: a user key and u64le(trailer) || value); the entries are taken
 * in the order order[pos], order[pos+1], ..., order[n_order-1] (order NULL:
 * g = pos, pos+1, ...).  has_prev: prev_key is the internal key the table
 * already ends with (order check, shared user key).
 * Before each entry that starts a new user key: the grandparent rule of
 * compaction.py (_Output._past_grandparents, state gp_state[0..2] = index,
 * bytes, seen, updated) stops the call (info[8] = 2) if the table is not
 * empty; then, if this call took entries whose key + value bytes reach
 * limit, it stops (info[8] = 1).  info[8] = 0: every entry was taken.
 * Outputs: out (room keys_len + values_len + 32 * (n_order - pos) + 16) the
 * block contents back to back; blocks[3b] the end offset of block b in
 * out, blocks[3b+1] the order position of its last entry, blocks[3b+2]
 * the length of that entry's internal key, which is appended to last_keys
 * (room keys_len + 8 * (n_order - pos)); hashes the XXH64 of each new user
 * key (room n_order - pos); info[0] the next position,
 * [1] blocks, [2] hashes, [3] key bytes, [4] value bytes, [5] point
 * tombstones, [6] / [7] smallest / largest sequence (2**64-1 / 0 when
 * none), [10] bytes written to out, [11] to last_keys.  Errors (info[9] = order position):
 * LSM_ERR_INVALID (bad layout, restart interval, pos, prev_key shorter than
 * 8, or an index >= n_entries), LSM_ERR_TOO_LARGE (lengths do not fit the
 * buffers, a small cap, a key or value of 2**32 bytes or more),
 * LSM_ERR_MERGE_SHORT_KEY, LSM_ERR_MERGE_BAD_KIND (kind > 1),
 * LSM_ERR_MERGE_UNSORTED (not strictly increasing in internal order). */
int lsm_table_blocks(const char *keys, size_t keys_len, const uint64_t *key_lens,
                     const char *values, size_t values_len, const uint64_t *value_lens,
                     size_t n_entries, int layout, const uint64_t *order, size_t pos,
                     size_t n_order, uint32_t block_size, uint32_t restart_interval,
                     uint64_t limit, const char *prev_key, size_t prev_len, int has_prev,
                     const char *gp_keys, size_t gp_len, const uint64_t *gp_key_lens,
                     const uint64_t *gp_sizes, size_t n_gp, uint64_t gp_limit,
                     uint64_t *gp_state, char *out, size_t cap, uint64_t *blocks,
                     char *last_keys, uint64_t *hashes, uint64_t *info);

/* The bloom filter (bloom.c, same format as lsm_bloom_build) of n keys
 * given by their XXH64 hashes, into out (lsm_bloom_nbytes(n, bpk) + 1
 * bytes).  Returns 0. */
int lsm_bloom_build_hashes(const uint64_t *hashes, size_t n, uint32_t bits_per_key, char *out);

/* read path (reader.py / iterators.py): read.c */
/* Point-lookup probe over ntabs tables given as "probe blobs" (layout in
 * read.c and lsm/_twins.py).  groups holds ngroups pairs (kind, count),
 * counts summing to ntabs: kind 0 probes each table of the group in order
 * (level 0, newest first), kind 1 is a sorted disjoint run (at most one
 * table, found by binary search over the upper bounds).  For each table
 * whose extent holds user_key and whose bloom filter does not rule it out,
 * the index is searched for the first block whose last key >= (user_key,
 * read_seq); when there is one, (table, block) is written to out[2i],
 * out[2i+1] (at most cap pairs).  Returns the pair count, LSM_ERR_INVALID
 * (bad groups or read_seq), or LSM_ERR_PROBE_* with err[0] = table and
 * err[1] = offset in its blob. */
int64_t lsm_tables_probe(const char *const *tabs, const uint64_t *tab_lens, size_t ntabs,
                         const uint32_t *groups, size_t ngroups,
                         const char *user_key, size_t key_len, uint64_t read_seq,
                         uint32_t *out, size_t cap, size_t *err);
/* Decode nblocks data blocks given back to back (block i = data[ends[i-1]
 * : ends[i]]) as lsm_block_decode decodes one, into one out / fmt pair;
 * counts[i] = entries of block i.  info as lsm_block_decode's, for all the
 * blocks (info[1] = key bytes, info[3] = value bytes, info[4] = format
 * length), plus info[5] = the failing block; info[2] = the error offset in
 * data.  LSM_ERR_INVALID for ends that are not ascending within data_len. */
int lsm_blocks_decode(const char *data, size_t data_len, const uint64_t *ends, size_t nblocks,
                      size_t *info, char *out, char *fmt, uint64_t *counts);

/* ---- LZ4 and SSTable physical blocks (lz4.c).  Reference semantics, the
 * compressor's exact algorithm, the decoder's checks and error offsets: the
 * section "LZ4 and physical blocks" at the end of lsm/_twins.py. */

/* Compress src[0..n) into one raw LZ4 block (no size prefix) at dst.
 * Requires cap >= n + n / 255 + 16 (else LSM_ERR_INVALID) and n <=
 * 0x7E000000 (else LSM_ERR_TOO_LARGE).  Returns the compressed length.
 * Deterministic: byte-identical to the twin lz4_compress. */
int64_t lsm_lz4_compress(const char *src, size_t n, char *dst, size_t cap);

/* Decode the raw LZ4 block src[0..n) into dst, which has room for exactly
 * expected bytes.  Returns expected on success; LSM_ERR_LZ4_* with *err =
 * the input offset of the problem on malformed input (never reads or
 * writes outside the buffers); LSM_ERR_INVALID when expected >
 * 0x7E000000. */
int64_t lsm_lz4_decompress(const char *src, size_t n, char *dst, size_t expected, size_t *err);

/* Seal nblocks data blocks (block i = data[ends[i-1] .. ends[i]), ends[-1]
 * = 0) into physical blocks, back to back in out, as make_physical_block
 * (lsm/sstable/format.py) does with this compressor: with compress and at
 * least 64 bytes, u32le(len) || lz4 when that is <= len - len / 8 (type 1),
 * else the contents (type 0); then the type byte and u32le(XXH64(stored ||
 * type) & 0xFFFFFFFF).  sizes[i] = stored size (the handle size).  Requires
 * cap >= data_len + data_len / 255 + 5 * nblocks + 32 (else
 * LSM_ERR_TOO_LARGE).  Returns the total length, or LSM_ERR_INVALID when
 * ends descend, do not end at data_len, or a block to compress exceeds
 * 0x7E000000 bytes. */
int64_t lsm_blocks_seal(const char *data, size_t data_len, const uint64_t *ends, size_t nblocks,
                        int compress, char *out, size_t cap, uint64_t *sizes);

/* Open nblocks physical blocks: block i is buf[offsets[i] .. offsets[i] +
 * sizes[i] + 5) (contents and trailer).  Each gets unwrap_physical_block's
 * checks in its order (truncated; checksum when verify; type: 0 stored, 1
 * LZ4 -- shorter than 4, declared size > 255 * size + 64, the decoder's
 * checks -- else unknown) and its contents are appended to out; ends[i] =
 * end offset of block i in out.  Returns the total length when it fits cap;
 * when it does not, a value > cap: the room needed for every block up to
 * the first one that fails a check that needs no decoding (call again with
 * that capacity; out and ends are then meaningless).  Errors:
 * LSM_ERR_PBLOCK_* or LSM_ERR_LZ4_* with err[0] = block index and err[1] =
 * the compression type (LSM_ERR_PBLOCK_UNKNOWN_TYPE) or 4 + the decoder's
 * input offset (LSM_ERR_LZ4_*). */
int64_t lsm_blocks_open(const char *buf, size_t buf_len, const uint64_t *offsets,
                        const uint64_t *sizes, size_t nblocks, int verify, char *out,
                        size_t cap, uint64_t *ends, size_t *err);

/* memtable segments (lsm/_memseg.py): memtab.c */
/* The entries of a batch of n records at sequences seq..: kinds[i] 0
 * (tombstone, empty value) or 1; ents_out (values_len + 8n bytes) gets
 * u64le(trailer) || value per record, elens_out their lengths.  Returns 0,
 * or LSM_ERR_INVALID for lengths that do not fit values, a bad kind, a
 * tombstone with a value or a sequence past 2**56-1. */
int lsm_segment_entries(uint64_t seq, size_t n, const uint8_t *kinds, const char *values,
                        size_t values_len, const uint64_t *value_lens, char *ents_out,
                        uint64_t *elens_out);
/* The offsets (koffs_out, eoffs_out: n + 1 each) and the hash index (table:
 * cap slots, cap a power of two >= 2n) of a segment of n entries.  Returns 0,
 * or LSM_ERR_INVALID for lengths that do not fit, an entry shorter than 8
 * bytes or a bad cap. */
int lsm_segment_index(size_t n, const char *keys, size_t keys_len, const uint64_t *key_lens,
                      size_t ents_len, const uint64_t *ent_lens, uint64_t *koffs_out,
                      uint64_t *eoffs_out, uint64_t *table, size_t cap);
/* The newest entry of user key key with sequence <= read_seq over nseg
 * segments given oldest first (their sequence ranges ascending): returns 1
 * with out[0] = segment, out[1] = entry index, out[2] = trailer; 0 if none. */
int lsm_segments_get(size_t nseg, const char *const *keys, const uint64_t *const *koffs,
                     const char *const *ents, const uint64_t *const *eoffs,
                     const uint64_t *const *tables, const uint64_t *caps, const char *key,
                     size_t klen, uint64_t read_seq, uint64_t *out);

/* CDEF END */

#endif
