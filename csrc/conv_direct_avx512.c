/* The direct convolution kernels on AVX-512 (selected at run time, never -mavx512f
 * globally): a block's 32 accumulators are two registers, four positions or four taps
 * at once so that eight independent FMA chains hide the FMA latency.  Each output
 * element is the same chain of FMAs, in the same order, as on the AVX2 path, so both
 * give the same bits. */
#include "gemm_kernels.h"   /* PL_HAVE_X86_KERNELS */
#include "conv_direct.h"

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>
#include <math.h>
#define DIRECT_TARGET __attribute__((target("avx512f,avx2,fma")))
#define DIRECT_TABLE pl_conv_direct_avx512
#define DIRECT_GROUP 4
#define MADD(a, b, c) fmaf(a, b, c)   /* one vfmadd under this target */

#define FMA2(p, v, a) \
    a##0 = _mm512_fmadd_ps(p, _mm512_loadu_ps(v), a##0); \
    a##1 = _mm512_fmadd_ps(p, _mm512_loadu_ps((v) + 16), a##1)

#define LOAD2(a, src) \
    __m512 a##0 = _mm512_loadu_ps(src), a##1 = _mm512_loadu_ps((src) + 16)

#define STORE2(dst, a) _mm512_storeu_ps(dst, a##0); _mm512_storeu_ps((dst) + 16, a##1)

/* acc (count, 32) for positions first .. first + count - 1: four at once, or one by one
 * at a line's end. */
DIRECT_TARGET
static void forward_block(long count, long taps, const float *const *src, long step,
                          long first, const long *row, const float *w, long cout,
                          float *acc) {
    const long at = first * step;
    if (count == DIRECT_GROUP) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        __m512 c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        for (long j = 0; j < taps; j++) {
            const float *w_row = w + row[j] * cout, *x = src[j] + at;
            __m512 w0 = _mm512_loadu_ps(w_row), w1 = _mm512_loadu_ps(w_row + 16);
            __m512 p = _mm512_set1_ps(x[0]), q = _mm512_set1_ps(x[step]);
            __m512 r = _mm512_set1_ps(x[2 * step]), s = _mm512_set1_ps(x[3 * step]);
            a0 = _mm512_fmadd_ps(p, w0, a0); a1 = _mm512_fmadd_ps(p, w1, a1);
            b0 = _mm512_fmadd_ps(q, w0, b0); b1 = _mm512_fmadd_ps(q, w1, b1);
            c0 = _mm512_fmadd_ps(r, w0, c0); c1 = _mm512_fmadd_ps(r, w1, c1);
            d0 = _mm512_fmadd_ps(s, w0, d0); d1 = _mm512_fmadd_ps(s, w1, d1);
        }
        STORE2(acc, a);
        STORE2(acc + PL_DIRECT_COUT_BLOCK, b);
        STORE2(acc + 2 * PL_DIRECT_COUT_BLOCK, c);
        STORE2(acc + 3 * PL_DIRECT_COUT_BLOCK, d);
        return;
    }
    for (long r = 0; r < count; r++) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        for (long j = 0; j < taps; j++) {
            __m512 p = _mm512_set1_ps(src[j][at + r * step]);
            FMA2(p, w + row[j] * cout, a);
        }
        STORE2(acc + r * PL_DIRECT_COUT_BLOCK, a);
    }
}

/* acc rows row[j] .. row[j + 3] += four taps' sums over the n positions, then the
 * remaining taps one at a time. */
DIRECT_TARGET
static void weight_block(long n, long taps, const float *const *src, long step,
                         const long *row, long cout, const float *dz, float *acc) {
    long j = 0;
    for (; j + 3 < taps; j += 4) {
        float *acc_a = acc + row[j] * cout, *acc_b = acc + row[j + 1] * cout;
        float *acc_c = acc + row[j + 2] * cout, *acc_d = acc + row[j + 3] * cout;
        const float *src_a = src[j], *src_b = src[j + 1], *src_c = src[j + 2], *src_d = src[j + 3];
        LOAD2(a, acc_a);
        LOAD2(b, acc_b);
        LOAD2(c, acc_c);
        LOAD2(d, acc_d);
        for (long l = 0; l < n; l++) {
            const float *dz_row = dz + l * cout;
            __m512 z0 = _mm512_loadu_ps(dz_row), z1 = _mm512_loadu_ps(dz_row + 16);
            __m512 p = _mm512_set1_ps(src_a[l * step]), q = _mm512_set1_ps(src_b[l * step]);
            __m512 r = _mm512_set1_ps(src_c[l * step]), s = _mm512_set1_ps(src_d[l * step]);
            a0 = _mm512_fmadd_ps(p, z0, a0); a1 = _mm512_fmadd_ps(p, z1, a1);
            b0 = _mm512_fmadd_ps(q, z0, b0); b1 = _mm512_fmadd_ps(q, z1, b1);
            c0 = _mm512_fmadd_ps(r, z0, c0); c1 = _mm512_fmadd_ps(r, z1, c1);
            d0 = _mm512_fmadd_ps(s, z0, d0); d1 = _mm512_fmadd_ps(s, z1, d1);
        }
        STORE2(acc_a, a);
        STORE2(acc_b, b);
        STORE2(acc_c, c);
        STORE2(acc_d, d);
    }
    for (; j < taps; j++) {
        float *acc_a = acc + row[j] * cout;
        LOAD2(a, acc_a);
        for (long l = 0; l < n; l++) {
            __m512 p = _mm512_set1_ps(src[j][l * step]);
            FMA2(p, dz + l * cout, a);
        }
        STORE2(acc_a, a);
    }
}

#include "conv_direct_body.h"
#else
const pl_conv_direct pl_conv_direct_avx512 = {0, 0, 0, 0, 0};   /* never selected off x86 */
#endif
