/* Convolution as GEMM over the unfolded inputs (see conv.h).
 *
 * The unfolded matrix `col` is (rows, groups * taps * cin_g): row r is one output
 * position, column g * taps * cin_g + t * cin_g + c holds input channel g * cin_g + c
 * under kernel tap t.  Group g's columns are then contiguous, and the kernel
 * w (taps, cin_g, cout) restricted to group g's output columns is the
 * (taps * cin_g, cout_g) matrix at w + g * cout_g with row stride cout.
 *
 * The forward never writes all of col: with few taps times channels the direct kernels
 * read the inputs in place (conv_direct.h); on AVX2, 3x3 stride-1 layers with enough
 * channels and tiles take the Winograd path (conv_winograd.h) and the others the
 * implicit-GEMM tiles (the tap micro-kernel); otherwise col is unfolded block by block
 * into each thread's cache.  On AVX2 the kernel gradient reads inputs and output
 * gradients in place too (the run micro-kernel), and a stride-1 data gradient is the
 * forward of the flipped kernel; otherwise the backward products unfold or fold col in
 * batch chunks. */
#include <stdlib.h>
#include <string.h>
#include "conv.h"
#include "conv_direct.h"
#include "conv_winograd.h"
#include "pool.h"
#include "activations.h"
#include "gemm.h"
#include "gemm_kernels.h"

/* Floats of unfolded rows per chunk: big enough for efficient GEMMs, small enough
 * to stay in the last-level cache between unfolding and multiplying. */
#define COL_BUDGET (1L << 20)
/* Floats of unfolded rows per block of the forward: one thread's block (256 KB) stays in
 * its L2 from unfolding to multiplying. */
#define BLOCK_COL_FLOATS (1L << 16)
/* Multiply-adds that count as one elementwise op when choosing threads: with
 * pl_elementwise_threads' 32768 ops per thread, 64^3 multiply-adds per thread. */
#define MACS_PER_ELEMENT_OP 8
/* Floats of dz per block of the bias gradient's column sums (16 KB, in L1). */
#define BIAS_BLOCK_FLOATS 4096

/* The direct path's limits: taps * cin, and the floats of one output line's patches
 * or output gradients (each a buffer on the stack of each thread); images per block
 * of weight-gradient partials. */
#define DIRECT_MAX_K 32
#define DIRECT_LINE_FLOATS 4096
#define DIRECT_IMAGE_BLOCK 8

typedef struct {
    long taps, cin_g, cout_g, k_g, k_all;   /* k_all = groups * k_g: width of col */
    long in_spatial, out_spatial;
    long images_per_chunk;
    int identity;                           /* 1x1 taps, unit stride, no pad: col = x */
} conv_plan;

static long prod3(const long s[3]) { return s[0] * s[1] * s[2]; }

int pl_conv_geom_valid(const pl_conv_geom *g) {
    if (g->batch < 0 || g->in_channels <= 0 || g->out_channels <= 0 || g->groups <= 0)
        return 0;
    if (g->in_channels % g->groups || g->out_channels % g->groups) return 0;
    for (int a = 0; a < 3; a++)
        if (g->in_size[a] <= 0 || g->out_size[a] <= 0 || g->kernel[a] <= 0 ||
            g->stride[a] <= 0 || g->dilation[a] <= 0 || g->pad[a] < 0)
            return 0;
    return 1;
}

static conv_plan make_plan(const pl_conv_geom *g) {
    conv_plan p;
    p.taps = prod3(g->kernel);
    p.cin_g = g->in_channels / g->groups;
    p.cout_g = g->out_channels / g->groups;
    p.k_g = p.taps * p.cin_g;
    p.k_all = g->groups * p.k_g;
    p.in_spatial = prod3(g->in_size);
    p.out_spatial = prod3(g->out_size);
    p.identity = p.taps == 1;
    for (int a = 0; a < 3; a++)
        if (g->stride[a] != 1 || g->pad[a] != 0 || g->in_size[a] != g->out_size[a])
            p.identity = 0;
    long per_image = p.out_spatial * p.k_all;
    p.images_per_chunk = per_image >= COL_BUDGET ? 1 : COL_BUDGET / per_image;
    if (p.images_per_chunk > g->batch) p.images_per_chunk = g->batch > 0 ? g->batch : 1;
    return p;
}

/* Input coordinate along axis a for output coordinate o and tap t (may be outside). */
static inline long input_coord(const pl_conv_geom *g, int a, long o, long t) {
    return o * g->stride[a] - g->pad[a] + t * g->dilation[a];
}

/* Output coordinate whose tap t reads input coordinate i along axis a, or -1. */
static inline long output_coord(const pl_conv_geom *g, int a, long i, long t) {
    long shifted = i + g->pad[a] - t * g->dilation[a];
    if (shifted < 0 || shifted % g->stride[a]) return -1;
    long o = shifted / g->stride[a];
    return o < g->out_size[a] ? o : -1;
}

/* Threads for a product of `macs` multiply-adds: one per 64^3 of them, as the GEMM
 * starts threads (a multiply-add is a few percent of an elementwise op's cost, and a
 * batch-1 layer's team would wait longer for its second thread than it saves). */
static int product_threads(const pl_ctx *ctx, long macs) {
    return pl_elementwise_threads(ctx, macs / MACS_PER_ELEMENT_OP);
}

static inline void copy_floats(long n, const float *src, float *dst) {
    for (long c = 0; c < n; c++) dst[c] = src[c];
}

static inline void add_floats(long n, const float *src, float *dst) {
    for (long c = 0; c < n; c++) dst[c] += src[c];
}

/* The outputs [*lo, *hi) along axis a whose tap t reads inside the input. */
static void inside_range(const pl_conv_geom *g, int a, long t, long *lo, long *hi) {
    long shift = g->pad[a] - t * g->dilation[a];   // input = o * stride - shift
    long first = shift > 0 ? (shift + g->stride[a] - 1) / g->stride[a] : 0;
    long end = (g->in_size[a] + shift + g->stride[a] - 1) / g->stride[a];
    *lo = first < g->out_size[a] ? first : g->out_size[a];
    *hi = end < g->out_size[a] ? end : g->out_size[a];
    if (*hi < *lo) *hi = *lo;
}

/* Rows [first, end) of one tap's columns (tap_col) in col_line set to zero. */
static void zero_tap_rows(const conv_plan *p, long groups, long first, long end, long tap_col,
                          float *col_line) {
    const long k_all = p->k_all, k_g = p->k_g, cin_g = p->cin_g;
    for (long o2 = first; o2 < end; o2++)
        for (long grp = 0; grp < groups; grp++)
            memset(col_line + o2 * k_all + tap_col + grp * k_g, 0, cin_g * sizeof(float));
}

/* One tap's columns of an output line: rows [0, out_size[2]) of col_line (row stride
 * k_all, tap columns at tap_col) from input line x_line, zeros where the tap reads
 * padding (or everywhere when the line itself is padding, x_line NULL).  Sizes are
 * copied to locals: the stores could otherwise alias them. */
static void unfold_tap(const pl_conv_geom *g, const conv_plan *p, long t2, long tap_col,
                       const float *x_line, float *col_line) {
    const long k_all = p->k_all, k_g = p->k_g, cin_g = p->cin_g, groups = g->groups;
    const long step = g->stride[2] * g->in_channels;   // input floats between outputs
    long lo = 0, hi = 0;
    if (x_line) inside_range(g, 2, t2, &lo, &hi);
    zero_tap_rows(p, groups, 0, lo, tap_col, col_line);
    if (hi > lo) {
        const float *src = x_line + input_coord(g, 2, lo, t2) * g->in_channels;
        float *dst = col_line + lo * k_all + tap_col;
        if (cin_g == 1 && groups == 1) {
            for (long o2 = lo; o2 < hi; o2++, src += step, dst += k_all) *dst = *src;
        } else {
            for (long o2 = lo; o2 < hi; o2++, src += step, dst += k_all)
                for (long grp = 0; grp < groups; grp++)
                    copy_floats(cin_g, src + grp * cin_g, dst + grp * k_g);
        }
    }
    zero_tap_rows(p, groups, hi, g->out_size[2], tap_col, col_line);
}

