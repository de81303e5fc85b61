/* Time loops of the recurrent layers (see rnn.h): GEMMs here, elementwise step
 * kernels from the per-ISA table of rnn_steps.h.
 *
 * Batch rows never interact, so the threads split the batch: each runs the whole time
 * loop over its own rows, with no synchronisation per step. The step products read the
 * recurrent weights packed once per call and sum each row on its own
 * (pl_sgemm_packed_b_serial), and the step kernels go row by row, so a row gets the
 * same bits whichever thread runs it: the results do not depend on the thread count. */
#include <stdlib.h>
#include <string.h>
#include "activations.h"
#include "gemm.h"
#include "rnn.h"
#include "rnn_steps.h"

/* A thread takes at least this many rows: fewer leave the micro-kernel's tiles mostly
 * empty while it still streams all the recurrent weights every step. */
#define SHARE_MIN_ROWS 8L
/* ...and a call at least this many multiply-adds in its step products per thread. */
#define SHARE_MIN_WORK (64L * 64 * 64)

const pl_rnn_steps *pl_rnn_steps_for(const pl_ctx *ctx) {
    if (ctx->isa >= PL_ISA_AVX512) return &pl_rnn_steps_avx512;
    return ctx->isa >= PL_ISA_AVX2 ? &pl_rnn_steps_avx2 : &pl_rnn_steps_generic;
}

/* Everything one sequence's time loop reads and writes (see rnn.h for the shapes);
 * pointers a given cell or direction does not use are NULL. */
typedef struct {
    pl_rnn_dims d;
    int act, rec_act;
    long G;                           /* gate columns of the weights */
    const float *recurrent;           /* (U, G) */
    const float *rec_bias;            /* GRU reset_after: recurrent bias row, or NULL */
    const unsigned char *mask_tm;
    float *gates, *aux, *hu, *act_c;  /* forward tape and scratch */
    float *h, *c;
    const float *dy;                  /* backward: output gradient (see set_output_grad) */
    long dy_row_stride, dy_step_stride;
    float *dh, *dc, *dgates, *drec;
    const float *bias;                /* LSTM forward: added by the step kernel, or NULL */
    const float *x, *kernel;          /* forward: inputs (T, B, I), kernel (I, G) */
    const float *kernel_packed;       /* the kernel packed once, or NULL */
    const float *in_bias;             /* forward: bias (G) added to x @ kernel, or NULL */
    /* The weights of the step products packed once per call (see pack_products), or
     * NULL where memory was short: those products then read the weights in place. */
    const float *packed[2];
} rnn_job;

typedef void (*rows_fn)(const pl_ctx *ctx, const rnn_job *job, long r0, long rows);

/* Index of row r0 of time slice t in a time-major buffer of `width` columns. */
static long at(const rnn_job *job, long t, long r0, long width) {
    return (t * job->d.batch + r0) * width;
}

static const unsigned char *mask_at(const rnn_job *job, long t, long r0) {
    return job->mask_tm ? job->mask_tm + t * job->d.batch + r0 : NULL;
}

/* Rows r0.. of step t of the output gradient (rows job->dy_row_stride apart), or NULL. */
static const float *dy_at(const rnn_job *job, long t, long r0) {
    return job->dy ? job->dy + t * job->dy_step_stride + r0 * job->dy_row_stride : NULL;
}

/* The output gradient as the time loop reads it: a time-major dy_seq (T, B, U) in place;
 * a batch-major one (B, T, U) copied time-major into scratch when it holds T * B * U
 * floats, so that a step reads one block instead of a few lines per row (the rows of a
 * step lie T * U floats apart), else in place. */
static void set_output_grad(const pl_ctx *ctx, rnn_job *job, const float *dy_seq,
                            int dy_time_major, float *scratch, long scratch_floats) {
    const long B = job->d.batch, T = job->d.steps, U = job->d.units;
    job->dy = dy_seq;
    job->dy_row_stride = dy_time_major ? U : T * U;
    job->dy_step_stride = dy_time_major ? B * U : U;
    if (!dy_seq || dy_time_major || scratch_floats < T * B * U) return;
    pl_rnn_to_time_major(ctx, B, T, U, dy_seq, scratch);
    job->dy = scratch;
    job->dy_row_stride = U;
    job->dy_step_stride = B * U;
}

