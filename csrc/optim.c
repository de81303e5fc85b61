/* Fused optimizer updates (see optim.h): one pass over each parameter array.
 *
 * The array is walked in blocks of PL_OPTIM_BLOCK elements (OpenMP static chunks of
 * blocks for large arrays). Adam updates the slots and the weight of an element in one
 * loop; RMSprop and Adagrad update the slots and store the square root's argument in a
 * first loop, take the square roots together, and update the weights in a second. The
 * loops are branch-free so the compiler vectorises them (sqrtf too: the build passes
 * -fno-math-errno). Each element's arithmetic is the same whatever the blocking or thread
 * count.
 *
 * Every update runs with subnormals flushed to zero (pl_flush_subnormals), as TensorFlow
 * runs Keras' optimizers: a gradient that stays 0 (a dead unit, an unused embedding row)
 * decays m and v into subnormals within a few hundred steps, and arithmetic on them is
 * about 30 times slower (MLP 784-512-512-10: 44 ms an epoch became 98-128 ms after
 * 1,000 steps). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include "optim.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The block loops are compiled twice, for AVX2 and for any x86-64, and the loader picks
 * one for the CPU. The arithmetic is the same (no contraction into FMA under -std=c99;
 * sqrt and division are correctly rounded at any width), so results are bitwise equal. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define WIDE_VECTORS __attribute__((target_clones("avx2", "default")))
#else
#define WIDE_VECTORS
#endif

#define PL_OPTIM_BLOCK 1024L
/* Below this many elements an update stays on one thread (fork cost dominates). */
#define PL_OPTIM_PARALLEL_MIN 32768L

static int threads_for(const pl_ctx *ctx, long n) {
    return (n >= PL_OPTIM_PARALLEL_MIN && ctx->n_threads > 1) ? ctx->n_threads : 1;
}

/* Gradient preprocessing in float: scale, clip bound (+inf: no clip), decay. */
typedef struct {
    float scale, bound, decay;
} prep_f;

static prep_f prep_float(pl_grad_prep prep) {
    prep_f p = {prep.grad_scale, prep.clip_value > 0.0f ? prep.clip_value : INFINITY,
                prep.decay};
    return p;
}

static inline float prep_grad(float g, prep_f p) {
    g *= p.scale;
    return g > p.bound ? p.bound : (g < -p.bound ? -p.bound : g);
}

/* w after decoupled weight decay (decay 0 leaves a finite w unchanged). */
static inline float decayed(float w, prep_f p) {
    return w - w * p.decay;
}

/* x[0..n) = sqrt(x[0..n)): vector square roots (the build passes -fno-math-errno). */
static inline void sqrt_in_place(float *x, long n) {
    for (long i = 0; i < n; i++) x[i] = sqrtf(x[i]);
}

static long n_blocks(long n) {
    return (n + PL_OPTIM_BLOCK - 1) / PL_OPTIM_BLOCK;
}

static long block_length(long n, long block) {
    long rest = n - block * PL_OPTIM_BLOCK;
    return rest < PL_OPTIM_BLOCK ? rest : PL_OPTIM_BLOCK;
}

double pl_sum_squares(const pl_ctx *ctx, long n, const float *x) {
    double total = 0.0;
    int nt = threads_for(ctx, n);
    #pragma omp parallel for schedule(static) num_threads(nt) reduction(+:total) if(nt > 1)
    for (long i = 0; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}

void pl_sgd_update(const pl_ctx *ctx, long n, float *w, const float *g, float *m,
                   double lr, double momentum, int nesterov, pl_grad_prep prep) {
    const float lr_f = (float)lr, mu = (float)momentum;
    const prep_f p = prep_float(prep);
    int nt = threads_for(ctx, n);
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        unsigned fp_mode = pl_flush_subnormals();
        if (m == NULL) {
            #pragma omp for schedule(static)
            for (long i = 0; i < n; i++) w[i] = decayed(w[i], p) - prep_grad(g[i], p) * lr_f;
        } else {
            #pragma omp for schedule(static)
            for (long i = 0; i < n; i++) {
                float gi = prep_grad(g[i], p);
                float mi = m[i] * mu - gi * lr_f;
                m[i] = mi;
                w[i] = decayed(w[i], p) + (nesterov ? mi * mu - gi * lr_f : mi);
            }
        }
        pl_restore_fp_mode(fp_mode);
    }
}

typedef struct {
    float alpha, one_minus_b1, one_minus_b2, eps;
} adam_f;

/* One element's Adam step: its slots m, v (and vhat, when amsgrad) updated in place,
 * the new weight returned. */
