/* jpegrows: decode a chosen range of rows of a baseline YCbCr JPEG as RGBX.
 *
 * Why this exists: libjpeg decodes one image on one core. Two RowDecoders over
 * the same bytes, one for the top rows and one for the rest, decode an image
 * on two cores: the second skips the top rows with jpeg_skip_scanlines, which
 * only entropy-decodes them (no IDCT, upsampling or colour conversion).
 * Pillow uses libjpeg-turbo too but cannot start a decode part-way down.
 *
 * The decoder refuses (ValueError) anything but a 3-component YCbCr baseline
 * or extended-sequential Huffman JPEG, and reports any libjpeg warning
 * (corrupt or truncated data) as a ValueError too: the caller then decodes
 * with Pillow, so odd files keep Pillow's behaviour exactly.
 *
 * The GIL is released while libjpeg runs; one decoder must not be used by
 * two threads at once (it refuses, rather than corrupting its state).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
    int warned;
} ErrorManager;

typedef struct {
    PyObject_HEAD
    struct jpeg_decompress_struct cinfo;
    ErrorManager err;
    Py_buffer data;
    int has_data;
    int has_cinfo;
    int busy;
    int ready;
    JDIMENSION width, height;
    JDIMENSION next; /* the next output row this decoder produces */
    JDIMENSION stop; /* one past the last row it produces */
} RowDecoder;

static void on_error(j_common_ptr cinfo) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo, int level) {
    ErrorManager *err = (ErrorManager *)cinfo->err;
    if (level < 0 && !err->warned) { /* a warning: corrupt data that libjpeg worked around */
        (*cinfo->err->format_message)(cinfo, err->message);
        err->warned = 1;
    }
}

static void release(RowDecoder *self) {
    if (self->has_cinfo) {
        jpeg_destroy_decompress(&self->cinfo);
        self->has_cinfo = 0;
    }
    if (self->has_data) {
        PyBuffer_Release(&self->data);
        self->has_data = 0;
    }
}

/* The libjpeg calls, run without the GIL. setjmp is taken here, inside the
 * GIL-free region, so that a longjmp from on_error never skips reacquiring it.
 * Each returns 0 on success, else 1 with the reason in err.message. */
static int start_rows(RowDecoder *self, JDIMENSION first) {
    if (setjmp(self->err.jump))
        return 1;
    jpeg_create_decompress(&self->cinfo); /* cinfo.mem is NULL until this succeeds: destroy is safe */
    self->has_cinfo = 1;
    jpeg_mem_src(&self->cinfo, (const unsigned char *)self->data.buf, (unsigned long)self->data.len);
    if (jpeg_read_header(&self->cinfo, TRUE) != JPEG_HEADER_OK) {
        strcpy(self->err.message, "no image in the data");
        return 1;
    }
    if (self->cinfo.num_components != 3 || self->cinfo.jpeg_color_space != JCS_YCbCr
            || self->cinfo.progressive_mode || self->cinfo.arith_code) {
        strcpy(self->err.message, "only 3-component YCbCr sequential Huffman JPEGs are decoded by rows");
        return 1;
    }
    if (self->cinfo.image_width != self->width || self->cinfo.image_height != self->height) {
        snprintf(self->err.message, JMSG_LENGTH_MAX, "the JPEG is %ux%u, not %ux%u",
                 self->cinfo.image_width, self->cinfo.image_height, self->width, self->height);
        return 1;
    }
    self->cinfo.out_color_space = JCS_EXT_RGBX;
    jpeg_start_decompress(&self->cinfo);
    if (first > 0 && jpeg_skip_scanlines(&self->cinfo, first) != first) {
        strcpy(self->err.message, "could not skip to the first row");
        return 1;
    }
    return self->err.warned;
}

/* Adds each decoded row's R, G and B samples to counts[0..255], [256..511],
 * [512..767] while the row is still in cache: counting it again later, from
 * memory, costs about a third of the decode. */
static void count_row(const unsigned char *row, JDIMENSION width, long long *counts) {
    JDIMENSION x;
    for (x = 0; x < width; x++, row += 4) {
        counts[row[0]]++;
        counts[256 + row[1]]++;
        counts[512 + row[2]]++;
    }
}

static int read_rows(RowDecoder *self, unsigned char *out, JDIMENSION rows, JDIMENSION *done,
                     long long *counts) {
    JDIMENSION stride = self->cinfo.output_width * 4;
    if (setjmp(self->err.jump))
        return 1;
    while (*done < rows && !self->err.warned) {
        JSAMPROW row = (JSAMPROW)(out + (size_t)*done * stride);
        JDIMENSION got = jpeg_read_scanlines(&self->cinfo, &row, 1);
        if (got == 0) {
            strcpy(self->err.message, "the decoder stopped early");
            return 1;
        }
        if (counts != NULL)
            count_row(row, self->cinfo.output_width, counts);
        *done += got;
    }
    return self->err.warned;
}