/* A time loop's product on the calling thread, row by row: out (rows, n; row stride ldo)
 * = a (rows, k; row stride lda) @ op(b) + beta * out, op(b) (k, n) stored (k, n) or, when
 * trans_b, (n, k) with row stride ldb; from packed (op(b) packed), or from b in place when
 * packing found no memory (or k is 0). */
static void step_product(const pl_ctx *ctx, long rows, long n, long k, const float *a,
                         long lda, const float *packed, int trans_b, const float *b, long ldb,
                         float beta, float *out, long ldo) {
    if (packed)
        pl_sgemm_packed_b_serial(ctx, rows, n, k, a, lda, packed, beta, out, ldo);
    else
        pl_sgemm_ref(0, trans_b, rows, n, k, 1.0f, a, lda, b, ldb, beta, out, ldo);
}

/* out (rows, n; row stride ldo) = h (rows, U) @ recurrent[:, col0 : col0 + n] + beta * out,
 * packed: those columns packed, or NULL. */
static void times_recurrent(const pl_ctx *ctx, const rnn_job *job, const float *packed,
                            long col0, long n, long rows, const float *h, float beta,
                            float *out, long ldo) {
    const long U = job->d.units;
    step_product(ctx, rows, n, U, h, U, packed, 0, job->recurrent + col0, job->G, beta, out,
                 ldo);
}

/* out (rows, U) = d (rows, cols; row stride ldd) @ recurrent[:, col0 : col0 + cols]^T
 * + beta * out, packed: that transpose packed, or NULL. */
static void times_recurrent_t(const pl_ctx *ctx, const rnn_job *job, const float *packed,
                              long col0, long cols, long rows, const float *d, long ldd,
                              float beta, float *out) {
    const long U = job->d.units;
    step_product(ctx, rows, U, cols, d, ldd, packed, 1, job->recurrent + col0, job->G, beta,
                 out, U);
}

/* The step products' weights, packed once per call into job->packed: forward, the
 * columns [0, split) and [split, G) of recurrent (U, G) (split == G: all in one);
 * backward (transposed), the same blocks of recurrent^T. Free with free_products. */
static void pack_products(const pl_ctx *ctx, rnn_job *job, int transposed, long split) {
    const long U = job->d.units, G = job->G;
    const long col0[2] = {0, split}, cols[2] = {split, G - split};
    for (int q = 0; q < 2; q++) {
        const float *block = job->recurrent + col0[q];   /* (U, cols) with row stride G */
        if (cols[q] == 0)
            job->packed[q] = NULL;
        else if (transposed)
            job->packed[q] = pl_sgemm_pack_b(ctx, 1, U, cols[q], block, G);
        else
            job->packed[q] = pl_sgemm_pack_b(ctx, 0, cols[q], U, block, G);
    }
}

/* z (rows, G) = the inputs of rows r0.. at step t @ kernel (+ in_bias): each thread
 * projects its own rows step by step, so z is still in cache for the recurrent product
 * and the step kernel (projected all at once, the gates of a long sequence went through
 * memory between them). */
static void project_step(const pl_ctx *ctx, const rnn_job *job, long t, long r0, long rows,
                         float *z) {
    const long I = job->d.inputs, G = job->G;
    if (job->in_bias)
        for (long r = 0; r < rows; r++) memcpy(z + r * G, job->in_bias, G * sizeof(float));
    step_product(ctx, rows, G, I, job->x + at(job, t, r0, I), I, job->kernel_packed, 0,
                 job->kernel, G, job->in_bias ? 1.0f : 0.0f, z, G);
}

/* The kernel packed for project_step (NULL when memory is short, or with no inputs). */
static void pack_kernel(const pl_ctx *ctx, rnn_job *job) {
    job->kernel_packed = pl_sgemm_pack_b(ctx, 0, job->G, job->d.inputs, job->kernel, job->G);
}

