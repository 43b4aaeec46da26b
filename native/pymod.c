/*
 * pymod.c - the CPython binding of the native core: module lsm._lsm_c.
 *
 * Design.  Each public function of lsm/_twins.py has a C twin here with the
 * same name and parameters (positional or keyword, same defaults).  A call
 * first runs a *fast check* in C that accepts only the common, valid shapes
 * (exact bytes, exact ints in range, list/tuple of bytes); anything else is
 * handed to the twins' own validator in lsm/_twins.py (check_buffer,
 * check_int, check_merge_args, ...), which raises the reference error (same
 * class, same message) or returns the normalised arguments.  So both
 * implementations fail identically without this file repeating a message.
 * Then one leaf function of native/ (*.c) does the work on plain buffers, and
 * Python objects are built directly (no intermediate joins or arrays).  A
 * negative leaf code becomes the twins' exception through
 * lsm._twins.corruption (CorruptionError, same message and offset).
 *
 * The GIL: leaf work is run with the GIL released only when it is large
 * (LSM_GIL_BYTES of input, or LSM_GIL_ENTRIES merge entries): for a 4 KiB
 * block the release/re-acquire would cost more than the work, and in a
 * multi-threaded process re-acquiring can wait a whole switch interval.
 * While it is released the binding holds references to immutable objects
 * only (bytes, and tuples copied from any list it reads).
 *
 * Costs: each function is O(its input) like its twin, with a fixed cost of
 * one vectorcall (~50 ns) plus its argument checks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "core_internal.h"

#define LSM_GIL_BYTES ((size_t)1 << 16)
#define LSM_GIL_ENTRIES ((size_t)4096)
#define M64 0xFFFFFFFFFFFFFFFFULL
#define MAX_SEQ ((1ULL << 56) - 1)
#define MAX_BPK 1000u
#define MAX_RESTART_INTERVAL (1ULL << 30)
#define SEEK_STACK 8192
#define SEEK_NOMEM (-1000) /* seek(): allocation failed, Python error set */

/* lsm._twins and what the binding uses of it (set at module init) */
static PyObject *twins;
static PyObject *f_check_buffer, *f_check_int, *f_check_bytes_arg, *f_check_bytes_list,
    *f_check_block_encode_args, *f_check_seek_args, *f_check_block_get_args,
    *f_check_bloom_build_args, *f_check_merge_args, *f_check_log_args,
    *f_check_batch_single_args, *f_check_batch_args, *f_corruption, *o_invalid_argument,
    *o_too_large_message;

/* ------------------------------------------------------------- helpers */

/* Raise the twins' exception for leaf code rc at offset (run >= 0: merge). */
static PyObject *raise_code(int64_t rc, size_t offset, Py_ssize_t run)
{
    PyObject *exc;
    if (rc == LSM_ERR_NO_MEMORY)
        return PyErr_NoMemory();
    if (rc == LSM_ERR_TOO_LARGE) {
        PyErr_SetObject(o_invalid_argument, o_too_large_message);
        return NULL;
    }
    if (run >= 0)
        exc = PyObject_CallFunction(f_corruption, "Lnn", (long long)rc, (Py_ssize_t)offset, run);
    else
        exc = PyObject_CallFunction(f_corruption, "Ln", (long long)rc, (Py_ssize_t)offset);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* Call a twins validator; 0 if it returned (its result dropped), -1 if it raised. */
static int validate(PyObject *fn, const char *fmt, ...)
{
    va_list va;
    PyObject *args, *r;
    va_start(va, fmt);
    args = Py_VaBuildValue(fmt, va);
    va_end(va);
    if (args == NULL)
        return -1;
    r = PyObject_CallObject(fn, args);
    Py_DECREF(args);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* New reference to obj as bytes (bytes and subclasses as they are), else the
 * twins' check_buffer (copies bytearray / memoryview, or raises). */
static PyObject *as_bytes(PyObject *obj, const char *name)
{
    if (PyBytes_Check(obj)) {
        Py_INCREF(obj);
        return obj;
    }
    return PyObject_CallFunction(f_check_buffer, "Os", obj, name);
}

/* An int in [lo, hi] (the twins' check_int semantics) into *out. */
static int as_u64(PyObject *obj, const char *name, uint64_t lo, uint64_t hi, uint64_t *out)
{
    unsigned long long v;
    if (PyLong_CheckExact(obj)) {
        v = PyLong_AsUnsignedLongLong(obj);
        if (v == (unsigned long long)-1 && PyErr_Occurred())
            PyErr_Clear();
        else if (v >= lo && v <= hi) {
            *out = v;
            return 0;
        }
    }
    if (validate(f_check_int, "(OsKK)", obj, name, (unsigned long long)lo,
                 (unsigned long long)hi) < 0)
        return -1;
    /* an int subclass in range (bool is rejected by check_int) */
    v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static inline int is_seq(PyObject *o)
{
    return PyList_Check(o) || PyTuple_Check(o);
}

static inline PyObject **seq_items(PyObject *o)
{
    return PyList_Check(o) ? ((PyListObject *)o)->ob_item : ((PyTupleObject *)o)->ob_item;
}

/* Every item of a list/tuple is bytes (or a subclass). */
static int all_bytes(PyObject *seq)
{
    Py_ssize_t i, n = Py_SIZE(seq);
    PyObject **it = seq_items(seq);
    for (i = 0; i < n; i++)
        if (!PyBytes_Check(it[i]))
            return 0;
    return 1;
}

/* Argument parsing for METH_FASTCALL | METH_KEYWORDS: names[0..nmax),
 * the first nreq required.  Fills out[] (NULL = not given). */
static int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, const char *const *names, int nmax, int nreq,
                      PyObject **out)
{
    Py_ssize_t i, nkw;
    int j;
    for (j = 0; j < nmax; j++)
        out[j] = NULL;
    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname,
                     nmax, nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++)
        out[i] = args[i];
    nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (i = 0; i < nkw; i++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, i);
        for (j = 0; j < nmax; j++)
            if (PyUnicode_CompareWithASCIIString(kw, names[j]) == 0)
                break;
        if (j == nmax) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         kw);
            return -1;
        }
        if (out[j] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[j]);
            return -1;
        }
        out[j] = args[nargs + i];
    }
    for (j = 0; j < nreq; j++)
        if (out[j] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
                         names[j]);
            return -1;
        }
    return 0;
}

