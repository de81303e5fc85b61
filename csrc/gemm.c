/* Single-precision GEMM: the BLIS five loops around an MR x NR micro-kernel.
 *
 *   jc: columns of C in blocks of nc       (packed B block kc x nc, shared, in L3)
 *    pc: depth in blocks of kc             (fixed order: the sum order never changes)
 *     ic: rows of C in blocks of mc        (packed A block mc x kc, per thread, in L2)
 *      jr: columns in micro-panels of nr   (one B micro-panel stays in L1)
 *       ir: rows in micro-panels of mr     (micro-kernel: mr x nr tile in registers)
 *
 * Threads split the rows or the columns of C into ranges aligned to micro-tiles (threads
 * splitting the columns with op(A) in place claim their range's panels one at a time and
 * take what a slower thread has left of its range); every tile of C is computed by
 * exactly one thread with the same packed data and the same kc order, so the result is
 * bitwise the same for any thread count.  Small products skip
 * packing and run on one thread; products of a few rows (batch-1 inference) skip
 * packing and split the columns of C, or share depth slices of a large B fixed by the
 * shape; products of a few columns read A in place. */
#define _POSIX_C_SOURCE 200809L   /* posix_memalign, pthread keys */
#include <pthread.h>
#include <stdlib.h>
#include "gemm.h"
#include "gemm_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static const pl_gemm_arch generic_arch = {
    PL_GENERIC_MR, PL_GENERIC_NR, 128, 256, 4096,
    pl_sgemm_ukernel_generic, NULL, pl_sgemm_ukernel_in_place_generic, NULL, NULL,
    pl_sgemm_small_generic,
    pl_sgemm_skinny_generic, pl_sgemm_narrow_generic};

#ifdef PL_HAVE_X86_KERNELS
static const pl_gemm_arch avx2_arch = {
    PL_AVX2_MR, PL_AVX2_NR, 144, 256, 4080,
    pl_sgemm_ukernel_avx2, pl_sgemm_ukernel_rows_avx2, pl_sgemm_ukernel_in_place_avx2,
    pl_sgemm_pack_panel_a_avx2, pl_sgemm_pack_panel_t_avx2, pl_sgemm_small_avx2,
    pl_sgemm_skinny_avx2, pl_sgemm_narrow_avx2};

/* The wider tile; the unpacked kernels (small, skinny, narrow) are AVX2's. */
static const pl_gemm_arch avx512_arch = {
    PL_AVX512_MR, PL_AVX512_NR, 144, 256, 4096,
    pl_sgemm_ukernel_avx512, pl_sgemm_ukernel_rows_avx512, pl_sgemm_ukernel_in_place_avx512,
    pl_sgemm_pack_panel_a8_avx2, pl_sgemm_pack_panel_t32_avx2, pl_sgemm_small_avx2,
    pl_sgemm_skinny_avx2, pl_sgemm_narrow_avx2};
#endif

/* The largest micro-tile of any path (size of the edge tile buffer). */
#define MAX_MR 16
#define MAX_NR 32

/* Products of at most this many multiply-adds (m*n*k) skip packing. */
#define SMALL_PRODUCT_WORK (32L * 32 * 32)
/* A thread is only worth starting for at least this many multiply-adds. */
#define WORK_PER_THREAD (64L * 64 * 64)
/* Products with at most this many rows stream op(B) in place instead of packing it:
 * packing B costs as much as one pass over it, which is all a few rows need. */
#define SKINNY_MAX_M 8
/* A skinny product is worth a second thread from this many elements of B read (512 KB):
 * 1 x 784 @ 784 x 512 runs 1.2x faster on two threads, 8 x 784 @ 784 x 512 1.6x; below,
 * one thread streams B in a few microseconds, and a team that waits for a core busy
 * with another process loses more than a second thread saves. */
#define SKINNY_B_PER_THREAD (128L * 1024)
/* A skinny product whose B is stored (k, n) and large enough for two threads is cut into
 * at most this many depth slices of at least this many rows of B (depth_slices). */
#define SKINNY_MAX_SLICES 8
#define SKINNY_SLICE_MIN_K 64
/* Slices start on multiples of this many rows: the skinny kernels take rows of B 8 at a
 * time, and a slice of another length would leave a slower remainder. */
#define SKINNY_SLICE_ALIGN 8
/* Threads split a skinny product's columns in units of this many (16 cache lines). */
#define SKINNY_COLUMN_UNIT 64
#define ALIGN_FLOATS 16   /* pack blocks start on 64-byte cache lines */
/* Threads splitting rows each pack a private copy of every B block of at most this many
 * floats (1 MB): packing twice costs less than the barriers and the cache lines passed
 * between cores of one shared copy.  Larger blocks are packed once and shared. */
#define PRIVATE_B_MAX_FLOATS (1L << 18)
/* A thread that multiplies a block of op(A) by at most this many columns reads it in
 * place: packing would cost about as much as the few micro-panels that reuse it, and
 * two threads splitting a layer's 512 columns would each pack all of A, half of it from
 * the other core's cache (MLP 784-512-512-10 training step, two threads: forward 633 ->
 * 590 us; 512 would slow the one-thread weight gradients, whose A is transposed). */
#define A_IN_PLACE_MAX_COLS 256

/* The kernels for products of n columns on the isa path.  Products of at most 16
 * columns take the AVX2 tile on the AVX-512 path too: a 32-column tile would compute
 * twice their width (a Dense(10) over 5408 inputs runs 1.4x slower in it).  The two tiles
 * give the same bits, and the choice depends on n alone, so a B packed for n columns
 * (pl_sgemm_pack_b) is read with the layout it was packed in. */