static int RowDecoder_init(RowDecoder *self, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"data", "width", "height", "first", "stop", NULL};
    Py_buffer data;
    unsigned int width, height, first, stop;
    int failed;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*IIII", names, &data, &width, &height, &first, &stop))
        return -1;
    if (self->busy) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_RuntimeError, "decoder is in use by another thread");
        return -1;
    }
    release(self);
    self->data = data;
    self->has_data = 1;
    self->ready = 0;
    if (first >= stop || stop > height) {
        PyErr_Format(PyExc_ValueError, "rows %u..%u are not within a height of %u", first, stop, height);
        return -1;
    }
    self->width = width;
    self->height = height;
    self->cinfo.err = jpeg_std_error(&self->err.pub);
    self->err.pub.error_exit = on_error;
    self->err.pub.emit_message = on_message;
    self->err.warned = 0;
    self->err.message[0] = '\0';
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    failed = start_rows(self, first);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (failed) {
        PyErr_Format(PyExc_ValueError, "libjpeg: %s", self->err.message);
        return -1; /* release() (a later init, or dealloc) destroys cinfo */
    }
    self->next = first;
    self->stop = stop;
    self->ready = 1;
    return 0;
}

static PyObject *RowDecoder_read(RowDecoder *self, PyObject *args) {
    Py_buffer out, counts = {0};
    PyObject *counts_arg = Py_None;
    unsigned int rows;
    JDIMENSION done = 0, stride;
    int failed;
    const char *refused = NULL;
    if (!self->ready) {
        PyErr_SetString(PyExc_ValueError, "decoder is not ready");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "w*I|O", &out, &rows, &counts_arg))
        return NULL;
    if (counts_arg != Py_None && PyObject_GetBuffer(counts_arg, &counts, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    stride = self->cinfo.output_width * 4;
    if (rows > self->stop - self->next)
        rows = self->stop - self->next;
    if ((size_t)out.len < (size_t)rows * stride)
        refused = "the output buffer is too small for the rows asked";
    else if (counts.buf != NULL && (counts.len < (Py_ssize_t)(768 * sizeof(long long))
                                    || counts.itemsize != (Py_ssize_t)sizeof(long long)))
        refused = "counts must be a writable buffer of at least 768 int64";
    else if (self->busy)
        refused = "decoder is in use by another thread";
    if (refused != NULL) {
        PyBuffer_Release(&out);
        if (counts.buf != NULL)
            PyBuffer_Release(&counts);
        PyErr_Format(self->busy ? PyExc_RuntimeError : PyExc_ValueError, "%s (buffer holds %zd bytes)", refused,
                     out.len);
        return NULL;
    }
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    failed = read_rows(self, (unsigned char *)out.buf, rows, &done, (long long *)counts.buf);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    PyBuffer_Release(&out);
    if (counts.buf != NULL)
        PyBuffer_Release(&counts);
    self->next += done;
    if (failed) {
        self->ready = 0; /* a failed decoder produces nothing more */
        PyErr_Format(PyExc_ValueError, "libjpeg: %s", self->err.message);
        return NULL;
    }
    return PyLong_FromUnsignedLong(done);
}

static PyObject *RowDecoder_remaining(RowDecoder *self, void *closure) {
    return PyLong_FromUnsignedLong(self->ready ? self->stop - self->next : 0);
}

static void RowDecoder_dealloc(RowDecoder *self) {
    release(self); /* never busy here: a thread in read() holds a reference */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef RowDecoder_methods[] = {
    {"read", (PyCFunction)RowDecoder_read, METH_VARARGS,
     "read(out, rows, counts=None) -> int: decode up to `rows` more rows as RGBX into the writable buffer "
     "`out` and return how many; with `counts` (768 int64), add each row's R, G and B samples to "
     "counts[0:256], [256:512], [512:768]. Raises ValueError on corrupt data (including libjpeg warnings)."},
    {NULL},
};

static PyGetSetDef RowDecoder_getset[] = {
    {"remaining", (getter)RowDecoder_remaining, NULL, "rows still to decode", NULL},
    {NULL},
};

static PyTypeObject RowDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "jpegrows.RowDecoder",
    .tp_doc = "RowDecoder(data, width, height, first, stop): rows first..stop-1 of a JPEG, decoded as RGBX.",
    .tp_basicsize = sizeof(RowDecoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RowDecoder_init,
    .tp_dealloc = (destructor)RowDecoder_dealloc,
    .tp_methods = RowDecoder_methods,
    .tp_getset = RowDecoder_getset,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "jpegrows",
    "Decode a range of rows of a JPEG (libjpeg-turbo's jpeg_skip_scanlines), without the GIL.", -1, NULL,
};

PyMODINIT_FUNC PyInit_jpegrows(void) {
    PyObject *m;
    if (PyType_Ready(&RowDecoderType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&RowDecoderType);
    if (PyModule_AddObject(m, "RowDecoder", (PyObject *)&RowDecoderType) < 0) {
        Py_DECREF(&RowDecoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