#define PARSE(fname, names, nmax, nreq, a)                                                 \
    do {                                                                                   \
        if (kwnames == NULL && nargs >= (nreq) && nargs <= (nmax)) {                       \
            Py_ssize_t i_;                                                                 \
            for (i_ = 0; i_ < (nmax); i_++)                                                \
                (a)[i_] = i_ < nargs ? args[i_] : NULL;                                    \
        } else if (parse_args(fname, args, nargs, kwnames, names, nmax, nreq, a) < 0) {    \
            return NULL;                                                                   \
        }                                                                                  \
    } while (0)

#define FASTARGS PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames

static PyObject *pair(PyObject *a, PyObject *b)
{
    PyObject *t;
    if (a == NULL || b == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        return NULL;
    }
    t = PyTuple_New(2);
    if (t == NULL) {
        Py_DECREF(a);
        Py_DECREF(b);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, a);
    PyTuple_SET_ITEM(t, 1, b);
    return t;
}

/* ---------------------------------------------------- checksum, varints */

static const char *const N_CHECKSUM[] = {"data", "seed"};

static PyObject *py_checksum(FASTARGS)
{
    PyObject *a[2], *data;
    uint64_t seed = 0, h;
    size_t n;
    (void)self;
    PARSE("checksum", N_CHECKSUM, 2, 1, a);
    if ((data = as_bytes(a[0], "data")) == NULL)
        return NULL;
    if (a[1] != NULL && as_u64(a[1], "seed", 0, M64, &seed) < 0) {
        Py_DECREF(data);
        return NULL;
    }
    n = (size_t)PyBytes_GET_SIZE(data);
    if (n >= LSM_GIL_BYTES) {
        const char *p = PyBytes_AS_STRING(data);
        Py_BEGIN_ALLOW_THREADS
        h = lsm_xxh64(p, n, seed);
        Py_END_ALLOW_THREADS
    } else {
        h = lsm_xxh64(PyBytes_AS_STRING(data), n, seed);
    }
    Py_DECREF(data);
    return PyLong_FromUnsignedLongLong(h);
}

static const char *const N_ENCODE_VARINT[] = {"value"};

static PyObject *py_encode_varint(FASTARGS)
{
    PyObject *a[1];
    uint64_t v;
    char out[10];
    (void)self;
    PARSE("encode_varint", N_ENCODE_VARINT, 1, 1, a);
    if (as_u64(a[0], "value", 0, M64, &v) < 0)
        return NULL;
    return PyBytes_FromStringAndSize(out, (Py_ssize_t)lsm_encode_varint(v, out));
}

static const char *const N_DECODE_VARINT[] = {"buf", "offset"};

static PyObject *decode_varint(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                               const char *fname, int wide)
{
    PyObject *a[2], *buf;
    uint64_t off = 0, res[2];
    size_t n;
    PARSE(fname, N_DECODE_VARINT, 2, 1, a);
    if ((buf = as_bytes(a[0], "buf")) == NULL)
        return NULL;
    n = (size_t)PyBytes_GET_SIZE(buf);
    if (a[1] != NULL && as_u64(a[1], "offset", 0, n, &off) < 0) {
        Py_DECREF(buf);
        return NULL;
    }
    if (wide) {
        int rc = lsm_decode_varint64(PyBytes_AS_STRING(buf), n, (size_t)off, res);
        Py_DECREF(buf);
        if (rc < 0)
            return raise_code(rc, (size_t)off, -1);
    } else {
        int64_t r = lsm_decode_varint32(PyBytes_AS_STRING(buf), n, (size_t)off);
        Py_DECREF(buf);
        if (r < 0)
            return raise_code(r, (size_t)off, -1);
        res[0] = (uint64_t)(r >> 3);
        res[1] = off + (uint64_t)(r & 7);
    }
    return pair(PyLong_FromUnsignedLongLong(res[0]), PyLong_FromUnsignedLongLong(res[1]));
}

static PyObject *py_decode_varint32(FASTARGS)
{
    (void)self;
    return decode_varint(args, nargs, kwnames, "decode_varint32", 0);
}

static PyObject *py_decode_varint64(FASTARGS)
{
    (void)self;
    return decode_varint(args, nargs, kwnames, "decode_varint64", 1);
}

/* -------------------------------------------------------------- blocks */

static const char *const N_BLOCK_ENCODE[] = {"keys", "values", "restart_interval"};