static const pl_gemm_arch *arch_for(int isa, long n) {
#ifdef PL_HAVE_X86_KERNELS
    if (isa >= PL_ISA_AVX512 && n > PL_AVX2_NR) return &avx512_arch;
    if (isa >= PL_ISA_AVX2) return &avx2_arch;
#endif
    (void)isa;
    (void)n;
    return &generic_arch;
}

static long min_long(long x, long y) { return x < y ? x : y; }
static long round_up(long x, long multiple) { return (x + multiple - 1) / multiple * multiple; }

/* The block size at most `limit` that cuts `total` into equal blocks (the last one
 * at most a little shorter), so no depth block is left very thin. */
static long balanced_block(long total, long limit) {
    long blocks = (total + limit - 1) / limit;
    return (total + blocks - 1) / blocks;
}

/* c (m, n) = beta * c; beta == 0 writes zeros without reading c. */
static void scale_c(long m, long n, float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++)
            c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
}

/* The naive triple loop, kept as the readable definition of pl_sgemm and as the
 * fallback when pack buffers cannot be allocated. */
void pl_sgemm_ref(int trans_a, int trans_b, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb,
                  float beta, float *c, long ldc) {
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++) {
            float acc = 0.0f;
            for (long p = 0; p < k; p++) {
                float a_ip = trans_a ? a[p * lda + i] : a[i * lda + p];
                float b_pj = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                acc += a_ip * b_pj;
            }
            float value = alpha * acc;
            c[i * ldc + j] = beta == 0.0f ? value : value + beta * c[i * ldc + j];
        }
}

/* Pack the (mc, kc) block of op(A) starting at a into mr-row panels:
 * panel q holds rows q*mr.. as kc columns of mr floats, rows past mc zeroed.
 * op(A)(i, p) is a[i * lda + p], or a[p * lda + i] when trans_a. */
static inline __attribute__((always_inline))
void pack_a_panels(int mr, pl_pack_panel_a_fn pack_panel_a, int trans_a, long mc, long kc,
                   const float *a, long lda, float *dst) {
    for (long i0 = 0; i0 < mc; i0 += mr) {
        long rows = min_long(mr, mc - i0);
        float *panel = dst + i0 * kc;
        if (trans_a && rows == mr) {
            for (long p = 0; p < kc; p++)   // row p of A holds column p of op(A)
                for (int r = 0; r < mr; r++) panel[p * mr + r] = a[p * lda + i0 + r];
        } else if (trans_a) {
            for (long p = 0; p < kc; p++) {
                const float *src = a + p * lda + i0;
                for (long r = 0; r < rows; r++) panel[p * mr + r] = src[r];
                for (long r = rows; r < mr; r++) panel[p * mr + r] = 0.0f;
            }
        } else if (rows == mr && pack_panel_a) {
            pack_panel_a(kc, a + i0 * lda, lda, panel);
        } else if (rows == mr) {
            const float *src = a + i0 * lda;
            for (long p = 0; p < kc; p++)
                for (int r = 0; r < mr; r++) panel[p * mr + r] = src[r * lda + p];
        } else {
            for (long r = 0; r < rows; r++) {
                const float *src = a + (i0 + r) * lda;
                for (long p = 0; p < kc; p++) panel[p * mr + r] = src[p];
            }
            for (long r = rows; r < mr; r++)
                for (long p = 0; p < kc; p++) panel[p * mr + r] = 0.0f;
        }
    }
}

static void pack_a(const pl_gemm_arch *arch, int trans_a, long mc, long kc,
                   const float *a, long lda, float *dst) {
    pl_pack_panel_a_fn pack_rows = arch->pack_panel_a;
    if (arch->mr == 8) pack_a_panels(8, pack_rows, trans_a, mc, kc, a, lda, dst);
    else if (arch->mr == 6) pack_a_panels(6, pack_rows, trans_a, mc, kc, a, lda, dst);
    else if (arch->mr == 4) pack_a_panels(4, pack_rows, trans_a, mc, kc, a, lda, dst);
    else pack_a_panels(arch->mr, pack_rows, trans_a, mc, kc, a, lda, dst);
}

/* Pack micro-panels [j_begin, j_end) (column offsets, multiples of nr) of the
 * (kc, nc) block of op(B) starting at b into nr-column panels: the panel at column
 * j0 starts at dst + j0 * panel_depth and holds kc rows of nr floats, columns past nc
 * zeroed.  panel_depth is the deepest block's kc for the whole call, so a thread
 * packing a later (shallower) k block never moves onto another thread's panels.
 * op(B)(p, j) is b[p * ldb + j], or b[j * ldb + p] when trans_b. */
