/* One time step of each recurrent cell over all batch rows: the elementwise part
 * (activations, cell update, masking) that follows the step's recurrent GEMM.
 * Written once in rnn_steps_body.h and compiled per instruction set
 * (rnn_steps_generic.c, rnn_steps_avx2.c, rnn_steps_avx512.c); rnn.c picks a table with pl_rnn_steps_for.
 *
 * Shapes: B batch rows, U units. Activation codes are enum pl_act values LINEAR, RELU,
 * SIGMOID, TANH (their derivatives are taken from the outputs). mask is (B) bytes,
 * 0 = this row skips the step (its state is carried over), or NULL for no mask.
 * In backward steps, dy is the gradient of the step's output h (B rows, row stride
 * ldy) or NULL, and carry (B, U) holds the gradient flowing into h from later steps:
 * a step adds dy to it, reads it and leaves there the part of dh_prev that does not
 * pass through the recurrent GEMM (the caller then adds d_rec @ recurrent^T).
 * Each kernel runs on the calling thread; rnn.c splits the batch rows between threads. */
#ifndef PL_RNN_STEPS_H
#define PL_RNN_STEPS_H
#include "pl_ctx.h"

typedef struct {
    /* z (B, 4U): in, x@W + h_prev@R (+ b already when bias is NULL); out, the gate
     * activations i, f, g, o. bias (4U) is added first, or NULL.
     * c_prev, c, act_c, h_prev, h: (B, U); act_c = act(c), h = o * act(c). */
    void (*lstm_forward)(long B, long U, int act, int rec_act,
                         const unsigned char *mask, const float *bias, float *z,
                         const float *c_prev, float *c, float *act_c, const float *h_prev,
                         float *h);
    /* z, act_c from the forward step; dc (B, U) in/out like carry; dz (B, 4U) out:
     * gradient of the gate pre-activations (zero on masked rows). */
    void (*lstm_backward)(long B, long U, int act, int rec_act,
                          const unsigned char *mask, const float *z, const float *c_prev,
                          const float *act_c, const float *dy, long ldy, float *carry,
                          float *dc, float *dz);

    /* GRU, reset after the recurrent GEMM (Keras reset_after=True).
     * x (B, 3U): in, x@W + b_in; out, activations z, r, hh. hu (B, 3U) = h_prev@R.
     * rec_bias (3U) or NULL. rec_h (B, U) out: hu_h + rec_bias_h (kept for backward).
     * h = z * h_prev + (1 - z) * hh. */
    void (*gru_forward)(long B, long U, int act, int rec_act,
                        const unsigned char *mask, float *x, const float *hu,
                        const float *rec_bias, const float *h_prev, float *rec_h, float *h);
    /* dx (B, 3U) out: gradient of the input pre-activations; drec (B, 3U) out:
     * gradient of h_prev@R + rec_bias. carry out: dh * z. */
    void (*gru_backward)(long B, long U, int act, int rec_act,
                         const unsigned char *mask, const float *x, const float *rec_h,
                         const float *h_prev, const float *dy, long ldy, float *carry,
                         float *dx, float *drec);

    /* GRU, reset before the recurrent GEMM (reset_after=False), in two halves.
     * gates: x (B, 3U) columns z, r: in x@W + b, plus hu (B, 2U) = h_prev@R_zr;
     * out their activations; rh (B, U) = r * h_prev. */
    void (*gru1_gates)(long B, long U, int rec_act, const unsigned char *mask,
                       float *x, const float *hu, const float *h_prev, float *rh);
    /* candidate: x columns hh: in x@W_h + b_h, plus hu_h (B, U) = rh@R_h; out hh;
     * then h = z * h_prev + (1 - z) * hh. */
    void (*gru1_candidate)(long B, long U, int act, const unsigned char *mask,
                           float *x, const float *hu_h, const float *h_prev, float *h);
    /* Backward of the candidate half: dx columns z and hh out; carry out: dh * z. */
    void (*gru1_candidate_backward)(long B, long U, int act, int rec_act,
                                    const unsigned char *mask, const float *x,
                                    const float *h_prev, const float *dy, long ldy,
                                    float *carry, float *dx);
    /* Backward of the gates half, given drh (B, U) = dx_hh @ R_h^T: dx column r out;
     * carry += drh * r. */
    void (*gru1_gates_backward)(long B, long U, int rec_act,
                                const unsigned char *mask, const float *x,
                                const float *h_prev, const float *drh, float *carry,
                                float *dx);

    /* SimpleRNN. h (B, U): in, h_prev@R; out, act(h + proj). proj (B, U) = x@W + b. */
    void (*simple_forward)(long B, long U, int act, const unsigned char *mask,
                           const float *proj, const float *h_prev, float *h);
    /* dpre (B, U) out: gradient of the pre-activation; carry out: 0 (masked: dh). */
    void (*simple_backward)(long B, long U, int act, const unsigned char *mask,
                            const float *h, const float *dy, long ldy, float *carry,
                            float *dpre);
} pl_rnn_steps;

extern const pl_rnn_steps pl_rnn_steps_generic;
extern const pl_rnn_steps pl_rnn_steps_avx2;
extern const pl_rnn_steps pl_rnn_steps_avx512;

/* The step table for ctx->isa. */
const pl_rnn_steps *pl_rnn_steps_for(const pl_ctx *ctx);

/* Vectorisable float approximations used by every recurrent kernel (exported for
 * the accuracy test): |error| < 4e-7 for tanh, sigmoid = (1 + tanh(x / 2)) / 2. */
float pl_rnn_tanh(float x);
float pl_rnn_sigmoid(float x);

#endif