static PyObject *py_block_encode(FASTARGS)
{
    PyObject *a[3], *keys, *values, *out = NULL, *hold_k = NULL, *hold_v = NULL;
    PyObject **ki, **vi;
    const char **kp = NULL, **vp;
    size_t *kl = NULL, *vl, n, i, kbytes = 0, vbytes = 0, cap, out_len = 0;
    uint64_t ri = 0;
    int fast, rc;
    (void)self;
    PARSE("block_encode", N_BLOCK_ENCODE, 3, 3, a);
    keys = a[0];
    values = a[1];
    fast = is_seq(keys) && is_seq(values) && Py_SIZE(keys) == Py_SIZE(values) &&
           PyLong_CheckExact(a[2]) && all_bytes(keys) && all_bytes(values);
    if (fast) {
        ri = PyLong_AsUnsignedLongLong(a[2]);
        if (ri == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            fast = 0;
        } else if (ri < 1 || ri > MAX_RESTART_INTERVAL) {
            fast = 0;
        }
    }
    n = fast ? (size_t)Py_SIZE(keys) : 0;
    if (fast) {
        ki = seq_items(keys);
        vi = seq_items(values);
        for (i = 0; i < n; i++) {
            size_t x = (size_t)PyBytes_GET_SIZE(ki[i]), y = (size_t)PyBytes_GET_SIZE(vi[i]);
            if (x > 0xFFFFFFFFu || y > 0xFFFFFFFFu) {
                fast = 0;
                break;
            }
            kbytes += x;
            vbytes += y;
        }
    }
    if (!fast) {
        /* raises the reference error; returns only for accepted odd shapes */
        if (validate(f_check_block_encode_args, "(OOO)", keys, values, a[2]) < 0)
            return NULL;
        ri = PyLong_AsUnsignedLongLong(a[2]);
        if (ri == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
        n = (size_t)Py_SIZE(keys);
        kbytes = vbytes = 0;
        for (i = 0; i < n; i++) {
            kbytes += (size_t)PyBytes_GET_SIZE(seq_items(keys)[i]);
            vbytes += (size_t)PyBytes_GET_SIZE(seq_items(values)[i]);
        }
    }
    if (kbytes + vbytes >= LSM_GIL_BYTES) {
        /* the GIL is released below: work on tuples nobody can change */
        if ((hold_k = PySequence_Tuple(keys)) == NULL ||
            (hold_v = PySequence_Tuple(values)) == NULL)
            goto done;
        keys = hold_k;
        values = hold_v;
        if ((size_t)Py_SIZE(keys) != n || (size_t)Py_SIZE(values) != n || !all_bytes(keys) ||
            !all_bytes(values)) {
            PyErr_SetString(PyExc_RuntimeError, "block_encode: lists changed during the call");
            goto done;
        }
    }
    ki = seq_items(keys);
    vi = seq_items(values);
    kp = (const char **)PyMem_Malloc((n ? n : 1) * 2 * sizeof(char *));
    kl = (size_t *)PyMem_Malloc((n ? n : 1) * 2 * sizeof(size_t));
    if (kp == NULL || kl == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    vp = kp + n;
    vl = kl + n;
    for (i = 0; i < n; i++) {
        kp[i] = PyBytes_AS_STRING(ki[i]);
        kl[i] = (size_t)PyBytes_GET_SIZE(ki[i]);
        vp[i] = PyBytes_AS_STRING(vi[i]);
        vl[i] = (size_t)PyBytes_GET_SIZE(vi[i]);
    }
    cap = lsm_block_encode_bound(n, kbytes, vbytes, (uint32_t)ri);
    if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap)) == NULL)
        goto done;
    if (hold_k != NULL) {
        char *o = PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        rc = lsm_block_encode_v(kp, kl, vp, vl, n, (uint32_t)ri, o, cap, &out_len);
        Py_END_ALLOW_THREADS
    } else {
        rc = lsm_block_encode_v(kp, kl, vp, vl, n, (uint32_t)ri, PyBytes_AS_STRING(out), cap,
                                &out_len);
    }
    if (rc < 0) {
        Py_CLEAR(out);
        raise_code(rc, 0, -1);
        goto done;
    }
    if (out_len != cap)
        _PyBytes_Resize(&out, (Py_ssize_t)out_len); /* sets out = NULL on failure */
done:
    PyMem_Free(kp);
    PyMem_Free(kl);
    Py_XDECREF(hold_k);
    Py_XDECREF(hold_v);
    return out;
}

static const char *const N_BLOCK_DECODE[] = {"block"};

static PyObject *py_block_decode(FASTARGS)
{
    PyObject *a[1], *blk, *keys = NULL, *vals = NULL, *prev = NULL;
    size_t err = 0, idx = 0, count = 0;
    block_t bk;
    scan_t s;
    entry_t e;
    int rc;
    (void)self;
    PARSE("block_decode", N_BLOCK_DECODE, 1, 1, a);
    if ((blk = as_bytes(a[0], "block")) == NULL)
        return NULL;
    /* pass 1: validate and count */
    rc = parse_trailer(&bk, (const uint8_t *)PyBytes_AS_STRING(blk),
                       (size_t)PyBytes_GET_SIZE(blk), &err);
    if (rc == 0) {
        scan_init(&bk, &s, 0);
        while (s.p < bk.data_end) {
            if ((rc = scan_next(&bk, &s, &e, &err)) != 0)
                break;
            count++;
        }
    }
    if (rc != 0) {
        Py_DECREF(blk);
        return raise_code(rc, err, -1);
    }
    if ((keys = PyList_New((Py_ssize_t)count)) == NULL ||
        (vals = PyList_New((Py_ssize_t)count)) == NULL)
        goto fail;
    /* pass 2: the same scan over validated bytes, building the objects */
    if (parse_trailer(&bk, (const uint8_t *)PyBytes_AS_STRING(blk),
                      (size_t)PyBytes_GET_SIZE(blk), &err) != 0)
        goto bug;
    scan_init(&bk, &s, 0);
    while (s.p < bk.data_end && idx < count) {
        PyObject *k, *v;
        size_t klen;
        if (scan_next(&bk, &s, &e, &err) != 0)
            goto bug;
        klen = e.shared + e.unshared;
        if (e.shared == 0) {
            k = PyBytes_FromStringAndSize((const char *)bk.b + e.key_at, (Py_ssize_t)klen);
        } else {
            k = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)klen);
            if (k != NULL) {
                char *kb = PyBytes_AS_STRING(k);
                memcpy(kb, PyBytes_AS_STRING(prev), e.shared);
                memcpy(kb + e.shared, bk.b + e.key_at, e.unshared);
            }
        }
        if (k == NULL)
            goto fail;
        PyList_SET_ITEM(keys, (Py_ssize_t)idx, k);
        prev = k;
        v = PyBytes_FromStringAndSize((const char *)bk.b + e.value_at,
                                      (Py_ssize_t)(e.value_end - e.value_at));
        if (v == NULL)
            goto fail;
        PyList_SET_ITEM(vals, (Py_ssize_t)idx, v);
        idx++;
    }
    if (idx != count)
        goto bug;
    Py_DECREF(blk);
    return pair(keys, vals);
bug:
    PyErr_SetString(PyExc_SystemError, "block_decode: second pass disagrees with the first");
fail:
    Py_DECREF(blk);
    Py_XDECREF(keys);
    Py_XDECREF(vals);
    return NULL;
}

/* lsm_block_seek with a key buffer on the stack for blocks up to
 * SEEK_STACK bytes (a key is never longer than its block). */
static int seek(PyObject *blk, const char *t, size_t tl, int cmp, char *stackbuf, char **kb,
                size_t *info, int want_index)
{
    size_t n = (size_t)PyBytes_GET_SIZE(blk);
    *kb = stackbuf;
    if (n > SEEK_STACK) {
        *kb = (char *)PyMem_Malloc(n);
        if (*kb == NULL) {
            PyErr_NoMemory();
            return SEEK_NOMEM;
        }
    }
    return lsm_block_seek_ex(PyBytes_AS_STRING(blk), n, t, tl, cmp, *kb, info, want_index);
}

static const char *const N_BLOCK_SEEK[] = {"block", "target", "cmp"};

