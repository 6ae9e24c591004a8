/*
 * kdumpy.collect._pagepack: compress a batch of pages for the kdump-compressed format and
 * build their page descriptors in one call, so that no Python code runs per page (the
 * capture kernel has one CPU, and a dump has millions of pages).
 *
 * Each page is compressed on its own, as makedumpfile does: zlib level 1 as a complete
 * zlib stream (what compress2 writes: see zlib_page), raw LZO1X-1, a raw snappy block (snappy_compress), a zstd
 * level-1 frame (ZSTD_compressCCtx), or stored as it is ("none").  snappy and zstd are
 * built in when their headers were found at install time (HAVE_SNAPPY, HAVE_ZSTD).  A compressed page
 * is kept only when strictly smaller than the page, otherwise the page is stored as it
 * is.  With exclude_zero, all-zero pages store nothing: their descriptor will point at
 * the dump's shared zero page.  The Python fallback in compress.py writes the same bytes
 * and descriptors through the zlib module and python-lzo; tests compare the two.
 *
 *   pack(kind, pages, page_size, select, exclude_zero) -> (data, desc, zero pages)
 *
 * kind: 0 none, 1 zlib, 2 lzo, 4 snappy, 0x20 zstd (the descriptor flag values).  pages: whole pages, read in
 * place (typically a mapping of the dump).  select: None for every page, or one byte per
 * page of pages, nonzero for the pages to pack (in page order).  data (bytes): the stored
 * bytes back to back; desc (bytearray): one page descriptor of 24 bytes (offset, size,
 * flags, page_flags, native order) per packed page: offset is relative to the start of
 * data, or -1 for a zero page; size is page_size for those.
 * The GIL is released while pages are compressed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <lzo/lzo1x.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#ifdef HAVE_SNAPPY
#include <snappy-c.h>
#endif
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

enum { KIND_NONE = 0, KIND_ZLIB = 1, KIND_LZO = 2, KIND_SNAPPY = 4, KIND_ZSTD = 0x20 };

/* Room past k pages that out needs: every compressor's worst case over one page is below
 * page_size + page_size/6 + 64 (snappy's 32 + n + n/6 is the largest; LZO's n/16 + 67,
 * zstd's and zlib's bounds are smaller). */
#define PACK_SLACK(size) ((size) / 6 + 64)

/* A page of one byte repeated (0xcc: the int3 fill of kernel text and freed slab
 * objects; 0xff) compresses to the same few bytes every time: 11% of the pages a 3 GiB
 * dump keeps at -d 31, which went through the compressor each (zlib: 3 us a page).  The
 * first one's result is kept per byte value; the compressors keep no state from one page
 * to the next (each page is a complete stream), so the bytes written are the same. */
#define MEMO_MAX 256 /* longest result kept: a uniform 4 KiB page is 19 (zstd) to 196 bytes
                      * (snappy); with larger pages some kinds are not memoised */

/* What one pack() call needs besides the pages: LZO's work memory, a zstd context, the
 * results for uniform pages of page size memo_size. */
struct packer {
    int kind;
    size_t memo_size;
    uint16_t memo_len[256]; /* 0: not compressed yet */
    unsigned char memo[256][MEMO_MAX];
    void *lzo_wrkmem;
    z_stream zlib;
    int zlib_ready;
#ifdef HAVE_ZSTD
    ZSTD_CCtx *zstd;
#endif
};

static int
kind_known(int kind)
{
    switch (kind) {
    case KIND_NONE:
    case KIND_ZLIB:
    case KIND_LZO:
#ifdef HAVE_SNAPPY
    case KIND_SNAPPY:
#endif
#ifdef HAVE_ZSTD
    case KIND_ZSTD:
#endif
        return 1;
    }
    return 0;
}

