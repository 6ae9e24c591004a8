/*
 * kdumpy._tables: the loops over a dump's variable-length tables that opening a dump
 * needs, in C (start-up time: each is one pass over ~100k records, 10-30 ms in Python).
 * kdumpy.tables has the same functions in Python (an install built without a
 * compiler) and the tests compare the two, on real tables and on truncated/corrupt ones.
 *
 *   btf_records(types, fixed, per) -> (offsets, name_offs, infos)
 *       Walk the BTF type section (little-endian 4-byte words): each record is
 *       fixed[kind] + per[kind] * vlen words, kind = info >> 24 & 0x1f, vlen = info & 0xffff.
 *       The three results are arrays of uint32 (little-endian bytes): each record's byte
 *       offset, its name_off word and its info word.  ValueError when the section is not
 *       whole words or its last record runs past its end.
 *   name_hashes(strings, name_offs, str_base) -> uint32 array (little-endian bytes): for
 *       each name offset, zlib's crc32 of the NUL-terminated string at name_off - str_base
 *       in strings (0 when it is outside them): names are looked up by hash, then compared.
 *   u32_matches(words, values) -> list of the indices i where words[i] (little-endian
 *       uint32) is one of values.
 *   kallsyms_walk(names, count, long_lengths) -> (starts, end, nonempty)
 *       Offsets (uint32, little-endian bytes) of the length prefix of count entries of
 *       kallsyms_names, where the last one ends, and whether every entry has a token.
 *       ValueError when an entry runs past the end.
 *   kallsyms_addresses(values, encoding, base, table) -> uint64 array (little-endian
 *       bytes): symbol addresses from kallsyms_offsets entries (little-endian 32-bit) by
 *       encoding 0 relative (base + u32), 1 absolute-percpu (s32 >= 0 as is, else
 *       base - 1 - s32), 2 place-relative (table + 4 i + s32), all modulo 2**64.
 *   u64_sorted(data) -> whether the little-endian uint64 words never decrease.
 *   seqs_check(data, count) -> whether data is count 3-byte big-endian indices, each of
 *       0..count-1 exactly once (a kallsyms_seqs_of_names).
 *   kallsyms_expand(names, starts, long_lengths, tokens) -> (text, types, offsets)
 *       Every entry's name (its tokens' text, the first character left out) followed by a
 *       NUL, the first characters (nm types), one byte per entry, and where each name
 *       starts in text (uint32, little-endian bytes).  tokens: 256 bytes
 *       objects.  ValueError when an entry runs past the end of names.
 *
 * Every offset read from the dump is checked against the buffer it indexes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void
put32(unsigned char *p, uint32_t v)
{
    p[0] = v & 0xff;
    p[1] = v >> 8 & 0xff;
    p[2] = v >> 16 & 0xff;
    p[3] = v >> 24 & 0xff;
}

static PyObject *
btf_records(PyObject *self, PyObject *args)
{
    Py_buffer types, fixed, per;
    PyObject *result = NULL, *offsets = NULL, *names = NULL, *infos = NULL;
    if (!PyArg_ParseTuple(args, "y*y*y*", &types, &fixed, &per))
        return NULL;
    const unsigned char *t = types.buf, *fx = fixed.buf, *pr = per.buf;
    Py_ssize_t nwords = types.len / 4, count = 0, pos = 0;
    if (fixed.len != 32 || per.len != 32) {
        PyErr_SetString(PyExc_ValueError, "fixed and per take 32 kinds each");
        goto done;
    }
    for (int k = 0; k < 32; k++) {
        if (fx[k] < 3) { /* the 12-byte record itself: every step moves on */
            PyErr_SetString(PyExc_ValueError, "a record is at least 3 words");
            goto done;
        }
    }
    if (types.len % 4 || types.len > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "BTF type section is not whole words");
        goto done;
    }
    /* At most one record per 3 words. */
    Py_ssize_t most = nwords / 3 + 1;
    offsets = PyBytes_FromStringAndSize(NULL, 4 * most);
    names = PyBytes_FromStringAndSize(NULL, 4 * most);
    infos = PyBytes_FromStringAndSize(NULL, 4 * most);
    if (!offsets || !names || !infos)
        goto done;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(offsets);
    unsigned char *n = (unsigned char *)PyBytes_AS_STRING(names);
    unsigned char *in = (unsigned char *)PyBytes_AS_STRING(infos);
    while (pos < nwords) {
        if (pos + 2 >= nwords || count >= most) {
            pos = nwords + 1;
            break;
        }
        uint32_t info = le32(t + 4 * (pos + 1));
        unsigned kind = info >> 24 & 0x1f;
        put32(o + 4 * count, (uint32_t)(4 * pos));
        put32(n + 4 * count, le32(t + 4 * pos));
        put32(in + 4 * count, info);
        count++;
        pos += (Py_ssize_t)fx[kind] + (Py_ssize_t)pr[kind] * (Py_ssize_t)(info & 0xffff);
    }
    if (pos != nwords) {
        PyErr_SetString(PyExc_ValueError, "BTF type section is truncated");
        goto done;
    }
    if (_PyBytes_Resize(&offsets, 4 * count) < 0 || _PyBytes_Resize(&names, 4 * count) < 0 ||
        _PyBytes_Resize(&infos, 4 * count) < 0)
        goto done;
    result = Py_BuildValue("(OOO)", offsets, names, infos);
