/* The recurrent step kernels vectorised for AVX2 + FMA (selected at run time). */
#define RNN_TARGET __attribute__((target("avx2,fma")))
#define RNN_TABLE pl_rnn_steps_avx2
#include "rnn_steps_body.h"
