/* Winograd F(4x4, 3x3) convolution forward (see conv_winograd.h).
 *
 * Tiles are numbered (image, tile row, tile column) and taken in fixed blocks, each by
 * one thread with buffers of its own: the block's input transforms V (36, tiles, cin),
 * then the 36 products M[xi] (tiles, cout) = V[xi] @ U[xi] by the GEMM micro-kernel
 * reading V in place, then the output transforms into y.  V and M stay in L2; the
 * transformed kernel U, packed as 16-column panels, is shared.  All three live in the
 * threads' scratch (pl_thread_scratch), so a call maps no fresh memory. */
#include <stdlib.h>
#include "conv_winograd.h"
#include "gemm_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Floats of V and M per block (256 KB: the block stays in L2 between its phases). */
#define BLOCK_FLOATS (1L << 16)
#define TILE_ROWS 6      /* the micro-kernel's rows */
#define PANEL_COLS 16    /* and columns */
#define OUT_TILE 4       /* a tile is 4x4 outputs */
#define PATCH 6          /* read from a 6x6 input patch */
#define XI 36            /* elements of a 6x6 transform */

int pl_winograd_fits(const pl_conv_geom *g) {
    return g->groups == 1 && g->kernel[0] == 1 && g->kernel[1] == 3 && g->kernel[2] == 3 &&
           g->stride[1] == 1 && g->stride[2] == 1 && g->dilation[1] == 1 &&
           g->dilation[2] == 1 && g->in_channels % 8 == 0 && g->in_channels >= 16 &&
           g->out_channels % PANEL_COLS == 0;
}

/* Tiles along an output axis of n positions, the last possibly cut. */
static long tiles_across(long n) { return (n + OUT_TILE - 1) / OUT_TILE; }

long pl_winograd_tiles(const pl_conv_geom *g) {
    return g->batch * tiles_across(g->out_size[1]) * tiles_across(g->out_size[2]);
}

long pl_winograd_products(const pl_conv_geom *g) {
    return pl_winograd_tiles(g) * XI * g->in_channels * g->out_channels;
}

/* Where a tile sits: its image, and its first output row and column. */
typedef struct {
    long image, row, col;
} tile_place;

static tile_place place_of(const pl_conv_geom *g, long tile) {
    const long tile_cols = tiles_across(g->out_size[2]), tile_rows = tiles_across(g->out_size[1]);
    tile_place place = {tile / (tile_rows * tile_cols), tile / tile_cols % tile_rows * OUT_TILE,
                        tile % tile_cols * OUT_TILE};
    return place;
}

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>
#define AVX2_FMA __attribute__((target("avx2,fma")))

/* u[0..5 * u_step] = G g for three vectors g[0..2 * step] (taps of 8 channel pairs):
 *   G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1] */
AVX2_FMA static inline void kernel_1d(const __m256 *g, int step, __m256 *u, int u_step) {
    const __m256 g0 = g[0], g1 = g[step], g2 = g[2 * step];
    const __m256 ends = _mm256_add_ps(g0, g2);   // g0 + g2
    const __m256 ends_weighted = _mm256_fmadd_ps(_mm256_set1_ps(1.0f / 24), g0,
                                                 _mm256_mul_ps(_mm256_set1_ps(1.0f / 6), g2));
    const __m256 middle_weighted = _mm256_mul_ps(_mm256_set1_ps(1.0f / 12), g1);
    const __m256 minus_sixth = _mm256_set1_ps(-1.0f / 6);
    u[0] = _mm256_mul_ps(_mm256_set1_ps(1.0f / 4), g0);
    u[u_step] = _mm256_mul_ps(minus_sixth, _mm256_add_ps(ends, g1));
    u[2 * u_step] = _mm256_mul_ps(minus_sixth, _mm256_sub_ps(ends, g1));
    u[3 * u_step] = _mm256_add_ps(ends_weighted, middle_weighted);
    u[4 * u_step] = _mm256_sub_ps(ends_weighted, middle_weighted);
    u[5 * u_step] = g2;
}

/* U = G g G^T for every (ci, co) of w (3, 3, cin, cout), packed as 16-column panels:
 * element xi of channel pair (ci, co) at ((xi * panels + co / 16) * cin + ci) * 16
 * + co % 16.  8 output channels at a time, so the transforms run on vectors. */