/* Frees what pack_products and pack_kernel made. */
static void free_products(rnn_job *job) {
    free((float *)job->packed[0]);
    free((float *)job->packed[1]);
    free((float *)job->kernel_packed);
}

/* Runs run_rows over the whole batch, each thread of the team over its own share of
 * rows (see the top of this file). */
static void run_row_shares(const pl_ctx *ctx, const rnn_job *job, rows_fn run_rows) {
    const long B = job->d.batch;
    const double work = (double)job->d.steps * B * job->G * job->d.units;
    long nt = B / SHARE_MIN_ROWS;
    if (nt > work / SHARE_MIN_WORK) nt = (long)(work / SHARE_MIN_WORK);
    nt = nt > ctx->n_threads ? ctx->n_threads : nt < 1 ? 1 : nt;
    pl_ctx serial = *ctx;
    serial.n_threads = 1;
    #pragma omp parallel num_threads((int)nt) if(nt > 1)
    {
        long first, end;
        pl_team_share(B, &first, &end);
        if (end > first) run_rows(&serial, job, first, end - first);
    }
}

/* A whole time loop: the weights packed (the kernel for the forward's per-step
 * projections; the step products' blocks, see pack_products), run_rows over the row
 * shares, the packed copies freed. */
static void run_time_loop(const pl_ctx *ctx, rnn_job *job, int backward, long split,
                          rows_fn run_rows) {
    if (!backward) pack_kernel(ctx, job);
    pack_products(ctx, job, backward, split);
    run_row_shares(ctx, job, run_rows);
    free_products(job);
}

static void swap_leading_axes(const pl_ctx *ctx, long rows, long cols, long F,
                              const float *src, float *dst) {
    /* src (rows, cols, F) -> dst (cols, rows, F) */
    int nt = pl_elementwise_threads(ctx, rows * cols * F);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) {
            const float *from = src + (i * cols + j) * F;
            float *to = dst + (j * rows + i) * F;
            for (long f = 0; f < F; f++) to[f] = from[f];
        }
}

void pl_rnn_to_time_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                          float *dst) {
    swap_leading_axes(ctx, B, T, F, src, dst);
}

void pl_rnn_to_batch_major(const pl_ctx *ctx, long B, long T, long F, const float *src,
                           float *dst) {
    swap_leading_axes(ctx, T, B, F, src, dst);
}

/* One operand and the weight gradient it yields: grad (width, G) += src^T dgates, src
 * (rows, width) row-major. */
typedef struct {
    const float *src;
    long width;
    float *grad;
} grad_part;

/* Batch rows per group whose weight-gradient sums are taken apart (gate_weight_grads),
 * and the most groups. */
#define GRAD_GROUP_MIN_ROWS 64L
#define GRAD_MAX_GROUPS 8L

/* The groups of a batch of B rows: fixed by B alone, so that the sums are the same on
 * any number of threads; 1 (no groups) below two groups' rows. */
static long grad_groups(long B) {
    long groups = B / GRAD_GROUP_MIN_ROWS;
    return groups < 1 ? 1 : groups > GRAD_MAX_GROUPS ? GRAD_MAX_GROUPS : groups;
}

/* Rows [r0, r1) of the operand (rows, cols) = [src_0 .. src_n | 1] (the parts with a
 * grad, then a column of ones when ones). */
static void assemble_rows(const grad_part *parts, int n_parts, int ones, long cols, long r0,
                          long r1, float *operand) {
    for (long r = r0; r < r1; r++) {
        float *to = operand + r * cols;
        for (int q = 0; q < n_parts; q++) {
            if (!parts[q].grad) continue;
            memcpy(to, parts[q].src + r * parts[q].width, parts[q].width * sizeof(float));
            to += parts[q].width;
        }
        if (ones) *to = 1.0f;
    }
}

/* Group g of `groups` (its batch rows at every step, time-major rows (T, B)): its
 * operand rows assembled, then out (cols, G) = operand^T dgates over its rows, one
 * product per step, the steps' products summed in order, on the calling thread. */