/* col_line (out_size[2], k_all): the rows of col for output line `line` (image, o0,
 * o1 counted from the image at x (images, in..., cin)). */
static void unfold_line(const pl_conv_geom *g, const conv_plan *p, long line,
                        const float *x, float *col_line) {
    long in_line = g->in_size[2] * g->in_channels;   // floats in one input line
    long o0 = line / g->out_size[1] % g->out_size[0], o1 = line % g->out_size[1];
    const float *x_image = x + line / (g->out_size[0] * g->out_size[1]) *
                               p->in_spatial * g->in_channels;
    long t = 0;
    for (long t0 = 0; t0 < g->kernel[0]; t0++)
        for (long t1 = 0; t1 < g->kernel[1]; t1++) {
            long i0 = input_coord(g, 0, o0, t0), i1 = input_coord(g, 1, o1, t1);
            int line_inside = i0 >= 0 && i0 < g->in_size[0] && i1 >= 0 && i1 < g->in_size[1];
            const float *x_line = line_inside ? x_image + (i0 * g->in_size[1] + i1) * in_line
                                              : NULL;
            for (long t2 = 0; t2 < g->kernel[2]; t2++, t++)
                unfold_tap(g, p, t2, t * p->cin_g, x_line, col_line);
        }
}

/* col (rows, k_all) for `images` images starting at x (images, in..., cin).  Work is
 * split by output line (image, o0, o1): the line's out_size[2] rows of col. */
static void unfold(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                   long images, const float *x, float *col) {
    long lines = images * g->out_size[0] * g->out_size[1];
    int nt = pl_elementwise_threads(ctx, lines * g->out_size[2] * p->k_all);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long line = 0; line < lines; line++)
        unfold_line(g, p, line, x, col + line * g->out_size[2] * p->k_all);
}

/* dx_line (in_size[2], cin) += one tap's columns (tap_col) of the output line dcol_line. */
static void fold_tap(const pl_conv_geom *g, const conv_plan *p, long t2, long tap_col,
                     const float *dcol_line, float *dx_line) {
    const long k_all = p->k_all, k_g = p->k_g, cin_g = p->cin_g, groups = g->groups;
    const long step = g->stride[2] * g->in_channels;
    long lo, hi;
    inside_range(g, 2, t2, &lo, &hi);
    if (hi <= lo) return;
    const float *src = dcol_line + lo * k_all + tap_col;
    float *dst = dx_line + input_coord(g, 2, lo, t2) * g->in_channels;
    for (long o2 = lo; o2 < hi; o2++, src += k_all, dst += step)
        for (long grp = 0; grp < groups; grp++)
            add_floats(cin_g, src + grp * k_g, dst + grp * cin_g);
}

/* dx (images, in..., cin) = the sum, over the col entries that read each input
 * element, of dcol (rows, k_all).  Work is split by input line (image, i0, i1), so
 * each dx element has one owner thread; its terms are added in tap order. */
static void fold(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                 long images, const float *dcol, float *dx) {
    long lines = images * g->in_size[0] * g->in_size[1];
    long in_line = g->in_size[2] * g->in_channels;
    int nt = pl_elementwise_threads(ctx, lines * in_line * p->taps);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long line = 0; line < lines; line++) {
        long image = line / (g->in_size[0] * g->in_size[1]);
        long i0 = line / g->in_size[1] % g->in_size[0], i1 = line % g->in_size[1];
        float *dx_line = dx + line * in_line;   // (in_size[2], cin)
        memset(dx_line, 0, in_line * sizeof(float));
        long t = 0;
        for (long t0 = 0; t0 < g->kernel[0]; t0++)
            for (long t1 = 0; t1 < g->kernel[1]; t1++, t += g->kernel[2]) {
                long o0 = output_coord(g, 0, i0, t0), o1 = output_coord(g, 1, i1, t1);
                if (o0 < 0 || o1 < 0) continue;
                const float *dcol_line = dcol + ((image * g->out_size[0] + o0) * g->out_size[1]
                                                 + o1) * g->out_size[2] * p->k_all;
                for (long t2 = 0; t2 < g->kernel[2]; t2++)
                    fold_tap(g, p, t2, (t + t2) * p->cin_g, dcol_line, dx_line);
            }
    }
}

/* y (rows, cout) = act(y + bias): relu and linear in vectorisable loops here, other
 * activations through pl_bias_act_forward. */
/* y (rows, cout) += bias (unless NULL), then relu when relu, on the calling thread. */
static void bias_relu_rows(long rows, long cout, float *y, const float *bias, int relu) {
    for (long r = 0; r < rows; r++) {
        float *row = y + r * cout;
        if (bias) add_floats(cout, bias, row);
        if (relu)
            for (long j = 0; j < cout; j++) row[j] = row[j] < 0.0f ? 0.0f : row[j];  // NaN stays
    }
}

static void bias_act(const pl_ctx *ctx, long rows, long cout, float *y, const float *bias,
                     int act, float alpha) {
    if (act != PL_ACT_RELU && act != PL_ACT_LINEAR) {
        pl_bias_act_forward(ctx, rows, cout, y, bias, act, alpha);
        return;
    }
    if (act == PL_ACT_LINEAR && !bias) return;
    int nt = pl_elementwise_threads(ctx, rows * cout);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long r = 0; r < rows; r++)
        bias_relu_rows(1, cout, y + r * cout, bias, act == PL_ACT_RELU);
}

/* dz rows [first, first + rows) = dy * act'(y), on the calling thread. */
static void output_gradient_rows(const pl_ctx *ctx, long first, long rows, long cout,
                                 const float *y, const float *dy, int act, float alpha,
                                 float *dz) {
    const long begin = first * cout, end = (first + rows) * cout;
    if (act == PL_ACT_RELU) {
        // dy * relu'(y) as pl_act_backward computes it (inf * 0 is NaN, as in the Keras
        // backends); branch-free, so it vectorises
        for (long i = begin; i < end; i++) dz[i] = dy[i] * (y[i] > 0.0f ? 1.0f : 0.0f);
    } else if (act != PL_ACT_LINEAR) {
        pl_ctx serial = *ctx;
        serial.n_threads = 1;
        pl_act_backward(&serial, rows, cout, y + begin, dy + begin, dz + begin, act, alpha);
    } else if (dz != dy) {
        memcpy(dz + begin, dy + begin, (size_t)(end - begin) * sizeof(float));
    }
}

/* dz in row blocks of about BIAS_BLOCK_FLOATS, each block's column sums taken while it is
 * in L1 into a partial of its own; dbias += the partials in block order, so the sums do
 * not depend on the thread count. */