/* 0, or -1 when memory cannot be had. */
static int
packer_init(struct packer *p, int kind)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    if (kind == KIND_LZO && (p->lzo_wrkmem = malloc(LZO1X_1_MEM_COMPRESS)) == NULL)
        return -1;
    if (kind == KIND_ZLIB) {
        /* Raw deflate: zlib_page writes the zlib header and trailer itself. */
        if (deflateInit2(&p->zlib, 1, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            return -1;
        p->zlib_ready = 1;
    }
#ifdef HAVE_ZSTD
    if (kind == KIND_ZSTD && (p->zstd = ZSTD_createCCtx()) == NULL)
        return -1;
#endif
    return 0;
}

static void
packer_free(struct packer *p)
{
    free(p->lzo_wrkmem);
    if (p->zlib_ready)
        deflateEnd(&p->zlib);
#ifdef HAVE_ZSTD
    ZSTD_freeCCtx(p->zstd);
#endif
}

struct page_desc {
    int64_t offset;
    uint32_t size;
    uint32_t flags;
    uint64_t page_flags;
};

/* The byte a page is filled with, or -1 if it holds two different bytes; 8 words at a
 * time so the compiler can vectorise it (a zero page is makedumpfile's is_zero_page). */
static int
uniform_byte(const unsigned char *page, size_t size)
{
    uint64_t fill = page[0] * 0x0101010101010101ull;
    size_t i = 0;
    for (; i + 64 <= size; i += 64) {
        uint64_t w[8];
        memcpy(w, page + i, sizeof(w));
        if ((w[0] ^ fill) | (w[1] ^ fill) | (w[2] ^ fill) | (w[3] ^ fill) | (w[4] ^ fill) |
            (w[5] ^ fill) | (w[6] ^ fill) | (w[7] ^ fill))
            return -1;
    }
    for (; i < size; i += sizeof(uint64_t)) {
        uint64_t word;
        memcpy(&word, page + i, sizeof(word));
        if (word != fill)
            return -1;
    }
    return page[0];
}

#define ADLER_BASE 65521u
#define ADLER_NMAX 5552 /* bytes before s2 could overflow 32 bits (zlib's bound) */

/* adler32(1, buf, len) as zlib computes it, 16 bytes per step where SSE2 is there:
 * zlib 1.2's adler32 goes a byte at a time, 4% of -c's time (about 1 us per page).
 * Over a block of 16 bytes b[0..15], s1 grows by their sum and s2 by 16 * s1 at the
 * block's start plus sum((16 - i) * b[i]); the sums are reduced modulo 65521 every
 * ADLER_NMAX bytes, as zlib does. */
static uint32_t
page_adler32(const unsigned char *buf, size_t len)
{
    uint64_t s1 = 1, s2 = 0;
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128();
    const __m128i w_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9);
    const __m128i w_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
    while (len >= 16) {
        size_t n = (len < ADLER_NMAX ? len : ADLER_NMAX) & ~(size_t)15;
        __m128i sum = zero, weighted = zero, prefix = zero; /* 32-bit lanes */
        for (size_t k = 0; k < n; k += 16) {
            __m128i b = _mm_loadu_si128((const __m128i *)(buf + k));
            prefix = _mm_add_epi32(prefix, sum); /* sum of the blocks before this one */
            sum = _mm_add_epi32(sum, _mm_sad_epu8(b, zero));
            __m128i lo = _mm_unpacklo_epi8(b, zero), hi = _mm_unpackhi_epi8(b, zero);
            weighted = _mm_add_epi32(weighted, _mm_add_epi32(_mm_madd_epi16(lo, w_lo),
                                                             _mm_madd_epi16(hi, w_hi)));
        }
        uint32_t a[4], w[4], p[4];
        _mm_storeu_si128((__m128i *)a, sum); /* _mm_sad_epu8 fills lanes 0 and 2 */
        _mm_storeu_si128((__m128i *)w, weighted);
        _mm_storeu_si128((__m128i *)p, prefix);
        s2 = (s2 + s1 * n + 16 * ((uint64_t)p[0] + p[2]) + (uint64_t)w[0] + w[1] + w[2] + w[3])
             % ADLER_BASE;
        s1 = (s1 + a[0] + a[2]) % ADLER_BASE;
        buf += n;
        len -= n;
    }
#endif
    while (len > 0) {
        size_t n = len < ADLER_NMAX ? len : ADLER_NMAX;
        len -= n;
        while (n--) {
            s1 += *buf++;
            s2 += s1;
        }
        s1 %= ADLER_BASE;
        s2 %= ADLER_BASE;
    }
    return (uint32_t)(s2 << 16 | s1);
}

/* One page as the zlib stream compress2(level 1) makes: the header (deflate, 32 KiB
 * window, no dictionary, the "fastest" level: 78 01), the raw deflate stream (deflateReset
 * instead of compress2's new state per page), the adler32 of the page, big-endian.  The
 * checksum is ours rather than zlib's wrapper's: the same value, computed faster. */