static void group_weight_grads(const pl_ctx *serial, pl_rnn_dims d, long groups, long g,
                               const grad_part *parts, int n_parts, int ones, long cols,
                               long G, const float *dgates, float *operand, float *out) {
    const long B = d.batch, b0 = B * g / groups, b1 = B * (g + 1) / groups;
    for (long t = 0; t < d.steps; t++) {
        const long r = t * B + b0;
        assemble_rows(parts, n_parts, ones, cols, r, r + b1 - b0, operand);
        pl_sgemm(serial, 1, 0, cols, G, b1 - b0, 1.0f, operand + r * cols, cols, dgates + r * G,
                 G, t ? 1.0f : 0.0f, out, G);
    }
}

/* out (cols, G) = [src_0 .. src_n | 1]^T dgates, operand (rows, cols) assembled on the
 * way. A batch of several groups (grad_groups) sums each group apart, each on the thread
 * whose rows the time loop gave it (its dgates, inputs and states still in that core's
 * cache), then adds the groups' sums in order; one group is one product over all rows.
 * False when memory is short. */
static int gate_products(const pl_ctx *ctx, pl_rnn_dims d, long G, const float *dgates,
                         const grad_part *parts, int n_parts, int ones, long cols,
                         float *operand, float *out) {
    const long rows = d.steps * d.batch, groups = grad_groups(d.batch), size = cols * G;
    if (groups == 1) {
        assemble_rows(parts, n_parts, ones, cols, 0, rows, operand);
        pl_sgemm(ctx, 1, 0, cols, G, rows, 1.0f, operand, cols, dgates, G, 0.0f, out, G);
        return 1;
    }
    float *sums = malloc((size_t)(groups * size) * sizeof(float));   /* (groups, cols, G) */
    if (!sums) return 0;
    pl_ctx serial = *ctx;
    serial.n_threads = 1;
    const int nt = ctx->n_threads < groups ? ctx->n_threads : (int)groups;
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        long first, end;
        pl_team_share(groups, &first, &end);
        for (long g = first; g < end; g++)
            group_weight_grads(&serial, d, groups, g, parts, n_parts, ones, cols, G, dgates,
                               operand, sums + g * size);
    }
    for (long i = 0; i < size; i++) {
        float sum = sums[i];
        for (long g = 1; g < groups; g++) sum += sums[g * size + i];
        out[i] = sum;
    }
    free(sums);
    return 1;
}

/* The weight gradients of one dgates (rows, G) in one product (gate_products), so that
 * dgates, the largest operand, is read once: out (cols, G) = [src_0 .. src_n | 1]^T
 * dgates, then each grad (width, G) += its rows of out, and dbias (G) += the last row
 * (the column sums of dgates) when dbias is not NULL. Parts with a NULL grad are skipped.
 * The operand goes into work when it holds work_floats >= rows * cols, else into a
 * fresh buffer. False, with nothing written, when memory is short or when the operand
 * is wider than dgates (copying it would then cost more than packing dgates again). */
static int gate_weight_grads(const pl_ctx *ctx, pl_rnn_dims d, long G, const float *dgates,
                             const grad_part *parts, int n_parts, float *dbias, float *work,
                             long work_floats) {
    const long rows = d.steps * d.batch;
    long cols = dbias ? 1 : 0;
    for (int q = 0; q < n_parts; q++) cols += parts[q].grad ? parts[q].width : 0;
    if (cols == 0) return 1;
    if (cols > G) return 0;
    float *fresh = rows * cols <= work_floats ? NULL
                                              : malloc((size_t)(rows * cols) * sizeof(float));
    float *operand = fresh ? fresh : work;                            /* (rows, cols) */
    float *out = malloc((size_t)(cols * G) * sizeof(float));          /* (cols, G) */
    if (!operand || !out ||
        !gate_products(ctx, d, G, dgates, parts, n_parts, dbias != NULL, cols, operand, out)) {
        free(fresh);
        free(out);
        return 0;
    }
    const float *from = out;
    for (int q = 0; q < n_parts; q++) {
        if (!parts[q].grad) continue;
        for (long i = 0; i < parts[q].width * G; i++) parts[q].grad[i] += from[i];
        from += parts[q].width * G;
    }
    if (dbias)
        for (long g = 0; g < G; g++) dbias[g] += from[g];
    free(fresh);
    free(out);
    return 1;
}

