/* This core's clock and single-precision FMA peak, measured: the denominator of the
 * "% of FMA peak" column of gemm_report.py (run one copy per core, concurrently).
 *
 *   clock: a chain of dependent 1-cycle integer adds, 4 per loop iteration;
 *   peak:  12 independent chains of 8-float FMAs, more than 2 pipes x 4-cycle latency
 *          need, so the FMA pipes, not latency, bound them.
 *
 * Prints "clock_ghz fma_gflops".  x86-64 with AVX2+FMA only; build with -O2. */
#include <stdio.h>
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

static double measure_fma_gflops(long iterations) {
    double start = seconds_now();
    __asm__ volatile(
        "vxorps %%ymm0, %%ymm0, %%ymm0\n\tvmovaps %%ymm0, %%ymm1\n\tvmovaps %%ymm0, %%ymm2\n\t"
        "vmovaps %%ymm0, %%ymm3\n\tvmovaps %%ymm0, %%ymm4\n\tvmovaps %%ymm0, %%ymm5\n\t"
        "vmovaps %%ymm0, %%ymm6\n\tvmovaps %%ymm0, %%ymm7\n\tvmovaps %%ymm0, %%ymm8\n\t"
        "vmovaps %%ymm0, %%ymm9\n\tvmovaps %%ymm0, %%ymm10\n\tvmovaps %%ymm0, %%ymm11\n\t"
        "vmovaps %%ymm0, %%ymm14\n\tvmovaps %%ymm0, %%ymm15\n\t"
        "mov %0, %%rcx\n"
        "1:\n\t"
        "vfmadd231ps %%ymm14, %%ymm15, %%ymm0\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm1\n\t"
        "vfmadd231ps %%ymm14, %%ymm15, %%ymm2\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm3\n\t"
        "vfmadd231ps %%ymm14, %%ymm15, %%ymm4\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm5\n\t"
        "vfmadd231ps %%ymm14, %%ymm15, %%ymm6\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm7\n\t"
        "vfmadd231ps %%ymm14, %%ymm15, %%ymm8\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm9\n\t"
        "vfmadd231ps %%ymm14, %%ymm15, %%ymm10\n\tvfmadd231ps %%ymm14, %%ymm15, %%ymm11\n\t"
        "dec %%rcx\n\tjnz 1b\n\t"
        "vzeroupper"
        : : "r"(iterations)
        : "rcx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
          "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "cc");
    return 12.0 * 16.0 * iterations / (seconds_now() - start) / 1e9;   // 8 lanes x 2 flops
}

int main(void) {
    double clock_ghz = measure_clock_ghz(400000000L);
    double fma_gflops = measure_fma_gflops(200000000L);
    printf("%.3f %.2f\n", clock_ghz, fma_gflops);
    return 0;
}
