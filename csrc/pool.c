/* Pooling kernels (see pool.h): one pass over each window, channels innermost. */
#include <limits.h>
#include <string.h>
#include "pool.h"
#include "activations.h"

static long prod3(const long s[3]) { return s[0] * s[1] * s[2]; }

int pl_pool_geom_valid(const pl_pool_geom *g) {
    if (g->batch < 0 || g->channels <= 0) return 0;
    for (int a = 0; a < 3; a++) {
        if (g->in_size[a] <= 0 || g->out_size[a] <= 0 || g->window[a] <= 0 ||
            g->stride[a] <= 0 || g->pad[a] < 0 || g->pad[a] >= g->window[a])
            return 0;
        if ((g->out_size[a] - 1) * g->stride[a] - g->pad[a] >= g->in_size[a]) return 0;
    }
    return 1;
}

/* The clipped input range [lo[a], hi[a]) of output position o (3 coordinates). */
static void window_range(const pl_pool_geom *g, const long o[3], long lo[3], long hi[3]) {
    for (int a = 0; a < 3; a++) {
        long start = o[a] * g->stride[a] - g->pad[a];
        long end = start + g->window[a];
        lo[a] = start < 0 ? 0 : start;
        hi[a] = end > g->in_size[a] ? g->in_size[a] : end;
    }
}

static void output_coords(const pl_pool_geom *g, long pos, long o[3]) {
    o[0] = pos / (g->out_size[1] * g->out_size[2]);
    o[1] = pos / g->out_size[2] % g->out_size[1];
    o[2] = pos % g->out_size[2];
}

static long input_offset(const pl_pool_geom *g, long i0, long i1, long i2) {
    return ((i0 * g->in_size[1] + i1) * g->in_size[2] + i2) * g->channels;
}

typedef void (*keep_max_fn)(long c_n, const float *restrict src, int offset,
                            float *restrict best, int *restrict arg);

/* best, arg (c) = src where src > best or src is NaN (offset + c its index), so a NaN
 * anywhere in the window wins, as in numpy and Keras: a select that compilers
 * vectorise when blends of mixed types exist (AVX2), scalar otherwise. */
static inline __attribute__((always_inline))
void keep_max_body(long c_n, const float *restrict src, int offset, float *restrict best,
                   int *restrict arg) {
    for (long c = 0; c < c_n; c++) {
        float v = src[c], b = best[c];
        int take = (v > b) | (v != v);
        best[c] = take ? v : b;
        arg[c] = take ? offset + (int)c : arg[c];
    }
}

static void keep_max_generic(long c_n, const float *restrict src, int offset,
                             float *restrict best, int *restrict arg) {
    keep_max_body(c_n, src, offset, best, arg);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2")))
static void keep_max_avx2(long c_n, const float *restrict src, int offset,
                          float *restrict best, int *restrict arg) {
    keep_max_body(c_n, src, offset, best, arg);
}
#endif

static keep_max_fn keep_max_for(int isa) {
#if defined(__x86_64__) || defined(__i386__)
    if (isa >= PL_ISA_AVX2) return keep_max_avx2;
#endif
    (void)isa;
    return keep_max_generic;
}

void pl_max_pool_forward(const pl_ctx *ctx, const pl_pool_geom *g, const float *x,
                         float *y, int *argmax) {
    long out_spatial = prod3(g->out_size), in_image = prod3(g->in_size) * g->channels;
    long rows = g->batch * out_spatial, c_n = g->channels;
    keep_max_fn keep_max = keep_max_for(ctx->isa);
    int nt = pl_elementwise_threads(ctx, rows * c_n * prod3(g->window));
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long r = 0; r < rows; r++) {
        long o[3], lo[3], hi[3];
        output_coords(g, r % out_spatial, o);
        window_range(g, o, lo, hi);
        const float *x_image = x + r / out_spatial * in_image;
        float *y_row = y + r * c_n;          // (channels)
        int *arg_row = argmax + r * c_n;
        int first = (int)input_offset(g, lo[0], lo[1], lo[2]);
        for (long c = 0; c < c_n; c++) {
            y_row[c] = x_image[first + c];
            arg_row[c] = first + (int)c;
        }
        for (long i0 = lo[0]; i0 < hi[0]; i0++)
            for (long i1 = lo[1]; i1 < hi[1]; i1++)
                for (long i2 = lo[2]; i2 < hi[2]; i2++) {
                    int offset = (int)input_offset(g, i0, i1, i2);
                    if (offset != first) keep_max(c_n, x_image + offset, offset, y_row, arg_row);
                }
    }
}