long pl_rnn_grad_work_floats(pl_rnn_dims d, long G, int split) {
    const long I = d.inputs, U = d.units;
    long cols = !split && I + U + 1 <= G ? I + U + 1 : 0;
    if (split && I + 1 <= G) cols = I + 1;
    if (split && U + 1 <= G && U + 1 > cols) cols = U + 1;
    return d.steps * d.batch * (cols > U ? cols : U);   /* U: the time-major dy */
}

/* The weight gradients of a cell whose input and recurrent terms share dgates (rows, G):
 * dkernel (I, G) += x^T dgates, drecurrent (U, G) += h_prev^T dgates, dbias (G) +=
 * column sums; any may be NULL. work: see gate_weight_grads. */
static void weight_gradients(const pl_ctx *ctx, pl_rnn_dims d, long I, long U, long G,
                             const float *x, const float *h_prev, const float *dgates,
                             float *dkernel, float *drecurrent, float *dbias, float *work,
                             long work_floats) {
    const long rows = d.steps * d.batch;
    grad_part parts[2] = {{x, I, dkernel}, {h_prev, U, drecurrent}};
    if (gate_weight_grads(ctx, d, G, dgates, parts, 2, dbias, work, work_floats)) return;
    if (dkernel) pl_sgemm(ctx, 1, 0, I, G, rows, 1.0f, x, I, dgates, G, 1.0f, dkernel, G);
    if (drecurrent)
        pl_sgemm(ctx, 1, 0, U, G, rows, 1.0f, h_prev, U, dgates, G, 1.0f, drecurrent, G);
    if (dbias) pl_bias_grad(ctx, rows, G, dgates, dbias, 1);
}

/* dx (rows, I) = dgates (rows, G) kernel^T, or nothing when dx is NULL. */
static void input_gradient(const pl_ctx *ctx, long rows, long I, long G, const float *kernel,
                           const float *dgates, float *dx) {
    if (dx) pl_sgemm(ctx, 0, 1, rows, I, G, 1.0f, dgates, G, kernel, G, 0.0f, dx, I);
}

/* ---- LSTM ----------------------------------------------------------------------- */

static void lstm_forward_rows(const pl_ctx *ctx, const rnn_job *job, long r0, long rows) {
    const long U = job->d.units, G = 4 * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    for (long t = 0; t < job->d.steps; t++) {
        float *z = job->gates + at(job, t, r0, G);
        const float *h_prev = job->h + at(job, t, r0, U);
        project_step(ctx, job, t, r0, rows, z);
        times_recurrent(ctx, job, job->packed[0], 0, G, rows, h_prev, 1.0f, z, G);
        steps->lstm_forward(rows, U, job->act, job->rec_act, mask_at(job, t, r0),
                            job->bias, z, job->c + at(job, t, r0, U),
                            job->c + at(job, t + 1, r0, U), job->act_c + at(job, t, r0, U),
                            h_prev, job->h + at(job, t + 1, r0, U));
    }
}

static void lstm_backward_rows(const pl_ctx *ctx, const rnn_job *job, long r0, long rows) {
    const long U = job->d.units, G = 4 * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    float *dh = job->dh + r0 * U, *dc = job->dc + r0 * U;
    for (long t = job->d.steps - 1; t >= 0; t--) {
        float *dz = job->dgates + at(job, t, r0, G);
        steps->lstm_backward(rows, U, job->act, job->rec_act, mask_at(job, t, r0),
                             job->gates + at(job, t, r0, G), job->c + at(job, t, r0, U),
                             job->act_c + at(job, t, r0, U), dy_at(job, t, r0),
                             job->dy_row_stride, dh, dc, dz);
        times_recurrent_t(ctx, job, job->packed[0], 0, G, rows, dz, G, 1.0f, dh);
    }
}

