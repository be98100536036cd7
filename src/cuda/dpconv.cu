// DPConv fused per frame (srsnet, `src/model/dpconv_op.rs` is the host side and its CPU twin).
//
// out[b, n, y, x] = sum_{m, ky, kx} theta_b[n, m, ky, kx] * x[b, m, y + ky - r, x + kx - r]
// with theta_b[j] = wg[j] * p[b, j / group] + bg[j],  j = ((n * C + m) * K + ky) * K + kx,
// zero padding r = K / 2. One block computes one (frame b, output channel n) over a tile of
// TILE pixels: it first writes that channel's kernel slice theta_b[n, :, :, :] (C * K * K
// values) into shared memory, in f32, straight from the generator weights and the pooled
// scalars -- the (B, C*C*K*K) kernel tensor is never materialised -- then each thread
// accumulates its pixel in f32. The feature map and the output are T (float or __half); the
// pooled scalars and the generator stay f32, and so do the affine map and every sum, because
// C * K * K = 2304 products summed in f16 would lose about 3 digits.
#include <cuda_fp16.h>

#define TILE 256

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ void store(float *dst, float v) { *dst = v; }
__device__ __forceinline__ void store(__half *dst, float v) { *dst = __float2half(v); }

template <typename T>
__device__ void dpconv(const T *x, const float *p, const float *gen, T *out, int channels, int height,
                       int width, int kernel, int info, int group) {
    extern __shared__ float theta[];
    const int b = blockIdx.z;
    const int n = blockIdx.y;
    const int ck2 = channels * kernel * kernel;
    const long long total = (long long)channels * ck2;  // N * M * K * K generator outputs
    const float *wg = gen;
    const float *bg = gen + total;
    for (int i = threadIdx.x; i < ck2; i += blockDim.x) {
        const long long j = (long long)n * ck2 + i;
        const int pooled = (int)(j / group);
        theta[i] = wg[j] * p[(long long)b * info + pooled] + bg[j];
    }
    __syncthreads();
    const int pixel = blockIdx.x * TILE + threadIdx.x;
    if (pixel >= height * width) return;
    const int y = pixel / width, xo = pixel % width, r = kernel / 2;
    const T *frame = x + (long long)b * channels * height * width;
    float acc = 0.f;
    for (int m = 0; m < channels; ++m) {
        const T *plane = frame + (long long)m * height * width;
        const float *t = theta + m * kernel * kernel;
        for (int ky = 0; ky < kernel; ++ky) {
            const int yy = y + ky - r;
            if (yy < 0 || yy >= height) continue;
            for (int kx = 0; kx < kernel; ++kx) {
                const int xx = xo + kx - r;
                if (xx < 0 || xx >= width) continue;
                acc += t[ky * kernel + kx] * to_f32(plane[yy * width + xx]);
            }
        }
    }
    store(out + ((long long)b * channels + n) * height * width + pixel, acc);
}

extern "C" __global__ void dpconv_f32(const float *x, const float *p, const float *gen, float *out,
                                      int channels, int height, int width, int kernel, int info,
                                      int group) {
    dpconv<float>(x, p, gen, out, channels, height, width, kernel, info, group);
}

extern "C" __global__ void dpconv_f16(const __half *x, const float *p, const float *gen,
                                      __half *out, int channels, int height, int width, int kernel,
                                      int info, int group) {
    dpconv<__half>(x, p, gen, out, channels, height, width, kernel, info, group);
}
