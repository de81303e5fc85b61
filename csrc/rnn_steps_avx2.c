/* The recurrent step kernels vectorised for AVX2 + FMA (selected at run time). */
#include <immintrin.h>
#include "rnn_tanh.h"

#define RNN_TARGET __attribute__((target("avx2,fma")))
#define RNN_TABLE pl_rnn_steps_avx2
#define RNN_VECTOR_SPANS   /* tanh_span and sigmoid_span below */

/* fast_tanh of 8 floats: its rational function with multiply-adds, the clamps as
 * max(-C, x) and min(C, x), which keep a NaN x (GCC makes compares and blends of the
 * scalar code's selects, a quarter of an LSTM step's activations, unless told that no
 * NaN occurs), and exactly +-1 from the clamps on: the multiply-adds give 1 - 2.4e-7
 * there, so sigmoid(-inf) would be 1.2e-7, not 0, and 0 * inf no NaN. */
RNN_TARGET static inline __m256 tanh8(__m256 x) {
    const __m256 clamp = _mm256_set1_ps(PL_TANH_CLAMP);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 saturated = _mm256_cmp_ps(_mm256_andnot_ps(sign, x), clamp, _CMP_GE_OQ);
    __m256 unit = _mm256_or_ps(_mm256_and_ps(sign, x), _mm256_set1_ps(1.0f));   /* +-1 */
    x = _mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), clamp), x);
    x = _mm256_min_ps(clamp, x);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(pl_tanh_p[0]);
    for (int i = 1; i < 7; i++) p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(pl_tanh_p[i]));
    __m256 q = _mm256_set1_ps(pl_tanh_q[0]);
    for (int i = 1; i < 4; i++) q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(pl_tanh_q[i]));
    return _mm256_blendv_ps(_mm256_div_ps(_mm256_mul_ps(x, p), q), unit, saturated);
}

/* fast_sigmoid of 8 floats: 1/2 + tanh(x / 2) / 2 as one multiply-add. */
RNN_TARGET static inline __m256 sigmoid8(__m256 x) {
    const __m256 half = _mm256_set1_ps(0.5f);
    return _mm256_fmadd_ps(half, tanh8(_mm256_mul_ps(half, x)), half);
}

/* Lanes [0, count) of a vector (count < 8): the last, short vector of a span, so that
 * every element of a span goes through the same operations. */
RNN_TARGET static inline __m256i first_lanes(long count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define SPAN_OF(fn8)                                                                   \
    long j = 0;                                                                        \
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, fn8(_mm256_loadu_ps(v + j)));   \
    if (j < n) {                                                                       \
        __m256i lanes = first_lanes(n - j);                                            \
        _mm256_maskstore_ps(v + j, lanes, fn8(_mm256_maskload_ps(v + j, lanes)));      \
    }

RNN_TARGET static inline void tanh_span(long n, float *v) { SPAN_OF(tanh8) }

RNN_TARGET static inline void sigmoid_span(long n, float *v) { SPAN_OF(sigmoid8) }

#include "rnn_steps_body.h"