static inline __attribute__((always_inline))
void pack_b_panels(int nr, pl_pack_panel_t_fn pack_panel_t, int trans_b, long j_begin,
                   long j_end, long nc, long kc, long panel_depth, const float *b, long ldb,
                   float *dst) {
    long full_end = trans_b ? j_begin : j_begin + (min_long(j_end, nc) - j_begin) / nr * nr;
    // the full panels of B stored (k, n) row by row, so the reads stream along each row
    for (long p = 0; p < kc; p++)
        for (long j0 = j_begin; j0 < full_end; j0 += nr)
            for (int col = 0; col < nr; col++)
                dst[j0 * panel_depth + p * nr + col] = b[p * ldb + j0 + col];
    for (long j0 = full_end; j0 < j_end; j0 += nr) {
        long cols = min_long(nr, nc - j0);
        float *panel = dst + j0 * panel_depth;
        if (!trans_b) {
            for (long p = 0; p < kc; p++) {
                const float *src = b + p * ldb + j0;
                for (long col = 0; col < cols; col++) panel[p * nr + col] = src[col];
                for (long col = cols; col < nr; col++) panel[p * nr + col] = 0.0f;
            }
        } else if (cols == nr && pack_panel_t) {
            pack_panel_t(kc, b + j0 * ldb, ldb, panel);
        } else {
            for (long col = 0; col < cols; col++) {
                const float *src = b + (j0 + col) * ldb;   // row j of B is column j of op(B)
                for (long p = 0; p < kc; p++) panel[p * nr + col] = src[p];
            }
            for (long col = cols; col < nr; col++)
                for (long p = 0; p < kc; p++) panel[p * nr + col] = 0.0f;
        }
    }
}

static void pack_b(const pl_gemm_arch *arch, int trans_b, long j_begin, long j_end, long nc,
                   long kc, long panel_depth, const float *b, long ldb, float *dst) {
    pl_pack_panel_t_fn pack_t = arch->pack_panel_t;
    if (arch->nr == 32)
        pack_b_panels(32, pack_t, trans_b, j_begin, j_end, nc, kc, panel_depth, b, ldb, dst);
    else if (arch->nr == 16)
        pack_b_panels(16, pack_t, trans_b, j_begin, j_end, nc, kc, panel_depth, b, ldb, dst);
    else if (arch->nr == 8)
        pack_b_panels(8, pack_t, trans_b, j_begin, j_end, nc, kc, panel_depth, b, ldb, dst);
    else
        pack_b_panels(arch->nr, pack_t, trans_b, j_begin, j_end, nc, kc, panel_depth, b, ldb,
                      dst);
}

/* Where the micro-kernels read an (mc, kc) block of op(A): packed in mr-row panels at
 * a, or in place, element (i, p) at a[i * row_step + p * col_step]. */
typedef struct {
    const float *a;
    long row_step, col_step;
    int in_place;
} a_block_view;

/* Rows from ir of the block: the start of their packed panel, or of row ir in place. */
static const float *a_rows(const a_block_view *view, long ir, long kc) {
    return view->a + ir * (view->in_place ? view->row_step : kc);
}

/* One partial tile, run through the full micro-kernel on tile_buf: its rows x cols of c
 * go in (when beta reads them, with zeros around them), and come back out, so each
 * element gets the arithmetic of a full tile's. */
static void edge_tile(const pl_gemm_arch *arch, long kc, const a_block_view *a_view, long ir,
                      const float *b_panel, long rows, long cols, float alpha, float beta,
                      float *c, long ldc) {
    _Alignas(64) float tile_buf[MAX_MR * MAX_NR];
    const int mr = arch->mr, nr = arch->nr;
    const float *a = a_rows(a_view, ir, kc);
    if (beta != 0.0f)
        for (long i = 0; i < mr; i++)
            for (long j = 0; j < nr; j++)
                tile_buf[i * nr + j] = i < rows && j < cols ? c[i * ldc + j] : 0.0f;
    if (a_view->in_place)
        arch->ukernel_in_place((int)rows, kc, a, a_view->row_step, a_view->col_step, b_panel,
                               tile_buf, nr, alpha, beta);
    else
        arch->ukernel(kc, a, b_panel, tile_buf, nr, alpha, beta);
    for (long i = 0; i < rows; i++)
        for (long j = 0; j < cols; j++) c[i * ldc + j] = tile_buf[i * nr + j];
}

/* c block (mc, nc) = alpha * op(A) block @ B_packed + beta * c, restricted to the
 * column micro-panels [j_begin, j_end).  B_packed is (kc, nc) in nr-column panels. */
static void macro_kernel(const pl_gemm_arch *arch, long mc, long nc, long kc,
                         long panel_depth, long j_begin, long j_end, const a_block_view *a_view,
                         const float *b_packed, float alpha, float beta, float *c, long ldc) {
    int mr = arch->mr, nr = arch->nr;
    for (long jr = j_begin; jr < j_end; jr += nr) {
        long cols = min_long(nr, nc - jr);
        const float *b_panel = b_packed + jr * panel_depth;
        for (long ir = 0; ir < mc; ir += mr) {
            long rows = min_long(mr, mc - ir);
            const float *a = a_rows(a_view, ir, kc);
            float *c_tile = c + ir * ldc + jr;
            if (cols == nr && a_view->in_place)
                arch->ukernel_in_place((int)rows, kc, a, a_view->row_step, a_view->col_step,
                                       b_panel, c_tile, ldc, alpha, beta);
            else if (rows == mr && cols == nr)
                arch->ukernel(kc, a, b_panel, c_tile, ldc, alpha, beta);
            else if (cols == nr && arch->ukernel_rows)
                arch->ukernel_rows((int)rows, kc, a, b_panel, c_tile, ldc, alpha, beta);
            else
                edge_tile(arch, kc, a_view, ir, b_panel, rows, cols, alpha, beta, c_tile, ldc);
        }
    }
}

/* The calling thread's scratch (gemm_kernels.h), kept between calls so that packing
 * writes into memory that is already mapped and cached; freed when the thread exits. */
static __thread float *thread_scratch_base;
static __thread size_t thread_scratch_floats;
static pthread_key_t scratch_key;
static pthread_once_t scratch_key_once = PTHREAD_ONCE_INIT;

static void create_scratch_key(void) { pthread_key_create(&scratch_key, free); }

