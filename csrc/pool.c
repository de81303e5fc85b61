/* Pooling kernels (see pool.h): one pass over each window, channels innermost. */
#include <limits.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
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

/* The clipped input range [lo, hi) along axis a of output position o. */
static void axis_range(const pl_pool_geom *g, int a, long o, long *lo, long *hi) {
    long start = o * g->stride[a] - g->pad[a], end = start + g->window[a];
    *lo = start < 0 ? 0 : start;
    *hi = end > g->in_size[a] ? g->in_size[a] : end;
}

/* The clipped input range [lo[a], hi[a]) of output position o (3 coordinates). */
static void window_range(const pl_pool_geom *g, const long o[3], long lo[3], long hi[3]) {
    for (int a = 0; a < 3; a++) axis_range(g, a, o[a], &lo[a], &hi[a]);
}

static void output_coords(const pl_pool_geom *g, long pos, long o[3]) {
    o[0] = pos / (g->out_size[1] * g->out_size[2]);
    o[1] = pos / g->out_size[2] % g->out_size[1];
    o[2] = pos % g->out_size[2];
}

static long input_offset(const pl_pool_geom *g, long i0, long i1, long i2) {
    return ((i0 * g->in_size[1] + i1) * g->in_size[2] + i2) * g->channels;
}

/* best (c) = src where src > best or src is NaN, so a NaN anywhere in the window wins,
 * as in numpy and Keras; arg (unless NULL) = offset + c where it took src.  Selects that
 * compilers vectorise when blends of mixed types exist (AVX2). */
static inline __attribute__((always_inline))
void keep_max(long c_n, const float *restrict src, int offset, float *restrict best,
              int *restrict arg) {
    if (arg == NULL) {
        for (long c = 0; c < c_n; c++) {
            float v = src[c], b = best[c];
            best[c] = (v > b) | (v != v) ? v : b;
        }
        return;
    }
    for (long c = 0; c < c_n; c++) {
        float v = src[c], b = best[c];
        int take = (v > b) | (v != v);
        best[c] = take ? v : b;
        arg[c] = take ? offset + (int)c : arg[c];
    }
}

/* One output line of an image: positions (o0, o1, 0..out_size[2]) of y_line (out_size[2],
 * channels), over input rows [lo0, hi0) x [lo1, hi1); arg_line likewise, or NULL.  The
 * image's element at offset i is read at x_part[i - skip] (x_part holds the image from
 * offset skip on); argmax offsets count from the image's start. */
typedef void (*max_line_fn)(const pl_pool_geom *g, const float *x_part, long skip,
                            const long lo[2], const long hi[2], float *y_line, int *arg_line);

static inline __attribute__((always_inline))
void max_line_body(const pl_pool_geom *g, const float *x_part, long skip, const long lo[2],
                   const long hi[2], float *y_line, int *arg_line) {
    long c_n = g->channels;
    for (long o2 = 0; o2 < g->out_size[2]; o2++) {
        long lo2, hi2;
        axis_range(g, 2, o2, &lo2, &hi2);
        float *best = y_line + o2 * c_n;     // (channels)
        int *arg = arg_line ? arg_line + o2 * c_n : NULL;
        int first = (int)input_offset(g, lo[0], lo[1], lo2);
        memcpy(best, x_part + (first - skip), c_n * sizeof(float));
        if (arg)
            for (long c = 0; c < c_n; c++) arg[c] = first + (int)c;
        for (long i0 = lo[0]; i0 < hi[0]; i0++)
            for (long i1 = lo[1]; i1 < hi[1]; i1++)
                for (long i2 = lo2; i2 < hi2; i2++) {
                    int offset = (int)input_offset(g, i0, i1, i2);
                    if (offset != first)
                        keep_max(c_n, x_part + (offset - skip), offset, best, arg);
                }
    }
}

