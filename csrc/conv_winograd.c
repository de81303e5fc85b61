/* Winograd F(2x2, 3x3) convolution forward (see conv_winograd.h).
 *
 * Tiles are numbered (image, tile row, tile column) and taken in fixed blocks, each by
 * one thread with buffers of its own: the block's input transforms V (16, tiles, cin),
 * then the 16 products M[xi] (tiles, cout) = V[xi] @ U[xi] by the GEMM micro-kernel
 * reading V in place, then the output transforms into y.  V and M stay in L2; the
 * transformed kernel U, packed as 16-column panels, is shared. */
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
#define XI 16            /* elements of a 4x4 transform */

int pl_winograd_fits(const pl_conv_geom *g) {
    return g->groups == 1 && g->kernel[0] == 1 && g->kernel[1] == 3 && g->kernel[2] == 3 &&
           g->stride[1] == 1 && g->stride[2] == 1 && g->dilation[1] == 1 &&
           g->dilation[2] == 1 && g->in_channels % 8 == 0 && g->in_channels >= 16 &&
           g->out_channels % PANEL_COLS == 0;
}

long pl_winograd_tiles(const pl_conv_geom *g) {
    return g->batch * ((g->out_size[1] + 1) / 2) * ((g->out_size[2] + 1) / 2);
}

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>
#define AVX2_FMA __attribute__((target("avx2,fma")))

/* U = G g G^T for every (ci, co) of w (3, 3, cin, cout), packed as 16-column panels:
 * element xi of channel pair (ci, co) at ((xi * panels + co / 16) * cin + ci) * 16
 * + co % 16.  The 16 output channels of a panel go together, so the loops vectorise. */
static float *transformed_kernel(long cin, long cout, const float *w) {
    const long panels = cout / PANEL_COLS;
    float *u = malloc((size_t)(XI * cin * cout) * sizeof(float));
    if (!u) return NULL;
    for (long ci = 0; ci < cin; ci++)
        for (long j = 0; j < panels; j++) {
            float g[9][PANEL_COLS], gg[12][PANEL_COLS];   // taps (3x3), then G g (4x3)
            for (int t = 0; t < 9; t++)
                for (int l = 0; l < PANEL_COLS; l++)
                    g[t][l] = w[(t * cin + ci) * cout + j * PANEL_COLS + l];
            for (int c = 0; c < 3; c++)
                for (int l = 0; l < PANEL_COLS; l++) {
                    float a = g[c][l], b = g[3 + c][l], e = g[6 + c][l];
                    gg[c][l] = a;
                    gg[3 + c][l] = (a + b + e) * 0.5f;
                    gg[6 + c][l] = (a - b + e) * 0.5f;
                    gg[9 + c][l] = e;
                }
            for (int r = 0; r < 4; r++) {
                float *out[4];   // elements (r, 0..3) of this channel's panel
                for (int c = 0; c < 4; c++)
                    out[c] = u + (((r * 4 + c) * panels + j) * cin + ci) * PANEL_COLS;
                for (int l = 0; l < PANEL_COLS; l++) {
                    float a = gg[r * 3][l], b = gg[r * 3 + 1][l], e = gg[r * 3 + 2][l];
                    out[0][l] = a;
                    out[1][l] = (a + b + e) * 0.5f;
                    out[2][l] = (a - b + e) * 0.5f;
                    out[3][l] = e;
                }
            }
        }
    return u;
}

/* Where tile `tile`'s 4x4 patch reads: rows[r][c] at channel 0, NULL for padding. */
static void patch_pointers(const pl_conv_geom *g, const float *x, long tile,
                           const float *rows[4][4]) {
    const long tile_cols = (g->out_size[2] + 1) / 2, tile_rows = (g->out_size[1] + 1) / 2;
    const long image = tile / (tile_rows * tile_cols);
    const long h0 = tile / tile_cols % tile_rows * 2 - g->pad[1];
    const long w0 = tile % tile_cols * 2 - g->pad[2];
    const long cin = g->in_channels;
    const float *x_image = x + image * g->in_size[1] * g->in_size[2] * cin;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            long h = h0 + r, w = w0 + c;
            int inside = h >= 0 && h < g->in_size[1] && w >= 0 && w < g->in_size[2];
            rows[r][c] = inside ? x_image + (h * g->in_size[2] + w) * cin : NULL;
        }
}