void pl_lstm_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                     const float *kernel, const float *recurrent, const float *bias,
                     const unsigned char *mask_tm, int act, int rec_act,
                     float *gates, float *act_c, float *h, float *c) {
    /* the step kernel adds the bias: no pass writing it under every projection */
    rnn_job job = {.d = d, .act = act, .rec_act = rec_act, .G = 4 * d.units,
                   .recurrent = recurrent, .mask_tm = mask_tm, .gates = gates,
                   .act_c = act_c, .h = h, .c = c, .bias = bias, .x = x_tm,
                   .kernel = kernel};
    run_time_loop(ctx, &job, 0, job.G, lstm_forward_rows);
}

void pl_lstm_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                      const float *kernel, const float *recurrent,
                      const unsigned char *mask_tm, int act, int rec_act,
                      const float *gates, const float *act_c, const float *h,
                      const float *c, const float *dy_seq, int dy_time_major, float *dh, float *dc,
                      float *dgates, float *dkernel, float *drecurrent, float *dbias,
                      float *dx_tm, float *work) {
    const long rows = d.steps * d.batch, U = d.units, G = 4 * U;
    const long work_floats = work ? pl_rnn_grad_work_floats(d, G, 0) : 0;
    /* The job only reads the forward tape in a backward pass. */
    rnn_job job = {.d = d, .act = act, .rec_act = rec_act, .G = G, .recurrent = recurrent,
                   .mask_tm = mask_tm, .gates = (float *)gates, .act_c = (float *)act_c,
                   .h = (float *)h, .c = (float *)c, .dh = dh, .dc = dc, .dgates = dgates};
    set_output_grad(ctx, &job, dy_seq, dy_time_major, work, work_floats);
    run_time_loop(ctx, &job, 1, G, lstm_backward_rows);
    weight_gradients(ctx, d, d.inputs, U, G, x_tm, h, dgates, dkernel, drecurrent, dbias,
                     work, work_floats);
    input_gradient(ctx, rows, d.inputs, G, kernel, dgates, dx_tm);
}

/* ---- GRU ------------------------------------------------------------------------ */

static void gru_reset_after_forward_rows(const pl_ctx *ctx, const rnn_job *job, long r0,
                                         long rows) {
    const long U = job->d.units, G = 3 * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    float *hu = job->hu + r0 * G;
    for (long t = 0; t < job->d.steps; t++) {
        const float *h_prev = job->h + at(job, t, r0, U);
        float *x = job->gates + at(job, t, r0, G);
        project_step(ctx, job, t, r0, rows, x);
        times_recurrent(ctx, job, job->packed[0], 0, G, rows, h_prev, 0.0f, hu, G);
        steps->gru_forward(rows, U, job->act, job->rec_act, mask_at(job, t, r0), x, hu,
                           job->rec_bias, h_prev, job->aux + at(job, t, r0, U),
                           job->h + at(job, t + 1, r0, U));
    }
}

static void gru_reset_before_forward_rows(const pl_ctx *ctx, const rnn_job *job, long r0,
                                          long rows) {
    const long U = job->d.units, G = 3 * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    float *hu = job->hu + r0 * G;
    for (long t = 0; t < job->d.steps; t++) {
        const unsigned char *mask = mask_at(job, t, r0);
        const float *h_prev = job->h + at(job, t, r0, U);
        float *x = job->gates + at(job, t, r0, G), *rh = job->aux + at(job, t, r0, U);
        project_step(ctx, job, t, r0, rows, x);
        times_recurrent(ctx, job, job->packed[0], 0, 2 * U, rows, h_prev, 0.0f, hu, 2 * U);
        steps->gru1_gates(rows, U, job->rec_act, mask, x, hu, h_prev, rh);
        times_recurrent(ctx, job, job->packed[1], 2 * U, U, rows, rh, 0.0f, hu, U);
        steps->gru1_candidate(rows, U, job->act, mask, x, hu, h_prev,
                              job->h + at(job, t + 1, r0, U));
    }
}

