/* Internal to the GEMM: micro-kernels, small-product kernels and the per-ISA
 * block-size table.  Not part of the public C interface (see gemm.h). */
#ifndef PL_GEMM_KERNELS_H
#define PL_GEMM_KERNELS_H
#include <stddef.h>

/* c (mr, nr) with row stride ldc  =  alpha * a_panel @ b_panel + beta * c.
 * a_panel is kc steps of mr floats (column p of an mr-row slice of op(A)),
 * b_panel is kc steps of nr floats (row p of an nr-column slice of op(B)),
 * both 64-byte aligned and zero-padded.  beta == 0 does not read c. */
typedef void (*pl_ukernel_fn)(long kc, const float *a_panel, const float *b_panel,
                              float *c, long ldc, float alpha, float beta);

/* The first rows (1 .. mr-1) rows of a micro-tile, written straight into c: the
 * last, short row panel of C without computing padding rows. */
typedef void (*pl_ukernel_rows_fn)(int rows, long kc, const float *a_panel,
                                   const float *b_panel, float *c, long ldc,
                                   float alpha, float beta);

/* The first rows (1 .. mr) rows of a micro-tile with op(A) read in place instead of
 * packed: op(A)(i, p) is a[i * row_step + p * col_step], and one of the steps is 1.
 * Same sums in the same order as the packed micro-kernels. */
typedef void (*pl_ukernel_in_place_fn)(int rows, long kc, const float *a, long row_step,
                                       long col_step, const float *b_panel, float *c,
                                       long ldc, float alpha, float beta);

/* One full nr-column panel of op(B) from B stored transposed (n, k):
 * panel[p * nr + col] = b[col * ldb + p] for p < kc. */
typedef void (*pl_pack_panel_t_fn)(long kc, const float *b, long ldb, float *panel);

/* One full mr-row panel of op(A) from A stored as rows (m, k):
 * panel[p * mr + r] = a[r * lda + p] for p < kc. */
typedef void (*pl_pack_panel_a_fn)(long kc, const float *a, long lda, float *panel);

/* The whole product without packing, on one thread, for small shapes.
 * Same contract as pl_sgemm (m, n, k >= 1, alpha != 0). */
typedef void (*pl_small_fn)(int trans_a, int trans_b, long m, long n, long k, float alpha,
                            const float *a, long lda, const float *b, long ldb,
                            float beta, float *c, long ldc);

/* Columns [j_begin, j_end) of a product with few rows, op(B) read in place (no packing):
 *   c (m, n) = alpha * a @ op(b) + beta * c,  a stored (m, k) with row stride lda,
 *   op(b) (k, n): b stored (k, n) with ldb, or (n, k) when trans_b.
 * m, k >= 1, alpha != 0; beta == 0 does not read c.  Each element of c is computed the
 * same way wherever the column range starts, so threads splitting the columns of one
 * product produce the bits of one thread. */
typedef void (*pl_skinny_fn)(int trans_b, long m, long j_begin, long j_end, long k,
                             float alpha, const float *a, long lda, const float *b, long ldb,
                             float beta, float *c, long ldc);

/* c (m, n) = alpha * a (m, k) @ b (k, n) + beta * c for m <= 8 rows and n <= PL_NARROW_N
 * columns, b read in place with row stride ldb.  Each element is PL_NARROW_CHAINS
 * partial sums over p (the chain p % PL_NARROW_CHAINS), joined as (s0 + s1) + (s2 + s3):
 * one running sum per column would wait on each multiply-add in turn. */
typedef void (*pl_narrow_fn)(long m, long n, long k, float alpha, const float *a, long lda,
                             const float *b, long ldb, float beta, float *c, long ldc);
#define PL_NARROW_N 16
#define PL_NARROW_CHAINS 4   /* the kernels write the join out for four */

/* Rows of A a skinny kernel takes at once (each pass streams the B columns once). */
#define PL_SKINNY_GROUP 4

/* Size of the next row group when rows_left rows remain: groups of at most
 * PL_SKINNY_GROUP rows, as even as possible (7 rows: 4 + 3, not 4 + 2 + 1). */
static inline long pl_skinny_group_rows(long rows_left) {
    long groups = (rows_left + PL_SKINNY_GROUP - 1) / PL_SKINNY_GROUP;
    return (rows_left + groups - 1) / groups;
}

/* Block sizes of one instruction-set path (BLIS names):
 * mr x nr micro-tile, mc rows of A and kc depth per packed A block (sized for L2),
 * kc x nc packed B block (L3); mc is a multiple of mr, nc of nr. */
typedef struct {
    int mr, nr;
    long mc, kc, nc;
    pl_ukernel_fn ukernel;
    pl_ukernel_rows_fn ukernel_rows;   /* NULL: short panels go through a full tile */
    pl_ukernel_in_place_fn ukernel_in_place;
    pl_pack_panel_a_fn pack_panel_a;   /* NULL: row-major A panels packed by a plain loop */
    pl_pack_panel_t_fn pack_panel_t;   /* NULL: transposed B panels packed by a plain loop */
    pl_small_fn small;
    pl_skinny_fn skinny;
    pl_narrow_fn narrow;
} pl_gemm_arch;

