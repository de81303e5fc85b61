/* The direct convolution kernels for any CPU (the compiler's baseline vector width). */
#define DIRECT_TARGET
#define DIRECT_TABLE pl_conv_direct_generic
#define MADD(a, b, c) ((a) * (b) + (c))
#include "conv_direct.h"

/* acc (pair, BLOCK) for positions first, first + 1 (pair 1 or 2). */
static void forward_block(long pair, long taps, const float *const *src, long step,
                          long first, const long *row, const float *w, long cout,
                          float *acc) {
    for (long r = 0; r < pair; r++) {
        float *acc_row = acc + r * PL_DIRECT_COUT_BLOCK;
        for (int c = 0; c < PL_DIRECT_COUT_BLOCK; c++) acc_row[c] = 0.0f;
        for (long j = 0; j < taps; j++) {
            const float a = src[j][(first + r) * step], *w_row = w + row[j] * cout;
            for (int c = 0; c < PL_DIRECT_COUT_BLOCK; c++) acc_row[c] = MADD(a, w_row[c], acc_row[c]);
        }
    }
}

static void weight_block(long n, long taps, const float *const *src, long step,
                         const long *row, long cout, const float *dz, float *acc) {
    for (long j = 0; j < taps; j++) {
        float *acc_row = acc + row[j] * cout;
        for (long l = 0; l < n; l++) {
            const float a = src[j][l * step];
            for (int c = 0; c < PL_DIRECT_COUT_BLOCK; c++)
                acc_row[c] = MADD(a, dz[l * cout + c], acc_row[c]);
        }
    }
}

#include "conv_direct_body.h"