float *pl_thread_scratch(size_t floats) {
    if (floats <= thread_scratch_floats) return thread_scratch_base;
    void *fresh;
    if (posix_memalign(&fresh, 64, floats * sizeof(float))) return NULL;
    free(thread_scratch_base);
    thread_scratch_base = fresh;
    thread_scratch_floats = floats;
    pthread_once(&scratch_key_once, create_scratch_key);
    pthread_setspecific(scratch_key, fresh);   // the key's destructor frees it at exit
    return fresh;
}

/* Everything one call needs, shared read-only by the threads. */
typedef struct {
    const pl_gemm_arch *arch;
    int trans_a, trans_b;
    long m, n, k;
    float alpha, beta;
    const float *a, *b;
    long lda, ldb, ldc;
    float *c;
    long mc, kc, nc;        /* block sizes clipped to the problem */
    float *b_packed;        /* (kc, nc) in nr-column panels: one copy filled by the whole
                               team (rows split, b_stride 0), or each thread's own copy
                               (rows split) or own columns (columns split) in its own
                               slice, b_stride floats apart */
    long b_stride;
    const float *prepacked; /* or all of op(B) packed once (see packed_block_floats), or NULL */
    int a_in_place;         /* the micro-kernels read op(A) where it is, unpacked */
    float *a_packed;        /* one (mc, kc) block per thread, a_stride floats apart */
    long a_stride;
} gemm_job;

/* A packed (kc, nc) block of op(B): nr-column panels kc deep, cache-line rounded.
 * All of op(B) packed once (pl_sgemm_pack_b) is its blocks in jc-major, pc-minor
 * order, each in the layout gemm_thread packs a block into. */
static long packed_block_floats(const pl_gemm_arch *arch, long kc, long nc) {
    return round_up(kc * round_up(nc, arch->nr), ALIGN_FLOATS);
}

static long pc_blocks(long k, long kc) { return (k + kc - 1) / kc; }

/* Block sizes of a call, clipped to the problem: kc by k, nc by n. */
static long block_kc(const pl_gemm_arch *arch, long k) { return balanced_block(k, arch->kc); }
static long block_nc(const pl_gemm_arch *arch, long n) {
    return min_long(arch->nc, round_up(n, arch->nr));
}

/* Part [begin, end) of n_units units for thread tid of n_parts, contiguous,
 * scaled to a multiple of unit. */
static void split_range(long n_units, int tid, int n_parts, long unit, long total,
                        long *begin, long *end) {
    long per_part = n_units / n_parts, extra = n_units % n_parts;
    long first = tid * per_part + min_long(tid, extra);
    long count = per_part + (tid < extra);
    *begin = min_long(first * unit, total);
    *end = min_long((first + count) * unit, total);
}

static void team_barrier(int n_threads) {
#ifdef _OPENMP
    if (n_threads > 1) {
#pragma omp barrier
    }
#else
    (void)n_threads;
#endif
}

/* Whether threads share out the rows of C (else its columns): the longer side, in
 * whole micro-panels, if that gives every thread at least two.  Splitting rows, each
 * thread packs its own copy of a small B block, or the team packs a large one together
 * and shares it (two barriers per block);
 * splitting columns, each thread packs and reads only its own B panels, no barrier. */
static int threads_split_rows(const gemm_job *job, int n_threads) {
    long m_panels = (job->m + job->arch->mr - 1) / job->arch->mr;
    long n_panels = (job->n + job->arch->nr - 1) / job->arch->nr;
    if (m_panels < 2L * n_threads) return 0;
    if (n_panels < 2L * n_threads) return 1;
    return job->m >= job->n;
}

/* Where op(A)'s block at (row ic, depth pc) starts. */
static const float *a_block_at(const gemm_job *job, long ic, long pc) {
    return job->trans_a ? job->a + pc * job->lda + ic : job->a + ic * job->lda + pc;
}

/* op(A)'s block at (ic, pc) as the micro-kernels read it in place. */
static a_block_view a_in_place_at(const gemm_job *job, long ic, long pc) {
    return (a_block_view){a_block_at(job, ic, pc), job->trans_a ? 1 : job->lda,
                          job->trans_a ? job->lda : 1, 1};
}

/* Where op(B)'s block at (depth pc, column col) starts. */
static const float *b_block_at(const gemm_job *job, long pc, long col) {
    return job->trans_b ? job->b + col * job->ldb + pc : job->b + pc * job->ldb + col;
}