void pl_conv_bias_act_backward(const pl_ctx *ctx, long rows, long cout, const float *y,
                               const float *dy, int act, float alpha, float *dz, float *dbias) {
    const long block_rows = cout >= BIAS_BLOCK_FLOATS ? 1 : BIAS_BLOCK_FLOATS / cout;
    const long blocks = (rows + block_rows - 1) / block_rows;
    float *partials = dbias ? calloc((size_t)(blocks * cout), sizeof(float)) : NULL;
    int nt = pl_elementwise_threads(ctx, rows * cout);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long b = 0; b < blocks; b++) {
        long first = b * block_rows, count = rows - first < block_rows ? rows - first : block_rows;
        output_gradient_rows(ctx, first, count, cout, y, dy, act, alpha, dz);
        if (partials) pl_column_sums(count, cout, 0, cout, dz + first * cout, partials + b * cout);
    }
    if (partials) {
        for (long b = 0; b < blocks; b++)
            for (long c = 0; c < cout; c++) dbias[c] += partials[b * cout + c];
    } else if (dbias) {   // no memory for the partials: a second pass over dz
        pl_bias_grad(ctx, rows, cout, dz, dbias, 1);
    }
    free(partials);
}

static float *alloc_col(const conv_plan *p) {
    if (p->identity) return NULL;
    return malloc((size_t)(p->images_per_chunk * p->out_spatial * p->k_all) * sizeof(float));
}

/* ---- direct path (conv_direct.h) ------------------------------------------------ */

static int direct_enabled = 1;

/* Tests only, between calls: 0 sends every geometry through im2col + GEMM. */
void pl_conv_set_direct(int enabled) { direct_enabled = enabled; }

/* Few taps times channels, one group, and an output line's patches and output
 * gradients fitting the stack buffers. */
static int direct_applies(const pl_conv_geom *g, const conv_plan *p) {
    return direct_enabled && g->groups == 1 && !p->identity && p->k_all <= DIRECT_MAX_K &&
           g->out_size[2] * p->k_all <= DIRECT_LINE_FLOATS &&
           g->out_size[2] * g->out_channels <= DIRECT_LINE_FLOATS;
}

static const pl_conv_direct *direct_kernels(const pl_ctx *ctx) {
#ifdef PL_HAVE_X86_KERNELS
    if (ctx->isa >= PL_ISA_AVX512) return &pl_conv_direct_avx512;
#endif
    return ctx->isa >= PL_ISA_AVX2 ? &pl_conv_direct_avx2 : &pl_conv_direct_generic;
}

/* Where the inputs of one output line are read: the patch entry k (tap, channel) of
 * output position o2 is src[j][(o2 - begin) * step] for tap j, which multiplies kernel
 * row k = row[j]. Positions [begin, end) read inside the input for every tap; the
 * range is empty when a tap reads a padding line (its zeros are then gathered, so
 * that 0 * inf or NaN gives NaN as in the GEMM path). */
typedef struct {
    long begin, end, step, taps;
    const float *src[DIRECT_MAX_K];
    long row[DIRECT_MAX_K];
} line_taps;

/* Where output line `line` reads the inputs: for kernel tap t (t0, t1, t2 in order),
 * the input channels of position begin start at src[t], and of position begin + i at
 * src[t] + i * stride * cin.  [begin, end) are the positions every tap reads inside
 * the input; empty when a tap reads a padding line. */
static void line_tap_pointers(const pl_conv_geom *g, const conv_plan *p, long line,
                              const float *x, const float **src, long *begin, long *end) {
    const long cin = g->in_channels, in_line = g->in_size[2] * cin;
    const long o0 = line / g->out_size[1] % g->out_size[0], o1 = line % g->out_size[1];
    const float *x_image = x + line / (g->out_size[0] * g->out_size[1]) * p->in_spatial * cin;
    *begin = 0;
    *end = g->out_size[2];
    for (long t2 = 0; t2 < g->kernel[2]; t2++) {
        long lo, hi;
        inside_range(g, 2, t2, &lo, &hi);
        if (lo > *begin) *begin = lo;
        if (hi < *end) *end = hi;
    }
    if (*end < *begin) *end = *begin;
    long t = 0;
    for (long t0 = 0; t0 < g->kernel[0]; t0++)
        for (long t1 = 0; t1 < g->kernel[1]; t1++) {
            long i0 = input_coord(g, 0, o0, t0), i1 = input_coord(g, 1, o1, t1);
            if (i0 < 0 || i0 >= g->in_size[0] || i1 < 0 || i1 >= g->in_size[1]) {
                *end = *begin;   // a padding line: every position is gathered
                return;
            }
            const float *x_line = x_image + (i0 * g->in_size[1] + i1) * in_line;
            for (long t2 = 0; t2 < g->kernel[2]; t2++)
                src[t++] = x_line + input_coord(g, 2, *begin, t2) * cin;
        }
}

static void find_line_taps(const pl_conv_geom *g, const conv_plan *p, long line,
                           const float *x, line_taps *lt) {
    const float *tap_src[DIRECT_MAX_K];   // taps <= taps * cin <= DIRECT_MAX_K
    line_tap_pointers(g, p, line, x, tap_src, &lt->begin, &lt->end);
    lt->step = g->stride[2] * g->in_channels;
    lt->taps = 0;
    if (lt->end == lt->begin) return;
    for (long t = 0; t < p->taps; t++)
        for (long c = 0; c < g->in_channels; c++, lt->taps++) {
            lt->src[lt->taps] = tap_src[t] + c;
            lt->row[lt->taps] = lt->taps;
        }
}

/* patches (end - begin, k_all): the patch rows of positions [begin, end) of output
 * line `line` (zeros where a tap reads padding), for the edges of a padded line. */
static void gather_rows(const pl_conv_geom *g, const conv_plan *p, long line, long begin,
                        long end, const float *x, float *patches) {
    const long cin = g->in_channels, in_line = g->in_size[2] * cin;
    const long o0 = line / g->out_size[1] % g->out_size[0], o1 = line % g->out_size[1];
    const float *x_image = x + line / (g->out_size[0] * g->out_size[1]) * p->in_spatial * cin;
    float *dst = patches;
    for (long o2 = begin; o2 < end; o2++)
        for (long t0 = 0; t0 < g->kernel[0]; t0++)
            for (long t1 = 0; t1 < g->kernel[1]; t1++) {
                long i0 = input_coord(g, 0, o0, t0), i1 = input_coord(g, 1, o1, t1);
                int line_inside = i0 >= 0 && i0 < g->in_size[0] && i1 >= 0 && i1 < g->in_size[1];
                for (long t2 = 0; t2 < g->kernel[2]; t2++, dst += cin) {
                    long i2 = input_coord(g, 2, o2, t2);
                    if (line_inside && i2 >= 0 && i2 < g->in_size[2])
                        copy_floats(cin, x_image + (i0 * g->in_size[1] + i1) * in_line + i2 * cin, dst);
                    else
                        memset(dst, 0, cin * sizeof(float));
                }
            }
}

/* The taps of gathered patch rows: entry k of row r at patches[r * k_all + k]. */
static void patch_taps(const conv_plan *p, const float *patches, long begin, long end,
                       line_taps *lt) {
    lt->begin = begin;
    lt->end = end;
    lt->step = p->k_all;
    lt->taps = p->k_all;
    for (long k = 0; k < p->k_all; k++) {
        lt->src[k] = patches + k;
        lt->row[k] = k;
    }
}

/* The three parts of output line `line`: positions read in place, then the edges
 * before and after them from gathered patches (together at most L rows of patches). */
static void line_parts(const pl_conv_geom *g, const conv_plan *p, long line, const float *x,
                       float *patches, line_taps parts[3]) {
    const long L = g->out_size[2];
    find_line_taps(g, p, line, x, &parts[0]);
    float *right = patches + parts[0].begin * p->k_all;   // after the left edge's rows
    gather_rows(g, p, line, 0, parts[0].begin, x, patches);
    patch_taps(p, patches, 0, parts[0].begin, &parts[1]);
    gather_rows(g, p, line, parts[0].end, L, x, right);
    patch_taps(p, right, parts[0].end, L, &parts[2]);
}

