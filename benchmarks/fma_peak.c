/* This core's clock and single-precision FMA peak, measured: the denominator of the
 * "% of FMA peak" column of gemm_report.py (run one copy per core, concurrently).
 *
 *   clock: a chain of dependent 1-cycle integer adds, 4 per loop iteration;
 *   peak:  12 independent chains of 8-float FMAs, more than 2 pipes x 4-cycle latency
 *          need, so the FMA pipes, not latency, bound them.
 *
 * Prints "clock_ghz fma_gflops".  x86-64 with AVX2+FMA only; build with -O2.  With the
 * argument avx512 (a CPU with AVX-512F), the chains are 16-float FMAs. */
#include <stdio.h>
#include <string.h>
#include <time.h>

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double measure_clock_ghz(long iterations) {
    long chain = 0;
    double start = seconds_now();
    for (long i = 0; i < iterations; i++)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(chain));
    return 4.0 * iterations / (seconds_now() - start) / 1e9;
}

/* 12 chains of FMAs on the vector registers named R ("ymm": 8 lanes, "zmm": 16). */
#define ZERO(R, n) "vmovaps %%" R "0, %%" R #n "\n\t"
#define FMA(R, n) "vfmadd231ps %%" R "14, %%" R "15, %%" R #n "\n\t"
#define FMA_LOOP(R)                                                                      \
    "vxorps %%" R "0, %%" R "0, %%" R "0\n\t" ZERO(R, 1) ZERO(R, 2) ZERO(R, 3) ZERO(R, 4) \
    ZERO(R, 5) ZERO(R, 6) ZERO(R, 7) ZERO(R, 8) ZERO(R, 9) ZERO(R, 10) ZERO(R, 11)       \
    ZERO(R, 14) ZERO(R, 15) "mov %0, %%rcx\n1:\n\t" FMA(R, 0) FMA(R, 1) FMA(R, 2)        \
    FMA(R, 3) FMA(R, 4) FMA(R, 5) FMA(R, 6) FMA(R, 7) FMA(R, 8) FMA(R, 9) FMA(R, 10)      \
    FMA(R, 11) "dec %%rcx\n\tjnz 1b\n\tvzeroupper"
#define CLOBBERS "rcx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", \
    "xmm8", "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "cc"

static double measure_fma_gflops(long iterations, int lanes) {
    double start = seconds_now();
    if (lanes == 16)
        __asm__ volatile(FMA_LOOP("zmm") : : "r"(iterations) : CLOBBERS);
    else
        __asm__ volatile(FMA_LOOP("ymm") : : "r"(iterations) : CLOBBERS);
    return 12.0 * 2.0 * lanes * iterations / (seconds_now() - start) / 1e9;
}

int main(int argc, char **argv) {
    int lanes = argc > 1 && strcmp(argv[1], "avx512") == 0 ? 16 : 8;
    double clock_ghz = measure_clock_ghz(400000000L);
    double fma_gflops = measure_fma_gflops(200000000L, lanes);
    printf("%.3f %.2f\n", clock_ghz, fma_gflops);
    return 0;
}