done:
    Py_XDECREF(offsets);
    Py_XDECREF(names);
    Py_XDECREF(infos);
    PyBuffer_Release(&types);
    PyBuffer_Release(&fixed);
    PyBuffer_Release(&per);
    return result;
}

static PyObject *
name_hashes(PyObject *self, PyObject *args)
{
    Py_buffer strings, offs;
    unsigned long long str_base;
    PyObject *out = NULL;
    if (!PyArg_ParseTuple(args, "y*y*K", &strings, &offs, &str_base))
        return NULL;
    const unsigned char *s = strings.buf, *o = offs.buf;
    Py_ssize_t count = offs.len / 4;
    out = PyBytes_FromStringAndSize(NULL, 4 * count);
    if (!out)
        goto done;
    unsigned char *h = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < count; i++) {
        unsigned long long at = le32(o + 4 * i);
        uint32_t crc = 0;
        if (at >= str_base && at - str_base < (unsigned long long)strings.len) {
            const unsigned char *start = s + (at - str_base);
            const unsigned char *end = memchr(start, 0, strings.len - (at - str_base));
            Py_ssize_t n = end ? end - start : (s + strings.len) - start;
            crc = (uint32_t)crc32(0L, start, (uInt)n);
        }
        put32(h + 4 * i, crc);
    }
done:
    PyBuffer_Release(&strings);
    PyBuffer_Release(&offs);
    return out;
}

static int
cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static PyObject *
u32_matches(PyObject *self, PyObject *args)
{
    Py_buffer words;
    PyObject *values, *seq = NULL, *out = NULL;
    uint32_t *want = NULL;
    if (!PyArg_ParseTuple(args, "y*O", &words, &values))
        return NULL;
    seq = PySequence_Fast(values, "values must be a sequence of integers");
    if (!seq)
        goto done;
    Py_ssize_t nv = PySequence_Fast_GET_SIZE(seq), kept = 0;
    want = PyMem_Malloc(sizeof(uint32_t) * (nv ? nv : 1));
    if (!want) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nv; i++) {
        unsigned long long v = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                goto done;
            PyErr_Clear(); /* negative or too large: no word holds it */
            continue;
        }
        if (v <= 0xffffffffULL)
            want[kept++] = (uint32_t)v;
    }
    qsort(want, kept, sizeof(uint32_t), cmp_u32);
    out = PyList_New(0);
    if (!out || kept == 0)
        goto done;
    const unsigned char *w = words.buf;
    uint32_t lo = want[0], hi = want[kept - 1];
    for (Py_ssize_t i = 0; i < words.len / 4; i++) {
        uint32_t x = le32(w + 4 * i);
        if (x < lo || x > hi)
            continue;
        Py_ssize_t a = 0, b = kept;
        while (a < b) {
            Py_ssize_t m = (a + b) / 2;
            if (want[m] < x)
                a = m + 1;
            else
                b = m;
        }
        if (a < kept && want[a] == x) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (!index || PyList_Append(out, index) < 0) {
                Py_XDECREF(index);
                Py_CLEAR(out);
                goto done;
            }
            Py_DECREF(index);
        }
    }
done:
    PyMem_Free(want);
    Py_XDECREF(seq);
    PyBuffer_Release(&words);
    return out;
}

