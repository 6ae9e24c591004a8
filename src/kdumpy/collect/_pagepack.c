/*
 * kdumpy.collect._pagepack: compress a batch of pages for the kdump-compressed format in
 * one call, so that no Python code runs per page (the capture kernel has one CPU, and a
 * dump has millions of pages).
 *
 * Each page is compressed on its own, as makedumpfile does: zlib level 1 as a complete
 * zlib stream (compress2), raw LZO1X-1.  The result is kept only when strictly smaller
 * than the page, otherwise the page is stored as it is.  With exclude_zero, all-zero
 * pages are marked and not stored at all.  The Python fallback in compress.py writes the
 * same bytes through the zlib module and python-lzo; tests compare the two.
 *
 *   pack(kind, pages, page_size, exclude_zero, out, sizes, flags, zero) -> bytes used
 *
 * kind: 1 zlib, 2 lzo (the descriptor flag values); pages: k * page_size bytes;
 * out: at least as long as pages, receives the stored bytes back to back; sizes and
 * flags: uint32[k]; zero: bool[k].  The GIL is released while pages are compressed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lzo/lzo1x.h>
#include <zlib.h>

enum { KIND_ZLIB = 1, KIND_LZO = 2 };

static int
is_zero_page(const unsigned char *page, size_t size)
{
    for (size_t i = 0; i < size; i += sizeof(uint64_t)) {
        uint64_t word;
        memcpy(&word, page + i, sizeof(word));
        if (word)
            return 0;
    }
    return 1;
}

/* Compress one page into scratch; the compressed length, or 0 if it failed. */
static size_t
compress_page(int kind, const unsigned char *page, size_t size, unsigned char *scratch,
              size_t scratch_size, void *wrkmem)
{
    if (kind == KIND_ZLIB) {
        uLongf len = scratch_size;
        return compress2(scratch, &len, page, size, 1) == Z_OK ? len : 0;
    }
    lzo_uint len = scratch_size;
    return lzo1x_1_compress(page, size, scratch, &len, wrkmem) == LZO_E_OK ? len : 0;
}

/* The loop over the pages; no Python objects are touched.  Returns bytes of out used,
 * or -1 when memory for the scratch buffers cannot be had. */
static Py_ssize_t
pack_pages(int kind, const unsigned char *pages, size_t count, size_t size, int exclude_zero,
           unsigned char *out, uint32_t *sizes, uint32_t *flags, unsigned char *zero)
{
    size_t scratch_size = compressBound(size) + size / 16 + 64 + 3; /* zlib's and LZO's worst */
    unsigned char *scratch = malloc(scratch_size);
    void *wrkmem = kind == KIND_LZO ? malloc(LZO1X_1_MEM_COMPRESS) : NULL;
    if (scratch == NULL || (kind == KIND_LZO && wrkmem == NULL)) {
        free(scratch);
        free(wrkmem);
        return -1;
    }
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        const unsigned char *page = pages + i * size;
        zero[i] = exclude_zero && is_zero_page(page, size);
        sizes[i] = flags[i] = 0;
        if (zero[i])
            continue;
        size_t len = compress_page(kind, page, size, scratch, scratch_size, wrkmem);
        if (len > 0 && len < size) {
            memcpy(out + used, scratch, len);
            sizes[i] = (uint32_t)len;
            flags[i] = (uint32_t)kind;
        } else {
            memcpy(out + used, page, size);
            sizes[i] = (uint32_t)size;
            len = size;
        }
        used += len;
    }
    free(scratch);
    free(wrkmem);
    return (Py_ssize_t)used;
}

static PyObject *
pack(PyObject *self, PyObject *args)
{
    int kind, exclude_zero;
    Py_ssize_t page_size;
    Py_buffer pages, out, sizes, flags, zero;
    if (!PyArg_ParseTuple(args, "iy*npw*w*w*w*", &kind, &pages, &page_size, &exclude_zero,
                          &out, &sizes, &flags, &zero))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t count = page_size > 0 ? pages.len / page_size : 0;
    if (kind != KIND_ZLIB && kind != KIND_LZO) {
        PyErr_Format(PyExc_ValueError, "unknown compression kind %d", kind);
    } else if (page_size <= 0 || page_size % 8 || pages.len % page_size) {
        PyErr_SetString(PyExc_ValueError, "pages must be whole pages of a multiple of 8 bytes");
    } else if (out.len < pages.len || sizes.len < count * 4 || flags.len < count * 4 ||
               zero.len < count) {
        PyErr_SetString(PyExc_ValueError, "output buffers are too small for the pages");
    } else {
        Py_ssize_t used;
        Py_BEGIN_ALLOW_THREADS
        used = pack_pages(kind, pages.buf, (size_t)count, (size_t)page_size, exclude_zero,
                          out.buf, sizes.buf, flags.buf, zero.buf);
        Py_END_ALLOW_THREADS
        result = used < 0 ? PyErr_NoMemory() : PyLong_FromSsize_t(used);
    }
    PyBuffer_Release(&pages);
    PyBuffer_Release(&out);
    PyBuffer_Release(&sizes);
    PyBuffer_Release(&flags);
    PyBuffer_Release(&zero);
    return result;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS, "Compress a batch of pages (see the module source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kdumpy.collect._pagepack",
    "Per-page zlib/LZO compression of a batch of pages, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__pagepack(void)
{
    if (lzo_init() != LZO_E_OK) {
        PyErr_SetString(PyExc_ImportError, "lzo_init() failed");
        return NULL;
    }
    return PyModule_Create(&module);
}
