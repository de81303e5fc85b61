/* Run-time context handed to every kernel: thread budget and instruction-set path.
 * csrc knows nothing of Python; the Cython runtime module owns the one instance. */
#ifndef PL_CTX_H
#define PL_CTX_H

/* Ordered: a path uses the kernels of every path below it that it has none of its own. */
enum pl_isa { PL_ISA_GENERIC = 0, PL_ISA_AVX2 = 1, PL_ISA_AVX512 = 2 };

typedef struct {
    int n_threads;   /* upper bound on OpenMP threads a kernel may use (>= 1) */
    int isa;         /* enum pl_isa: which micro-kernels to run */
} pl_ctx;

/* Best instruction set this CPU and OS support (cpuid + xgetbv), detected once. */
int pl_detect_isa(void);

/* 1 when compiled with OpenMP, else 0. */
int pl_openmp_enabled(void);

/* Threads OpenMP would use by default (honours OMP_NUM_THREADS); 1 without OpenMP. */
int pl_default_threads(void);

/* The calling thread's number in its OpenMP team and the team's size: 0 and 1 outside a
 * parallel region or without OpenMP. */
void pl_team_position(int *tid, int *team);

/* Share [begin, end) of `total` items that the calling thread takes in its OpenMP team:
 * contiguous, in thread order, as even as whole items allow; all of them outside a
 * parallel region or without OpenMP. */
void pl_team_share(long total, long *begin, long *end);

/* The calling thread's floating-point mode switched to flush subnormal results to zero
 * and read subnormal inputs as zero, as TensorFlow's threads run every op; returns the
 * mode to hand back to pl_restore_fp_mode.  x86 only (elsewhere both do nothing). */
unsigned pl_flush_subnormals(void);
void pl_restore_fp_mode(unsigned saved);

#endif