static PyObject *py_block_seek(FASTARGS)
{
    PyObject *a[3], *blk, *res = NULL;
    char stackbuf[SEEK_STACK], *kb;
    size_t info[5];
    long cmp = -1;
    int rc;
    (void)self;
    PARSE("block_seek", N_BLOCK_SEEK, 3, 3, a);
    if (PyLong_CheckExact(a[2]))
        cmp = PyLong_AsLong(a[2]);
    if (cmp == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (PyBytes_Check(a[0]) && PyBytes_Check(a[1]) && (cmp == 0 || cmp == 1) &&
        (cmp == 0 || PyBytes_GET_SIZE(a[1]) >= 8)) {
        blk = a[0];
        Py_INCREF(blk);
    } else {
        if ((blk = PyObject_CallFunction(f_check_seek_args, "OOO", a[0], a[1], a[2])) == NULL)
            return NULL;
        cmp = PyLong_AsLong(a[2]); /* validated: 0 or 1 */
    }
    rc = seek(blk, PyBytes_AS_STRING(a[1]), (size_t)PyBytes_GET_SIZE(a[1]), (int)cmp, stackbuf,
              &kb, info, 1);
    if (rc == SEEK_NOMEM) {
        /* allocation failed, error set */
    } else if (rc < 0) {
        raise_code(rc, info[4], -1);
    } else if (rc == 0) {
        res = Py_None;
        Py_INCREF(res);
    } else {
        PyObject *idx = PyLong_FromSize_t(info[0]);
        PyObject *key = PyBytes_FromStringAndSize(kb, (Py_ssize_t)info[1]);
        PyObject *val = PyBytes_FromStringAndSize(PyBytes_AS_STRING(blk) + info[2],
                                                  (Py_ssize_t)(info[3] - info[2]));
        if (idx && key && val && (res = PyTuple_New(3)) != NULL) {
            PyTuple_SET_ITEM(res, 0, idx);
            PyTuple_SET_ITEM(res, 1, key);
            PyTuple_SET_ITEM(res, 2, val);
        } else {
            Py_XDECREF(idx);
            Py_XDECREF(key);
            Py_XDECREF(val);
        }
    }
    if (kb != stackbuf)
        PyMem_Free(kb);
    Py_DECREF(blk);
    return res;
}

static const char *const N_BLOCK_GET[] = {"block", "user_key", "read_seq"};

static PyObject *py_block_get(FASTARGS)
{
    PyObject *a[3], *blk, *res = NULL;
    char stackbuf[SEEK_STACK], *kb = NULL, lkbuf[256], *lk = lkbuf;
    size_t info[5], ul;
    uint64_t read_seq = M64;
    int rc;
    (void)self;
    PARSE("block_get", N_BLOCK_GET, 3, 3, a);
    if (PyLong_CheckExact(a[2])) {
        read_seq = PyLong_AsUnsignedLongLong(a[2]);
        if (read_seq == M64 && PyErr_Occurred()) {
            PyErr_Clear();
            read_seq = M64;
        }
    }
    if (PyBytes_Check(a[0]) && PyBytes_Check(a[1]) && read_seq <= MAX_SEQ) {
        blk = a[0];
        Py_INCREF(blk);
    } else {
        blk = PyObject_CallFunction(f_check_block_get_args, "OOO", a[0], a[1], a[2]);
        if (blk == NULL)
            return NULL;
        read_seq = PyLong_AsUnsignedLongLong(a[2]); /* validated */
    }
    ul = (size_t)PyBytes_GET_SIZE(a[1]);
    if (ul + 8 > sizeof lkbuf && (lk = (char *)PyMem_Malloc(ul + 8)) == NULL) {
        Py_DECREF(blk);
        return PyErr_NoMemory();
    }
    memcpy(lk, PyBytes_AS_STRING(a[1]), ul);
    {
        uint64_t t = (read_seq << 8) | 0xFF;
        lsm_wr32((uint8_t *)lk + ul, (uint32_t)t);
        lsm_wr32((uint8_t *)lk + ul + 4, (uint32_t)(t >> 32));
    }
    rc = seek(blk, lk, ul + 8, 1, stackbuf, &kb, info, 0);
    if (rc == SEEK_NOMEM) {
        /* allocation failed, error set */
    } else if (rc < 0) {
        raise_code(rc, info[4], -1);
    } else if (rc == 0 || info[1] != ul + 8 || memcmp(kb, lk, ul) != 0) {
        res = Py_None;
        Py_INCREF(res);
    } else {
        uint64_t t = lsm_rd64((const uint8_t *)kb + ul);
        PyObject *seq = PyLong_FromUnsignedLongLong(t >> 8);
        PyObject *kind = PyLong_FromLong((long)(t & 0xFF));
        PyObject *val = PyBytes_FromStringAndSize(PyBytes_AS_STRING(blk) + info[2],
                                                  (Py_ssize_t)(info[3] - info[2]));
        if (seq && kind && val && (res = PyTuple_New(3)) != NULL) {
            PyTuple_SET_ITEM(res, 0, seq);
            PyTuple_SET_ITEM(res, 1, kind);
            PyTuple_SET_ITEM(res, 2, val);
        } else {
            Py_XDECREF(seq);
            Py_XDECREF(kind);
            Py_XDECREF(val);
        }
    }
    if (kb != NULL && kb != stackbuf)
        PyMem_Free(kb);
    if (lk != lkbuf)
        PyMem_Free(lk);
    Py_DECREF(blk);
    return res;
}

/* --------------------------------------------------------------- bloom */

static const char *const N_BLOOM_BUILD[] = {"keys", "bits_per_key"};

static PyObject *py_bloom_build(FASTARGS)
{
    PyObject *a[2], *out, **ki;
    uint64_t bpk = 0;
    size_t n, i, nbytes;
    int k, fast;
    char *f;
    (void)self;
    PARSE("bloom_build", N_BLOOM_BUILD, 2, 2, a);
    fast = is_seq(a[0]) && all_bytes(a[0]) && PyLong_CheckExact(a[1]);
    if (fast) {
        bpk = PyLong_AsUnsignedLongLong(a[1]);
        if (bpk == M64 && PyErr_Occurred()) {
            PyErr_Clear();
            fast = 0;
        } else if (bpk < 1 || bpk > MAX_BPK) {
            fast = 0;
        }
    }
    if (!fast) {
        if (validate(f_check_bloom_build_args, "(OO)", a[0], a[1]) < 0)
            return NULL;
        bpk = PyLong_AsUnsignedLongLong(a[1]);
        if (bpk == M64 && PyErr_Occurred())
            return NULL;
    }
    n = (size_t)Py_SIZE(a[0]);
    nbytes = lsm_bloom_nbytes(n, (uint32_t)bpk);
    k = lsm_bloom_k((uint32_t)bpk);
    if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(nbytes + 1))) == NULL)
        return NULL;
    f = PyBytes_AS_STRING(out);
    memset(f, 0, nbytes);
    ki = seq_items(a[0]);
    for (i = 0; i < n; i++)
        lsm_bloom_add(f, nbytes, k, PyBytes_AS_STRING(ki[i]), (size_t)PyBytes_GET_SIZE(ki[i]));
    f[nbytes] = (char)k;
    return out;
}

