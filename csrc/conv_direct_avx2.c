/* The direct convolution kernels vectorised for AVX2 + FMA (selected at run time):
 * a block's 32 accumulators are four registers, two positions or two taps at once so
 * that eight independent FMA chains hide the FMA latency. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#define DIRECT_TARGET __attribute__((target("avx2,fma")))
#define DIRECT_TABLE pl_conv_direct_avx2
#define MADD(a, b, c) fmaf(a, b, c)   /* one vfmadd under this target */
#include "conv_direct.h"

#define FMA4(p, v, a) \
    a##0 = _mm256_fmadd_ps(p, _mm256_loadu_ps(v), a##0); \
    a##1 = _mm256_fmadd_ps(p, _mm256_loadu_ps((v) + 8), a##1); \
    a##2 = _mm256_fmadd_ps(p, _mm256_loadu_ps((v) + 16), a##2); \
    a##3 = _mm256_fmadd_ps(p, _mm256_loadu_ps((v) + 24), a##3)

#define STORE4(dst, a) \
    _mm256_storeu_ps(dst, a##0); _mm256_storeu_ps((dst) + 8, a##1); \
    _mm256_storeu_ps((dst) + 16, a##2); _mm256_storeu_ps((dst) + 24, a##3)

DIRECT_TARGET
static void forward_block(long pair, long taps, const float *const *src, long step,
                          long first, const long *row, const float *w, long cout,
                          float *acc) {
    const long at0 = first * step, at1 = pair > 1 ? at0 + step : at0;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (long j = 0; j < taps; j++) {
        const float *w_row = w + row[j] * cout;
        __m256 p = _mm256_broadcast_ss(src[j] + at0), q = _mm256_broadcast_ss(src[j] + at1);
        FMA4(p, w_row, a);
        FMA4(q, w_row, b);
    }
    STORE4(acc, a);
    if (pair > 1) {
        STORE4(acc + PL_DIRECT_COUT_BLOCK, b);
    }
}

/* acc rows row[j] (and row[j + 1]) += one tap's (two taps') sums over the n positions. */
DIRECT_TARGET
static void weight_block(long n, long taps, const float *const *src, long step,
                         const long *row, long cout, const float *dz, float *acc) {
    long j = 0;
    for (; j + 1 < taps; j += 2) {
        float *acc_a = acc + row[j] * cout, *acc_b = acc + row[j + 1] * cout;
        const float *src_a = src[j], *src_b = src[j + 1];
        __m256 a0 = _mm256_loadu_ps(acc_a), a1 = _mm256_loadu_ps(acc_a + 8);
        __m256 a2 = _mm256_loadu_ps(acc_a + 16), a3 = _mm256_loadu_ps(acc_a + 24);
        __m256 b0 = _mm256_loadu_ps(acc_b), b1 = _mm256_loadu_ps(acc_b + 8);
        __m256 b2 = _mm256_loadu_ps(acc_b + 16), b3 = _mm256_loadu_ps(acc_b + 24);
        for (long l = 0; l < n; l++) {
            const float *dz_row = dz + l * cout;
            __m256 p = _mm256_broadcast_ss(src_a + l * step), q = _mm256_broadcast_ss(src_b + l * step);
            FMA4(p, dz_row, a);
            FMA4(q, dz_row, b);
        }
        STORE4(acc_a, a);
        STORE4(acc_b, b);
    }
    if (j < taps) {
        float *acc_a = acc + row[j] * cout;
        __m256 a0 = _mm256_loadu_ps(acc_a), a1 = _mm256_loadu_ps(acc_a + 8);
        __m256 a2 = _mm256_loadu_ps(acc_a + 16), a3 = _mm256_loadu_ps(acc_a + 24);
        for (long l = 0; l < n; l++) {
            __m256 p = _mm256_broadcast_ss(src[j] + l * step);
            FMA4(p, dz + l * cout, a);
        }
        STORE4(acc_a, a);
    }
}

#include "conv_direct_body.h"
#else
#include "conv_direct.h"
const pl_conv_direct pl_conv_direct_avx2 = {0, 0, 0, 0, 0};   /* never selected off x86 */
#endif