AVX2_FMA static void transform_kernel(long cin, long cout, const float *w, float *u) {
    const long panels = cout / PANEL_COLS;
    for (long ci = 0; ci < cin; ci++)
        for (long co = 0; co < cout; co += 8) {
            __m256 g[9], gg[18], out[XI];   // taps (3x3), G g (6x3), G g G^T (6x6)
            for (int t = 0; t < 9; t++) g[t] = _mm256_loadu_ps(w + (t * cin + ci) * cout + co);
            for (int c = 0; c < 3; c++) kernel_1d(g + c, 3, gg + c, 3);
            for (int r = 0; r < PATCH; r++) kernel_1d(gg + r * 3, 1, out + r * PATCH, 1);
            float *panel = u + (co / PANEL_COLS * cin + ci) * PANEL_COLS + co % PANEL_COLS;
            for (int xi = 0; xi < XI; xi++)
                _mm256_storeu_ps(panel + xi * panels * cin * PANEL_COLS, out[xi]);
        }
}

/* v[0..5 * v_step] = B^T d for six vectors d[0..5 * step]:
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *          0 4 0 -5 0 1] */
AVX2_FMA static inline void input_1d(const __m256 *d, int step, __m256 *v, int v_step) {
    const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f);
    const __m256 five = _mm256_set1_ps(5.0f);
    __m256 d0 = d[0], d1 = d[step], d2 = d[2 * step], d3 = d[3 * step], d4 = d[4 * step];
    __m256 d5 = d[5 * step];
    __m256 near = _mm256_fnmadd_ps(four, d2, d4), far = _mm256_fnmadd_ps(four, d1, d3);
    __m256 even = _mm256_sub_ps(d4, d2), odd = _mm256_mul_ps(two, _mm256_sub_ps(d3, d1));
    v[0] = _mm256_fmadd_ps(four, d0, _mm256_fnmadd_ps(five, d2, d4));
    v[v_step] = _mm256_add_ps(near, far);
    v[2 * v_step] = _mm256_sub_ps(near, far);
    v[3 * v_step] = _mm256_add_ps(even, odd);
    v[4 * v_step] = _mm256_sub_ps(even, odd);
    v[5 * v_step] = _mm256_fmadd_ps(four, d1, _mm256_fnmadd_ps(five, d3, d5));
}

/* One row of a tile's patch, PATCH vectors of 8 channels from channel ci, into d:
 * x_row points at the row's first column, NULL when the row is padding; columns
 * [lo, hi) of the patch read the input, the others are padding. */
AVX2_FMA static inline void load_patch_row(const float *x_row, long cin, long ci, int lo,
                                           int hi, __m256 d[PATCH]) {
    for (int c = 0; c < PATCH; c++)
        d[c] = x_row && c >= lo && c < hi ? _mm256_loadu_ps(x_row + c * cin + ci)
                                          : _mm256_setzero_ps();
}

/* V rows of tiles [first, first + count): V[xi] (count, cin) at v + xi * xi_step. */
AVX2_FMA static void transform_inputs(const pl_conv_geom *g, const float *x, long first,
                                      long count, long xi_step, float *v) {
    const long cin = g->in_channels, H = g->in_size[1], W = g->in_size[2];
    for (long i = 0; i < count; i++) {
        const tile_place place = place_of(g, first + i);
        const long h0 = place.row - g->pad[1], w0 = place.col - g->pad[2];   // patch origin
        const int lo = w0 < 0 ? (int)-w0 : 0, hi = W - w0 < PATCH ? (int)(W - w0) : PATCH;
        const float *x_image = x + place.image * H * W * cin;
        for (long ci = 0; ci < cin; ci += 8) {
            __m256 t[XI];   // d B, row by row, then B^T d B in place
            for (int r = 0; r < PATCH; r++) {
                const long h = h0 + r;
                const float *x_row = h >= 0 && h < H ? x_image + (h * W + w0) * cin : NULL;
                __m256 d[PATCH];
                load_patch_row(x_row, cin, ci, lo, hi, d);
                input_1d(d, 1, t + r * PATCH, 1);
            }
            for (int c = 0; c < PATCH; c++) {
                __m256 column[PATCH];
                input_1d(t + c, PATCH, column, 1);
                for (int r = 0; r < PATCH; r++)
                    _mm256_storeu_ps(v + (r * PATCH + c) * xi_step + i * cin + ci, column[r]);
            }
        }
    }
}

/* y[0..3 * y_step] = A^T m for six vectors m[0..5 * step]:
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */
AVX2_FMA static inline void output_1d(const __m256 *m, int step, __m256 *y, int y_step) {
    const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f);
    const __m256 eight = _mm256_set1_ps(8.0f);
    __m256 sum12 = _mm256_add_ps(m[step], m[2 * step]), diff12 = _mm256_sub_ps(m[step], m[2 * step]);
    __m256 sum34 = _mm256_add_ps(m[3 * step], m[4 * step]);
    __m256 diff34 = _mm256_sub_ps(m[3 * step], m[4 * step]);
    y[0] = _mm256_add_ps(_mm256_add_ps(m[0], sum12), sum34);
    y[y_step] = _mm256_fmadd_ps(two, diff34, diff12);
    y[2 * y_step] = _mm256_fmadd_ps(four, sum34, sum12);
    y[3 * y_step] = _mm256_add_ps(_mm256_fmadd_ps(eight, diff34, diff12), m[5 * step]);
}