void pl_gru_forward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after, const float *x_tm,
                    const float *kernel, const float *recurrent, const float *bias,
                    const unsigned char *mask_tm, int act, int rec_act,
                    float *gates, float *aux, float *hu, float *h) {
    const long G = 3 * d.units;
    const float *rec_bias = reset_after && bias ? bias + G : NULL;
    rnn_job job = {.d = d, .act = act, .rec_act = rec_act, .G = G, .recurrent = recurrent,
                   .rec_bias = rec_bias, .mask_tm = mask_tm, .gates = gates, .aux = aux,
                   .hu = hu, .h = h, .x = x_tm, .kernel = kernel, .in_bias = bias};
    /* reset before: h_prev @ R_zr, then (r * h_prev) @ R_h */
    run_time_loop(ctx, &job, 0, reset_after ? G : 2 * d.units,
                  reset_after ? gru_reset_after_forward_rows : gru_reset_before_forward_rows);
}

static void gru_reset_after_backward_rows(const pl_ctx *ctx, const rnn_job *job, long r0,
                                          long rows) {
    const long U = job->d.units, G = 3 * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    float *dh = job->dh + r0 * U;
    for (long t = job->d.steps - 1; t >= 0; t--) {
        float *drec = job->drec + at(job, t, r0, G);
        steps->gru_backward(rows, U, job->act, job->rec_act, mask_at(job, t, r0),
                            job->gates + at(job, t, r0, G), job->aux + at(job, t, r0, U),
                            job->h + at(job, t, r0, U), dy_at(job, t, r0), job->dy_row_stride,
                            dh, job->dgates + at(job, t, r0, G), drec);
        times_recurrent_t(ctx, job, job->packed[0], 0, G, rows, drec, G, 1.0f, dh);
    }
}

static void gru_reset_before_backward_rows(const pl_ctx *ctx, const rnn_job *job, long r0,
                                           long rows) {
    const long U = job->d.units, G = 3 * U;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    float *dh = job->dh + r0 * U, *drh = job->drec + r0 * U;
    for (long t = job->d.steps - 1; t >= 0; t--) {
        const unsigned char *mask = mask_at(job, t, r0);
        const float *x = job->gates + at(job, t, r0, G), *h_prev = job->h + at(job, t, r0, U);
        float *dx = job->dgates + at(job, t, r0, G);
        steps->gru1_candidate_backward(rows, U, job->act, job->rec_act, mask, x, h_prev,
                                       dy_at(job, t, r0), job->dy_row_stride, dh, dx);
        times_recurrent_t(ctx, job, job->packed[1], 2 * U, U, rows, dx + 2 * U, G, 0.0f, drh);
        steps->gru1_gates_backward(rows, U, job->rec_act, mask, x, h_prev, drh, dh, dx);
        times_recurrent_t(ctx, job, job->packed[0], 0, 2 * U, rows, dx, G, 1.0f, dh);
    }
}

void pl_gru_backward(const pl_ctx *ctx, pl_rnn_dims d, int reset_after,
                     const float *x_tm, const float *kernel, const float *recurrent,
                     const unsigned char *mask_tm, int act, int rec_act,
                     const float *gates, const float *aux, const float *h,
                     const float *dy_seq, int dy_time_major,
                     float *dh, float *dx_gates, float *drec_gates,
                     float *dkernel, float *drecurrent, float *dbias, float *dx_tm,
                     float *work) {
    const long rows = d.steps * d.batch, U = d.units, G = 3 * U;
    const long work_floats = work ? pl_rnn_grad_work_floats(d, G, 1) : 0;
    /* The job only reads the forward tape in a backward pass. */
    rnn_job job = {.d = d, .act = act, .rec_act = rec_act, .G = G, .recurrent = recurrent,
                   .mask_tm = mask_tm, .gates = (float *)gates, .aux = (float *)aux,
                   .h = (float *)h, .dh = dh, .dgates = dx_gates, .drec = drec_gates};
    set_output_grad(ctx, &job, dy_seq, dy_time_major, work, work_floats);
    run_time_loop(ctx, &job, 1, reset_after ? G : 2 * U,
                  reset_after ? gru_reset_after_backward_rows : gru_reset_before_backward_rows);
    if (reset_after) {
        /* recurrent side: its own gate gradients and bias row */
        weight_gradients(ctx, d, 0, U, G, NULL, h, drec_gates, NULL, drecurrent,
                         dbias ? dbias + G : NULL, work, work_floats);
    } else if (drecurrent) {
        pl_sgemm(ctx, 1, 0, U, 2 * U, rows, 1.0f, h, U, dx_gates, G, 1.0f, drecurrent, G);
        pl_sgemm(ctx, 1, 0, U, U, rows, 1.0f, aux, U, dx_gates + 2 * U, G, 1.0f,
                 drecurrent + 2 * U, G);
    }
    weight_gradients(ctx, d, d.inputs, 0, G, x_tm, NULL, dx_gates, dkernel, NULL, dbias,
                     work, work_floats);
    input_gradient(ctx, rows, d.inputs, G, kernel, dx_gates, dx_tm);
}

