/* LeNet-5's conv2 (16 filters of 6 x 5 x 5, bias) + max_pool2d(2) + ReLU for K models, forward and
   gradients (input, weight, bias), fused: the 8 x 8 convolution output is never stored, and the
   backward touches only each window's maximum. AVX-512 (F, BW, VL); built and loaded by
   helpers/engine/native/__init__.py.

   x [B, 12, 12, K * 6]: conv1's pooled output, channels-last (model k's 6 channels at k * 6).
   wt [K, 5, 5, 6, 16]: w[k, o, c, i, j] at wt[k, i, j, c, o]. w8 [K, 16, 5, 5, 8]: w[k, o, c, i, j] at
   w8[k, o, i, j, c] (c < 6; 6, 7 zero). bias [K, 16].
   out [K, B, 256]: relu(max over the 2 x 2 window) at o * 16 + py * 4 + px (fc1's input order).
   which [K, B, 4, 4, 16]: the window position (0..3, row-major) of the maximum (pool_relu.h). */
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#include "pool_relu.h"

static void forward_image(const float *restrict xb, long stride, const float *restrict wt, const float *restrict bias,
                          float *restrict out, uint8_t *restrict which) {
    const __m512i rows = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
    const __m512 b = _mm512_loadu_ps(bias);
    for (int py = 0; py < 4; py++) {
        __m512 acc[2][8];
        for (int r = 0; r < 2; r++)
            for (int ox = 0; ox < 8; ox++) acc[r][ox] = b;
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++)
                for (int c = 0; c < 6; c++) {
                    __m512 wv = _mm512_loadu_ps(wt + ((i * 5 + j) * 6 + c) * 16);
                    for (int r = 0; r < 2; r++) {
                        const float *xr = xb + ((2 * py + r + i) * 12 + j) * stride + c;
                        for (int ox = 0; ox < 8; ox++)
                            acc[r][ox] = _mm512_fmadd_ps(_mm512_set1_ps(xr[ox * stride]), wv, acc[r][ox]);
                    }
                }
        for (int px = 0; px < 4; px++) {
            __m512 v[4] = {acc[0][2 * px], acc[0][2 * px + 1], acc[1][2 * px], acc[1][2 * px + 1]};
            __m512i q;
            __m512 m = pool_relu(v, &q);
            _mm512_i32scatter_ps(out + py * 4 + px, rows, m, 4);
            _mm512_mask_cvtepi32_storeu_epi8(which + (py * 4 + px) * 16, 0xFFFF, q);
        }
    }
}

void conv2_pool_relu_forward(const float *x, const float *wt, const float *bias, float *out, uint8_t *which,
                             long models, long batch) {
    long stride = models * 6;
    for (long b = 0; b < batch; b++)
        for (long k = 0; k < models; k++)
            forward_image(x + b * 144 * stride + k * 6, stride, wt + k * 2400, bias + k * 16,
                          out + (k * batch + b) * 256, which + (k * batch + b) * 256);
}

/* 40 floats: a kernel row's 5 positions x 8 channels. */
static inline void axpy40(float *restrict y, float a, const float *restrict x) {
    __m512 av = _mm512_set1_ps(a);
    _mm512_storeu_ps(y, _mm512_fmadd_ps(av, _mm512_loadu_ps(x), _mm512_loadu_ps(y)));
    _mm512_storeu_ps(y + 16, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + 16), _mm512_loadu_ps(y + 16)));
    __m256 a8 = _mm256_set1_ps(a);
    _mm256_storeu_ps(y + 32, _mm256_fmadd_ps(a8, _mm256_loadu_ps(x + 32), _mm256_loadu_ps(y + 32)));
}

/* Model k's gradients: grad and out [B, 256] (its rows of [K, B, 256]), which [B, 4, 4, 16];
   dx (its channels of [B, 12, 12, K * 6], written), dw8 [16, 5, 5, 8] and db [16] (written). */
static void backward_one(const float *restrict x, const float *restrict grad, const float *restrict out,
                         const uint8_t *restrict which, const float *restrict w8, long stride, long batch,
                         float *restrict dx, float *restrict dw8, float *restrict db) {
    float xl[12 * 12 * 8] __attribute__((aligned(64)));
    float dxl[12 * 12 * 8] __attribute__((aligned(64)));
    float g[16] __attribute__((aligned(64)));
    const __m512i rows = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
    const __m512 zero = _mm512_setzero_ps();
    __m512 bias_acc = zero;
    memset(dw8, 0, 16 * 200 * sizeof(float));
    memset(xl, 0, sizeof xl);
    for (long b = 0; b < batch; b++) {
        const float *xb = x + b * 144 * stride;
        for (int p = 0; p < 144; p++) memcpy(xl + p * 8, xb + p * stride, 6 * sizeof(float));
        memset(dxl, 0, sizeof dxl);
        for (int w = 0; w < 16; w++) {
            int py = w / 4, px = w % 4;
            __m512 gv = _mm512_i32gather_ps(rows, grad + b * 256 + w, 4);
            __m512 ov = _mm512_i32gather_ps(rows, out + b * 256 + w, 4);
            gv = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(ov, zero, _CMP_GT_OQ), gv);
            bias_acc = _mm512_add_ps(bias_acc, gv);
            _mm512_store_ps(g, gv);
            const uint8_t *q = which + b * 256 + w * 16;
            for (int o = 0; o < 16; o++) {
                if (g[o] == 0.0f) continue;
                int oy = 2 * py + (q[o] >> 1), ox = 2 * px + (q[o] & 1);
                for (int i = 0; i < 5; i++) {
                    int at = ((oy + i) * 12 + ox) * 8;
                    axpy40(dxl + at, g[o], w8 + (o * 5 + i) * 40);
                    axpy40(dw8 + (o * 5 + i) * 40, g[o], xl + at);
                }
            }
        }
        float *dxb = dx + b * 144 * stride;
        for (int p = 0; p < 144; p++) memcpy(dxb + p * stride, dxl + p * 8, 6 * sizeof(float));
    }
    _mm512_storeu_ps(db, bias_acc);
}

void conv2_pool_relu_backward(const float *x, const float *grad, const float *out, const uint8_t *which,
                              const float *w8, long models, long batch, float *dx, float *dw8, float *db) {
    long stride = models * 6;
    for (long k = 0; k < models; k++)
        backward_one(x + k * 6, grad + k * batch * 256, out + k * batch * 256, which + k * batch * 256,
                     w8 + k * 3200, stride, batch, dx + k * 6, dw8 + k * 3200, db + k * 16);
}