static size_t
zlib_page(z_stream *z, const unsigned char *page, size_t size, unsigned char *dst, size_t room)
{
    if (room < 6 || deflateReset(z) != Z_OK)
        return 0;
    z->next_in = (Bytef *)page;
    z->avail_in = (uInt)size;
    z->next_out = dst + 2;
    z->avail_out = (uInt)(room - 6);
    if (deflate(z, Z_FINISH) != Z_STREAM_END)
        return 0;
    size_t len = 2 + z->total_out;
    uint32_t adler = page_adler32(page, size);
    dst[0] = 0x78;
    dst[1] = 0x01;
    dst[len] = (unsigned char)(adler >> 24);
    dst[len + 1] = (unsigned char)(adler >> 16);
    dst[len + 2] = (unsigned char)(adler >> 8);
    dst[len + 3] = (unsigned char)adler;
    return len + 4;
}

/* Compress one page to dst (room: at least size + PACK_SLACK(size)); the compressed
 * length, or 0 if the compressor failed. */
static size_t
compress_page(struct packer *p, const unsigned char *page, size_t size, unsigned char *dst,
              size_t room)
{
    switch (p->kind) {
    case KIND_ZLIB:
        return zlib_page(&p->zlib, page, size, dst, room);
    case KIND_LZO: {
        lzo_uint len = room;
        return lzo1x_1_compress(page, size, dst, &len, p->lzo_wrkmem) == LZO_E_OK ? len : 0;
    }
#ifdef HAVE_SNAPPY
    case KIND_SNAPPY: {
        size_t len = room;
        return snappy_compress((const char *)page, size, (char *)dst, &len) == SNAPPY_OK ? len
                                                                                        : 0;
    }
#endif
#ifdef HAVE_ZSTD
    case KIND_ZSTD: {
        size_t len = ZSTD_compressCCtx(p->zstd, dst, room, page, size, 1);
        return ZSTD_isError(len) ? 0 : len;
    }
#endif
    }
    return 0; /* KIND_NONE: stored as it is */
}

/* The calling thread's packer, made on first use and kept for the next batch of the same
 * kind (freed when the thread ends): setting up a zstd context or a deflate state for
 * every batch cost as much as a batch of easy pages (0.2 s over 2 GiB at -z -d 1). */
static pthread_key_t packer_key;

static void
packer_destroy(void *p)
{
    packer_free(p);
    free(p);
}

static struct packer *
thread_packer(int kind, size_t size)
{
    struct packer *p = pthread_getspecific(packer_key);
    if (p != NULL && p->kind == kind) {
        if (p->memo_size != size) { /* results for another page size */
            memset(p->memo_len, 0, sizeof(p->memo_len));
            p->memo_size = size;
        }
        return p;
    }
    if (p != NULL)
        packer_free(p);
    else if ((p = malloc(sizeof(*p))) == NULL)
        return NULL;
    if (packer_init(p, kind) < 0) {
        packer_destroy(p);
        p = NULL;
    } else {
        p->memo_size = size;
    }
    pthread_setspecific(packer_key, p);
    return p;
}

/* Ask for a page's cache lines ahead of its use: the next page's first touch (a TLB walk,
 * then misses the hardware prefetcher does not start across a page boundary) was two
 * thirds of this loop's own time at -d 31; asked for while the current page is
 * compressed, the lines are there when it comes. */
static void
prefetch_page(const unsigned char *page, size_t size)
{
    for (size_t off = 0; off < size; off += 64)
        __builtin_prefetch(page + off, 0, 3);
}

/* The first page from i on that select marks (every page without select), npages if none. */
static size_t
next_selected(const unsigned char *select, size_t i, size_t npages)
{
    while (select && i < npages && !select[i])
        i++;
    return i;
}

/* The loop over the pages; no Python objects are touched.  Returns bytes of out used
 * (and the zero-page count in *zeros), or -1 when the compressor's memory cannot be had. */
static Py_ssize_t
pack_pages(int kind, const unsigned char *pages, size_t size, const unsigned char *select,
           size_t npages, int exclude_zero, unsigned char *out, struct page_desc *desc,
           Py_ssize_t *zeros)
{
    struct packer *packer = thread_packer(kind, size);
    if (packer == NULL)
        return -1;
    size_t used = 0;
    *zeros = 0;
    struct page_desc *d = desc - 1;
    size_t next = next_selected(select, 0, npages);
    for (size_t i = next; i < npages; i = next) {
        next = next_selected(select, i + 1, npages);
        if (next < npages)
            prefetch_page(pages + next * size, size);
        const unsigned char *page = pages + i * size;
        d++;
        d->page_flags = 0;
        d->flags = 0;
        int fill = uniform_byte(page, size);
        if (exclude_zero && fill == 0) {
            d->offset = -1; /* the shared zero page, placed by the writer */
            d->size = (uint32_t)size;
            ++*zeros;
            continue;
        }
        size_t len;
        if (fill >= 0 && packer->memo_len[fill]) {
            len = packer->memo_len[fill];
            memcpy(out + used, packer->memo[fill], len);
        } else {
            len = compress_page(packer, page, size, out + used, size + PACK_SLACK(size));
            if (fill >= 0 && len > 0 && len <= MEMO_MAX) {
                packer->memo_len[fill] = (uint16_t)len;
                memcpy(packer->memo[fill], out + used, len);
            }
        }
        if (len > 0 && len < size) {
            d->flags = (uint32_t)kind;
        } else {
            memcpy(out + used, page, size);
            len = size;
        }
        d->offset = (int64_t)used;
        d->size = (uint32_t)len;
        used += len;
    }
    return (Py_ssize_t)used;
}