static const char *const N_BLOOM_MAY_CONTAIN[] = {"filter", "key"};

static PyObject *py_bloom_may_contain(FASTARGS)
{
    PyObject *a[2], *f;
    int rc;
    (void)self;
    PARSE("bloom_may_contain", N_BLOOM_MAY_CONTAIN, 2, 2, a);
    if (PyBytes_Check(a[0]) && PyBytes_Check(a[1])) {
        rc = lsm_bloom_may_contain(PyBytes_AS_STRING(a[0]), (size_t)PyBytes_GET_SIZE(a[0]),
                                   PyBytes_AS_STRING(a[1]), (size_t)PyBytes_GET_SIZE(a[1]));
    } else {
        if ((f = as_bytes(a[0], "filter")) == NULL)
            return NULL;
        if (!PyBytes_Check(a[1])) {
            Py_DECREF(f);
            validate(f_check_bytes_arg, "(Os)", a[1], "key");
            return NULL;
        }
        rc = lsm_bloom_may_contain(PyBytes_AS_STRING(f), (size_t)PyBytes_GET_SIZE(f),
                                   PyBytes_AS_STRING(a[1]), (size_t)PyBytes_GET_SIZE(a[1]));
        Py_DECREF(f);
    }
    if (rc < 0)
        return raise_code(rc, 0, -1);
    return PyBool_FromLong(rc);
}

/* ----------------------------------------------------------- user keys */

static const char *const N_USER_KEYS[] = {"keys"};

static PyObject *py_user_keys(FASTARGS)
{
    PyObject *a[1], *out, **it;
    Py_ssize_t i, n;
    (void)self;
    PARSE("user_keys", N_USER_KEYS, 1, 1, a);
    if (!is_seq(a[0]) || !all_bytes(a[0])) {
        if (validate(f_check_bytes_list, "(Os)", a[0], "keys") < 0)
            return NULL;
    }
    n = Py_SIZE(a[0]);
    it = seq_items(a[0]);
    for (i = 0; i < n; i++)
        if (PyBytes_GET_SIZE(it[i]) < 8)
            return raise_code(LSM_ERR_MERGE_SHORT_KEY, (size_t)i, -1);
    if ((out = PyList_New(n)) == NULL)
        return NULL;
    /* the allocation may have run finalizers: re-read the sequence */
    it = seq_items(a[0]);
    if (Py_SIZE(a[0]) != n) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "user_keys: keys changed during the call");
        return NULL;
    }
    for (i = 0; i < n; i++) {
        PyObject *u;
        if (!PyBytes_Check(it[i]) || PyBytes_GET_SIZE(it[i]) < 8) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_RuntimeError, "user_keys: keys changed during the call");
            return NULL;
        }
        u = PyBytes_FromStringAndSize(PyBytes_AS_STRING(it[i]), PyBytes_GET_SIZE(it[i]) - 8);
        if (u == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, u);
    }
    return out;
}

/* --------------------------------------------------------------- merge */