/* y rows [begin, end) of one line from its taps. */
static void forward_part(const pl_conv_direct *kernels, long cout, const line_taps *lt,
                         const float *w, const float *bias, int relu, float *y_line) {
    if (lt->end > lt->begin)
        kernels->forward_rows(lt->end - lt->begin, lt->taps, lt->src, lt->step, lt->row, w,
                              cout, bias, relu, y_line + lt->begin * cout);
}

/* y_line (L, cout) = act(conv(x, w) + bias) of output line `line` (the flat (image, o0,
 * o1) index): the inner positions straight from x, the edges of a padded line through
 * gathered patches. */
static void direct_line(const pl_conv_direct *kernels, const pl_conv_geom *g,
                        const conv_plan *p, long line, const float *x, const float *w,
                        const float *bias, int relu, float *y_line) {
    float patches[DIRECT_LINE_FLOATS];   // the two edges' patch rows
    line_taps parts[3];
    line_parts(g, p, line, x, patches, parts);
    for (int part = 0; part < 3; part++)
        forward_part(kernels, g->out_channels, &parts[part], w, bias, relu, y_line);
}

/* y (n, out..., cout) = act(conv(x, w) + bias), one output line per task. */
static void direct_forward(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                           const float *x, const float *w, const float *bias, int act,
                           float alpha, float *y) {
    const pl_conv_direct *kernels = direct_kernels(ctx);
    const int relu = act == PL_ACT_RELU, fused = relu || act == PL_ACT_LINEAR;
    const long lines = g->batch * g->out_size[0] * g->out_size[1], L = g->out_size[2];
    const long cout = g->out_channels;
    int nt = product_threads(ctx, lines * L * p->k_all * cout);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long line = 0; line < lines; line++)
        direct_line(kernels, g, p, line, x, w, bias, relu, y + line * L * cout);
    if (!fused) pl_bias_act_forward(ctx, lines * L, cout, y, NULL, act, alpha);
}

/* acc (k_all, cout) += the line's patches^T @ dz (dz (L, cout) of the line). */
static void weight_part(const pl_conv_direct *kernels, long cout, const line_taps *lt,
                        const float *dz_line, float *acc) {
    if (lt->end > lt->begin)
        kernels->weight_rows(lt->end - lt->begin, lt->taps, lt->src, lt->step, lt->row,
                             cout, dz_line + lt->begin * cout, acc);
}

/* acc (k_all, cout) += the patches of output line `line` ^T @ dz_line (L, cout). */
static void direct_weight_line(const pl_conv_direct *kernels, const pl_conv_geom *g,
                               const conv_plan *p, long line, const float *x,
                               const float *dz_line, float *acc) {
    float patches[DIRECT_LINE_FLOATS];   // the two edges' patch rows
    line_taps parts[3];
    line_parts(g, p, line, x, patches, parts);
    for (int part = 0; part < 3; part++)
        weight_part(kernels, g->out_channels, &parts[part], dz_line, acc);
}

/* dw (k_all, cout) += the sum in block order of the blocks' partials (k_all + 1, cout)
 * and dbias (unless NULL) += that of their last rows. */
static void add_block_partials(const conv_plan *p, long cout, long blocks, float *partials,
                               float *dw, float *dbias) {
    const long part = (p->k_all + 1) * cout;
    for (long b = 1; b < blocks; b++)
        for (long i = 0; i < part; i++) partials[i] += partials[b * part + i];
    for (long i = 0; i < p->k_all * cout; i++) dw[i] += partials[i];
    if (dbias)
        for (long c = 0; c < cout; c++) dbias[c] += partials[p->k_all * cout + c];
}

/* dw (k_all, cout) += x-patches^T @ dz and dbias += colsum dz (unless NULL), with
 * dz = dy * relu'(y) when relu (y may then not be NULL), else dy. Images are summed
 * in fixed blocks into per-block partials, then the blocks in order: the result does
 * not depend on the thread count. */
static int direct_weight(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                         const float *x, const float *y, const float *dy, int relu,
                         float *dw, float *dbias) {
    const pl_conv_direct *kernels = direct_kernels(ctx);
    const long cout = g->out_channels, L = g->out_size[2];
    const long image_lines = g->out_size[0] * g->out_size[1];
    const long blocks = (g->batch + DIRECT_IMAGE_BLOCK - 1) / DIRECT_IMAGE_BLOCK;
    const long part = (p->k_all + 1) * cout;   // acc (k_all, cout), then dbias (cout)
    float *partials = calloc((size_t)(blocks * part), sizeof(float));
    if (!partials) return -1;
    int nt = product_threads(ctx, g->batch * image_lines * L * p->k_all * cout);
    if (nt > blocks) nt = (int)blocks;
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long b = 0; b < blocks; b++) {
        float dz[DIRECT_LINE_FLOATS];   // (L, cout)
        float *acc = partials + b * part;
        long image_end = (b + 1) * DIRECT_IMAGE_BLOCK;
        if (image_end > g->batch) image_end = g->batch;
        for (long line = b * DIRECT_IMAGE_BLOCK * image_lines; line < image_end * image_lines;
             line++) {
            kernels->output_gradient(L * cout, relu ? y + line * L * cout : 0,
                                     dy + line * L * cout, relu, dz);
            if (dbias) kernels->column_sums(L, cout, dz, acc + p->k_all * cout);
            direct_weight_line(kernels, g, p, line, x, dz, acc);
        }
    }
    add_block_partials(p, cout, blocks, partials, dw, dbias);
    free(partials);
    return 0;
}

int pl_conv_weight_fusable(const pl_conv_geom *g, int act) {
    conv_plan p = make_plan(g);
    return direct_applies(g, &p) && (act == PL_ACT_RELU || act == PL_ACT_LINEAR);
}

int pl_conv_backward_weight_fused(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                                  const float *y, const float *dy, int act, float *dw,
                                  float *dbias) {
    if (!pl_conv_weight_fusable(g, act)) return 1;
    conv_plan p = make_plan(g);
    return direct_weight(ctx, g, &p, x, y, dy, act == PL_ACT_RELU, dw, dbias);
}

/* ---- direct convolution then max pooling (pl_conv_max_pool_*) ---------------------- */

/* Floats of one pooled line's window rows, a buffer on each thread's stack. */
#define POOLED_ROWS_FLOATS (4 * DIRECT_LINE_FLOATS)

/* The pooled lines' windows are whole rows of output lines: window 1 along axis 0,
 * windows meeting edge to edge (stride = window, no padding) along all axes. */
int pl_conv_max_pool_fusable(const pl_conv_geom *g, const pl_pool_geom *pg, int act) {
    conv_plan p = make_plan(g);
    if (!direct_applies(g, &p) || (act != PL_ACT_RELU && act != PL_ACT_LINEAR)) return 0;
    if (!pl_pool_geom_valid(pg) || pg->batch != g->batch || pg->channels != g->out_channels)
        return 0;
    if (pg->window[0] != 1 || pg->window[1] * g->out_size[2] * g->out_channels > POOLED_ROWS_FLOATS)
        return 0;
    for (int a = 0; a < 3; a++)
        if (pg->in_size[a] != g->out_size[a] || pg->pad[a] != 0 ||
            pg->stride[a] != pg->window[a] || pg->out_size[a] != pg->in_size[a] / pg->window[a])
            return 0;
    return 1;
}

/* The first output line (in its image) of the window rows of pooled line o01. */
static long window_first_line(const pl_conv_geom *g, const pl_pool_geom *pg, long o01) {
    return o01 / pg->out_size[1] * g->out_size[1] + o01 % pg->out_size[1] * pg->window[1];
}