#define PL_GENERIC_MR 4
#define PL_GENERIC_NR 8
void pl_sgemm_ukernel_generic(long kc, const float *a_panel, const float *b_panel,
                              float *c, long ldc, float alpha, float beta);
void pl_sgemm_ukernel_in_place_generic(int rows, long kc, const float *a, long row_step,
                                       long col_step, const float *b_panel, float *c,
                                       long ldc, float alpha, float beta);
void pl_sgemm_small_generic(int trans_a, int trans_b, long m, long n, long k, float alpha,
                            const float *a, long lda, const float *b, long ldb,
                            float beta, float *c, long ldc);
void pl_sgemm_skinny_generic(int trans_b, long m, long j_begin, long j_end, long k,
                             float alpha, const float *a, long lda, const float *b, long ldb,
                             float beta, float *c, long ldc);
void pl_sgemm_narrow_generic(long m, long n, long k, float alpha, const float *a, long lda,
                             const float *b, long ldb, float beta, float *c, long ldc);

/* At least `floats` 64-byte aligned floats of the calling thread's scratch, or NULL.
 * Each OS thread has its own, so concurrent callers never share one; it is the GEMM's
 * pack space, so a caller must be done with it before its thread calls the GEMM, and
 * asking for more than the last size may move it (the old contents are lost). */
float *pl_thread_scratch(size_t floats);

#if defined(__x86_64__) || defined(__i386__)
#define PL_HAVE_X86_KERNELS 1
/* The micro-kernels of one x86 path's tile (gemm_tile_body.h): pl_ukernel_fn,
 * pl_ukernel_rows_fn and pl_ukernel_in_place_fn. */
#define PL_TILE_KERNELS(isa)                                                                \
    void pl_sgemm_ukernel_##isa(long kc, const float *a_panel, const float *b_panel,       \
                                float *c, long ldc, float alpha, float beta);               \
    void pl_sgemm_ukernel_rows_##isa(int rows, long kc, const float *a_panel,              \
                                     const float *b_panel, float *c, long ldc, float alpha, \
                                     float beta);                                           \
    void pl_sgemm_ukernel_in_place_##isa(int rows, long kc, const float *a, long row_step,  \
                                         long col_step, const float *b_panel, float *c,     \
                                         long ldc, float alpha, float beta);
#define PL_AVX2_MR 6
#define PL_AVX2_NR 16
PL_TILE_KERNELS(avx2)
/* rows (1..6) x 16 tile c (row stride ldc) = sum over t < taps of A_t @ b_panel rows
 * [t * cin, (t + 1) * cin), A_t(i, ch) = src[t][i * step + ch]; b_panel (taps * cin, 16)
 * as a packed B panel.  Sums in the order of t and ch from zero, as the micro-kernel over
 * the same columns laid out contiguously: an implicit-GEMM convolution tile. */
void pl_sgemm_ukernel_taps_avx2(int rows, long taps, const float *const *src, long step,
                                long cin, const float *b_panel, float *c, long ldc);
/* A stretch of k steps read in place: A(i, p) = a[i + p * a_step] and
 * B(p, j) = b[p * ldb + j] for p < steps (offsets added by the kernel). */
typedef struct {
    const float *a, *b;
    long steps;
} pl_tile_run;
/* rows (1..6) x 16 tile c (row stride ldc) += the sum over runs r < n_runs, in order and
 * from zero, of A_r @ B_r with A_r(i, p) = runs[r].a[a_offset + i + p * a_step] and
 * B_r(p, j) = runs[r].b[b_offset + p * ldb + j]: a convolution's kernel gradient read
 * in place, one run per tap and output line (a: the inputs the tap reads, b: the
 * line's output gradients). */
void pl_sgemm_ukernel_runs_avx2(int rows, long n_runs, const pl_tile_run *runs,
                                long a_offset, long a_step, long b_offset, long ldb,
                                float *c, long ldc);
void pl_sgemm_pack_panel_a_avx2(long kc, const float *a, long lda, float *panel);
void pl_sgemm_pack_panel_t_avx2(long kc, const float *b, long ldb, float *panel);
/* The same for the AVX-512 path's panels: 32 columns of op(B), 8 rows of op(A). */
void pl_sgemm_pack_panel_t32_avx2(long kc, const float *b, long ldb, float *panel);
void pl_sgemm_pack_panel_a8_avx2(long kc, const float *a, long lda, float *panel);
void pl_sgemm_small_avx2(int trans_a, int trans_b, long m, long n, long k, float alpha,
                         const float *a, long lda, const float *b, long ldb,
                         float beta, float *c, long ldc);
void pl_sgemm_skinny_avx2(int trans_b, long m, long j_begin, long j_end, long k,
                          float alpha, const float *a, long lda, const float *b, long ldb,
                          float beta, float *c, long ldc);
void pl_sgemm_narrow_avx2(long m, long n, long k, float alpha, const float *a, long lda,
                          const float *b, long ldb, float beta, float *c, long ldc);

#define PL_AVX512_MR 8
#define PL_AVX512_NR 32
PL_TILE_KERNELS(avx512)
#endif

#endif