/* The fast shape check of merge's arguments (no Python calls). */
static int merge_fast_ok(PyObject *runs, PyObject *read_seq, PyObject *snaps, PyObject *mode,
                         PyObject *bottom)
{
    Py_ssize_t r, n;
    PyObject **it;
    unsigned long long v, prev = 0;
    long m;
    if (!is_seq(runs))
        return 0;
    n = Py_SIZE(runs);
    it = seq_items(runs);
    for (r = 0; r < n; r++) {
        PyObject *run = it[r], *k, *vv;
        if (!is_seq(run) || Py_SIZE(run) != 2)
            return 0;
        k = seq_items(run)[0];
        vv = seq_items(run)[1];
        if (!is_seq(k) || !is_seq(vv) || Py_SIZE(k) != Py_SIZE(vv) || !all_bytes(k) ||
            !all_bytes(vv))
            return 0;
    }
    if (!PyLong_CheckExact(read_seq))
        return 0;
    v = PyLong_AsUnsignedLongLong(read_seq);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (v > MAX_SEQ)
        return 0;
    if (snaps != NULL) {
        if (!is_seq(snaps))
            return 0;
        n = Py_SIZE(snaps);
        it = seq_items(snaps);
        for (r = 0; r < n; r++) {
            if (!PyLong_CheckExact(it[r]))
                return 0;
            v = PyLong_AsUnsignedLongLong(it[r]);
            if (v == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            if (v > MAX_SEQ || v < prev)
                return 0;
            prev = v;
        }
    }
    if (mode != NULL) {
        if (!PyLong_CheckExact(mode))
            return 0;
        m = PyLong_AsLong(mode);
        if (m == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (m != 0 && m != 1)
            return 0;
    }
    if (bottom != NULL && bottom != Py_True && bottom != Py_False)
        return 0;
    return 1;
}

static const char *const N_MERGE[] = {"runs", "read_seq", "snapshots", "mode", "bottom"};

static PyObject *py_merge(FASTARGS)
{
    PyObject *a[5], *runs, *snaps, *checked = NULL, *holds = NULL, *okeys = NULL, *ovals = NULL;
    PyObject **kobj = NULL, **vobj = NULL;
    const char **kp = NULL;
    size_t *kl = NULL, nruns, r, total = 0, nsnaps, i, g, err[2] = {0, 0};
    uint64_t *starts = NULL, *snap_arr = NULL, *out = NULL, read_seq;
    long mode = 0;
    int bottom = 0, release;
    int64_t rc;
    (void)self;
    PARSE("merge", N_MERGE, 5, 2, a);
    if (merge_fast_ok(a[0], a[1], a[2], a[3], a[4])) {
        runs = a[0];
        snaps = a[2];
    } else {
        PyObject *empty = PyTuple_New(0), *zero = PyLong_FromLong(0);
        if (empty != NULL && zero != NULL)
            checked = PyObject_CallFunction(f_check_merge_args, "OOOOO", a[0], a[1],
                                            a[2] ? a[2] : empty, a[3] ? a[3] : zero,
                                            a[4] ? a[4] : Py_False);
        Py_XDECREF(empty);
        Py_XDECREF(zero);
        if (checked == NULL)
            return NULL;
        runs = PyTuple_GET_ITEM(checked, 0);
        snaps = PyTuple_GET_ITEM(checked, 1);
    }
    read_seq = PyLong_AsUnsignedLongLong(a[1]);
    if (a[3] != NULL)
        mode = PyLong_AsLong(a[3]);
    if (a[4] != NULL)
        bottom = a[4] == Py_True;
    if (PyErr_Occurred())
        goto done;
    nsnaps = snaps ? (size_t)Py_SIZE(snaps) : 0;
    for (r = 0; r < (size_t)Py_SIZE(runs); r++)
        total += (size_t)Py_SIZE(seq_items(seq_items(runs)[r])[0]);
    release = total >= LSM_GIL_ENTRIES;
    /*
     * Own every container read below (2 per run in `holds`: the keys and
     * values sequences, or tuple copies of them when the GIL is released)
     * and allocate everything before borrowing item pointers: an allocation
     * may run the garbage collector and so arbitrary finalizers, which could
     * change the caller's lists.  Sizes are re-checked after that.
     */
    {
        PyObject *runs_t = PySequence_Tuple(runs);
        if (runs_t == NULL)
            goto done;
        nruns = (size_t)PyTuple_GET_SIZE(runs_t);
        holds = PyTuple_New((Py_ssize_t)(2 * nruns));
        if (holds == NULL) {
            Py_DECREF(runs_t);
            goto done;
        }
        for (r = 0; r < nruns; r++) {
            PyObject *run = PyTuple_GET_ITEM(runs_t, (Py_ssize_t)r), *ks, *vs;
            if (!is_seq(run) || Py_SIZE(run) != 2) {
                Py_DECREF(runs_t);
                PyErr_SetString(PyExc_RuntimeError, "merge: runs changed during the call");
                goto done;
            }
            ks = seq_items(run)[0];
            vs = seq_items(run)[1];
            Py_INCREF(ks);
            Py_INCREF(vs);
            if (release) {
                PyObject *tk = PySequence_Tuple(ks), *tv = tk ? PySequence_Tuple(vs) : NULL;
                Py_DECREF(ks);
                Py_DECREF(vs);
                if (tv == NULL) {
                    Py_XDECREF(tk);
                    Py_DECREF(runs_t);
                    goto done;
                }
                ks = tk;
                vs = tv;
            }
            PyTuple_SET_ITEM(holds, (Py_ssize_t)(2 * r), ks);
            PyTuple_SET_ITEM(holds, (Py_ssize_t)(2 * r + 1), vs);
        }
        Py_DECREF(runs_t);
    }
    if ((okeys = PyList_New((Py_ssize_t)total)) == NULL ||
        (ovals = PyList_New((Py_ssize_t)total)) == NULL)
        goto done;
    starts = (uint64_t *)PyMem_Malloc((nruns + 1 + nsnaps + total + 1) * sizeof(uint64_t));
    kp = (const char **)PyMem_Malloc((total ? total : 1) * 2 * sizeof(char *));
    kl = (size_t *)PyMem_Malloc((total ? total : 1) * 2 * sizeof(size_t));
    kobj = (PyObject **)PyMem_Malloc((total ? total : 1) * 2 * sizeof(PyObject *));
    if (!starts || !kp || !kl || !kobj) {
        PyErr_NoMemory();
        goto done;
    }
    snap_arr = starts + nruns + 1;
    out = snap_arr + nsnaps;
    vobj = kobj + total;
    for (i = 0; i < nsnaps && (Py_ssize_t)i < Py_SIZE(snaps); i++)
        snap_arr[i] = PyLong_AsUnsignedLongLong(seq_items(snaps)[i]);
    if (PyErr_Occurred())
        goto done;
    if (i != nsnaps) {
        PyErr_SetString(PyExc_RuntimeError, "merge: snapshots changed during the call");
        goto done;
    }
    /* no allocation from here to the end: the pointers stay valid */
    starts[0] = 0;
    for (r = 0, g = 0; r < nruns; r++) {
        PyObject *ks = PyTuple_GET_ITEM(holds, (Py_ssize_t)(2 * r));
        PyObject *vs = PyTuple_GET_ITEM(holds, (Py_ssize_t)(2 * r + 1));
        size_t m = (size_t)Py_SIZE(ks), j;
        if (m != (size_t)Py_SIZE(vs) || m > total - g) {
            PyErr_SetString(PyExc_RuntimeError, "merge: runs changed during the call");
            goto done;
        }
        for (j = 0; j < m; j++, g++) {
            PyObject *k = seq_items(ks)[j], *v = seq_items(vs)[j];
            if (!PyBytes_Check(k) || !PyBytes_Check(v)) {
                PyErr_SetString(PyExc_RuntimeError, "merge: runs changed during the call");
                goto done;
            }
            kobj[g] = k;
            vobj[g] = v;
            kp[g] = PyBytes_AS_STRING(k);
            kl[g] = (size_t)PyBytes_GET_SIZE(k);
            kp[total + g] = PyBytes_AS_STRING(v);
            kl[total + g] = (size_t)PyBytes_GET_SIZE(v);
        }
        starts[r + 1] = g;
    }
    if (g != total) {
        PyErr_SetString(PyExc_RuntimeError, "merge: runs changed during the call");
        goto done;
    }
    if (release) {
        Py_BEGIN_ALLOW_THREADS
        rc = lsm_merge_v(nruns, starts, kp, kl, kp + total, kl + total, read_seq, snap_arr,
                         nsnaps, (int)mode, bottom, out, err);
        Py_END_ALLOW_THREADS
    } else {
        rc = lsm_merge_v(nruns, starts, kp, kl, kp + total, kl + total, read_seq, snap_arr,
                         nsnaps, (int)mode, bottom, out, err);
    }
    if (rc < 0) {
        raise_code(rc, err[1], (Py_ssize_t)err[0]);
        goto done;
    }
    for (i = 0; i < (size_t)rc; i++) {
        PyObject *k = kobj[out[i]], *v = vobj[out[i]];
        Py_INCREF(k);
        Py_INCREF(v);
        PyList_SET_ITEM(okeys, (Py_ssize_t)i, k);
        PyList_SET_ITEM(ovals, (Py_ssize_t)i, v);
    }
    /* the lists were allocated for every entry; the rest are NULL slots */
    Py_SET_SIZE(okeys, (Py_ssize_t)rc);
    Py_SET_SIZE(ovals, (Py_ssize_t)rc);
done:
    PyMem_Free(starts);
    PyMem_Free(kp);
    PyMem_Free(kl);
    PyMem_Free(kobj);
    Py_XDECREF(holds);
    Py_XDECREF(checked);
    if (PyErr_Occurred()) {
        Py_XDECREF(okeys);
        Py_XDECREF(ovals);
        return NULL;
    }
    return pair(okeys, ovals);
}

/* ------------------------------------------------- WAL record, batches */

static const char *const N_LOG_ENCODE[] = {"payload", "block_offset"};

static PyObject *py_log_encode_record(FASTARGS)
{
    PyObject *a[2], *pl, *out;
    uint64_t off = 0;
    size_t n, len;
    long v = -1;
    (void)self;
    PARSE("log_encode_record", N_LOG_ENCODE, 2, 2, a);
    if (PyLong_CheckExact(a[1]))
        v = PyLong_AsLong(a[1]);
    if (v == -1 && PyErr_Occurred())
        PyErr_Clear();
    if (PyBytes_Check(a[0]) && v >= 0 && v < 32768) {
        pl = a[0];
        Py_INCREF(pl);
        off = (uint64_t)v;
    } else {
        if ((pl = PyObject_CallFunction(f_check_log_args, "OO", a[0], a[1])) == NULL)
            return NULL;
        off = (uint64_t)PyLong_AsLong(a[1]); /* validated */
    }
    n = (size_t)PyBytes_GET_SIZE(pl);
    if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)lsm_log_encode_bound(n))) == NULL) {
        Py_DECREF(pl);
        return NULL;
    }
    if (n >= LSM_GIL_BYTES) {
        const char *p = PyBytes_AS_STRING(pl);
        char *o = PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        len = lsm_log_encode(p, n, (size_t)off, o);
        Py_END_ALLOW_THREADS
    } else {
        len = lsm_log_encode(PyBytes_AS_STRING(pl), n, (size_t)off, PyBytes_AS_STRING(out));
    }
    Py_DECREF(pl);
    _PyBytes_Resize(&out, (Py_ssize_t)len);
    return out;
}