int pl_conv_max_pool_forward(const pl_ctx *ctx, const pl_conv_geom *g, const pl_pool_geom *pg,
                             const float *x, const float *w, const float *bias, int act,
                             float *y, int *argmax) {
    if (!pl_conv_max_pool_fusable(g, pg, act)) return 1;
    const conv_plan p = make_plan(g);
    const pl_conv_direct *kernels = direct_kernels(ctx);
    const long line_floats = g->out_size[2] * g->out_channels, rows = pg->window[1];
    const long image_lines = g->out_size[0] * g->out_size[1];
    const long pooled_lines = pg->out_size[0] * pg->out_size[1];
    const long pooled_floats = pg->out_size[2] * pg->channels;   // of a pooled line
    const int relu = act == PL_ACT_RELU;
    int nt = product_threads(ctx, g->batch * p.out_spatial * p.k_all * g->out_channels);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long task = 0; task < g->batch * pooled_lines; task++) {
        float z[POOLED_ROWS_FLOATS];   // (rows, L, cout): the window rows
        long image = task / pooled_lines, o01 = task % pooled_lines;
        long first = window_first_line(g, pg, o01);
        for (long r = 0; r < rows; r++)
            direct_line(kernels, g, &p, image * image_lines + first + r, x, w, bias, relu,
                        z + r * line_floats);
        pl_max_pool_line(ctx, pg, o01, z, first * line_floats, y + task * pooled_floats,
                         argmax + task * pooled_floats);
    }
    return 0;
}

/* acc (k_all + 1, cout) += the kernel and bias gradients from one image's pooled
 * gradient: its output lines in order, each the pooled gradient through relu' routed to
 * where argmax names (zero on lines no window covers). */
static void pooled_image_weight(const pl_conv_direct *kernels, const pl_conv_geom *g,
                                const pl_pool_geom *pg, const conv_plan *p, long image,
                                const float *x, const float *y, const float *dy,
                                const int *argmax, int relu, int with_bias, float *acc) {
    const long L = g->out_size[2], cout = g->out_channels, line_floats = L * cout;
    const long image_lines = g->out_size[0] * g->out_size[1];
    const long pooled_floats = pg->out_size[2] * pg->channels;
    const long covered = pg->out_size[2] * pg->window[2];   // positions of a line in windows
    float dz[DIRECT_LINE_FLOATS], dzp[DIRECT_LINE_FLOATS];   // (L, cout), a pooled line
    for (long o0 = 0; o0 < g->out_size[0]; o0++) {
        for (long o1 = 0; o1 < pg->out_size[1]; o1++) {
            long o01 = o0 * pg->out_size[1] + o1, first = window_first_line(g, pg, o01);
            long at = (image * pg->out_size[0] * pg->out_size[1] + o01) * pooled_floats;
            kernels->output_gradient(pooled_floats, relu ? y + at : 0, dy + at, relu, dzp);
            if (with_bias)
                kernels->column_sums(pg->out_size[2], cout, dzp, acc + p->k_all * cout);
            for (long r = first; r < first + pg->window[1]; r++) {
                kernels->unpool_line(L, covered, pg->window[2], cout, r * line_floats,
                                     argmax + at, dzp, dz);
                direct_weight_line(kernels, g, p, image * image_lines + r, x, dz, acc);
            }
        }
        memset(dz, 0, line_floats * sizeof(float));
        for (long o1 = pg->out_size[1] * pg->window[1]; o1 < g->out_size[1]; o1++)   // uncovered
            direct_weight_line(kernels, g, p, image * image_lines + o0 * g->out_size[1] + o1,
                               x, dz, acc);
    }
}

int pl_conv_max_pool_backward_weight(const pl_ctx *ctx, const pl_conv_geom *g,
                                     const pl_pool_geom *pg, const float *x, const float *y,
                                     const float *dy, const int *argmax, int act, float *dw,
                                     float *dbias) {
    if (!pl_conv_max_pool_fusable(g, pg, act)) return 1;
    const conv_plan p = make_plan(g);
    const pl_conv_direct *kernels = direct_kernels(ctx);
    const long cout = g->out_channels;
    const long blocks = (g->batch + DIRECT_IMAGE_BLOCK - 1) / DIRECT_IMAGE_BLOCK;
    const long part = (p.k_all + 1) * cout;   // acc (k_all, cout), then dbias (cout)
    float *partials = calloc((size_t)(blocks * part), sizeof(float));
    if (!partials) return -1;
    int nt = product_threads(ctx, g->batch * p.out_spatial * p.k_all * cout);
    if (nt > blocks) nt = (int)blocks;
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long b = 0; b < blocks; b++) {
        long image_end = (b + 1) * DIRECT_IMAGE_BLOCK;
        if (image_end > g->batch) image_end = g->batch;
        for (long image = b * DIRECT_IMAGE_BLOCK; image < image_end; image++)
            pooled_image_weight(kernels, g, pg, &p, image, x, y, dy, argmax,
                                act == PL_ACT_RELU, dbias != NULL, partials + b * part);
    }
    add_block_partials(&p, cout, blocks, partials, dw, dbias);
    free(partials);
    return 0;
}

/* ---- implicit GEMM path ------------------------------------------------------------ */

/* Kernel taps the implicit path reads through pointers (up to a 5 x 5 x 5 kernel), and
 * the output positions of one tile (the AVX2 micro-kernel's rows). */
#define IMPLICIT_MAX_TAPS 125
#define TILE_ROWS 6
#define PANEL_COLS 16
/* A line's last inner positions are read in place as a short tile when at least this
 * many remain; fewer are gathered into full tiles of queued rows. */
#define SHORT_TILE_MIN_ROWS 3

#ifdef PL_HAVE_X86_KERNELS
/* Many taps times channels, one group, on the AVX2 path (whose tap micro-kernel reads
 * the inputs in place); else im2col.  Off with the direct path (tests). */
static int implicit_applies(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p) {
    return direct_enabled && ctx->isa >= PL_ISA_AVX2 && g->groups == 1 && !p->identity &&
           p->taps <= IMPLICIT_MAX_TAPS;
}

/* w (k_all, cout) as 16-column panels, panel j at j * 16 * k_all holding k_all rows of
 * 16 floats (columns past cout zero): the B panels of the tap micro-kernel. */
static float *weight_panels(const conv_plan *p, long cout, const float *w) {
    long panels = (cout + PANEL_COLS - 1) / PANEL_COLS;
    float *packed = malloc((size_t)(panels * p->k_all * PANEL_COLS) * sizeof(float));
    if (!packed) return NULL;
    for (long j = 0; j < panels; j++)
        for (long k = 0; k < p->k_all; k++)
            for (long col = 0; col < PANEL_COLS; col++) {
                long o = j * PANEL_COLS + col;
                packed[(j * p->k_all + k) * PANEL_COLS + col] = o < cout ? w[k * cout + o] : 0.0f;
            }
    return packed;
}

/* y_tile (rows, cout) = the patches of `rows` positions @ w, 16 output channels at a
 * time: the patch entry (t, ch) of tile row i is src[t][i * step + ch]. */
static void implicit_tile(const pl_conv_geom *g, const conv_plan *p, int rows,
                          const float *const *src, long step, const float *panels,
                          float *y_tile) {
    const long cout = g->out_channels, cin = g->in_channels;
    float edge_tile[TILE_ROWS * PANEL_COLS];
    for (long j = 0; j < cout; j += PANEL_COLS) {
        const float *panel = panels + j * p->k_all;
        if (cout - j >= PANEL_COLS) {
            pl_sgemm_ukernel_taps_avx2(rows, p->taps, src, step, cin, panel, y_tile + j, cout);
            continue;
        }
        pl_sgemm_ukernel_taps_avx2(rows, p->taps, src, step, cin, panel, edge_tile, PANEL_COLS);
        for (int i = 0; i < rows; i++)
            copy_floats(cout - j, edge_tile + i * PANEL_COLS, y_tile + i * cout + j);
    }
}