static PyObject *
kallsyms_walk(PyObject *self, PyObject *args)
{
    Py_buffer names;
    Py_ssize_t count;
    int long_lengths;
    PyObject *starts = NULL, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*np", &names, &count, &long_lengths))
        return NULL;
    const unsigned char *d = names.buf;
    Py_ssize_t len = names.len, pos = 0;
    int nonempty = 1;
    if (count < 0 || len > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "bad kallsyms_names size or count");
        goto done;
    }
    starts = PyBytes_FromStringAndSize(NULL, 4 * count);
    if (!starts)
        goto done;
    unsigned char *s = (unsigned char *)PyBytes_AS_STRING(starts);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (pos >= len)
            goto early;
        put32(s + 4 * i, (uint32_t)pos);
        Py_ssize_t length = d[pos];
        if ((length & 0x80) && long_lengths) {
            if (pos + 1 >= len)
                goto early;
            length = (length & 0x7f) | (Py_ssize_t)d[pos + 1] << 7;
            pos++;
        }
        if (length == 0)
            nonempty = 0;
        pos += 1 + length;
    }
    if (pos > len)
        goto early;
    result = Py_BuildValue("(Onn)", starts, pos, (Py_ssize_t)nonempty);
    goto done;
early:
    PyErr_SetString(PyExc_ValueError, "kallsyms_names ends early (corrupt or truncated)");
done:
    Py_XDECREF(starts);
    PyBuffer_Release(&names);
    return result;
}

static PyObject *
kallsyms_addresses(PyObject *self, PyObject *args)
{
    Py_buffer values;
    int encoding;
    unsigned long long base, table;
    PyObject *out = NULL;
    if (!PyArg_ParseTuple(args, "y*iKK", &values, &encoding, &base, &table))
        return NULL;
    if (encoding < 0 || encoding > 2) {
        PyErr_SetString(PyExc_ValueError, "unknown kallsyms address encoding");
        goto done;
    }
    Py_ssize_t count = values.len / 4;
    out = PyBytes_FromStringAndSize(NULL, 8 * count);
    if (!out)
        goto done;
    const unsigned char *v = values.buf;
    unsigned char *o = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < count; i++) {
        uint32_t raw = le32(v + 4 * i);
        int64_t s = (int32_t)raw;
        uint64_t a;
        if (encoding == 0)
            a = base + raw;
        else if (encoding == 1)
            a = s >= 0 ? (uint64_t)s : base - 1 - (uint64_t)s;
        else
            a = table + 4 * (uint64_t)i + (uint64_t)s;
        for (int b = 0; b < 8; b++)
            o[8 * i + b] = a >> (8 * b) & 0xff;
    }
done:
    PyBuffer_Release(&values);
    return out;
}

