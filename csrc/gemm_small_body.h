/* The no-pack product for small shapes, written once and compiled per instruction
 * set: each gemm_<isa>.c includes this and calls it from a function carrying its
 * own target attribute, so the compiler vectorises these loops for that ISA. */
#ifndef PL_GEMM_SMALL_BODY_H
#define PL_GEMM_SMALL_BODY_H

/* Dot product of x and y (length k) with 8 independent partial sums, so it
 * vectorises without reassociating a single sum. */
static inline __attribute__((always_inline))
float small_dot(const float *x, const float *y, long k) {
    float partial[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long p = 0;
    for (; p + 8 <= k; p += 8)
        for (int l = 0; l < 8; l++) partial[l] += x[p + l] * y[p + l];
    float sum = 0.0f;
    for (; p < k; p++) sum += x[p] * y[p];
    for (int l = 0; l < 8; l++) sum += partial[l];
    return sum;
}

/* c (m, n) = beta * c + alpha * op(a) @ b, b stored (k, n) with row stride ldb:
 * each row of c accumulates rows of b scaled by one element of op(a). */
static inline __attribute__((always_inline))
void small_rows_of_b(int trans_a, long m, long n, long k, float alpha,
                     const float *a, long lda, const float *b, long ldb,
                     float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++) {
        float *c_row = c + i * ldc;
        if (beta == 0.0f)
            for (long j = 0; j < n; j++) c_row[j] = 0.0f;
        else if (beta != 1.0f)
            for (long j = 0; j < n; j++) c_row[j] *= beta;
        for (long p = 0; p < k; p++) {
            float scale = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
            const float *b_row = b + p * ldb;
            for (long j = 0; j < n; j++) c_row[j] += scale * b_row[j];
        }
    }
}

/* c (m, n) = beta * c + alpha * a @ b^T, a stored (m, k), b stored (n, k):
 * every element is a dot product of two contiguous rows. */
static inline __attribute__((always_inline))
void small_row_dots(long m, long n, long k, float alpha,
                    const float *a, long lda, const float *b, long ldb,
                    float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++) {
            float value = alpha * small_dot(a + i * lda, b + j * ldb, k);
            c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
        }
}

/* The caller guarantees !(trans_a && trans_b): that case goes through packing. */
static inline __attribute__((always_inline))
void small_sgemm_body(int trans_a, int trans_b, long m, long n, long k, float alpha,
                      const float *a, long lda, const float *b, long ldb,
                      float beta, float *c, long ldc) {
    if (trans_b)
        small_row_dots(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        small_rows_of_b(trans_a, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#endif
