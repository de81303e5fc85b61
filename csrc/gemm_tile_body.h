/* The packed GEMM's register tile, written once for each x86 vector width.  A row of
 * the TILE_MR x TILE_NR tile is two vectors, lo (its first TILE_NR / 2 columns) and hi.
 * Each gemm_<isa>.c defines, then includes this file:
 *
 *   TILE_TARGET            the function attribute selecting the instruction set
 *   TILE_MR, TILE_NR       the tile's rows (6 or 8) and columns
 *   TILE_FN(name)          name with the path's suffix (pl_sgemm_ukernel -> .._avx2)
 *   vec, vec_zero(), vec_set1(x), vec_load(p), vec_store(p, v), vec_fmadd(a, b, c)
 *                          (a * b + c, one rounding), vec_mul(a, b)
 *
 * and gets accumulate_steps and the three micro-kernels of gemm_kernels.h (full tile,
 * first rows of a tile, op(A) in place).  Each element of C is one chain of FMAs over
 * k, in order, from zero, then alpha (when not 1) and beta: the same bits at any width. */

/* c row (TILE_NR floats) = acc + beta * c row (beta == 0: c row is not read). */
TILE_TARGET static inline void store_row(float *c_row, vec lo, vec hi, float beta) {
    if (beta != 0.0f) {
        vec beta_v = vec_set1(beta);
        lo = vec_fmadd(beta_v, vec_load(c_row), lo);
        hi = vec_fmadd(beta_v, vec_load(c_row + TILE_NR / 2), hi);
    }
    vec_store(c_row, lo);
    vec_store(c_row + TILE_NR / 2, hi);
}

/* lo[i], hi[i] (row i of the tile, i < rows) += the products of `steps` k steps: step p
 * multiplies the TILE_NR floats at b + p * b_step (row p of a packed B panel when b_step
 * is TILE_NR) by element (i, p) of A at a[i * row_step + p * col_step]. */
TILE_TARGET static inline __attribute__((always_inline))
void accumulate_steps(int rows, long steps, const float *a, long row_step, long col_step,
                      const float *b, long b_step, vec *lo, vec *hi) {
#pragma GCC unroll 4
    for (long p = 0; p < steps; p++) {
        vec b_lo = vec_load(b), b_hi = vec_load(b + TILE_NR / 2);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            vec a_bcast = vec_set1(a[i * row_step]);
            lo[i] = vec_fmadd(a_bcast, b_lo, lo[i]);
            hi[i] = vec_fmadd(a_bcast, b_hi, hi[i]);
        }
        a += col_step;
        b += b_step;
    }
}

/* The first `rows` rows (1..TILE_MR, a compile-time constant once inlined) of a tile
 * over kc steps of a packed B panel, op(A) element (i, p) at a[i * row_step + p *
 * col_step]: (1, TILE_MR) in a packed panel, or op(A) in place; c = the tile. */
TILE_TARGET static inline __attribute__((always_inline))
void tile_rows(int rows, long kc, const float *a, long row_step, long col_step,
               const float *b_panel, float *c, long ldc, float alpha, float beta) {
    vec lo[TILE_MR], hi[TILE_MR];
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) {
        lo[i] = vec_zero();
        hi[i] = vec_zero();
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    }
    accumulate_steps(rows, kc, a, row_step, col_step, b_panel, TILE_NR, lo, hi);
    if (alpha != 1.0f) {   // times 1 would give the same bits: skipped
        vec alpha_v = vec_set1(alpha);
#pragma GCC unroll 8
        for (int i = 0; i < rows; i++) {
            lo[i] = vec_mul(alpha_v, lo[i]);
            hi[i] = vec_mul(alpha_v, hi[i]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < rows; i++) store_row(c + i * ldc, lo[i], hi[i], beta);
}

TILE_TARGET void TILE_FN(pl_sgemm_ukernel)(long kc, const float *a_panel,
                                           const float *b_panel, float *c, long ldc,
                                           float alpha, float beta) {
    tile_rows(TILE_MR, kc, a_panel, 1, TILE_MR, b_panel, c, ldc, alpha, beta);
}

/* The first rows (1 .. TILE_MR - 1) rows of the tile, written straight into c. */
#define PANEL_ROWS(r) tile_rows(r, kc, a_panel, 1, TILE_MR, b_panel, c, ldc, alpha, beta)

TILE_TARGET void TILE_FN(pl_sgemm_ukernel_rows)(int rows, long kc, const float *a_panel,
                                                const float *b_panel, float *c, long ldc,
                                                float alpha, float beta) {
    switch (rows) {
    case 1: PANEL_ROWS(1); break;
    case 2: PANEL_ROWS(2); break;
    case 3: PANEL_ROWS(3); break;
    case 4: PANEL_ROWS(4); break;
    case 5: PANEL_ROWS(5); break;
#if TILE_MR == 8
    case 6: PANEL_ROWS(6); break;
    case 7: PANEL_ROWS(7); break;
#endif
    default: break;
    }
}

/* rows (1..TILE_MR) rows of a tile with op(A) read in place: a row of A holds a row of
 * op(A) (row_step lda, col_step 1) or a column of it (1, lda). */
#define IN_PLACE_ROWS(r)                                                                  \
    (col_step == 1 ? tile_rows(r, kc, a, row_step, 1, b_panel, c, ldc, alpha, beta)       \
                   : tile_rows(r, kc, a, 1, col_step, b_panel, c, ldc, alpha, beta))

TILE_TARGET void TILE_FN(pl_sgemm_ukernel_in_place)(int rows, long kc, const float *a,
                                                    long row_step, long col_step,
                                                    const float *b_panel, float *c,
                                                    long ldc, float alpha, float beta) {
    switch (rows) {
    case 1: IN_PLACE_ROWS(1); break;
    case 2: IN_PLACE_ROWS(2); break;
    case 3: IN_PLACE_ROWS(3); break;
    case 4: IN_PLACE_ROWS(4); break;
    case 5: IN_PLACE_ROWS(5); break;
    case 6: IN_PLACE_ROWS(6); break;
#if TILE_MR == 8
    case 7: IN_PLACE_ROWS(7); break;
    case 8: IN_PLACE_ROWS(8); break;
#endif
    default: break;
    }
}

#undef PANEL_ROWS
#undef IN_PLACE_ROWS