/* select: None (every page), or one byte per page, nonzero for a page to pack; *count is
 * the number of pages packed. */
static int
check_select(PyObject *select_obj, Py_buffer *select, Py_ssize_t npages, Py_ssize_t *count)
{
    if (select_obj == Py_None) {
        *count = npages;
        return 0;
    }
    if (PyObject_GetBuffer(select_obj, select, PyBUF_SIMPLE) < 0)
        return -1;
    if (select->len != npages) {
        PyErr_SetString(PyExc_ValueError, "select must have one byte per page");
        return -1;
    }
    const unsigned char *m = select->buf;
    *count = 0;
    for (Py_ssize_t i = 0; i < npages; i++)
        *count += m[i] != 0;
    return 0;
}

static PyObject *
pack(PyObject *self, PyObject *args)
{
    int kind, exclude_zero;
    Py_ssize_t page_size, count = 0;
    PyObject *select_obj, *data = NULL, *desc = NULL, *result = NULL;
    Py_buffer pages, select = {0};
    if (!PyArg_ParseTuple(args, "iy*nOp", &kind, &pages, &page_size, &select_obj,
                          &exclude_zero))
        return NULL;
    if (!kind_known(kind)) {
        PyErr_Format(PyExc_ValueError, "unknown compression kind %d", kind);
    } else if (page_size <= 0 || page_size % 8 || pages.len % page_size) {
        PyErr_SetString(PyExc_ValueError, "pages must be whole pages of a multiple of 8 bytes");
    } else if (check_select(select_obj, &select, pages.len / page_size, &count) == 0) {
        /* Not zero-filled: every byte of them that is kept gets written below. */
        data = PyBytes_FromStringAndSize(NULL, count * page_size + PACK_SLACK(page_size));
        desc = PyByteArray_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(struct page_desc));
        if (data != NULL && desc != NULL) {
            Py_ssize_t used, zeros;
            unsigned char *out = (unsigned char *)PyBytes_AS_STRING(data);
            struct page_desc *d = (struct page_desc *)PyByteArray_AS_STRING(desc);
            Py_BEGIN_ALLOW_THREADS
            used = pack_pages(kind, pages.buf, (size_t)page_size, select.buf,
                              (size_t)(pages.len / page_size), exclude_zero, out, d, &zeros);
            Py_END_ALLOW_THREADS
            if (used < 0)
                PyErr_NoMemory();
            else if (_PyBytes_Resize(&data, used) == 0) /* shrinks in place */
                result = Py_BuildValue("OOn", data, desc, zeros);
        }
    }
    Py_XDECREF(data);
    Py_XDECREF(desc);
    if (select.obj != NULL)
        PyBuffer_Release(&select);
    PyBuffer_Release(&pages);
    return result;
}

/*
 * classify(raw, struct_size, examine, pfn0, level, rules, pending_end, pending_cls, out)
 *     -> (pending_end, pending_cls)
 *
 * makedumpfile's __exclude_unnecessary_pages over a batch of struct pages, the same
 * decision chain as classify.py's numpy version (which documents it and is the fallback):
 * raw holds n + 1 struct pages (the last is the first tail of a head in slot n - 1),
 * examine n bytes (struct page valid and in the dump's RAM), out n class bytes.  rules is
 * a tuple of 21 integers, -1 for an entry VMCOREINFO lacks (see classify.py
 * native_rules).  A block excluded past the batch's end is returned as the new pending
 * block (end pfn 0: none).
 */