/* Position in `index` (n entries) of the first entry outside [0, bound), or LONG_MAX. */
static long first_out_of_range(long n, const int *index, long bound) {
    for (long j = 0; j < n; j++)
        if (index[j] < 0 || index[j] >= bound) return j;
    return LONG_MAX;
}

long pl_max_pool_backward(const pl_ctx *ctx, const pl_pool_geom *g, const float *dy,
                          const int *argmax, float *dx) {
    long out_image = prod3(g->out_size) * g->channels, in_image = prod3(g->in_size) * g->channels;
    long first_bad = LONG_MAX;
    int nt = pl_elementwise_threads(ctx, g->batch * (in_image + out_image));
    /* Every thread checks the argmax of the images it will scatter; the loop's closing
       barrier completes the check before any thread writes dx. */
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        #pragma omp for schedule(static) reduction(min:first_bad)
        for (long n = 0; n < g->batch; n++) {
            long bad = first_out_of_range(out_image, argmax + n * out_image, in_image);
            if (bad != LONG_MAX && n * out_image + bad < first_bad) first_bad = n * out_image + bad;
        }
        if (first_bad == LONG_MAX) {
            #pragma omp for schedule(static)
            for (long n = 0; n < g->batch; n++) {
                float *dx_image = dx + n * in_image;          // (in..., channels)
                const int *arg_image = argmax + n * out_image;
                const float *dy_image = dy + n * out_image;   // (out..., channels)
                memset(dx_image, 0, in_image * sizeof(float));
                for (long j = 0; j < out_image; j++) dx_image[arg_image[j]] += dy_image[j];
            }
        }
    }
    return first_bad == LONG_MAX ? -1 : first_bad;
}

/* Number of non-padded positions in the window [lo, hi). */
static long window_count(const long lo[3], const long hi[3]) {
    return (hi[0] - lo[0]) * (hi[1] - lo[1]) * (hi[2] - lo[2]);
}

void pl_avg_pool_forward(const pl_ctx *ctx, const pl_pool_geom *g, const float *x, float *y) {
    long out_spatial = prod3(g->out_size), in_image = prod3(g->in_size) * g->channels;
    long rows = g->batch * out_spatial, c_n = g->channels;
    int nt = pl_elementwise_threads(ctx, rows * c_n * prod3(g->window));
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long r = 0; r < rows; r++) {
        long o[3], lo[3], hi[3];
        output_coords(g, r % out_spatial, o);
        window_range(g, o, lo, hi);
        const float *x_image = x + r / out_spatial * in_image;
        float *y_row = y + r * c_n;
        memset(y_row, 0, c_n * sizeof(float));
        for (long i0 = lo[0]; i0 < hi[0]; i0++)
            for (long i1 = lo[1]; i1 < hi[1]; i1++)
                for (long i2 = lo[2]; i2 < hi[2]; i2++) {
                    const float *src = x_image + input_offset(g, i0, i1, i2);
                    for (long c = 0; c < c_n; c++) y_row[c] += src[c];
                }
        float inv_count = 1.0f / (float)window_count(lo, hi);
        for (long c = 0; c < c_n; c++) y_row[c] *= inv_count;
    }
}

void pl_avg_pool_backward(const pl_ctx *ctx, const pl_pool_geom *g, const float *dy, float *dx) {
    long out_spatial = prod3(g->out_size), in_image = prod3(g->in_size) * g->channels;
    long c_n = g->channels;
    int nt = pl_elementwise_threads(ctx, g->batch * in_image * prod3(g->window));
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long n = 0; n < g->batch; n++) {
        float *dx_image = dx + n * in_image;
        memset(dx_image, 0, in_image * sizeof(float));
        for (long pos = 0; pos < out_spatial; pos++) {
            long o[3], lo[3], hi[3];
            output_coords(g, pos, o);
            window_range(g, o, lo, hi);
            const float *dy_row = dy + (n * out_spatial + pos) * c_n;
            float inv_count = 1.0f / (float)window_count(lo, hi);
            for (long i0 = lo[0]; i0 < hi[0]; i0++)
                for (long i1 = lo[1]; i1 < hi[1]; i1++)
                    for (long i2 = lo[2]; i2 < hi[2]; i2++) {
                        float *dst = dx_image + input_offset(g, i0, i1, i2);
                        for (long c = 0; c < c_n; c++) dst[c] += dy_row[c] * inv_count;
                    }
        }
    }
}
