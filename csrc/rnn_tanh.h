/* The coefficients of the recurrent kernels' tanh, for the scalar body
 * (rnn_steps_body.h) and the vector paths (rnn_steps_avx2.c, rnn_steps_avx512.c). */
#ifndef PL_RNN_TANH_H
#define PL_RNN_TANH_H

/* fast_tanh: a rational minimax approximation of tanh on [-PL_TANH_CLAMP, PL_TANH_CLAMP],
 * x * p(x^2) / q(x^2) (odd degree-13 numerator, even degree-6 denominator), beyond
 * which tanh rounds to +-1 in float. The coefficients, highest power first, are taken
 * by Horner's rule in this order on every path, so all paths give the same bits. */
#define PL_TANH_CLAMP 7.90531110763549805f
static const float pl_tanh_p[7] = {-2.76076847742355e-16f, 2.00018790482477e-13f,
                                   -8.60467152213735e-11f, 5.12229709037114e-08f,
                                   1.48572235717979e-05f, 6.37261928875436e-04f,
                                   4.89352455891786e-03f};
static const float pl_tanh_q[4] = {1.19825839466702e-06f, 1.18534705686654e-04f,
                                   2.26843463243900e-03f, 4.89352518554385e-03f};

#endif
