/* Time loops of the recurrent layers (see rnn.h): GEMMs here, elementwise step
 * kernels from the per-ISA table of rnn_steps.h. */
#include <string.h>
#include "activations.h"
#include "gemm.h"
#include "rnn.h"
#include "rnn_steps.h"

const pl_rnn_steps *pl_rnn_steps_for(const pl_ctx *ctx) {
    return ctx->isa == PL_ISA_AVX2 ? &pl_rnn_steps_avx2 : &pl_rnn_steps_generic;
}

/* Threads for a step kernel over B rows of G gate columns (transcendental work
 * counts several times an ordinary elementwise operation). */
static int step_threads(const pl_ctx *ctx, long B, long G) {
    return pl_elementwise_threads(ctx, 8 * B * G);
}

static void swap_leading_axes(const pl_ctx *ctx, long rows, long cols, long F,
                              const float *src, float *dst) {
    /* src (rows, cols, F) -> dst (cols, rows, F) */
    int nt = pl_elementwise_threads(ctx, rows * cols * F);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++)
            memcpy(dst + (j * rows + i) * F, src + (i * cols + j) * F, F * sizeof(float));
}

void pl_rnn_to_time_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                          float *dst) {
    swap_leading_axes(ctx, B, T, F, src, dst);
}

void pl_rnn_to_batch_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                           float *dst) {
    swap_leading_axes(ctx, T, B, F, src, dst);
}

/* out (rows, G) = x (rows, I) @ kernel (I, G) + bias (G, or NULL for none). */
static void project_inputs(const pl_ctx *ctx, long rows, long I, long G, const float *x,
                           const float *kernel, const float *bias, float *out) {
    if (bias)
        for (long r = 0; r < rows; r++) memcpy(out + r * G, bias, G * sizeof(float));
    pl_sgemm(ctx, 0, 0, rows, G, I, 1.0f, x, I, kernel, G, bias ? 1.0f : 0.0f, out, G);
}

/* The input side of a backward pass, dgates (rows, G) with row stride ldg:
 * dkernel (I, G) += x^T dgates, dbias (G) += column sums, dx (rows, I) = dgates kernel^T.
 * Any output may be NULL. */
static void input_gradients(const pl_ctx *ctx, long rows, long I, long G, const float *x,
                            const float *kernel, const float *dgates, float *dkernel,
                            float *dbias, float *dx) {
    if (dkernel) pl_sgemm(ctx, 1, 0, I, G, rows, 1.0f, x, I, dgates, G, 1.0f, dkernel, G);
    if (dbias) pl_bias_grad(ctx, rows, G, dgates, dbias);
    if (dx) pl_sgemm(ctx, 0, 1, rows, I, G, 1.0f, dgates, G, kernel, G, 0.0f, dx, I);
}

static const unsigned char *mask_at(const unsigned char *mask_tm, long t, long B) {
    return mask_tm ? mask_tm + t * B : NULL;
}

static const float *dy_at(const float *dy_seq, long t, long U) {
    return dy_seq ? dy_seq + t * U : NULL;
}

/* ---- LSTM ----------------------------------------------------------------------- */

void pl_lstm_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                     const float *kernel, const float *recurrent, const float *bias,
                     const unsigned char *mask_tm, int act, int rec_act,
                     float *gates, float *act_c, float *h, float *c) {
    const long B = d.batch, T = d.steps, U = d.units, G = 4 * U, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, G);
    project_inputs(ctx, T * B, d.inputs, G, x_tm, kernel, bias, gates);
    for (long t = 0; t < T; t++) {
        float *z = gates + t * B * G;
        const float *h_prev = h + t * state;
        pl_sgemm(ctx, 0, 0, B, G, U, 1.0f, h_prev, U, recurrent, G, 1.0f, z, G);
        steps->lstm_forward(nt, B, U, act, rec_act, mask_at(mask_tm, t, B), z,
                            c + t * state, c + (t + 1) * state, act_c + t * state,
                            h_prev, h + (t + 1) * state);
    }
}