/* Rows waiting to be computed from gathered patches: edge positions (next to padding)
 * and the last few inner positions of lines, up to a tile of them from any lines. */
typedef struct {
    float *patches;          /* (TILE_ROWS, k_all) */
    float *y_rows[TILE_ROWS];
    int count;
} gathered_rows;

/* The queued rows as one tile, written to their places in y, then bias (unless NULL)
 * and relu (when relu) applied. */
static void flush_gathered(const pl_conv_geom *g, const conv_plan *p, const float *panels,
                           const float *bias, int relu, gathered_rows *queue) {
    if (!queue->count) return;
    const long cout = g->out_channels;
    const float *tile_src[IMPLICIT_MAX_TAPS];
    float tile[TILE_ROWS * PANEL_COLS];
    for (long t = 0; t < p->taps; t++) tile_src[t] = queue->patches + t * g->in_channels;
    for (long j = 0; j < cout; j += PANEL_COLS) {
        long cols = cout - j < PANEL_COLS ? cout - j : PANEL_COLS;
        pl_sgemm_ukernel_taps_avx2(queue->count, p->taps, tile_src, p->k_all, g->in_channels,
                                   panels + j * p->k_all, tile, PANEL_COLS);
        for (int i = 0; i < queue->count; i++)
            copy_floats(cols, tile + i * PANEL_COLS, queue->y_rows[i] + j);
    }
    for (int i = 0; i < queue->count; i++) bias_relu_rows(1, cout, queue->y_rows[i], bias, relu);
    queue->count = 0;
}

/* Position o of output line `line` queued for a gathered tile (computed when the
 * queue is full). */
static void queue_position(const pl_conv_geom *g, const conv_plan *p, const float *x,
                           const float *panels, const float *bias, int relu, long line, long o,
                           float *y, gathered_rows *queue) {
    gather_rows(g, p, line, o, o + 1, x, queue->patches + queue->count * p->k_all);
    queue->y_rows[queue->count++] = y + (line * g->out_size[2] + o) * g->out_channels;
    if (queue->count == TILE_ROWS) flush_gathered(g, p, panels, bias, relu, queue);
}

/* Output lines [first, end): each line's inner positions in tiles of 6 read in place,
 * the last tile short when 3 or more remain; its edge positions (next to padding) and
 * last one or two inner ones through the queue of
 * gathered patch rows (zeros where a tap reads padding, so that 0 * inf or NaN gives
 * NaN as in the GEMM path).  A row is the same sum in the same order either way, so
 * neither the tiling nor the thread count changes the result.  Bias (unless NULL) and
 * relu (when relu) are applied tile by tile. */
static void implicit_lines(const pl_conv_geom *g, const conv_plan *p, const float *x,
                           const float *panels, long first, long end, const float *bias,
                           int relu, float *y, gathered_rows *queue) {
    const long L = g->out_size[2], cout = g->out_channels;
    const long step = g->stride[2] * g->in_channels;
    const float *line_src[IMPLICIT_MAX_TAPS], *tile_src[IMPLICIT_MAX_TAPS];
    for (long line = first; line < end; line++) {
        long begin, inner_end;
        line_tap_pointers(g, p, line, x, line_src, &begin, &inner_end);
        float *y_line = y + line * L * cout;
        for (long o = begin; o < inner_end; o += TILE_ROWS) {
            int rows = inner_end - o < TILE_ROWS ? (int)(inner_end - o) : TILE_ROWS;
            if (rows < SHORT_TILE_MIN_ROWS) {
                inner_end = o;   // the last one or two go through the queue
                break;
            }
            for (long t = 0; t < p->taps; t++) tile_src[t] = line_src[t] + (o - begin) * step;
            implicit_tile(g, p, rows, tile_src, step, panels, y_line + o * cout);
            bias_relu_rows(rows, cout, y_line + o * cout, bias, relu);
        }
        for (long e = 0; e < L; e++)
            if (e < begin || e >= inner_end)
                queue_position(g, p, x, panels, bias, relu, line, e, y, queue);
    }
    flush_gathered(g, p, panels, bias, relu, queue);
}

/* y (n, out..., cout) = act(conv(x, w) + bias) without unfolding: each thread takes a
 * contiguous range of output lines and computes them tile by tile from the inputs in
 * place.  -1 when memory is short. */
static int implicit_forward(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                            const float *x, const float *w, const float *bias, int act,
                            float alpha, float *y) {
    const long L = g->out_size[2], cout = g->out_channels;
    const long lines = g->batch * g->out_size[0] * g->out_size[1];
    float *panels = weight_panels(p, cout, w);
    if (!panels) return -1;
    // relu and linear go with the tiles; other activations, with the bias, afterwards
    const int fused = act == PL_ACT_RELU || act == PL_ACT_LINEAR;
    const float *tile_bias = fused ? bias : NULL;
    int nt = product_threads(ctx, lines * L * p->k_all * cout);
    int failed = 0;
    #pragma omp parallel num_threads(nt) if(nt > 1) reduction(|:failed)
    {
        long first, end;
        pl_team_share(lines, &first, &end);
        gathered_rows queue = {malloc((size_t)(TILE_ROWS * p->k_all) * sizeof(float)), {0}, 0};
        failed = !queue.patches;
        if (queue.patches)
            implicit_lines(g, p, x, panels, first, end, tile_bias, act == PL_ACT_RELU, y, &queue);
        free(queue.patches);
    }
    free(panels);
    if (!failed && !fused)
        pl_bias_act_forward(ctx, lines * L, cout, y, bias, act, alpha);
    return failed ? -1 : 0;
}

/* Output-gradient floats of one chunk of lines in the implicit kernel gradient, with the
 * inputs they meet: the chunk stays in L2 while every tile of dw sweeps it. */
#define RUN_CHUNK_FLOATS (1L << 15)

/* Kernel gradients of many taps x channels and whole 16-column panels on the AVX2 path
 * (its run micro-kernel reads inputs and output gradients in place); else im2col. */
static int implicit_weight_applies(const pl_ctx *ctx, const pl_conv_geom *g,
                                   const conv_plan *p) {
    return implicit_applies(ctx, g, p) && g->out_channels % PANEL_COLS == 0;
}

/* 1 when some output position has a tap reading outside the input (zero padding). */
static int reads_padding(const pl_conv_geom *g) {
    for (int a = 0; a < 3; a++)
        if (g->pad[a] > 0 || input_coord(g, a, g->out_size[a] - 1, g->kernel[a] - 1) >= g->in_size[a])
            return 1;
    return 0;
}

static int all_finite(const pl_ctx *ctx, long n, const float *v) {
    int bad = 0;
    int nt = pl_elementwise_threads(ctx, n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1) reduction(|:bad)
    for (long i = 0; i < n; i++) bad |= !(v[i] - v[i] == 0.0f);   // inf and NaN give NaN
    return !bad;
}

/* The runs of output lines [first, end), tap by tap: runs[t * count + l] is tap t over
 * line first + l, count = end - first; its steps are the positions where the tap reads
 * inside the input (none when it reads a padding line), a where it reads the first of
 * them (channel 0), b their output gradients in dz (rows, cout). */
