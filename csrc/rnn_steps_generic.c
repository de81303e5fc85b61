/* The recurrent step kernels for any CPU (the compiler's baseline vector width). */
#define RNN_TARGET
#define RNN_TABLE pl_rnn_steps_generic
#include "rnn_steps_body.h"

float pl_rnn_tanh(float x) { return fast_tanh(x); }

float pl_rnn_sigmoid(float x) { return fast_sigmoid(x); }