/* The five loops as run by thread tid of n_threads. */
static void gemm_thread(const gemm_job *job, int tid, int n_threads) {
    const pl_gemm_arch *arch = job->arch;
    int mr = arch->mr, nr = arch->nr;
    long m_panels = (job->m + mr - 1) / mr;
    int split_rows = threads_split_rows(job, n_threads);
    int shared_b = split_rows && n_threads > 1 && !job->prepacked && !job->b_stride;
    long block_floats = packed_block_floats(arch, job->kc, job->nc);
    long m_begin = 0, m_end = job->m;
    if (split_rows) split_range(m_panels, tid, n_threads, mr, job->m, &m_begin, &m_end);
    float *a_packed = job->a_packed + tid * job->a_stride;

    for (long jc = 0; jc < job->n; jc += job->nc) {
        long nc = min_long(job->nc, job->n - jc);
        long nc_panels = (nc + nr - 1) / nr;
        long j_begin = 0, j_end = nc;
        if (!split_rows) split_range(nc_panels, tid, n_threads, nr, nc, &j_begin, &j_end);
        long pack_begin = j_begin, pack_end = j_end;
        if (shared_b) split_range(nc_panels, tid, n_threads, nr, nc, &pack_begin, &pack_end);
        // Packing its own columns, a thread's panels start at its first column, in its
        // own slice: threads a block apart (whose splits differ) never share memory.
        long origin = job->prepacked || shared_b ? 0 : j_begin;
        float *own_panels = job->b_packed + (shared_b ? 0 : tid * job->b_stride);
        for (long pc = 0; pc < job->k; pc += job->kc) {
            long kc = min_long(job->kc, job->k - pc);
            float beta = pc == 0 ? job->beta : 1.0f;
            const float *b_packed = own_panels;
            if (job->prepacked) {   // block (pc, jc) of op(B), packed beforehand
                long block = jc / job->nc * pc_blocks(job->k, job->kc) + pc / job->kc;
                b_packed = job->prepacked + block * block_floats;
            } else {   // op(B) block (kc, nc - origin) at (pc, jc + origin)
                const float *b_block = b_block_at(job, pc, jc + origin);
                pack_b(arch, job->trans_b, pack_begin - origin, pack_end - origin, nc - origin,
                       kc, job->kc, b_block, job->ldb, own_panels);
            }
            if (shared_b) team_barrier(n_threads);
            for (long ic = m_begin; ic < m_end; ic += job->mc) {
                long mc = min_long(job->mc, m_end - ic);
                a_block_view a_view = {a_packed, 0, 0, 0};
                if (job->a_in_place)
                    a_view = a_in_place_at(job, ic, pc);
                else
                    pack_a(arch, job->trans_a, mc, kc, a_block_at(job, ic, pc), job->lda,
                           a_packed);
                macro_kernel(arch, mc, nc - origin, kc, job->kc, j_begin - origin, j_end - origin,
                             &a_view, b_packed, job->alpha, beta,
                             job->c + ic * job->ldc + jc + origin, job->ldc);
            }
            if (shared_b) team_barrier(n_threads);   // b_packed is refilled next
        }
    }
}

/* Column micro-panel p of C, all rows, on the calling thread: op(B)'s panel packed one
 * depth block at a time into `panel` (kc x nr floats), op(A) read in place. Each tile
 * gets the depth blocks in order from the same packed data as in gemm_thread, so the
 * same bits. */
static void run_panel(const gemm_job *job, long p, float *panel) {
    const pl_gemm_arch *arch = job->arch;
    const long j0 = p * arch->nr, cols = min_long(arch->nr, job->n - j0);
    for (long pc = 0; pc < job->k; pc += job->kc) {
        long kc = min_long(job->kc, job->k - pc);
        float beta = pc == 0 ? job->beta : 1.0f;
        pack_b(arch, job->trans_b, 0, cols, cols, kc, job->kc, b_block_at(job, pc, j0),
               job->ldb, panel);
        for (long ic = 0; ic < job->m; ic += job->mc) {
            a_block_view a_view = a_in_place_at(job, ic, pc);
            macro_kernel(arch, min_long(job->mc, job->m - ic), cols, kc, job->kc, 0, cols,
                         &a_view, panel, job->alpha, beta, job->c + ic * job->ldc + j0,
                         job->ldc);
        }
    }
}

/* Counters of the threads' panel ranges, a cache line apart. */
#define COUNTER_STRIDE 16

/* Thread tid's part of a product whose threads split the columns of C and read op(A) in
 * place: the column micro-panels of its own range, each claimed from the range's
 * counter (next[share * COUNTER_STRIDE]: the range's next panel), then what the others
 * have not yet claimed of theirs. A thread held up (reading the other core's cache
 * lines, starting late) so ends up with fewer panels: with a fixed split, the first of
 * a training step's Dense products (128 x 784 @ 784 x 512) waited 36 us of 382 for one
 * thread. */
static void gemm_thread_claiming(const gemm_job *job, int tid, int n_threads, long *next) {
    const long panels = (job->n + job->arch->nr - 1) / job->arch->nr;
    float *panel = job->b_packed + tid * job->b_stride;
    for (int k = 0; k < n_threads; k++) {
        int share = (tid + k) % n_threads;
        long end = panels * (share + 1) / n_threads;
        for (;;) {
            long p = __atomic_fetch_add(&next[share * COUNTER_STRIDE], 1, __ATOMIC_RELAXED);
            if (p >= end) break;
            run_panel(job, p, panel);
        }
    }
}

/* Threads worth using: the budget, capped by work / per_thread, 1 inside a parallel
 * region. */
static int threads_for(const pl_ctx *ctx, double work, double per_thread) {
    int budget = ctx->n_threads > 1 ? ctx->n_threads : 1;
#ifdef _OPENMP
    if (omp_in_parallel()) budget = 1;
#else
    budget = 1;
#endif
    double by_work = work / per_thread;
    if (by_work < 1.0 || budget == 1) return 1;
    return by_work < budget ? (int)by_work : budget;
}

/* The five loops, packing op(B) on the way, or reading it from prepacked (then b is
 * not read and trans_b is ignored).  False only when pack space is short. */