/* ---- SimpleRNN ------------------------------------------------------------------ */

static void simple_forward_rows(const pl_ctx *ctx, const rnn_job *job, long r0, long rows) {
    const long U = job->d.units;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    for (long t = 0; t < job->d.steps; t++) {
        const float *h_prev = job->h + at(job, t, r0, U);
        float *proj = job->gates + at(job, t, r0, U), *h_next = job->h + at(job, t + 1, r0, U);
        project_step(ctx, job, t, r0, rows, proj);
        times_recurrent(ctx, job, job->packed[0], 0, U, rows, h_prev, 0.0f, h_next, U);
        steps->simple_forward(rows, U, job->act, mask_at(job, t, r0), proj, h_prev, h_next);
    }
}

static void simple_backward_rows(const pl_ctx *ctx, const rnn_job *job, long r0, long rows) {
    const long U = job->d.units;
    const pl_rnn_steps *steps = pl_rnn_steps_for(ctx);
    float *dh = job->dh + r0 * U;
    for (long t = job->d.steps - 1; t >= 0; t--) {
        float *dpre = job->dgates + at(job, t, r0, U);
        steps->simple_backward(rows, U, job->act, mask_at(job, t, r0),
                               job->h + at(job, t + 1, r0, U), dy_at(job, t, r0),
                               job->dy_row_stride, dh, dpre);
        times_recurrent_t(ctx, job, job->packed[0], 0, U, rows, dpre, U, 1.0f, dh);
    }
}

void pl_simple_rnn_forward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                           const float *kernel, const float *recurrent, const float *bias,
                           const unsigned char *mask_tm, int act, float *proj, float *h) {
    rnn_job job = {.d = d, .act = act, .G = d.units, .recurrent = recurrent,
                   .mask_tm = mask_tm, .gates = proj, .h = h, .x = x_tm, .kernel = kernel,
                   .in_bias = bias};
    run_time_loop(ctx, &job, 0, d.units, simple_forward_rows);
}

void pl_simple_rnn_backward(const pl_ctx *ctx, pl_rnn_dims d, const float *x_tm,
                            const float *kernel, const float *recurrent,
                            const unsigned char *mask_tm, int act, const float *h,
                            const float *dy_seq, int dy_time_major,
                            float *dh, float *dpre, float *dkernel,
                            float *drecurrent, float *dbias, float *dx_tm, float *work) {
    const long rows = d.steps * d.batch, U = d.units;
    const long work_floats = work ? pl_rnn_grad_work_floats(d, U, 0) : 0;
    /* The job only reads the forward tape in a backward pass. */
    rnn_job job = {.d = d, .act = act, .G = U, .recurrent = recurrent, .mask_tm = mask_tm,
                   .h = (float *)h, .dh = dh, .dgates = dpre};
    set_output_grad(ctx, &job, dy_seq, dy_time_major, work, work_floats);
    run_time_loop(ctx, &job, 1, U, simple_backward_rows);
    weight_gradients(ctx, d, d.inputs, U, U, x_tm, h, dpre, dkernel, drecurrent, dbias,
                     work, work_floats);
    input_gradient(ctx, rows, d.inputs, U, kernel, dpre, dx_tm);
}