static inline __attribute__((always_inline))
float adam_element(float w, float g, float *m, float *v, float *vhat, adam_f a, prep_f p) {
    float gj = prep_grad(g, p);
    float mj = *m + (gj - *m) * a.one_minus_b1;
    float vj = *v + (gj * gj - *v) * a.one_minus_b2;
    *m = mj;
    *v = vj;
    if (vhat) {
        vj = *vhat > vj ? *vhat : vj;
        *vhat = vj;
    }
    return decayed(w, p) - (mj * a.alpha) / (sqrtf(vj) + a.eps);
}

/* One loop per block, so the divider (square root, division) runs beside the rest. */
WIDE_VECTORS
static void adam_block(long len, float *w, const float *g, float *m, float *v, float *vhat,
                       adam_f a, prep_f p) {
    if (vhat != NULL) {
        for (long j = 0; j < len; j++) w[j] = adam_element(w[j], g[j], m + j, v + j, vhat + j, a, p);
    } else {
        for (long j = 0; j < len; j++) w[j] = adam_element(w[j], g[j], m + j, v + j, NULL, a, p);
    }
}

/* A parameter of at least this many blocks is split among the team by itself, in
 * contiguous parts: a weight gradient's GEMM threads each write one contiguous half of
 * its rows, so each thread then steps the rows its own core wrote. */
#define ADAM_OWN_SPLIT_MIN_BLOCKS 64L
/* Blocks a thread claims at a time from a share (one atomic add each). */
#define ADAM_CLAIM_BLOCKS 4L
/* Counters of the shares a cache line apart. */
#define COUNTER_STRIDE 8

typedef struct {
    long param, block;
} adam_block_ref;

static int split_alone(const pl_adam_param *q) {
    return n_blocks(q->n) >= ADAM_OWN_SPLIT_MIN_BLOCKS;
}

/* Share `share` of nt into out: its contiguous part of each large parameter, then its
 * part of the smaller parameters' blocks numbered across all of them. Returns the count. */
static long list_share(long count, const pl_adam_param *params, long small_blocks, int share,
                       int nt, adam_block_ref *out) {
    long written = 0, first = 0;   // first: the number of a small parameter's first block
    for (long i = 0; i < count; i++) {
        long blocks = n_blocks(params[i].n);
        if (!split_alone(&params[i])) continue;
        for (long b = blocks * share / nt; b < blocks * (share + 1) / nt; b++)
            out[written++] = (adam_block_ref){i, b};
    }
    long begin = small_blocks * share / nt, end = small_blocks * (share + 1) / nt;
    for (long i = 0; i < count; i++) {
        long blocks = n_blocks(params[i].n);
        if (split_alone(&params[i])) continue;
        for (long b = begin > first ? begin - first : 0; b < blocks && first + b < end; b++)
            out[written++] = (adam_block_ref){i, b};
        first += blocks;
    }
    return written;
}

static void adam_ref(const pl_adam_param *params, adam_block_ref ref, adam_f a) {
    const pl_adam_param *q = &params[ref.param];
    long o = ref.block * PL_OPTIM_BLOCK;
    adam_block(block_length(q->n, ref.block), q->w + o, q->g + o, q->m + o, q->v + o,
               q->vhat != NULL ? q->vhat + o : NULL, a, prep_float(q->prep));
}

/* The thread's own share first, then what the others have not yet claimed of theirs. */
static void claim_blocks(const pl_adam_param *params, const adam_block_ref *order,
                         long *next, const long *share_end, int tid, int nt, adam_f a) {
    for (int k = 0; k < nt; k++) {
        int share = (tid + k) % nt;
        long *counter = &next[share * COUNTER_STRIDE];
        for (;;) {
            long i = __atomic_fetch_add(counter, ADAM_CLAIM_BLOCKS, __ATOMIC_RELAXED);
            if (i >= share_end[share]) break;
            long stop = i + ADAM_CLAIM_BLOCKS < share_end[share] ? i + ADAM_CLAIM_BLOCKS
                                                                 : share_end[share];
            for (; i < stop; i++) adam_ref(params, order[i], a);
        }
    }
}