static const char *const N_BATCH_SINGLE[] = {"sequence", "kind", "key", "value"};

static PyObject *py_batch_encode_single(FASTARGS)
{
    PyObject *a[4], *out;
    uint64_t seq = M64;
    long kind = -1;
    size_t kl, vl;
    int fast = 0;
    (void)self;
    PARSE("batch_encode_single", N_BATCH_SINGLE, 4, 4, a);
    if (PyLong_CheckExact(a[0]) && PyLong_CheckExact(a[1]) && PyBytes_Check(a[2]) &&
        PyBytes_Check(a[3])) {
        seq = PyLong_AsUnsignedLongLong(a[0]);
        if (seq == M64 && PyErr_Occurred())
            PyErr_Clear();
        kind = PyLong_AsLong(a[1]);
        if (kind == -1 && PyErr_Occurred())
            PyErr_Clear();
        kl = (size_t)PyBytes_GET_SIZE(a[2]);
        vl = (size_t)PyBytes_GET_SIZE(a[3]);
        fast = seq <= MAX_SEQ && kind >= 0 && kind <= 2 && kl <= 0xFFFFFFFFu &&
               vl <= 0xFFFFFFFFu && !(kind == 0 && vl != 0);
        if (fast && kind == 2 &&
            lsm_cmp_bytes((const uint8_t *)PyBytes_AS_STRING(a[2]), kl,
                          (const uint8_t *)PyBytes_AS_STRING(a[3]), vl) >= 0)
            fast = 0;
    }
    if (!fast) {
        if (validate(f_check_batch_single_args, "(OOOO)", a[0], a[1], a[2], a[3]) < 0)
            return NULL;
        seq = PyLong_AsUnsignedLongLong(a[0]);
        kind = PyLong_AsLong(a[1]);
        if (PyErr_Occurred())
            return NULL;
    }
    kl = (size_t)PyBytes_GET_SIZE(a[2]);
    vl = (size_t)PyBytes_GET_SIZE(a[3]);
    if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(23 + kl + vl))) == NULL)
        return NULL;
    _PyBytes_Resize(&out, (Py_ssize_t)lsm_batch_encode_single(
                              seq, (int)kind, PyBytes_AS_STRING(a[2]), kl,
                              PyBytes_AS_STRING(a[3]), vl, PyBytes_AS_STRING(out)));
    return out;
}

static inline size_t v32_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* One item of batch_encode passes the fast check: (kind, key, value) with
 * an exact int kind 0..2, bytes < 4 GiB, no value for kind 0, start < end
 * for kind 2.  Sets *kind and adds the record's length to *size. */
static int batch_item_ok(PyObject *item, long *kind, size_t *size)
{
    PyObject *k, *key, *val;
    size_t kl, vl;
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3)
        return 0;
    k = PyTuple_GET_ITEM(item, 0);
    key = PyTuple_GET_ITEM(item, 1);
    val = PyTuple_GET_ITEM(item, 2);
    if (!PyLong_CheckExact(k) || !PyBytes_Check(key) || !PyBytes_Check(val))
        return 0;
    *kind = PyLong_AsLong(k);
    if (*kind == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    kl = (size_t)PyBytes_GET_SIZE(key);
    vl = (size_t)PyBytes_GET_SIZE(val);
    if (*kind < 0 || *kind > 2 || kl > 0xFFFFFFFFu || vl > 0xFFFFFFFFu || (*kind == 0 && vl))
        return 0;
    if (*kind == 2 && lsm_cmp_bytes((const uint8_t *)PyBytes_AS_STRING(key), kl,
                                    (const uint8_t *)PyBytes_AS_STRING(val), vl) >= 0)
        return 0;
    *size += 1 + v32_len(kl) + kl + (*kind ? v32_len(vl) + vl : 0);
    return 1;
}

