/* The direct convolution kernels of conv_direct.h, written once. Each
 * conv_direct_<isa>.c defines DIRECT_TARGET (a function attribute selecting the
 * instruction set, possibly empty), DIRECT_TABLE (its table's name), MADD(a, b, c)
 * (a * b + c, fused where the instruction set has FMA), optionally DIRECT_GROUP
 * (output positions per forward block, 2 unless defined) and two block kernels for
 * PL_DIRECT_COUT_BLOCK output channels, then includes this file:
 *
 *   forward_block(count, taps, src, step, first, row, w, cout, acc): acc (count,
 *       BLOCK) = rows first .. first + count - 1 (count 1 .. DIRECT_GROUP) of
 *       P @ w[row][:, :BLOCK], summed in tap order from zero (w already offset to the
 *       block's column);
 *   weight_block(n, taps, src, step, row, cout, dz, acc): acc[row[j]][:BLOCK] +=
 *       sum over l in order of src[j][l * step] * dz[l][:BLOCK].
 *
 * The remaining columns (cout not a multiple of BLOCK) run the same sums in plain
 * loops here. Each output element has one fixed summation order. */
#include "conv_direct.h"

#define BLOCK PL_DIRECT_COUT_BLOCK
#ifndef DIRECT_GROUP
#define DIRECT_GROUP 2
#endif

/* y_block (width) = act(acc [+ bias]) */
DIRECT_TARGET
static inline void finish(long width, const float *acc, const float *bias, int relu,
                          float *y_block) {
    for (long c = 0; c < width; c++) {
        float v = bias ? acc[c] + bias[c] : acc[c];
        y_block[c] = relu && v < 0.0f ? 0.0f : v;   // NaN passes, as in the GEMM path
    }
}

DIRECT_TARGET
static void forward_rows(long n, long taps, const float *const *src, long step,
                         const long *row, const float *w, long cout, const float *bias,
                         int relu, float *y) {
    float acc[DIRECT_GROUP * BLOCK];
    long c0 = 0;
    for (; c0 + BLOCK <= cout; c0 += BLOCK)
        for (long l = 0; l < n; l += DIRECT_GROUP) {
            long count = n - l < DIRECT_GROUP ? n - l : DIRECT_GROUP;
            forward_block(count, taps, src, step, l, row, w + c0, cout, acc);
            for (long r = 0; r < count; r++)
                finish(BLOCK, acc + r * BLOCK, bias ? bias + c0 : 0, relu,
                       y + (l + r) * cout + c0);
        }
    for (long l = 0; c0 < cout && l < n; l++) {
        for (long c = c0; c < cout; c++) {
            float sum = 0.0f;
            for (long j = 0; j < taps; j++) sum = MADD(src[j][l * step], w[row[j] * cout + c], sum);
            acc[c - c0] = sum;
        }
        finish(cout - c0, acc, bias ? bias + c0 : 0, relu, y + l * cout + c0);
    }
}

DIRECT_TARGET
static void weight_rows(long n, long taps, const float *const *src, long step,
                        const long *row, long cout, const float *dz, float *acc) {
    long c0 = 0;
    for (; c0 + BLOCK <= cout; c0 += BLOCK)
        weight_block(n, taps, src, step, row, cout, dz + c0, acc + c0);
    for (long j = 0; c0 < cout && j < taps; j++)
        for (long c = c0; c < cout; c++) {
            float sum = acc[row[j] * cout + c];
            for (long l = 0; l < n; l++) sum = MADD(src[j][l * step], dz[l * cout + c], sum);
            acc[row[j] * cout + c] = sum;
        }
}

DIRECT_TARGET
static void output_gradient(long count, const float *y, const float *dy, int relu,
                            float *dz) {
    if (relu) {
        for (long i = 0; i < count; i++) dz[i] = dy[i] * (y[i] > 0.0f ? 1.0f : 0.0f);
    } else {
        for (long i = 0; i < count; i++) dz[i] = dy[i];
    }
}

DIRECT_TARGET
static void column_sums(long n, long cout, const float *dz, float *sums) {
    for (long l = 0; l < n; l++)
        for (long c = 0; c < cout; c++) sums[c] += dz[l * cout + c];
}

DIRECT_TARGET
static void unpool_line(long n, long covered, long window, long cout, long at, const int *arg,
                        const float *dzp, float *dz) {
    for (long l = 0; l < n; l++) {
        float *dz_row = dz + l * cout;
        if (l >= covered) {
            for (long c = 0; c < cout; c++) dz_row[c] = 0.0f;
            continue;
        }
        const int *arg_row = arg + l / window * cout;
        const float *dzp_row = dzp + l / window * cout;
        const int here = (int)(at + l * cout);
        for (long c = 0; c < cout; c++)
            dz_row[c] = arg_row[c] == here + (int)c ? dzp_row[c] : 0.0f;
    }
}

const pl_conv_direct DIRECT_TABLE = {forward_rows, weight_rows, output_gradient, column_sums,
                                     unpool_line};