/* v (16 vectors) = B^T d B for one 8-channel slice d (4x4) of a patch. */
AVX2_FMA static inline void input_transform(__m256 d[16], __m256 v[16]) {
    __m256 t[16];   // B^T d
    for (int c = 0; c < 4; c++) {
        t[c] = _mm256_sub_ps(d[c], d[8 + c]);
        t[4 + c] = _mm256_add_ps(d[4 + c], d[8 + c]);
        t[8 + c] = _mm256_sub_ps(d[8 + c], d[4 + c]);
        t[12 + c] = _mm256_sub_ps(d[4 + c], d[12 + c]);
    }
    for (int r = 0; r < 4; r++) {
        v[r * 4] = _mm256_sub_ps(t[r * 4], t[r * 4 + 2]);
        v[r * 4 + 1] = _mm256_add_ps(t[r * 4 + 1], t[r * 4 + 2]);
        v[r * 4 + 2] = _mm256_sub_ps(t[r * 4 + 2], t[r * 4 + 1]);
        v[r * 4 + 3] = _mm256_sub_ps(t[r * 4 + 1], t[r * 4 + 3]);
    }
}

/* V rows of tiles [first, first + count): V[xi] (count, cin) at v + xi * xi_step. */
AVX2_FMA static void transform_inputs(const pl_conv_geom *g, const float *x, long first,
                                      long count, long xi_step, float *v) {
    const long cin = g->in_channels;
    for (long i = 0; i < count; i++) {
        const float *rows[4][4];
        patch_pointers(g, x, first + i, rows);
        for (long ci = 0; ci < cin; ci += 8) {
            __m256 d[16], out[16];
            for (int k = 0; k < 16; k++) {
                const float *src = rows[k / 4][k % 4];
                d[k] = src ? _mm256_loadu_ps(src + ci) : _mm256_setzero_ps();
            }
            input_transform(d, out);
            for (int k = 0; k < 16; k++) _mm256_storeu_ps(v + k * xi_step + i * cin + ci, out[k]);
        }
    }
}

/* y rows of tiles [first, first + count) = A^T M A (+ bias, relu when relu), M[xi]
 * (count, cout) at m + xi * xi_step; outputs past the edge of an odd size dropped. */
AVX2_FMA static void transform_outputs(const pl_conv_geom *g, const float *m, long first,
                                       long count, long xi_step, const float *bias, int relu,
                                       float *y) {
    const long cout = g->out_channels, H = g->out_size[1], W = g->out_size[2];
    const long tile_cols = (W + 1) / 2, tile_rows = (H + 1) / 2;
    const __m256 zero = _mm256_setzero_ps();
    for (long i = 0; i < count; i++) {
        const long tile = first + i, image = tile / (tile_rows * tile_cols);
        const long h0 = tile / tile_cols % tile_rows * 2, w0 = tile % tile_cols * 2;
        for (long co = 0; co < cout; co += 8) {
            __m256 s[8];   // A^T M (2x4)
            for (int c = 0; c < 4; c++) {
                __m256 m0 = _mm256_loadu_ps(m + c * xi_step + i * cout + co);
                __m256 m1 = _mm256_loadu_ps(m + (4 + c) * xi_step + i * cout + co);
                __m256 m2 = _mm256_loadu_ps(m + (8 + c) * xi_step + i * cout + co);
                __m256 m3 = _mm256_loadu_ps(m + (12 + c) * xi_step + i * cout + co);
                s[c] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                s[4 + c] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
            }
            __m256 b = bias ? _mm256_loadu_ps(bias + co) : zero;
            for (int r = 0; r < 2; r++)
                for (int c = 0; c < 2; c++) {
                    if (h0 + r >= H || w0 + c >= W) continue;
                    const __m256 *sr = s + r * 4;
                    __m256 out = c == 0 ? _mm256_add_ps(_mm256_add_ps(sr[0], sr[1]), sr[2])
                                        : _mm256_sub_ps(_mm256_sub_ps(sr[1], sr[2]), sr[3]);
                    out = _mm256_add_ps(out, b);
                    if (relu) out = _mm256_max_ps(zero, out);   // NaN stays NaN
                    _mm256_storeu_ps(y + ((image * H + h0 + r) * W + w0 + c) * cout + co, out);
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
    float *u = transformed_kernel(cin, cout, w);
    if (!u) return -1;
    int failed = 0;
    #pragma omp parallel num_threads(nt) if(nt > 1) reduction(|:failed)
    {
        float *v = malloc((size_t)(XI * block * (cin + cout)) * sizeof(float));
        float *m = v ? v + XI * block * cin : NULL;
        failed = !v;
        #pragma omp for schedule(static)
        for (long b = 0; b < blocks; b++) {
            long first = b * block, count = tiles - first < block ? tiles - first : block;
            if (!v) continue;
            transform_inputs(g, x, first, count, block * cin, v);
            multiply_block(cin, cout, count, block * cin, block * cout, v, u, m);
            transform_outputs(g, m, first, count, block * cout, bias, relu, y);
        }
        free(v);
    }
    free(u);
    return failed ? -1 : 0;
}
#endif