enum { C_KEEP, C_FREE, C_CACHE, C_CACHE_PRIVATE, C_USER, C_HWPOISON, C_OFFLINE };
enum { L_CACHE = 2, L_CACHE_PRIVATE = 4, L_USER = 8, L_FREE = 16 };
enum {
    R_FLAGS, R_MAPPING, R_MAPCOUNT, R_PRIVATE, R_CHEAD, R_LRU, R_PRIVATE_BIT, R_SWAPCACHE,
    R_SWAPBACKED, R_HWPOISON, R_SLAB_BIT, R_HUGETLB_BIT, R_HEAD_MASK, R_FREE_AREA_LEN,
    R_ORDER_IN_FLAGS1, R_OFF_ORDER, R_OFF_DTOR, R_HUGETLB_DTOR, R_NTYPES
};
#define N_RULES (R_NTYPES + 2 * 5)
enum { T_BUDDY, T_SLAB, T_HUGETLB, T_OFFLINE, T_UNACCEPTED };

struct rules {
    long long r[R_NTYPES];
    int has_type[5];
    uint32_t type_value[5], type_mask[5];
};

static uint64_t
u64_at(const unsigned char *row, long long off)
{
    uint64_t v;
    memcpy(&v, row + off, sizeof(v));
    return v;
}

static int
bit(uint64_t flags, long long nr)
{
    return nr >= 0 && (flags >> (nr & 63)) & 1;
}

static int
is_type(const struct rules *r, int t, int has_mc, uint32_t mc)
{
    return r->has_type[t] && has_mc && (mc & r->type_mask[t]) == r->type_value[t];
}

/* Class and block order (log2 pages) of one examined pfn; 0 = kept. */
static int
decide(const struct rules *r, const unsigned char *row, const unsigned char *next, uint64_t pfn,
       int level, int *nr_log2)
{
    const long long *R = r->r;
    uint64_t f = u64_at(row, R[R_FLAGS]), m = u64_at(row, R[R_MAPPING]);
    int has_mc = R[R_MAPCOUNT] >= 0;
    uint32_t mc = 0;
    if (has_mc)
        memcpy(&mc, row + R[R_MAPCOUNT], sizeof(mc));
    int slab = is_type(r, T_SLAB, has_mc, mc) || bit(f, R[R_SLAB_BIT]);
    int anon = (m & 1) && !slab;
    int is_private = bit(f, R[R_PRIVATE_BIT]);
    int swapcache = bit(f, R[R_SWAPCACHE]) && (R[R_SWAPBACKED] < 0 || bit(f, R[R_SWAPBACKED]));
    int cache = bit(f, R[R_LRU]) || swapcache;
    /* compound order and hugetlb-ness of a head, from the next struct page */
    int order = 0, hugetlb = 0;
    if (f & (uint64_t)R[R_HEAD_MASK]) {
        if (R[R_ORDER_IN_FLAGS1]) {
            uint64_t flags1 = u64_at(next, R[R_FLAGS]);
            order = (int)(flags1 & 0xff);
            if (r->has_type[T_HUGETLB] && has_mc)
                hugetlb = is_type(r, T_HUGETLB, has_mc, mc);
            else if (R[R_HUGETLB_BIT] >= 0)
                hugetlb = bit(flags1, R[R_HUGETLB_BIT]);
        } else {
            if (R[R_OFF_ORDER] >= 0)
                order = next[R[R_OFF_ORDER]];
            if (R[R_OFF_DTOR] >= 0 && R[R_HUGETLB_DTOR] >= 0)
                hugetlb = next[R[R_OFF_DTOR]] == R[R_HUGETLB_DTOR];
        }
        int o = order < 62 ? order : 62;
        if (order >= 64 || (pfn & (((uint64_t)1 << o) - 1)))
            order = 0;
    }
    *nr_log2 = order;
    if ((level & L_FREE) && r->has_type[T_BUDDY] && has_mc && R[R_PRIVATE] >= 0 &&
        is_type(r, T_BUDDY, has_mc, mc) && !slab) {
        uint64_t priv = u64_at(row, R[R_PRIVATE]);
        long long limit = R[R_FREE_AREA_LEN] >= 0 ? R[R_FREE_AREA_LEN] : 64;
        if (priv >= (uint64_t)limit)
            return C_KEEP; /* makedumpfile warns and keeps such a page */
        *nr_log2 = (int)priv;
        return C_FREE;
    }
    if ((level & L_FREE) && R[R_FREE_AREA_LEN] > 0 && is_type(r, T_UNACCEPTED, has_mc, mc)) {
        *nr_log2 = (int)R[R_FREE_AREA_LEN] - 1;
        return C_FREE;
    }
    if ((level & L_CACHE) && cache && !is_private && !anon)
        return C_CACHE;
    if ((level & L_CACHE_PRIVATE) && cache && !anon)
        return is_private ? C_CACHE_PRIVATE : C_CACHE;
    if ((level & L_USER) && (anon || hugetlb))
        return C_USER;
    if (bit(f, R[R_HWPOISON]))
        return C_HWPOISON;
    if (is_type(r, T_OFFLINE, has_mc, mc) && !slab)
        return C_OFFLINE;
    return C_KEEP;
}