static int packed_sgemm(const pl_gemm_arch *arch, int n_threads, int trans_a, int trans_b,
                        long m, long n, long k, float alpha, const float *a, long lda,
                        const float *b, long ldb, const float *prepacked, float beta,
                        float *c, long ldc) {
    gemm_job job = {arch, trans_a, trans_b, m, n, k, alpha, beta, a, b, lda, ldb, ldc, c,
                    min_long(arch->mc, round_up(m, arch->mr)), block_kc(arch, k),
                    block_nc(arch, n), NULL, 0, prepacked, 0, NULL, 0};
    int split_rows = threads_split_rows(&job, n_threads);
    long panels_per_thread = (job.nc + arch->nr - 1) / arch->nr;
    if (!split_rows) panels_per_thread = (panels_per_thread + n_threads - 1) / n_threads;
    long b_floats = prepacked ? 0 : packed_block_floats(arch, job.kc, job.nc);
    if (!prepacked && n_threads > 1 && (!split_rows || b_floats <= PRIVATE_B_MAX_FLOATS)) {
        // each thread packs into a slice of its own: its columns, or a copy of the block
        job.b_stride = round_up(job.kc * arch->nr * panels_per_thread, ALIGN_FLOATS);
        b_floats = n_threads * job.b_stride;
    }
    job.a_in_place = panels_per_thread * arch->nr <= A_IN_PLACE_MAX_COLS;
    job.a_stride = job.a_in_place ? 0 : round_up(job.mc * job.kc, ALIGN_FLOATS);
    // at least a cache line, so a thread's first call gets space even when it packs
    // nothing (B prepacked, A in place)
    long pack_floats = b_floats + n_threads * job.a_stride;
    job.b_packed = pl_thread_scratch((size_t)(pack_floats > 0 ? pack_floats : ALIGN_FLOATS));
    if (!job.b_packed) return 0;
    job.a_packed = job.b_packed + b_floats;
    if (n_threads == 1) {
        gemm_thread(&job, 0, 1);
    } else {
#ifdef _OPENMP
        // columns split with op(A) in place: panels claimed (gemm_thread_claiming)
        const int claiming = !split_rows && job.a_in_place && !prepacked;
        long next_panel[n_threads * COUNTER_STRIDE];
        for (int t = 0; claiming && t < n_threads; t++)
            next_panel[t * COUNTER_STRIDE] = (job.n + arch->nr - 1) / arch->nr * t / n_threads;
#pragma omp parallel num_threads(n_threads)
        {   // the pack space is laid out for n_threads: a smaller team (OMP_DYNAMIC,
            // thread limits) leaves the whole product to one thread
            if (omp_get_num_threads() != n_threads) {
                if (omp_get_thread_num() == 0) gemm_thread(&job, 0, 1);
            } else if (claiming) {
                gemm_thread_claiming(&job, omp_get_thread_num(), n_threads, next_panel);
            } else {
                gemm_thread(&job, omp_get_thread_num(), n_threads);
            }
        }
#endif
    }
    return 1;
}

/* op(A) (m, k) copied into dst as rows of k floats; a is stored (k, m), row stride lda. */
static void copy_transposed_a(long m, long k, const float *a, long lda, float *dst) {
    for (long p = 0; p < k; p++)
        for (long i = 0; i < m; i++) dst[i * k + p] = a[p * lda + i];
}

/* Depth slices of a product with few rows and B stored (k, n) that is large enough for
 * two threads: k cut into at most SKINNY_MAX_SLICES slices of at least SKINNY_SLICE_MIN_K
 * rows of B; 1 (no slicing) otherwise.  Fixed by the shape alone, never by the thread
 * count, so the sums are the same on any number of threads. */
static long depth_slices(int trans_b, long n, long k) {
    if (trans_b || (double)n * k < 2.0 * SKINNY_B_PER_THREAD) return 1;
    long slices = k / SKINNY_SLICE_MIN_K;
    return slices < SKINNY_MAX_SLICES ? slices : SKINNY_MAX_SLICES;
}

/* Columns [j_begin, j_end) of c (m, n) = alpha * (the sum over slices, in order, of the
 * partial products (m, n) in partial, slice_floats apart) + beta * c. */
static void sum_slices(long slices, long m, long n, long j_begin, long j_end,
                       const float *partial, long slice_floats, float alpha, float beta,
                       float *c, long ldc) {
    float sum[SKINNY_COLUMN_UNIT];
    for (long i = 0; i < m; i++)
        for (long j0 = j_begin; j0 < j_end; j0 += SKINNY_COLUMN_UNIT) {
            long cols = min_long(SKINNY_COLUMN_UNIT, j_end - j0);
            const float *first = partial + i * n + j0;
            for (long j = 0; j < cols; j++) sum[j] = first[j];
            for (long slice = 1; slice < slices; slice++)
                for (long j = 0; j < cols; j++) sum[j] += first[slice * slice_floats + j];
            float *c_row = c + i * ldc + j0;
            for (long j = 0; j < cols; j++)
                c_row[j] = beta == 0.0f ? alpha * sum[j] : alpha * sum[j] + beta * c_row[j];
        }
}

/* The first row of B in slice number `slice` of `slices` (slice == slices: k): as even
 * as whole groups of SKINNY_SLICE_ALIGN rows allow, the last slice taking the rest. */
static long slice_start(long slice, long slices, long k) {
    if (slice == slices) return k;
    return slice * k / slices / SKINNY_SLICE_ALIGN * SKINNY_SLICE_ALIGN;
}

/* A skinny product's operands, shared by its threads; slices 1: no depth slices. */
typedef struct {
    const pl_gemm_arch *arch;
    int trans_b;
    long m, n, k, slices;
    float alpha, beta;
    const float *a, *b;
    long lda, ldb, ldc;
    float *c, *partial;   /* partial: slices * m * n floats, or NULL */
} skinny_job;

/* Thread tid of team's share of a skinny product.  With depth slices: its slices'
 * partial products (rows of B contiguous in memory, so each thread's part of B stays in
 * its own cache from call to call), then, once every partial is written, its columns of
 * their sum.  Without: its columns of the product. */