static void chunk_runs(const pl_conv_geom *g, const conv_plan *p, const float *x,
                       const float *dz, long first, long end, pl_tile_run *runs) {
    const long cin = g->in_channels, in_line = g->in_size[2] * cin, L = g->out_size[2];
    const long count = end - first;
    for (long line = first; line < end; line++) {
        const long o0 = line / g->out_size[1] % g->out_size[0], o1 = line % g->out_size[1];
        const float *x_image = x + line / (g->out_size[0] * g->out_size[1]) * p->in_spatial * cin;
        long t = 0;
        for (long t0 = 0; t0 < g->kernel[0]; t0++)
            for (long t1 = 0; t1 < g->kernel[1]; t1++) {
                long i0 = input_coord(g, 0, o0, t0), i1 = input_coord(g, 1, o1, t1);
                int line_inside = i0 >= 0 && i0 < g->in_size[0] && i1 >= 0 && i1 < g->in_size[1];
                for (long t2 = 0; t2 < g->kernel[2]; t2++, t++) {
                    pl_tile_run *run = runs + t * count + (line - first);
                    long lo = 0, hi = 0;
                    if (line_inside) inside_range(g, 2, t2, &lo, &hi);
                    run->steps = hi - lo;
                    run->a = hi > lo ? x_image + (i0 * g->in_size[1] + i1) * in_line +
                                       input_coord(g, 2, lo, t2) * cin
                                     : x;
                    run->b = dz + (line * L + lo) * g->out_channels;
                }
            }
    }
}

/* dw (k_all, cout) += patches^T @ dz with both read in place, in tiles of 6 channels of
 * one tap by 16 output channels; the threads split the tiles, so each dw element has one
 * owner.  Output lines go in chunks: a tile sums a chunk in registers, one run per line,
 * and adds it to dw, chunk after chunk, the same way whatever the thread count.  Taps
 * reading padding add nothing: a caller whose dz may hold inf or NaN (0 * inf is NaN)
 * takes im2col instead.  -1 (dw untouched) when memory is short. */
static int implicit_weight(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                           const float *x, const float *dz, float *dw) {
    const long cin = g->in_channels, cout = g->out_channels, L = g->out_size[2];
    const long lines = g->batch * g->out_size[0] * g->out_size[1];
    const long line_floats = L * (cout + g->stride[2] * cin);
    const long lines_per_chunk = line_floats >= RUN_CHUNK_FLOATS ? 1
                                                                 : RUN_CHUNK_FLOATS / line_floats;
    const long channel_tiles = (cin + TILE_ROWS - 1) / TILE_ROWS, col_tiles = cout / PANEL_COLS;
    const long tiles = p->taps * channel_tiles * col_tiles;
    const long a_step = g->stride[2] * cin;
    int nt = product_threads(ctx, lines * L * p->k_all * cout);
    if (nt > tiles) nt = (int)tiles;
    const long runs_per_chunk = p->taps * lines_per_chunk;
    pl_tile_run *all_runs = malloc((size_t)(nt * runs_per_chunk) * sizeof *all_runs);
    if (!all_runs) return -1;
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        int team, tid;
        pl_team_position(&tid, &team);
        pl_tile_run *runs = all_runs + tid * runs_per_chunk;
        const long first_tile = tiles * tid / team, end_tile = tiles * (tid + 1) / team;
        for (long first = 0; first < lines; first += lines_per_chunk) {
            long end = lines - first < lines_per_chunk ? lines : first + lines_per_chunk;
            chunk_runs(g, p, x, dz, first, end, runs);
            for (long tile = first_tile; tile < end_tile; tile++) {
                long j = tile % col_tiles * PANEL_COLS, channel_tile = tile / col_tiles;
                long t = channel_tile / channel_tiles, c = channel_tile % channel_tiles * TILE_ROWS;
                int rows = cin - c < TILE_ROWS ? (int)(cin - c) : TILE_ROWS;
                pl_sgemm_ukernel_runs_avx2(rows, end - first, runs + t * (end - first), c, a_step,
                                           j, cout, dw + (t * cin + c) * cout + j, cout);
            }
        }
    }
    free(all_runs);
    return 0;
}

/* ---- Winograd path (conv_winograd.h) ------------------------------------------------ */

static int winograd_enabled = 1;

/* Tests only, between calls: 0 sends 3x3 geometries through the implicit GEMM. */
void pl_conv_set_winograd(int enabled) { winograd_enabled = enabled; }

/* Tiles (4x4 outputs) below which the kernel transform, done on every call, costs
 * about what the Winograd products save over the implicit GEMM (measured: 13x13x32 ->
 * 64 breaks even at batch 8, 72 tiles). */
#define WINOGRAD_MIN_TILES 96

/* 1 when the Winograd forward takes geometry g and its input x (finite: see
 * conv_winograd.h). */
static int winograd_takes(const pl_ctx *ctx, const pl_conv_geom *g, const float *x) {
    return direct_enabled && winograd_enabled && ctx->isa >= PL_ISA_AVX2 &&
           pl_winograd_fits(g) && pl_winograd_tiles(g) >= WINOGRAD_MIN_TILES &&
           all_finite(ctx, g->batch * prod3(g->in_size) * g->in_channels, x);
}

/* y = act(conv(x, w) + bias) through the Winograd tiles: relu and linear fused into the
 * output transform, other activations afterwards. */
static int winograd_forward(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                            const float *w, const float *bias, int act, float alpha, float *y) {
    const int fused = act == PL_ACT_RELU || act == PL_ACT_LINEAR;
    const long rows = g->batch * prod3(g->out_size), cout = g->out_channels;
    pl_ctx team = *ctx;
    team.n_threads = product_threads(ctx, pl_winograd_products(g));
    int status = pl_winograd_forward(&team, g, x, w, fused ? bias : NULL, act == PL_ACT_RELU, y);
    if (!status && !fused) pl_bias_act_forward(ctx, rows, cout, y, bias, act, alpha);
    return status;
}

/* 1 when at least 3/4 of the output positions have every tap reading inside the input:
 * the implicit forward gathers the others' patches one position at a time. */
static int mostly_inside(const pl_conv_geom *g) {
    long inside = 1, all = 1;
    for (int a = 0; a < 3; a++) {
        long begin = 0, end = g->out_size[a];
        for (long t = 0; t < g->kernel[a]; t++) {
            long lo, hi;
            inside_range(g, a, t, &lo, &hi);
            if (lo > begin) begin = lo;
            if (hi < end) end = hi;
        }
        inside *= end > begin ? end - begin : 0;
        all *= g->out_size[a];
    }
    return 4 * inside >= 3 * all;
}

/* dx of a stride-1 convolution as the forward convolution of dy with the kernel flipped
 * along every axis and its channel axes swapped, padded (kernel - 1) * dilation - pad
 * before: dx[i] = sum over t of dy[i + pad - t * dilation] w[t], by Winograd tiles
 * when they apply and dy is finite, else by the implicit GEMM.  Where a tap falls
 * outside dy it multiplies zeros (0 * NaN weights is NaN, where col2im adds nothing).
 * 1 when the geometry is not of that kind, or mostly padding for the implicit GEMM
 * (nothing written); -1 when memory is short. */