static void max_line_generic(const pl_pool_geom *g, const float *x_part, long skip,
                             const long lo[2], const long hi[2], float *y_line, int *arg_line) {
    max_line_body(g, x_part, skip, lo, hi, y_line, arg_line);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2")))
static void max_line_avx2(const pl_pool_geom *g, const float *x_part, long skip,
                          const long lo[2], const long hi[2], float *y_line, int *arg_line) {
    max_line_body(g, x_part, skip, lo, hi, y_line, arg_line);
}

/* The maxima and argmax of `blocks` blocks of 8 channels from c0 of output position o2,
 * each block's max and argmax in registers over the window, visited in max_line_body's
 * order with keep_max's comparisons (a larger value or a NaN takes over), so maxima and
 * argmax are the same.  The blocks are independent chains, so their compares and
 * blends overlap. */
static inline __attribute__((always_inline, target("avx2")))
void max_blocks_avx2(int blocks, const pl_pool_geom *g, const float *x_part, long skip,
                     const long lo[2], const long hi[2], long lo2, long hi2, long c0,
                     float *y_pos, int *arg_pos) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int first = (int)input_offset(g, lo[0], lo[1], lo2) + (int)c0;
    __m256 best[4], arg[4];
    for (int b = 0; b < blocks; b++) {
        best[b] = _mm256_loadu_ps(x_part + (first - skip) + 8 * b);   // (8 channels)
        arg[b] = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_set1_epi32(first + 8 * b), lanes));
    }
    for (long i0 = lo[0]; i0 < hi[0]; i0++)
        for (long i1 = lo[1]; i1 < hi[1]; i1++)
            for (long i2 = lo2; i2 < hi2; i2++) {
                int offset = (int)input_offset(g, i0, i1, i2) + (int)c0;
                if (offset == first) continue;
                for (int b = 0; b < blocks; b++) {
                    __m256 v = _mm256_loadu_ps(x_part + (offset - skip) + 8 * b);
                    __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, best[b], _CMP_GT_OQ),
                                               _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                    __m256 here = _mm256_castsi256_ps(
                        _mm256_add_epi32(_mm256_set1_epi32(offset + 8 * b), lanes));
                    best[b] = _mm256_blendv_ps(best[b], v, take);
                    arg[b] = _mm256_blendv_ps(arg[b], here, take);
                }
            }
    for (int b = 0; b < blocks; b++) {
        _mm256_storeu_ps(y_pos + c0 + 8 * b, best[b]);
        if (arg_pos)
            _mm256_storeu_si256((__m256i *)(arg_pos + c0 + 8 * b), _mm256_castps_si256(arg[b]));
    }
}

/* max_line_body for channels a multiple of 8: four blocks of 8 at a time, then one. */
__attribute__((target("avx2")))
static void max_line_blocks_avx2(const pl_pool_geom *g, const float *x_part, long skip,
                                 const long lo[2], const long hi[2], float *y_line,
                                 int *arg_line) {
    long c_n = g->channels;
    for (long o2 = 0; o2 < g->out_size[2]; o2++) {
        long lo2, hi2, c0 = 0;
        axis_range(g, 2, o2, &lo2, &hi2);
        float *y_pos = y_line + o2 * c_n;
        int *arg_pos = arg_line ? arg_line + o2 * c_n : NULL;
        for (; c0 + 32 <= c_n; c0 += 32)
            max_blocks_avx2(4, g, x_part, skip, lo, hi, lo2, hi2, c0, y_pos, arg_pos);
        for (; c0 < c_n; c0 += 8)
            max_blocks_avx2(1, g, x_part, skip, lo, hi, lo2, hi2, c0, y_pos, arg_pos);
    }
}
#endif

static max_line_fn max_line_for(int isa, long channels) {
#if defined(__x86_64__) || defined(__i386__)
    if (isa >= PL_ISA_AVX2) return channels % 8 == 0 ? max_line_blocks_avx2 : max_line_avx2;
#endif
    (void)isa;
    (void)channels;
    return max_line_generic;
}

/* The input rows [lo, hi) (axes 0 and 1) of output line o01 (flat (o0, o1)). */
static void line_rows(const pl_pool_geom *g, long o01, long lo[2], long hi[2]) {
    axis_range(g, 0, o01 / g->out_size[1], &lo[0], &hi[0]);
    axis_range(g, 1, o01 % g->out_size[1], &lo[1], &hi[1]);
}

void pl_max_pool_forward(const pl_ctx *ctx, const pl_pool_geom *g, const float *x,
                         float *y, int *argmax) {
    long lines_per_image = g->out_size[0] * g->out_size[1];
    long in_image = prod3(g->in_size) * g->channels, line = g->out_size[2] * g->channels;
    max_line_fn max_line = max_line_for(ctx->isa, g->channels);
    int nt = pl_elementwise_threads(ctx, g->batch * prod3(g->out_size) * g->channels *
                                             prod3(g->window));
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long l = 0; l < g->batch * lines_per_image; l++) {
        long lo[2], hi[2];
        line_rows(g, l % lines_per_image, lo, hi);
        max_line(g, x + l / lines_per_image * in_image, 0, lo, hi, y + l * line,
                 argmax ? argmax + l * line : NULL);
    }
}

void pl_max_pool_line(const pl_ctx *ctx, const pl_pool_geom *g, long o01, const float *x_part,
                      long skip, float *y_line, int *arg_line) {
    long lo[2], hi[2];
    line_rows(g, o01, lo, hi);
    max_line_for(ctx->isa, g->channels)(g, x_part, skip, lo, hi, y_line, arg_line);
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
