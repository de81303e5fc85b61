/* Direct convolution for layers with few taps times input channels (a first layer on
 * grey or RGB images: K = taps * cin of 9 or 27). im2col would write K floats per
 * output position to memory and multiply a K-deep matrix, which GEMM blocking cannot
 * make efficient. Here the inputs are read where they lie: for one output line, the
 * patch entry of tap j at position l is src[j][l * step] (conv.c finds the pointers;
 * the few positions next to padding go through a gathered patch buffer instead), and
 * the accumulators of a block of output channels stay in registers. Written once in
 * conv_direct_body.h and compiled per instruction set. */
#ifndef PL_CONV_DIRECT_H
#define PL_CONV_DIRECT_H

/* Output channels kept in accumulators at once (four AVX2 vectors). */
#define PL_DIRECT_COUT_BLOCK 32

typedef struct {
    /* y (n, cout) = act(P @ w[row] [+ bias]) where P[l, j] = src[j][l * step] and
     * w[row] holds the rows row[j] of the kernel w (K, cout); relu 1 for relu, 0 for
     * linear; bias may be NULL. Products are summed in j order from zero and the bias
     * added last, as the GEMM path's separate bias pass does. */
    void (*forward_rows)(long n, long taps, const float *const *src, long step,
                         const long *row, const float *w, long cout, const float *bias,
                         int relu, float *y);
    /* acc[row[j]] (cout) += sum over l in order of src[j][l * step] * dz[l] (cout),
     * for each of the taps j; acc is (K, cout), dz (n, cout). */
    void (*weight_rows)(long n, long taps, const float *const *src, long step,
                        const long *row, long cout, const float *dz, float *acc);
    /* dz (count) = dy * relu'(y) when relu (inf * 0 is NaN, as elsewhere), else dy. */
    void (*output_gradient)(long count, const float *y, const float *dy, int relu,
                            float *dz);
    /* sums (cout) += the column sums of dz (n, cout), rows in order. */
    void (*column_sums)(long n, long cout, const float *dz, float *sums);
    /* dz (n, cout) = one output line's gradient under max pooling by windows of
     * `window` positions along the line: position l < covered (and its channel c) takes
     * the pooled gradient dzp[l / window][c] where arg[l / window][c] names it, that is
     * equals at + l * cout + c, and zero elsewhere. */
    void (*unpool_line)(long n, long covered, long window, long cout, long at,
                        const int *arg, const float *dzp, float *dz);
} pl_conv_direct;

extern const pl_conv_direct pl_conv_direct_generic;
extern const pl_conv_direct pl_conv_direct_avx2;
extern const pl_conv_direct pl_conv_direct_avx512;

#endif