static int transposed_forward(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                              const float *dy, const float *w, float *dx) {
    pl_conv_geom gt = *g;
    for (int a = 0; a < 3; a++) {
        gt.in_size[a] = g->out_size[a];
        gt.out_size[a] = g->in_size[a];
        gt.pad[a] = (g->kernel[a] - 1) * g->dilation[a] - g->pad[a];
        if (g->stride[a] != 1 || gt.pad[a] < 0) return 1;
    }
    gt.in_channels = g->out_channels;
    gt.out_channels = g->in_channels;
    conv_plan pt = make_plan(&gt);
    const int winograd = winograd_takes(ctx, &gt, dy);
    if (!winograd && (!implicit_applies(ctx, &gt, &pt) || !mostly_inside(&gt))) return 1;
    const long cin = g->in_channels, cout = g->out_channels;
    float *flipped = malloc((size_t)(p->taps * cin * cout) * sizeof(float));   // (taps, cout, cin)
    if (!flipped) return -1;
    for (long t = 0; t < p->taps; t++)   // reversing a row-major tap index flips every axis
        for (long ci = 0; ci < cin; ci++)
            for (long co = 0; co < cout; co++)
                flipped[((p->taps - 1 - t) * cout + co) * cin + ci] = w[(t * cin + ci) * cout + co];
    int status = winograd ? winograd_forward(ctx, &gt, dy, flipped, NULL, PL_ACT_LINEAR, 0.0f, dx)
                          : implicit_forward(ctx, &gt, &pt, dy, flipped, NULL, PL_ACT_LINEAR, 0.0f, dx);
    free(flipped);
    return status;
}

#endif

/* ---- im2col path ------------------------------------------------------------------ */

/* y rows (rows, cout) = act(a (rows, k_all) @ w + bias), group by group, on ctx's
 * threads; a is the unfolded input (or the input itself for 1x1 taps). */
static void multiply_bias_act(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                              long rows, const float *a, const float *w, const float *bias,
                              int act, float alpha, float *y) {
    for (long grp = 0; grp < g->groups; grp++)
        pl_sgemm(ctx, 0, 0, rows, p->cout_g, p->k_g, 1.0f, a + grp * p->k_g, p->k_all,
                 w + grp * p->cout_g, g->out_channels, 0.0f, y + grp * p->cout_g,
                 g->out_channels);
    bias_act(ctx, rows, g->out_channels, y, bias, act, alpha);
}

/* The im2col forward in blocks of output lines, each block unfolded, multiplied and
 * biased by one thread into a col buffer of its own that stays in its L2: no barrier
 * between the phases, no col traffic to memory.  Blocks are fixed by the geometry, so
 * every output row is computed the same way whatever the thread count.  -1 when a
 * col buffer cannot be allocated. */
static int blocked_forward(const pl_ctx *ctx, const pl_conv_geom *g, const conv_plan *p,
                           const float *x, const float *w, const float *bias, int act,
                           float alpha, float *y) {
    const long L = g->out_size[2], lines = g->batch * g->out_size[0] * g->out_size[1];
    const long line_floats = L * p->k_all;
    const long lines_per_block = line_floats >= BLOCK_COL_FLOATS ? 1
                                                                  : BLOCK_COL_FLOATS / line_floats;
    const long blocks = (lines + lines_per_block - 1) / lines_per_block;
    pl_ctx serial = *ctx;
    serial.n_threads = 1;
    int nt = product_threads(ctx, lines * line_floats * g->out_channels);
    if (nt > blocks) nt = (int)blocks;
    int failed = 0;
    #pragma omp parallel num_threads(nt) if(nt > 1) reduction(|:failed)
    {
        float *col = malloc((size_t)(lines_per_block * line_floats) * sizeof(float));
        failed = !col;
        #pragma omp for schedule(static)
        for (long block = 0; block < blocks; block++) {
            long first = block * lines_per_block;
            long count = lines - first < lines_per_block ? lines - first : lines_per_block;
            if (!col) continue;
            for (long line = 0; line < count; line++)
                unfold_line(g, p, first + line, x, col + line * line_floats);
            multiply_bias_act(&serial, g, p, count * L, col, w, bias, act, alpha,
                              y + first * L * g->out_channels);
        }
        free(col);
    }
    return failed ? -1 : 0;
}

int pl_conv_forward(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                    const float *w, const float *bias, int act, float alpha, float *y) {
    conv_plan p = make_plan(g);
    if (direct_applies(g, &p)) {
        direct_forward(ctx, g, &p, x, w, bias, act, alpha, y);
        return 0;
    }
#ifdef PL_HAVE_X86_KERNELS
    if (winograd_takes(ctx, g, x)) return winograd_forward(ctx, g, x, w, bias, act, alpha, y);
    if (implicit_applies(ctx, g, &p)) return implicit_forward(ctx, g, &p, x, w, bias, act, alpha, y);
#endif
    if (!p.identity) return blocked_forward(ctx, g, &p, x, w, bias, act, alpha, y);
    multiply_bias_act(ctx, g, &p, g->batch * p.out_spatial, x, w, bias, act, alpha, y);
    return 0;
}

int pl_conv_backward_data(const pl_ctx *ctx, const pl_conv_geom *g, const float *dy,
                          const float *w, float *dx) {
    conv_plan p = make_plan(g);
#ifdef PL_HAVE_X86_KERNELS
    if (!p.identity && g->groups == 1) {
        int status = transposed_forward(ctx, g, &p, dy, w, dx);
        if (status != 1) return status;
    }
#endif
    float *dcol = alloc_col(&p);
    if (!p.identity && !dcol) return -1;
    for (long n0 = 0; n0 < g->batch; n0 += p.images_per_chunk) {
        long images = g->batch - n0 < p.images_per_chunk ? g->batch - n0 : p.images_per_chunk;
        long rows = images * p.out_spatial;
        const float *dy_chunk = dy + n0 * p.out_spatial * g->out_channels;   // (rows, cout)
        float *dx_chunk = dx + n0 * p.in_spatial * g->in_channels;          // (images, in..., cin)
        float *c = p.identity ? dx_chunk : dcol;
        for (long grp = 0; grp < g->groups; grp++)
            pl_sgemm(ctx, 0, 1, rows, p.k_g, p.cout_g, 1.0f, dy_chunk + grp * p.cout_g,
                     g->out_channels, w + grp * p.cout_g, g->out_channels, 0.0f,
                     c + grp * p.k_g, p.k_all);
        if (!p.identity) fold(ctx, g, &p, images, dcol, dx_chunk);
    }
    free(dcol);
    return 0;
}

int pl_conv_backward_weight(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                            const float *dy, float *dw) {
    conv_plan p = make_plan(g);
    if (direct_applies(g, &p)) return direct_weight(ctx, g, &p, x, NULL, dy, 0, dw, NULL);
#ifdef PL_HAVE_X86_KERNELS
    if (implicit_weight_applies(ctx, g, &p) &&
        (!reads_padding(g) || all_finite(ctx, g->batch * p.out_spatial * g->out_channels, dy)))
        return implicit_weight(ctx, g, &p, x, dy, dw);
#endif
    float *col = alloc_col(&p);
    if (!p.identity && !col) return -1;
    for (long n0 = 0; n0 < g->batch; n0 += p.images_per_chunk) {
        long images = g->batch - n0 < p.images_per_chunk ? g->batch - n0 : p.images_per_chunk;
        long rows = images * p.out_spatial;
        const float *x_chunk = x + n0 * p.in_spatial * g->in_channels;
        const float *dy_chunk = dy + n0 * p.out_spatial * g->out_channels;   // (rows, cout)
        const float *a = x_chunk;
        if (!p.identity) {
            unfold(ctx, g, &p, images, x_chunk, col);
            a = col;
        }
        for (long grp = 0; grp < g->groups; grp++)
            pl_sgemm(ctx, 1, 0, p.k_g, p.cout_g, rows, 1.0f, a + grp * p.k_g, p.k_all,
                     dy_chunk + grp * p.cout_g, g->out_channels, 1.0f,
                     dw + grp * p.cout_g, g->out_channels);
    }
    free(col);
    return 0;
}