static uint64_t
le64(const unsigned char *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static PyObject *
u64_sorted(PyObject *self, PyObject *args)
{
    Py_buffer data;
    int sorted = 1;
    if (!PyArg_ParseTuple(args, "y*", &data))
        return NULL;
    const unsigned char *d = data.buf;
    for (Py_ssize_t i = 1; i < data.len / 8 && sorted; i++)
        sorted = le64(d + 8 * (i - 1)) <= le64(d + 8 * i);
    PyBuffer_Release(&data);
    return PyBool_FromLong(sorted);
}

static PyObject *
seqs_check(PyObject *self, PyObject *args)
{
    Py_buffer data;
    Py_ssize_t count;
    int ok = 1;
    unsigned char *seen = NULL;
    if (!PyArg_ParseTuple(args, "y*n", &data, &count))
        return NULL;
    if (count < 0 || data.len != 3 * count) {
        ok = 0;
        goto done;
    }
    seen = PyMem_Calloc(count ? count : 1, 1);
    if (!seen) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    const unsigned char *d = data.buf;
    for (Py_ssize_t j = 0; j < count && ok; j++) {
        Py_ssize_t i = (Py_ssize_t)d[3 * j] << 16 | (Py_ssize_t)d[3 * j + 1] << 8 | d[3 * j + 2];
        if (i >= count || seen[i])
            ok = 0;
        else
            seen[i] = 1;
    }
done:
    PyMem_Free(seen);
    PyBuffer_Release(&data);
    return PyBool_FromLong(ok);
}

static PyObject *
kallsyms_expand(PyObject *self, PyObject *args)
{
    Py_buffer names, starts;
    int long_lengths;
    PyObject *tokens, *seq = NULL, *text = NULL, *types = NULL, *offsets = NULL, *result = NULL;
    const char *tok[256];
    Py_ssize_t toklen[256];
    if (!PyArg_ParseTuple(args, "y*y*pO", &names, &starts, &long_lengths, &tokens))
        return NULL;
    seq = PySequence_Fast(tokens, "tokens must be a sequence of 256 bytes");
    if (!seq)
        goto done;
    if (PySequence_Fast_GET_SIZE(seq) != 256) {
        PyErr_SetString(PyExc_ValueError, "tokens must be a sequence of 256 bytes");
        goto done;
    }
    for (int i = 0; i < 256; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "tokens must be a sequence of 256 bytes");
            goto done;
        }
        tok[i] = PyBytes_AS_STRING(t);
        toklen[i] = PyBytes_GET_SIZE(t);
    }
    const unsigned char *d = names.buf, *st = starts.buf;
    Py_ssize_t len = names.len, count = starts.len / 4, size = 0;
    /* First pass: check every entry and size the text. */
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t pos = le32(st + 4 * i), length;
        if (pos >= len)
            goto corrupt;
        length = d[pos++];
        if ((length & 0x80) && long_lengths) {
            if (pos >= len)
                goto corrupt;
            length = (length & 0x7f) | (Py_ssize_t)d[pos++] << 7;
        }
        if (length == 0 || pos + length > len)
            goto corrupt;
        for (Py_ssize_t j = 0; j < length; j++)
            size += toklen[d[pos + j]];
        size += 1; /* the NUL; the type character is not in the text */
    }
    if (size > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "kallsyms names too long");
        goto done;
    }
    text = PyBytes_FromStringAndSize(NULL, size);
    types = PyBytes_FromStringAndSize(NULL, count);
    offsets = PyBytes_FromStringAndSize(NULL, 4 * count);
    if (!text || !types || !offsets)
        goto done;
    char *out = PyBytes_AS_STRING(text), *ty = PyBytes_AS_STRING(types);
    unsigned char *at = (unsigned char *)PyBytes_AS_STRING(offsets);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t pos = le32(st + 4 * i), length, skip = 1;
        put32(at + 4 * i, (uint32_t)(out - PyBytes_AS_STRING(text)));
        length = d[pos++];
        if ((length & 0x80) && long_lengths)
            length = (length & 0x7f) | (Py_ssize_t)d[pos++] << 7;
        ty[i] = '?';
        for (Py_ssize_t j = 0; j < length; j++) {
            const unsigned char t = d[pos + j];
            const char *piece = tok[t];
            Py_ssize_t n = toklen[t];
            if (skip && n > 0) {
                ty[i] = piece[0];
                piece++;
                n--;
                skip = 0;
            }
            memcpy(out, piece, n);
            out += n;
        }
        *out++ = '\0';
    }
    size = out - PyBytes_AS_STRING(text);
    if (_PyBytes_Resize(&text, size) < 0)
        goto done;
    result = Py_BuildValue("(OOO)", text, types, offsets);
    goto done;
corrupt:
    PyErr_SetString(PyExc_ValueError, "kallsyms_names is corrupt (an entry runs past its end)");
done:
    Py_XDECREF(text);
    Py_XDECREF(types);
    Py_XDECREF(offsets);
    Py_XDECREF(seq);
    PyBuffer_Release(&names);
    PyBuffer_Release(&starts);
    return result;
}

static PyMethodDef methods[] = {
    {"btf_records", btf_records, METH_VARARGS, "Offsets, name offsets and infos of BTF records."},
    {"name_hashes", name_hashes, METH_VARARGS, "crc32 of the string at each name offset."},
    {"u32_matches", u32_matches, METH_VARARGS, "Indices of the words equal to one of values."},
    {"kallsyms_walk", kallsyms_walk, METH_VARARGS, "Where each kallsyms_names entry starts."},
    {"kallsyms_addresses", kallsyms_addresses, METH_VARARGS, "Symbol addresses."},
    {"u64_sorted", u64_sorted, METH_VARARGS, "Do the words never decrease?"},
    {"seqs_check", seqs_check, METH_VARARGS, "Is it a kallsyms_seqs_of_names?"},
    {"kallsyms_expand", kallsyms_expand, METH_VARARGS, "Every kallsyms name and type."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kdumpy._tables", NULL, -1, methods,
};

PyMODINIT_FUNC
PyInit__tables(void)
{
    return PyModule_Create(&module);
}
