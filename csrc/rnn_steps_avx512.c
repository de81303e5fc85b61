/* The recurrent step kernels on AVX-512 (selected at run time): sixteen lanes per
 * activation. Each lane goes through rnn_steps_avx2.c's operations (the same multiply-
 * adds, division, clamps and blend), and the other loops are the body's scalar
 * arithmetic, which the compiler does not contract, so both paths give the same bits. */
#include "gemm_kernels.h"   /* PL_HAVE_X86_KERNELS */
#include "rnn_steps.h"
#include "rnn_tanh.h"

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>

#define RNN_TARGET __attribute__((target("avx512f,avx2,fma")))
#define RNN_TABLE pl_rnn_steps_avx512
#define RNN_VECTOR_SPANS   /* tanh_span and sigmoid_span below */

/* tanh8 of rnn_steps_avx2.c on 16 floats (the sign bit handled as integers: AVX-512F
 * has no float and/or). */
RNN_TARGET static inline __m512 tanh16(__m512 x) {
    const __m512 clamp = _mm512_set1_ps(PL_TANH_CLAMP);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512i bits = _mm512_castps_si512(x);
    __m512 magnitude = _mm512_castsi512_ps(_mm512_andnot_si512(sign, bits));
    __mmask16 saturated = _mm512_cmp_ps_mask(magnitude, clamp, _CMP_GE_OQ);
    __m512 unit = _mm512_castsi512_ps(_mm512_or_si512(                             /* +-1 */
        _mm512_and_si512(sign, bits), _mm512_castps_si512(_mm512_set1_ps(1.0f))));
    x = _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), clamp), x);
    x = _mm512_min_ps(clamp, x);
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(pl_tanh_p[0]);
    for (int i = 1; i < 7; i++) p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(pl_tanh_p[i]));
    __m512 q = _mm512_set1_ps(pl_tanh_q[0]);
    for (int i = 1; i < 4; i++) q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(pl_tanh_q[i]));
    return _mm512_mask_blend_ps(saturated, _mm512_div_ps(_mm512_mul_ps(x, p), q), unit);
}

/* sigmoid8 of rnn_steps_avx2.c on 16 floats. */
RNN_TARGET static inline __m512 sigmoid16(__m512 x) {
    const __m512 half = _mm512_set1_ps(0.5f);
    return _mm512_fmadd_ps(half, tanh16(_mm512_mul_ps(half, x)), half);
}

/* Every element of a span through the same operations, the last lanes masked. */
#define SPAN_OF(fn16)                                                                  \
    long j = 0;                                                                        \
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(v + j, fn16(_mm512_loadu_ps(v + j)));\
    if (j < n) {                                                                       \
        __mmask16 lanes = (__mmask16)((1u << (n - j)) - 1u);                           \
        _mm512_mask_storeu_ps(v + j, lanes, fn16(_mm512_maskz_loadu_ps(lanes, v + j))); \
    }

RNN_TARGET static inline void tanh_span(long n, float *v) { SPAN_OF(tanh16) }

RNN_TARGET static inline void sigmoid_span(long n, float *v) { SPAN_OF(sigmoid16) }

#include "rnn_steps_body.h"
#else
const pl_rnn_steps pl_rnn_steps_avx512 = {0};   /* never selected off x86 */
#endif