static int
parse_rules(PyObject *seq, struct rules *r)
{
    PyObject *fast = PySequence_Fast(seq, "rules must be a sequence");
    if (fast == NULL)
        return -1;
    if (PySequence_Fast_GET_SIZE(fast) != N_RULES) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "rules must have %d entries", N_RULES);
        return -1;
    }
    long long v[N_RULES];
    for (Py_ssize_t i = 0; i < N_RULES; i++) {
        v[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (v[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    memcpy(r->r, v, sizeof(r->r));
    for (int t = 0; t < 5; t++) {
        long long value = v[R_NTYPES + 2 * t], mask = v[R_NTYPES + 2 * t + 1];
        r->has_type[t] = mask > 0;
        r->type_value[t] = (uint32_t)value;
        r->type_mask[t] = (uint32_t)mask;
    }
    return 0;
}

static PyObject *
classify(PyObject *self, PyObject *args)
{
    Py_buffer raw, examine, out;
    Py_ssize_t size;
    unsigned long long pfn0, pending_end;
    int level, pending_cls;
    PyObject *rules_obj;
    if (!PyArg_ParseTuple(args, "y*ny*KiOKiw*", &raw, &size, &examine, &pfn0, &level,
                          &rules_obj, &pending_end, &pending_cls, &out))
        return NULL;
    PyObject *result = NULL;
    struct rules r;
    Py_ssize_t n = examine.len;
    if (parse_rules(rules_obj, &r) < 0) {
        /* error set */
    } else if (size <= 0 || raw.len < (n + 1) * size || out.len < n) {
        PyErr_SetString(PyExc_ValueError, "struct page buffers do not match the batch");
    } else {
        long long need = size;
        const long long offs[] = {r.r[R_FLAGS], r.r[R_MAPPING], r.r[R_MAPCOUNT], r.r[R_PRIVATE],
                                  r.r[R_CHEAD]};
        int bad = r.r[R_FLAGS] < 0 || r.r[R_MAPPING] < 0 || r.r[R_OFF_ORDER] >= need ||
                  r.r[R_OFF_DTOR] >= need;
        for (int i = 0; i < 5; i++)
            bad |= offs[i] + (i == 2 ? 4 : 8) > need;
        if (bad) {
            PyErr_SetString(PyExc_ValueError, "struct page member outside SIZE(page)");
        } else {
            const unsigned char *rows = raw.buf, *ex = examine.buf;
            unsigned char *o = out.buf;
            uint64_t end_pfn = pending_end;
            int end_cls = pending_cls;
            Py_BEGIN_ALLOW_THREADS
            Py_ssize_t start = 0;
            if (end_pfn > pfn0) {
                uint64_t left = end_pfn - pfn0;
                start = left < (uint64_t)n ? (Py_ssize_t)left : n;
            }
            memset(o, 0, (size_t)n);
            memset(o, end_cls, (size_t)start);
            uint64_t block_end = (uint64_t)start; /* pfns below it are in an excluded block */
            for (Py_ssize_t i = start; i < n; i++) {
                if ((uint64_t)i < block_end) { /* the rest of an excluded block */
                    i = (block_end < (uint64_t)n ? (Py_ssize_t)block_end : n) - 1;
                    continue;
                }
                const unsigned char *row = rows + i * size;
                if (!ex[i])
                    continue;
                if (r.r[R_CHEAD] >= 0 && (u64_at(row, r.r[R_CHEAD]) & 1))
                    continue; /* a tail page goes with its head */
                int nr_log2;
                int cls = decide(&r, row, row + size, pfn0 + (uint64_t)i, level, &nr_log2);
                if (cls == C_KEEP)
                    continue;
                if (nr_log2 == 0) {
                    o[i] = (unsigned char)cls;
                    continue;
                }
                uint64_t span = (uint64_t)1 << (nr_log2 < 63 ? nr_log2 : 63);
                uint64_t end = (uint64_t)i + span;
                memset(o + i, cls, (size_t)((end < (uint64_t)n ? end : (uint64_t)n) - i));
                block_end = end;
                if (end > (uint64_t)n) {
                    end_pfn = pfn0 + end;
                    end_cls = cls;
                }
            }
            if (block_end <= (uint64_t)n && end_pfn <= pfn0 + (uint64_t)n)
                end_pfn = 0;
            Py_END_ALLOW_THREADS
            result = Py_BuildValue("Ki", end_pfn, end_cls);
        }
    }
    PyBuffer_Release(&raw);
    PyBuffer_Release(&examine);
    PyBuffer_Release(&out);
    return result;
}

/*
 * The bitmaps' bit order (the kdump format's: pfn i is bit i % 8 of byte i / 8), and the
 * descriptors' offsets, without a Python operation per page.
 *
 *   packbits(bits, out): bits has one byte per pfn (nonzero: set); out gets
 *       ceil(len(bits) / 8) bytes.
 *   unpackbits(packed, out): out (one byte per pfn, 0 or 1) from the first len(out) bits.
 *   rebase(desc, delta, zero_offset): page descriptors' offsets made absolute: delta
 *       added, -1 (a zero page) replaced by zero_offset.
 */
/* Eight mask bytes (little-endian in w) as eight bits: bit i set where byte i is nonzero.
 * A bit per pfn, eight at a time (a byte at a time was 12 instructions per pfn: a
 * third of a 3 GiB dump's -d 31 scan); the multiply gathers each byte's low bit into
 * the top byte, every product term landing on a bit of its own (no carries). */
static unsigned char
pack8(uint64_t w)
{
    const uint64_t low7 = 0x7f7f7f7f7f7f7f7full;
    uint64_t nonzero = ((((w & low7) + low7) | w) >> 7) & 0x0101010101010101ull;
    return (unsigned char)((nonzero * 0x0102040810204080ull) >> 56);
}

static PyObject *
packbits(PyObject *self, PyObject *args)
{
    Py_buffer bits, out;
    if (!PyArg_ParseTuple(args, "y*w*", &bits, &out))
        return NULL;
    PyObject *result = NULL;
    if (out.len < (bits.len + 7) / 8) {
        PyErr_SetString(PyExc_ValueError, "packbits: output too small");
    } else {
        const unsigned char *b = bits.buf;
        unsigned char *o = out.buf;
        Py_ssize_t n = bits.len, i = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, b + i, sizeof(w));
            o[i >> 3] = pack8(w);
        }
#endif
        if (i < n)
            memset(o + (i >> 3), 0, (size_t)((n - i + 7) / 8));
        for (; i < n; i++)
            o[i >> 3] |= (unsigned char)((b[i] != 0) << (i & 7));
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&bits);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *
unpackbits(PyObject *self, PyObject *args)
{
    Py_buffer packed, out;
    if (!PyArg_ParseTuple(args, "y*w*", &packed, &out))
        return NULL;
    PyObject *result = NULL;
    if (packed.len < (out.len + 7) / 8) {
        PyErr_SetString(PyExc_ValueError, "unpackbits: too few bits");
    } else {
        const unsigned char *p = packed.buf;
        unsigned char *o = out.buf;
        for (Py_ssize_t i = 0; i < out.len; i++)
            o[i] = (p[i >> 3] >> (i & 7)) & 1;
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&packed);
    PyBuffer_Release(&out);
    return result;
}

static PyObject *
rebase(PyObject *self, PyObject *args)
{
    Py_buffer desc;
    long long delta, zero_offset;
    if (!PyArg_ParseTuple(args, "w*LL", &desc, &delta, &zero_offset))
        return NULL;
    PyObject *result = NULL;
    if (desc.len % (Py_ssize_t)sizeof(struct page_desc)) {
        PyErr_SetString(PyExc_ValueError, "rebase: not whole page descriptors");
    } else {
        struct page_desc *d = desc.buf;
        Py_ssize_t n = desc.len / (Py_ssize_t)sizeof(struct page_desc);
        for (Py_ssize_t i = 0; i < n; i++)
            d[i].offset = d[i].offset < 0 ? zero_offset : d[i].offset + delta;
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&desc);
    return result;
}

/*
 *   keep_kept(keep, cls, ram, counts): a scanned batch's classes applied to its keep-mask
 *       (one byte per pfn each): pfns outside the dump's RAM are ignored (a block may span
 *       a hole); elsewhere a class other than 0 (kept) clears keep and is counted in
 *       counts (an array of 8 int64, one per class).
 */
static PyObject *
keep_kept(PyObject *self, PyObject *args)
{
    Py_buffer keep, cls, ram, counts;
    if (!PyArg_ParseTuple(args, "w*y*y*w*", &keep, &cls, &ram, &counts))
        return NULL;
    PyObject *result = NULL;
    if (cls.len != keep.len || ram.len != keep.len || counts.len < 8 * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "keep_kept: buffers do not match");
    } else {
        unsigned char *k = keep.buf;
        const unsigned char *c = cls.buf, *r = ram.buf;
        int64_t *n = counts.buf;
        const uint64_t ones = 0x0101010101010101ull;
        Py_ssize_t i = 0;
        while (i < keep.len) {
            /* Eight pfns at once where they are alike: no class, or all RAM of one class
             * (the free blocks most of a dump's memory is in); else one pfn. */
            if (i + 8 <= keep.len) {
                uint64_t cw, rw;
                memcpy(&cw, c + i, sizeof(cw));
                memcpy(&rw, r + i, sizeof(rw));
                if (cw == 0 || rw == 0) {
                    i += 8;
                    continue;
                }
                if (rw == ones && cw == c[i] * ones) {
                    n[c[i] & 7] += 8;
                    memset(k + i, 0, 8);
                    i += 8;
                    continue;
                }
            }
            if (r[i] && c[i]) {
                n[c[i] & 7]++;
                k[i] = 0;
            }
            i++;
        }
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&keep);
    PyBuffer_Release(&cls);
    PyBuffer_Release(&ram);
    PyBuffer_Release(&counts);
    return result;
}

/*
 *   start_writeback(fd): start writing the file's dirty pages to its disk without waiting
 *       for them (sync_file_range, SYNC_FILE_RANGE_WRITE over the whole file; pages already
 *       being written are left alone).  The collector calls it as it writes, so the disk
 *       works while the next pages are compressed and the final fsync waits only for the
 *       last of them, where the kernel would otherwise hold everything back until that
 *       fsync (dirty data below the background threshold is not written for ~30 s).
 *       Python's os module has no sync_file_range.
 */
static PyObject *
start_writeback(PyObject *self, PyObject *args)
{
    int fd, rc;
    if (!PyArg_ParseTuple(args, "i", &fd))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"pack", pack, METH_VARARGS, "Compress a batch of pages (see the module source)."},
    {"classify", classify, METH_VARARGS, "Classify a batch of struct pages (see the source)."},
    {"packbits", packbits, METH_VARARGS, "Pack one byte per pfn into bitmap bits."},
    {"unpackbits", unpackbits, METH_VARARGS, "Unpack bitmap bits into one byte per pfn."},
    {"rebase", rebase, METH_VARARGS, "Make page descriptors' offsets absolute."},
    {"keep_kept", keep_kept, METH_VARARGS, "Apply a batch's page classes to its keep-mask."},
    {"start_writeback", start_writeback, METH_VARARGS, "Start writing a file's dirty pages."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kdumpy.collect._pagepack",
    "Per-page compression and page descriptors of a batch of pages, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__pagepack(void)
{
#ifdef __GLIBC__
    /* A batch's output (a few MiB) is allocated, written and freed over and over: keep
     * freed memory in the heap instead of giving it back to the kernel (glibc trims or
     * unmaps above 128 KiB by default), which faults every page of the next batch in
     * again (half the collector's page faults at -d 31). */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 128 << 20);
#endif
    if (pthread_key_create(&packer_key, packer_destroy) != 0) {
        PyErr_SetString(PyExc_ImportError, "pthread_key_create() failed");
        return NULL;
    }
    if (lzo_init() != LZO_E_OK) {
        PyErr_SetString(PyExc_ImportError, "lzo_init() failed");
        return NULL;
    }
    static const int kinds[] = {
        KIND_NONE, KIND_ZLIB, KIND_LZO,
#ifdef HAVE_SNAPPY
        KIND_SNAPPY,
#endif
#ifdef HAVE_ZSTD
        KIND_ZSTD,
#endif
    };
    const Py_ssize_t n = sizeof(kinds) / sizeof(kinds[0]);
    PyObject *m = PyModule_Create(&module);
    PyObject *known = PyTuple_New(n); /* the kinds this build compresses (flag values) */
    for (Py_ssize_t i = 0; known != NULL && i < n; i++) {
        PyObject *value = PyLong_FromLong(kinds[i]);
        if (value == NULL)
            Py_CLEAR(known);
        else
            PyTuple_SET_ITEM(known, i, value);
    }
    if (m == NULL || known == NULL || PyModule_AddObject(m, "KINDS", known) < 0) {
        Py_XDECREF(known);
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}