static void skinny_thread(const skinny_job *job, int tid, int team) {
    const long m = job->m, n = job->n, units = (n + SKINNY_COLUMN_UNIT - 1) / SKINNY_COLUMN_UNIT;
    long j_begin, j_end;
    split_range(units, tid, team, SKINNY_COLUMN_UNIT, n, &j_begin, &j_end);
    if (job->slices == 1) {
        if (j_begin < j_end)
            job->arch->skinny(job->trans_b, m, j_begin, j_end, job->k, job->alpha, job->a,
                              job->lda, job->b, job->ldb, job->beta, job->c, job->ldc);
        return;
    }
    long first, last;
    split_range(job->slices, tid, team, 1, job->slices, &first, &last);
    for (long slice = first; slice < last; slice++) {
        long p0 = slice_start(slice, job->slices, job->k);
        long p1 = slice_start(slice + 1, job->slices, job->k);
        job->arch->skinny(0, m, 0, n, p1 - p0, 1.0f, job->a + p0, job->lda,
                          job->b + p0 * job->ldb, job->ldb, 0.0f, job->partial + slice * m * n,
                          n);
    }
    team_barrier(team);
    sum_slices(job->slices, m, n, j_begin, j_end, job->partial, m * n, job->alpha, job->beta,
               job->c, job->ldc);
}

/* A product with few rows, op(B) streamed in place.  op(A) is copied to rows first when
 * stored transposed (m * k floats, small beside the n * k of B).  A large B stored (k, n)
 * is cut into depth slices (depth_slices), which the threads share; otherwise each
 * thread streams its own columns of op(B) once per row group. */