void pl_lstm_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                      const float *kernel, const float *recurrent,
                      const unsigned char *mask_tm, int act, int rec_act,
                      const float *gates, const float *act_c, const float *h,
                      const float *c, const float *dy_seq, float *dh, float *dc,
                      float *dgates, float *dkernel, float *drecurrent, float *dbias,
                      float *dx_tm) {
    const long B = d.batch, T = d.steps, U = d.units, G = 4 * U, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, G);
    for (long t = T - 1; t >= 0; t--) {
        float *dz = dgates + t * B * G;
        steps->lstm_backward(nt, B, U, act, rec_act, mask_at(mask_tm, t, B),
                             gates + t * B * G, c + t * state, act_c + t * state,
                             dy_at(dy_seq, t, U), T * U, dh, dc, dz);
        pl_sgemm(ctx, 0, 1, B, U, G, 1.0f, dz, G, recurrent, G, 1.0f, dh, U);
    }
    input_gradients(ctx, T * B, d.inputs, G, x_tm, kernel, dgates, dkernel, dbias, dx_tm);
    if (drecurrent)
        pl_sgemm(ctx, 1, 0, U, G, T * B, 1.0f, h, U, dgates, G, 1.0f, drecurrent, G);
}

/* ---- GRU ------------------------------------------------------------------------ */

static void gru_reset_after_forward(const pl_ctx *ctx, pl_rnn_dims d,
                                    const float *recurrent, const float *rec_bias,
                                    const unsigned char *mask_tm, int act, int rec_act,
                                    float *gates, float *aux, float *hu, float *h) {
    const long B = d.batch, T = d.steps, U = d.units, G = 3 * U, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, G);
    for (long t = 0; t < T; t++) {
        const float *h_prev = h + t * state;
        pl_sgemm(ctx, 0, 0, B, G, U, 1.0f, h_prev, U, recurrent, G, 0.0f, hu, G);
        steps->gru_forward(nt, B, U, act, rec_act, mask_at(mask_tm, t, B), gates + t * B * G,
                           hu, rec_bias, h_prev, aux + t * state, h + (t + 1) * state);
    }
}

static void gru_reset_before_forward(const pl_ctx *ctx, pl_rnn_dims d,
                                     const float *recurrent, const unsigned char *mask_tm,
                                     int act, int rec_act, float *gates, float *aux,
                                     float *hu, float *h) {
    const long B = d.batch, T = d.steps, U = d.units, G = 3 * U, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, G);
    for (long t = 0; t < T; t++) {
        const float *h_prev = h + t * state;
        const unsigned char *mask = mask_at(mask_tm, t, B);
        float *x = gates + t * B * G, *rh = aux + t * state;
        pl_sgemm(ctx, 0, 0, B, 2 * U, U, 1.0f, h_prev, U, recurrent, G, 0.0f, hu, 2 * U);
        steps->gru1_gates(nt, B, U, rec_act, mask, x, hu, h_prev, rh);
        pl_sgemm(ctx, 0, 0, B, U, U, 1.0f, rh, U, recurrent + 2 * U, G, 0.0f, hu, U);
        steps->gru1_candidate(nt, B, U, act, mask, x, hu, h_prev, h + (t + 1) * state);
    }
}

void pl_gru_forward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after, const float *x_tm,
                    const float *kernel, const float *recurrent, const float *bias,
                    const unsigned char *mask_tm, int act, int rec_act,
                    float *gates, float *aux, float *hu, float *h) {
    const long G = 3 * d.units;
    project_inputs(ctx, d.steps * d.batch, d.inputs, G, x_tm, kernel, bias, gates);
    if (reset_after)
        gru_reset_after_forward(ctx, d, recurrent, bias ? bias + G : NULL, mask_tm, act,
                                rec_act, gates, aux, hu, h);
    else
        gru_reset_before_forward(ctx, d, recurrent, mask_tm, act, rec_act, gates, aux, hu, h);
}

static void gru_reset_after_backward(const pl_ctx *ctx, pl_rnn_dims d,
                                     const float *recurrent, const unsigned char *mask_tm,
                                     int act, int rec_act, const float *gates,
                                     const float *aux, const float *h, const float *dy_seq,
                                     float *dh, float *dx_gates, float *drec_gates) {
    const long B = d.batch, T = d.steps, U = d.units, G = 3 * U, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, G);
    for (long t = T - 1; t >= 0; t--) {
        float *drec = drec_gates + t * B * G;
        steps->gru_backward(nt, B, U, act, rec_act, mask_at(mask_tm, t, B), gates + t * B * G,
                            aux + t * state, h + t * state, dy_at(dy_seq, t, U), T * U, dh,
                            dx_gates + t * B * G, drec);
        pl_sgemm(ctx, 0, 1, B, U, G, 1.0f, drec, G, recurrent, G, 1.0f, dh, U);
    }
}