/* y rows of tiles [first, first + count) = A^T M A (+ bias, relu when relu), M[xi]
 * (count, cout) at m + xi * xi_step; outputs past the edge of the output dropped. */
AVX2_FMA static void transform_outputs(const pl_conv_geom *g, const float *m, long first,
                                       long count, long xi_step, const float *bias, int relu,
                                       float *y) {
    const long cout = g->out_channels, H = g->out_size[1], W = g->out_size[2];
    const __m256 zero = _mm256_setzero_ps();
    for (long i = 0; i < count; i++) {
        const tile_place place = place_of(g, first + i);
        const long h0 = place.row, w0 = place.col;
        for (long co = 0; co < cout; co += 8) {
            __m256 mm[XI], s[OUT_TILE * PATCH], out[OUT_TILE * OUT_TILE];   // M, A^T M, A^T M A
            for (int k = 0; k < XI; k++) mm[k] = _mm256_loadu_ps(m + k * xi_step + i * cout + co);
            for (int c = 0; c < PATCH; c++) output_1d(mm + c, PATCH, s + c, PATCH);
            for (int r = 0; r < OUT_TILE; r++)
                output_1d(s + r * PATCH, 1, out + r * OUT_TILE, 1);
            __m256 b = bias ? _mm256_loadu_ps(bias + co) : zero;
            for (int r = 0; r < OUT_TILE && h0 + r < H; r++)
                for (int c = 0; c < OUT_TILE && w0 + c < W; c++) {
                    __m256 value = _mm256_add_ps(out[r * OUT_TILE + c], b);
                    if (relu) value = _mm256_max_ps(zero, value);   // NaN stays NaN
                    _mm256_storeu_ps(y + ((place.image * H + h0 + r) * W + w0 + c) * cout + co, value);
                }
        }
    }
}

/* M[xi] = V[xi] @ U[xi] for the block's `count` tiles, 6 tiles by 16 columns at a time. */
static void multiply_block(long cin, long cout, long count, long v_step, long m_step,
                           const float *v, const float *u, float *m) {
    const long panels = cout / PANEL_COLS;
    for (int xi = 0; xi < XI; xi++)
        for (long j = 0; j < panels; j++) {
            const float *panel = u + (xi * panels + j) * cin * PANEL_COLS;
            for (long i = 0; i < count; i += TILE_ROWS) {
                int rows = count - i < TILE_ROWS ? (int)(count - i) : TILE_ROWS;
                pl_sgemm_ukernel_in_place_avx2(rows, cin, v + xi * v_step + i * cin, cin, 1,
                                               panel, m + xi * m_step + i * cout + j * PANEL_COLS,
                                               cout, 1.0f, 0.0f);
            }
        }
}

int pl_winograd_forward(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                        const float *w, const float *bias, int relu, float *y) {
    const long cin = g->in_channels, cout = g->out_channels;
    const long tiles = pl_winograd_tiles(g);
    long block = BLOCK_FLOATS / (XI * (cin + cout)) / TILE_ROWS * TILE_ROWS;
    if (block < TILE_ROWS) block = TILE_ROWS;
    const long blocks = (tiles + block - 1) / block;
    int nt = ctx->n_threads < blocks ? ctx->n_threads : (int)blocks;
    // Each thread's scratch: room for U, then its V and M.  Only the calling thread's U
    // is written: the other threads never write their room for it.
    const size_t u_floats = (size_t)(XI * cin * cout);
    const size_t scratch_floats = u_floats + (size_t)(XI * block * (cin + cout));
    float *u = pl_thread_scratch(scratch_floats);
    if (!u) return -1;
    transform_kernel(cin, cout, w, u);
    int failed = 0;
    #pragma omp parallel num_threads(nt) if(nt > 1) reduction(|:failed)
    {
        float *v = pl_thread_scratch(scratch_floats);   // the caller's: the same as u
        float *m = v ? v + u_floats + XI * block * cin : NULL;
        failed = !v;
        if (v) v += u_floats;
        #pragma omp for schedule(static)
        for (long b = 0; b < blocks; b++) {
            long first = b * block, count = tiles - first < block ? tiles - first : block;
            if (!v) continue;
            transform_inputs(g, x, first, count, block * cin, v);
            multiply_block(cin, cout, count, block * cin, block * cout, v, u, m);
            transform_outputs(g, m, first, count, block * cout, bias, relu, y);
        }
    }
    return failed ? -1 : 0;
}
#endif