static void skinny_sgemm(const pl_gemm_arch *arch, int n_threads, int trans_a, int trans_b,
                         long m, long n, long k, float alpha, const float *a, long lda,
                         const float *b, long ldb, float beta, float *c, long ldc) {
    int narrow = !trans_b && n <= PL_NARROW_N;   // fewer columns than one thread's unit
    long slices = narrow ? 1 : depth_slices(trans_b, n, k);
    long rows_floats = trans_a ? round_up(m * k, ALIGN_FLOATS) : 0;
    long partial_floats = slices > 1 ? slices * m * n : 0;
    float *scratch = NULL;
    if (rows_floats + partial_floats > 0) {
        scratch = pl_thread_scratch((size_t)(rows_floats + partial_floats));
        if (!scratch) {
            pl_sgemm_ref(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
    }
    if (trans_a) {
        copy_transposed_a(m, k, a, lda, scratch);
        a = scratch;
        lda = k;
    }
    if (narrow) {
        arch->narrow(m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    skinny_job job = {arch, trans_b, m, n, k, slices, alpha, beta, a, b, lda, ldb, ldc, c,
                      partial_floats ? scratch + rows_floats : NULL};
    if (n_threads == 1) {
        skinny_thread(&job, 0, 1);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads)
    skinny_thread(&job, omp_get_thread_num(), omp_get_num_threads());
#endif
}

/* A product of a rows chain as thread tid of team runs it: its share of the depth slices
 * and then of the columns when `split` (as skinny_sgemm would split it), else the whole
 * product on tid 0; then the finish of the columns it wrote, unless whole rows. */
static void rows_chain_product(const pl_ctx *ctx, long m, const pl_rows_product *p,
                               int split, float *partial, int tid, int team) {
    const pl_gemm_arch *arch = arch_for(ctx->isa, p->n);
    if (!split && tid != 0) return;
    long j_begin = 0, j_end = p->n;
    if (p->n <= PL_NARROW_N) {
        arch->narrow(m, p->n, p->k, 1.0f, p->a, p->k, p->b, p->n, 0.0f, p->c, p->n);
    } else {
        skinny_job job = {arch, 0, m, p->n, p->k, depth_slices(0, p->n, p->k), 1.0f, 0.0f,
                          p->a, p->b, p->k, p->n, p->n, p->c, partial};
        if (!split) team = 1;
        skinny_thread(&job, tid, team);
        long units = (p->n + SKINNY_COLUMN_UNIT - 1) / SKINNY_COLUMN_UNIT;
        split_range(units, tid, team, SKINNY_COLUMN_UNIT, p->n, &j_begin, &j_end);
    }
    if (p->finish && !p->whole_rows && j_begin < j_end)
        p->finish(p->c + j_begin, p->n, m, j_end - j_begin, j_begin, p->finish_arg);
}

/* Whether, on a team of `team`, every thread of a rows chain reads in product `next`
 * (depth-sliced) only the columns of `prev`'s c that it summed and finished itself:
 * then it goes on without waiting for the others. */
static int reads_own_columns(const pl_rows_product *prev, const pl_rows_product *next,
                             int team) {
    if (prev->whole_rows || prev->n != next->k) return 0;
    const long slices = depth_slices(0, next->n, next->k);
    const long units = (prev->n + SKINNY_COLUMN_UNIT - 1) / SKINNY_COLUMN_UNIT;
    if (slices == 1) return 0;
    for (int t = 0; t < team; t++) {
        long first, last, j_begin, j_end;
        split_range(slices, t, team, 1, slices, &first, &last);
        split_range(units, t, team, SKINNY_COLUMN_UNIT, prev->n, &j_begin, &j_end);
        if (first < last && (slice_start(first, slices, next->k) < j_begin ||
                             slice_start(last, slices, next->k) > j_end))
            return 0;
    }
    return 1;
}

int pl_sgemm_rows_chain(const pl_ctx *ctx, long m, int count,
                        const pl_rows_product *products) {
    if (m <= 0 || m > SKINNY_MAX_M || count < 1) return 0;
    long partial_floats = 0;
    int team = 1;
    char split[count];   // whether each product splits among the threads
    for (int i = 0; i < count; i++) {
        const pl_rows_product *p = &products[i];
        if (p->n <= 0 || p->k <= 0) return 0;
        int threads = threads_for(ctx, (double)p->n * p->k, SKINNY_B_PER_THREAD);
        split[i] = p->n > PL_NARROW_N && threads > 1;
        if (p->n <= PL_NARROW_N) continue;
        long slices = depth_slices(0, p->n, p->k);
        if (slices > 1 && slices * m * p->n > partial_floats) partial_floats = slices * m * p->n;
        if (threads > team) team = threads;
    }
    // two partial buffers, products alternating: a thread that goes on to the next
    // product without a barrier must not write the partial sums another still reads
    partial_floats = round_up(partial_floats, ALIGN_FLOATS);
    float *partial = partial_floats ? pl_thread_scratch((size_t)(2 * partial_floats)) : NULL;
    if (partial_floats && !partial) return 0;
#pragma omp parallel num_threads(team) if(team > 1)
    {
        int tid, size;
        pl_team_position(&tid, &size);
        for (int i = 0; i < count; i++) {
            const pl_rows_product *p = &products[i];
            rows_chain_product(ctx, m, p, split[i], partial + i % 2 * partial_floats, tid,
                               size);
            if (p->finish && p->whole_rows) {
                if (split[i]) team_barrier(size);
                if (tid == 0) p->finish(p->c, p->n, m, p->n, 0, p->finish_arg);
            }
            // the next product reads this c: a barrier, unless each thread reads only
            // what it wrote (a sliced product's barrier then guards the partials)
            if (i + 1 < count && !(split[i] && split[i + 1] &&
                                   reads_own_columns(p, &products[i + 1], size)))
                team_barrier(size);
        }
    }
    return 1;
}

void pl_sgemm(const pl_ctx *ctx, int trans_a, int trans_b,
              long m, long n, long k, float alpha,
              const float *a, long lda, const float *b, long ldb,
              float beta, float *c, long ldc) {
    pl_sgemm_packed_b(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc);
}

void pl_sgemm_packed_b(const pl_ctx *ctx, int trans_a, int trans_b,
                       long m, long n, long k, float alpha,
                       const float *a, long lda, const float *b, long ldb,
                       const float *packed_b, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == 0.0f) {
        scale_c(m, n, beta, c, ldc);
        return;
    }
    const pl_gemm_arch *arch = arch_for(ctx->isa, n);
    if (m <= SKINNY_MAX_M) {
        skinny_sgemm(arch, threads_for(ctx, (double)n * k, SKINNY_B_PER_THREAD), trans_a,
                     trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    // a prepacked B is faster through the packed loops even for small products
    if ((double)m * n * k <= SMALL_PRODUCT_WORK && !(trans_a && trans_b) && !packed_b) {
        arch->small(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (!packed_sgemm(arch, threads_for(ctx, (double)m * n * k, WORK_PER_THREAD), trans_a,
                      trans_b, m, n, k, alpha, a, lda, b, ldb, packed_b, beta, c, ldc))
        pl_sgemm_ref(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void pl_sgemm_packed_b_serial(const pl_ctx *ctx, long m, long n, long k, const float *a,
                              long lda, const float *packed_b, float beta, float *c, long ldc) {
    if (m <= 0 || n <= 0 || k <= 0) return;
    const pl_gemm_arch *arch = arch_for(ctx->isa, n);
    const long kc = block_kc(arch, k), nc = block_nc(arch, n);
    const long block_floats = packed_block_floats(arch, kc, nc);
    for (long jc = 0; jc < n; jc += nc) {
        for (long pc = 0; pc < k; pc += kc) {   // pl_sgemm_packed_b's blocks, in its order
            long block = jc / nc * pc_blocks(k, kc) + pc / kc;
            a_block_view a_view = {a + pc, lda, 1, 1};
            macro_kernel(arch, m, min_long(nc, n - jc), min_long(kc, k - pc), kc, 0,
                         min_long(nc, n - jc), &a_view, packed_b + block * block_floats, 1.0f,
                         pc == 0 ? beta : 1.0f, c + jc, ldc);
        }
    }
}

float *pl_sgemm_pack_b(const pl_ctx *ctx, int trans_b, long n, long k, const float *b,
                       long ldb) {
    if (n <= 0 || k <= 0) return NULL;
    const pl_gemm_arch *arch = arch_for(ctx->isa, n);
    long kc = block_kc(arch, k), nc = block_nc(arch, n);
    long block_floats = packed_block_floats(arch, kc, nc);
    long blocks = (n + nc - 1) / nc * pc_blocks(k, kc);
    void *packed;
    if (posix_memalign(&packed, 64, (size_t)(blocks * block_floats) * sizeof(float)))
        return NULL;
    float *block = packed;
    for (long jc = 0; jc < n; jc += nc)
        for (long pc = 0; pc < k; pc += kc, block += block_floats) {
            long cols = min_long(nc, n - jc);
            const float *b_block = trans_b ? b + jc * ldb + pc : b + pc * ldb + jc;
            pack_b(arch, trans_b, 0, cols, cols, min_long(kc, k - pc), kc, b_block, ldb, block);
        }
    return packed;
}