void pl_adam_update_all(const pl_ctx *ctx, long count, const pl_adam_param *params,
                        double alpha, double beta_1, double beta_2, double epsilon,
                        void (*alongside)(void *), void *alongside_arg) {
    const adam_f a = {(float)alpha, (float)(1.0 - beta_1), (float)(1.0 - beta_2),
                      (float)epsilon};
    long elements = 0, small_blocks = 0, blocks = 0;
    for (long i = 0; i < count; i++) {
        elements += params[i].n;
        blocks += n_blocks(params[i].n);
        if (!split_alone(&params[i])) small_blocks += n_blocks(params[i].n);
    }
    int nt = threads_for(ctx, elements);
    adam_block_ref *order = NULL;   // the shares' blocks, one share after another
    long *next = NULL, *share_end = NULL;
    if (nt > 1) {
        order = malloc((size_t)blocks * sizeof *order);
        next = malloc((size_t)nt * COUNTER_STRIDE * sizeof *next);
        share_end = malloc((size_t)nt * sizeof *share_end);
        if (order == NULL || next == NULL || share_end == NULL) nt = 1;   // one thread, in order
    }
    if (nt > 1) {
        long listed = 0;
        for (int share = 0; share < nt; share++) {
            next[share * COUNTER_STRIDE] = listed;
            listed += list_share(count, params, small_blocks, share, nt, order + listed);
            share_end[share] = listed;
        }
    }
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        if (tid == 0 && alongside != NULL) alongside(alongside_arg);
        unsigned fp_mode = pl_flush_subnormals();
        if (nt > 1) {
            claim_blocks(params, order, next, share_end, tid, nt, a);
        } else {
            for (long i = 0; i < count; i++)
                for (long b = 0; b < n_blocks(params[i].n); b++)
                    adam_ref(params, (adam_block_ref){i, b}, a);
        }
        pl_restore_fp_mode(fp_mode);
    }
    free(order);
    free(next);
    free(share_end);
}

typedef struct {
    float lr, rho, one_minus_rho, mu, eps;
} rmsprop_f;

WIDE_VECTORS
static void rmsprop_block(long len, float *w, const float *g, float *v, float *mom,
                          float *avg, rmsprop_f r, prep_f p) {
    float root[PL_OPTIM_BLOCK];
    for (long j = 0; j < len; j++) {
        float gj = prep_grad(g[j], p);
        v[j] = r.rho * v[j] + r.one_minus_rho * (gj * gj);
        root[j] = v[j] + r.eps;
    }
    if (avg != NULL) {
        for (long j = 0; j < len; j++) {
            float gj = prep_grad(g[j], p);
            avg[j] = r.rho * avg[j] + r.one_minus_rho * gj;
            root[j] = v[j] - avg[j] * avg[j] + r.eps;
        }
    }
    sqrt_in_place(root, len);
    if (mom != NULL) {
        for (long j = 0; j < len; j++) {
            mom[j] = r.mu * mom[j] + (r.lr * prep_grad(g[j], p)) / root[j];
            w[j] = decayed(w[j], p) - mom[j];
        }
    } else {
        for (long j = 0; j < len; j++)
            w[j] = decayed(w[j], p) - (r.lr * prep_grad(g[j], p)) / root[j];
    }
}

void pl_rmsprop_update(const pl_ctx *ctx, long n, float *w, const float *g, float *v,
                       float *mom, float *avg, double lr, double rho, double momentum,
                       double epsilon, pl_grad_prep prep) {
    const rmsprop_f r = {(float)lr, (float)rho, (float)(1.0 - rho), (float)momentum,
                         (float)epsilon};
    const prep_f p = prep_float(prep);
    int nt = threads_for(ctx, n);
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        unsigned fp_mode = pl_flush_subnormals();
        #pragma omp for schedule(static)
        for (long b = 0; b < n_blocks(n); b++) {
            long o = b * PL_OPTIM_BLOCK;
            rmsprop_block(block_length(n, b), w + o, g + o, v + o,
                          mom != NULL ? mom + o : NULL, avg != NULL ? avg + o : NULL, r, p);
        }
        pl_restore_fp_mode(fp_mode);
    }
}

WIDE_VECTORS
static void adagrad_block(long len, float *w, const float *g, float *acc, float lr,
                          float eps, prep_f p) {
    float root[PL_OPTIM_BLOCK];
    for (long j = 0; j < len; j++) {
        float gj = prep_grad(g[j], p);
        acc[j] = acc[j] + gj * gj;
        root[j] = acc[j] + eps;
    }
    sqrt_in_place(root, len);
    for (long j = 0; j < len; j++)
        w[j] = decayed(w[j], p) - (lr * prep_grad(g[j], p)) / root[j];
}

void pl_adagrad_update(const pl_ctx *ctx, long n, float *w, const float *g, float *acc,
                       double lr, double epsilon, pl_grad_prep prep) {
    const prep_f p = prep_float(prep);
    int nt = threads_for(ctx, n);
    #pragma omp parallel num_threads(nt) if(nt > 1)
    {
        unsigned fp_mode = pl_flush_subnormals();
        #pragma omp for schedule(static)
        for (long b = 0; b < n_blocks(n); b++) {
            long o = b * PL_OPTIM_BLOCK;
            adagrad_block(block_length(n, b), w + o, g + o, acc + o, (float)lr, (float)epsilon,
                          p);
        }
        pl_restore_fp_mode(fp_mode);
    }
}