static void gru_reset_before_backward(const pl_ctx *ctx, pl_rnn_dims d,
                                      const float *recurrent, const unsigned char *mask_tm,
                                      int act, int rec_act, const float *gates,
                                      const float *h, const float *dy_seq, float *dh,
                                      float *dx_gates, float *drh) {
    const long B = d.batch, T = d.steps, U = d.units, G = 3 * U, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, G);
    for (long t = T - 1; t >= 0; t--) {
        const unsigned char *mask = mask_at(mask_tm, t, B);
        const float *x = gates + t * B * G, *h_prev = h + t * state;
        float *dx = dx_gates + t * B * G;
        steps->gru1_candidate_backward(nt, B, U, act, rec_act, mask, x, h_prev,
                                       dy_at(dy_seq, t, U), T * U, dh, dx);
        pl_sgemm(ctx, 0, 1, B, U, U, 1.0f, dx + 2 * U, G, recurrent + 2 * U, G, 0.0f, drh, U);
        steps->gru1_gates_backward(nt, B, U, rec_act, mask, x, h_prev, drh, dh, dx);
        pl_sgemm(ctx, 0, 1, B, U, 2 * U, 1.0f, dx, G, recurrent, G, 1.0f, dh, U);
    }
}

void pl_gru_backward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after,
                     const float *x_tm, const float *kernel, const float *recurrent,
                     const unsigned char *mask_tm, int act, int rec_act,
                     const float *gates, const float *aux, const float *h,
                     const float *dy_seq, float *dh, float *dx_gates, float *drec_gates,
                     float *dkernel, float *drecurrent, float *dbias, float *dx_tm) {
    const long rows = d.steps * d.batch, U = d.units, G = 3 * U;
    if (reset_after) {
        gru_reset_after_backward(ctx, d, recurrent, mask_tm, act, rec_act, gates, aux, h,
                                 dy_seq, dh, dx_gates, drec_gates);
        if (drecurrent)
            pl_sgemm(ctx, 1, 0, U, G, rows, 1.0f, h, U, drec_gates, G, 1.0f, drecurrent, G);
        if (dbias) pl_bias_grad(ctx, rows, G, drec_gates, dbias + G);
    } else {
        gru_reset_before_backward(ctx, d, recurrent, mask_tm, act, rec_act, gates, h, dy_seq,
                                  dh, dx_gates, drec_gates);
        if (drecurrent) {
            pl_sgemm(ctx, 1, 0, U, 2 * U, rows, 1.0f, h, U, dx_gates, G, 1.0f, drecurrent, G);
            pl_sgemm(ctx, 1, 0, U, U, rows, 1.0f, aux, U, dx_gates + 2 * U, G, 1.0f,
                     drecurrent + 2 * U, G);
        }
    }
    input_gradients(ctx, rows, d.inputs, G, x_tm, kernel, dx_gates, dkernel, dbias, dx_tm);
}

/* ---- SimpleRNN ------------------------------------------------------------------ */

void pl_simple_rnn_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                           const float *kernel, const float *recurrent, const float *bias,
                           const unsigned char *mask_tm, int act, float *proj, float *h) {
    const long B = d.batch, T = d.steps, U = d.units, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, U);
    project_inputs(ctx, T * B, d.inputs, U, x_tm, kernel, bias, proj);
    for (long t = 0; t < T; t++) {
        const float *h_prev = h + t * state;
        float *h_next = h + (t + 1) * state;
        pl_sgemm(ctx, 0, 0, B, U, U, 1.0f, h_prev, U, recurrent, U, 0.0f, h_next, U);
        steps->simple_forward(nt, B, U, act, mask_at(mask_tm, t, B), proj + t * state,
                              h_prev, h_next);
    }
}

void pl_simple_rnn_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                            const float *kernel, const float *recurrent,
                            const unsigned char *mask_tm, int act, const float *h,
                            const float *dy_seq, float *dh, float *dpre, float *dkernel,
                            float *drecurrent, float *dbias, float *dx_tm) {
    const long B = d.batch, T = d.steps, U = d.units, state = B * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    const int nt = step_threads(ctx, B, U);
    for (long t = T - 1; t >= 0; t--) {
        float *dp = dpre + t * state;
        steps->simple_backward(nt, B, U, act, mask_at(mask_tm, t, B), h + (t + 1) * state,
                               dy_at(dy_seq, t, U), T * U, dh, dp);
        pl_sgemm(ctx, 0, 1, B, U, U, 1.0f, dp, U, recurrent, U, 1.0f, dh, U);
    }
    input_gradients(ctx, T * B, d.inputs, U, x_tm, kernel, dpre, dkernel, dbias, dx_tm);
    if (drecurrent)
        pl_sgemm(ctx, 1, 0, U, U, T * B, 1.0f, h, U, dpre, U, 1.0f, drecurrent, U);
}
