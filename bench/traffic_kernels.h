// See traffic_kernels.cu: the Adam step's bytes moved without its arithmetic (the floor of micro_bench opt).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace zerotrain::bench {

// Reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg, exp_avg_sq (and a bf16 copy of param when
// bf16_copy is not null), n elements (a multiple of 4, every array 16-byte aligned), on `stream`.
void adam_traffic_cuda(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, void* bf16_copy,
                       int64_t n, cudaStream_t stream);

}  // namespace zerotrain::bench