static const char *const N_BATCH[] = {"sequence", "items"};

static PyObject *py_batch_encode(FASTARGS)
{
    PyObject *a[2], *out, **it;
    uint64_t seq = M64;
    size_t n = 0, i, size = 12, p;
    long kind;
    int fast = 0;
    (void)self;
    PARSE("batch_encode", N_BATCH, 2, 2, a);
    if (PyLong_CheckExact(a[0]) && is_seq(a[1])) {
        seq = PyLong_AsUnsignedLongLong(a[0]);
        if (seq == M64 && PyErr_Occurred())
            PyErr_Clear();
        n = (size_t)Py_SIZE(a[1]);
        fast = seq <= MAX_SEQ && (n == 0 || seq + n - 1 <= MAX_SEQ) && n <= 0xFFFFFFFFu;
        it = seq_items(a[1]);
        for (i = 0; fast && i < n; i++)
            fast = batch_item_ok(it[i], &kind, &size);
    }
    if (!fast) {
        if (validate(f_check_batch_args, "(OO)", a[0], a[1]) < 0)
            return NULL;
        seq = PyLong_AsUnsignedLongLong(a[0]);
        if (seq == M64 && PyErr_Occurred())
            return NULL;
        n = (size_t)Py_SIZE(a[1]);
        size = 12;
        it = seq_items(a[1]);
        for (i = 0; i < n; i++) {
            size_t kl = (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(it[i], 1));
            size_t vl = (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(it[i], 2));
            size += 11 + kl + vl;
        }
    }
    if ((out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size)) == NULL)
        return NULL;
    lsm_batch_header(seq, (uint32_t)n, PyBytes_AS_STRING(out));
    p = 12;
    it = seq_items(a[1]);
    for (i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(it[i], 1), *val = PyTuple_GET_ITEM(it[i], 2);
        kind = PyLong_AsLong(PyTuple_GET_ITEM(it[i], 0)); /* validated: 0..2 */
        p += lsm_batch_record((int)kind, PyBytes_AS_STRING(key), (size_t)PyBytes_GET_SIZE(key),
                              PyBytes_AS_STRING(val), (size_t)PyBytes_GET_SIZE(val),
                              PyBytes_AS_STRING(out) + p);
    }
    if (p != size)
        _PyBytes_Resize(&out, (Py_ssize_t)p);
    return out;
}

/* -------------------------------------------------------------- module */

#define FN(name, sig, doc)                                                                 \
    {                                                                                      \
        #name, (PyCFunction)(void (*)(void))py_##name, METH_FASTCALL | METH_KEYWORDS,     \
            #name sig "\n--\n\n" doc                                                       \
    }

static PyMethodDef methods[] = {
    FN(checksum, "($module, data, seed=0)", "XXH64 of data (see lsm._twins.checksum)."),
    FN(encode_varint, "($module, value)", "LEB128 of value."),
    FN(decode_varint32, "($module, buf, offset=0)", "(value, next_offset) of a varint32."),
    FN(decode_varint64, "($module, buf, offset=0)", "(value, next_offset) of a varint64."),
    FN(block_encode, "($module, keys, values, restart_interval)", "Encode a data block."),
    FN(block_decode, "($module, block)", "(keys, values) of a data block."),
    FN(block_seek, "($module, block, target, cmp)", "(index, key, value) or None."),
    FN(block_get, "($module, block, user_key, read_seq)", "(seq, kind, value) or None."),
    FN(bloom_build, "($module, keys, bits_per_key)", "Build a bloom filter."),
    FN(bloom_may_contain, "($module, filter, key)", "False only if key is certainly absent."),
    FN(merge, "($module, runs, read_seq, snapshots=(), mode=0, bottom=False)",
       "The k-way merge of sorted runs of internal entries."),
    FN(log_encode_record, "($module, payload, block_offset)", "The bytes of one WAL record."),
    FN(batch_encode_single, "($module, sequence, kind, key, value)",
       "A write batch of one record."),
    FN(user_keys, "($module, keys)", "The user keys of internal keys."),
    FN(batch_encode, "($module, sequence, items)", "A write batch of (kind, key, value) items."),
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "lsm._lsm_c",
    "The native core of superdisk-lsm (native/pymod.c); use it through lsm._native.", -1,
    methods, NULL, NULL, NULL, NULL,
};

static int get_attr(PyObject *mod, const char *name, PyObject **out)
{
    *out = PyObject_GetAttrString(mod, name);
    return *out == NULL ? -1 : 0;
}

PyMODINIT_FUNC PyInit__lsm_c(void)
{
    PyObject *m;
    if (twins == NULL) {
        twins = PyImport_ImportModule("lsm._twins");
        if (twins == NULL)
            return NULL;
        if (get_attr(twins, "check_buffer", &f_check_buffer) < 0 ||
            get_attr(twins, "check_int", &f_check_int) < 0 ||
            get_attr(twins, "check_bytes_arg", &f_check_bytes_arg) < 0 ||
            get_attr(twins, "check_bytes_list", &f_check_bytes_list) < 0 ||
            get_attr(twins, "check_block_encode_args", &f_check_block_encode_args) < 0 ||
            get_attr(twins, "check_seek_args", &f_check_seek_args) < 0 ||
            get_attr(twins, "check_block_get_args", &f_check_block_get_args) < 0 ||
            get_attr(twins, "check_bloom_build_args", &f_check_bloom_build_args) < 0 ||
            get_attr(twins, "check_merge_args", &f_check_merge_args) < 0 ||
            get_attr(twins, "check_log_args", &f_check_log_args) < 0 ||
            get_attr(twins, "check_batch_single_args", &f_check_batch_single_args) < 0 ||
            get_attr(twins, "check_batch_args", &f_check_batch_args) < 0 ||
            get_attr(twins, "corruption", &f_corruption) < 0 ||
            get_attr(twins, "InvalidArgumentError", &o_invalid_argument) < 0 ||
            get_attr(twins, "TOO_LARGE_MESSAGE", &o_too_large_message) < 0) {
            Py_CLEAR(twins);
            return NULL;
        }
    }
    m = PyModule_Create(&moduledef);
    return m;
}
