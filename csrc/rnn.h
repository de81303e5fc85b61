/* Recurrent layers over whole sequences: one GEMM projects the inputs of all time
 * steps, then each step runs one recurrent GEMM and one fused elementwise kernel
 * (rnn_steps.h); backward through time likewise, with the weight gradients
 * accumulated at the end: by one GEMM each, or for a batch of 128 rows or more by
 * products per step over fixed groups of its rows, whose sums are added in order.
 *
 * Shapes: B batch, T steps, I input features, U units, G gate columns (4U LSTM,
 * 3U GRU, U SimpleRNN). Sequence buffers are time-major: x_tm (T, B, I).
 * h (T + 1, B, U) holds the initial state in h[0] and the state after step t in
 * h[t + 1] (likewise c for the LSTM cell state). mask_tm (T, B) bytes, 0 = the row
 * skips that step and carries its state over (Keras masking), or NULL.
 * Activation codes: enum pl_act LINEAR, RELU, SIGMOID, TANH.
 * Weights are Keras' layouts: kernel (I, G), recurrent (U, G), gates in Keras order.
 * Backward: dy_seq is the gradient of every step's output h, batch-major (B, T, U), or
 * time-major (T, B, U) when dy_time_major (as a stacked layer above hands it on), or
 * NULL when only the last state has a gradient. dh (B, U) enters holding the
 * gradient of the final h and leaves holding that of h[0] (dc likewise).
 * dkernel, drecurrent, dbias are accumulated into (+=), each may be NULL (frozen
 * layer); dx_tm (T, B, I) is overwritten, or NULL to skip it. work is a workspace of
 * pl_rnn_grad_work_floats floats (reused from call to call, it saves page faults), or
 * NULL to allocate the weight gradients' operands when needed (and read a batch-major
 * dy_seq in place).
 * Results do not depend on ctx->n_threads. */
#ifndef PL_RNN_H
#define PL_RNN_H
#include "pl_ctx.h"

typedef struct {
    long batch, steps, inputs, units;
} pl_rnn_dims;

/* dst (T, B, F) = src (B, T, F) transposed in the first two axes. */
void pl_rnn_to_time_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                          float *dst);
/* dst (B, T, F) = src (T, B, F) transposed in the first two axes. */
void pl_rnn_to_batch_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                           float *dst);

/* Floats of a backward pass's work argument for G gate columns: split 0 for LSTM and
 * SimpleRNN, 1 for GRU (input and recurrent sides apart). The time loop holds dy_seq
 * there time-major, then the weight gradients their operands. */
long pl_rnn_grad_work_floats(pl_rnn_dims d, long G, int split);

/* gates (T, B, 4U) out: activations i, f, g, o; act_c (T, B, U) out: act(c). */
void pl_lstm_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                     const float *kernel, const float *recurrent, const float *bias,
                     const unsigned char *mask_tm, int act, int rec_act,
                     float *gates, float *act_c, float *h, float *c);

/* dgates (T, B, 4U) workspace. */
void pl_lstm_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                      const float *kernel, const float *recurrent,
                      const unsigned char *mask_tm, int act, int rec_act,
                      const float *gates, const float *act_c, const float *h,
                      const float *c, const float *dy_seq, int dy_time_major, float *dh, float *dc,
                      float *dgates, float *dkernel, float *drecurrent, float *dbias,
                      float *dx_tm, float *work);

/* GRU. reset_after: bias is (2, 3U) (input row, recurrent row), else (3U); NULL
 * without bias. gates (T, B, 3U) out: z, r, hh. aux (T, B, U) out: the recurrent
 * candidate term (reset_after) or r * h_prev (reset before). hu (B, 3U) workspace. */
void pl_gru_forward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after, const float *x_tm,
                    const float *kernel, const float *recurrent, const float *bias,
                    const unsigned char *mask_tm, int act, int rec_act,
                    float *gates, float *aux, float *hu, float *h);

/* dx_gates, drec_gates (T, B, 3U) workspaces (without reset_after only the first
 * B * U floats of drec_gates are used, as scratch); dbias is (2, 3U) or (3U) like bias. */
void pl_gru_backward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after,
                     const float *x_tm, const float *kernel, const float *recurrent,
                     const unsigned char *mask_tm, int act, int rec_act,
                     const float *gates, const float *aux, const float *h,
                     const float *dy_seq, int dy_time_major,
                     float *dh, float *dx_gates, float *drec_gates,
                     float *dkernel, float *drecurrent, float *dbias, float *dx_tm,
                     float *work);

/* SimpleRNN. proj (T, B, U) workspace. */
void pl_simple_rnn_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                           const float *kernel, const float *recurrent, const float *bias,
                           const unsigned char *mask_tm, int act, float *proj, float *h);

/* dpre (T, B, U) workspace. */
void pl_simple_rnn_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                            const float *kernel, const float *recurrent,
                            const unsigned char *mask_tm, int act, const float *h,
                            const float *dy_seq, int dy_time_major,
                            float *dh, float *dpre, float *dkernel,
                            float *drecurrent, float *dbias, float *dx_tm, float *work);

#endif
