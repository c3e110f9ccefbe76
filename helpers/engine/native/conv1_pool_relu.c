/* LeNet-5's conv1 (6 filters of 5 x 5, bias) + max_pool2d(2) + ReLU for K models, forward and weight
   gradient, fused: the 24 x 24 convolution output is never stored and the backward needs no zero-filled
   gradient. AVX-512 (F, BW, VL); built and loaded by helpers/engine/native/__init__.py.

   x: model k's images at x + k * x_model_stride, [B, 28, 28] each (x_model_stride 0: all models see one
   batch). w [K, 6, 25], bias [K, 6]. out [B, 12, 12, K * 6] (the channels-last [B, K * 6, 12, 12] that the
   grouped conv2 reads). which [K, B, 6, 12, 12]: the window position (0..3, row-major) of the maximum
   (pool_relu.h). */
#include <stdint.h>
#include <immintrin.h>

#include "pool_relu.h"

/* One image's conv1 (6 x 5 x 5, bias) on output rows 2*oy2, 2*oy2+1, then 2 x 2 max (first max, NaN wins)
   and ReLU: out[px * out_stride + c] for px < 12, which[c * 144 + px] = window position 0..3. */
static inline void row_pair(const float *restrict xb, const float *restrict w, const float *restrict bias,
                            int oy2, float *restrict out, long out_stride, uint8_t *restrict which) {
    __m512 lo[2][6];
    __m256 hi[2][6];
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 6; c++) { lo[r][c] = _mm512_set1_ps(bias[c]); hi[r][c] = _mm256_set1_ps(bias[c]); }
    for (int t = 0; t < 6; t++) {
        const float *xr = xb + (2 * oy2 + t) * 28;
        for (int j = 0; j < 5; j++) {
            __m512 xl = _mm512_loadu_ps(xr + j);
            __m256 xh = _mm256_loadu_ps(xr + 16 + j);
            for (int r = 0; r < 2; r++) {
                int i = t - r;
                if (i < 0 || i > 4) continue;
                for (int c = 0; c < 6; c++) {
                    float wv = w[c * 25 + i * 5 + j];
                    lo[r][c] = _mm512_fmadd_ps(_mm512_set1_ps(wv), xl, lo[r][c]);
                    hi[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(wv), xh, hi[r][c]);
                }
            }
        }
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 0, 0, 0, 0);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 1, 1, 1, 1);
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 0, 0, 0);
    const __m512i offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)out_stride));
    for (int c = 0; c < 6; c++) {
        __m512 h0 = _mm512_castps256_ps512(hi[0][c]), h1 = _mm512_castps256_ps512(hi[1][c]);
        __m512 v[4] = {_mm512_permutex2var_ps(lo[0][c], even, h0), _mm512_permutex2var_ps(lo[0][c], odd, h0),
                       _mm512_permutex2var_ps(lo[1][c], even, h1), _mm512_permutex2var_ps(lo[1][c], odd, h1)};
        __m512i q;
        __m512 m = pool_relu(v, &q);
        _mm512_mask_i32scatter_ps(out + c, 0x0FFF, offsets, m, 4);
        _mm512_mask_cvtepi32_storeu_epi8(which + c * 144, 0x0FFF, q);
    }
}

void conv1_pool_relu_forward(const float *x, long x_model_stride, const float *w, const float *bias, float *out,
                             uint8_t *which, long models, long batch) {
    long stride = models * 6;
    for (long b = 0; b < batch; b++)
        for (long k = 0; k < models; k++)
            for (int oy2 = 0; oy2 < 12; oy2++)
                row_pair(x + k * x_model_stride + b * 784, w + k * 150, bias + k * 6, oy2,
                         out + (b * 144 + oy2 * 12) * stride + k * 6, stride,
                         which + (k * batch + b) * 864 + oy2 * 12);
}

/* Weight and bias gradients of one model from grad and out (its channels of [B, 12, 12, K * 6]) and
   which [B, 6, 12, 12]: where the output is positive, the gradient reaches the window's first maximum.
   dw [6, 25], db [6]. */
static void backward_one(const float *restrict x, const float *restrict grad, const float *restrict out,
                         const uint8_t *restrict which, long stride, long batch, float *restrict dw, float *restrict db) {
    __m512 acc_lo[6][25];
    __m256 acc_hi[6][25];
    __m512 bias_acc[6];
    for (int c = 0; c < 6; c++) {
        bias_acc[c] = _mm512_setzero_ps();
        for (int ij = 0; ij < 25; ij++) { acc_lo[c][ij] = _mm512_setzero_ps(); acc_hi[c][ij] = _mm256_setzero_ps(); }
    }
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 0, 0, 0);
    const __m512i offsets = _mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)stride));
    const __m512i inter_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i inter_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512 zero = _mm512_setzero_ps();
    for (long b = 0; b < batch; b++) {
        const float *xb = x + b * 784;
        for (int oy2 = 0; oy2 < 12; oy2++) {
            __m512 g_lo[2][6];
            __m256 g_hi[2][6];
            long base = (b * 144 + oy2 * 12) * stride;
            for (int c = 0; c < 6; c++) {
                __m512 g = _mm512_mask_i32gather_ps(zero, 0x0FFF, offsets, grad + base + c, 4);
                __m512 o = _mm512_mask_i32gather_ps(zero, 0x0FFF, offsets, out + base + c, 4);
                g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(o, zero, _CMP_GT_OQ), g);
                bias_acc[c] = _mm512_add_ps(bias_acc[c], g);
                __m512i q = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(0x0FFF, which + (b * 6 + c) * 144 + oy2 * 12));
                __m512 gq[4];
                for (int p = 0; p < 4; p++) gq[p] = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(q, _mm512_set1_epi32(p)), g);
                for (int r = 0; r < 2; r++) {
                    g_lo[r][c] = _mm512_permutex2var_ps(gq[2 * r], inter_lo, gq[2 * r + 1]);
                    g_hi[r][c] = _mm512_castps512_ps256(_mm512_permutex2var_ps(gq[2 * r], inter_hi, gq[2 * r + 1]));
                }
            }
            for (int t = 0; t < 6; t++) {
                const float *xr = xb + (2 * oy2 + t) * 28;
                for (int j = 0; j < 5; j++) {
                    __m512 xl = _mm512_loadu_ps(xr + j);
                    __m256 xh = _mm256_loadu_ps(xr + 16 + j);
                    for (int r = 0; r < 2; r++) {
                        int i = t - r;
                        if (i < 0 || i > 4) continue;
                        for (int c = 0; c < 6; c++) {
                            acc_lo[c][i * 5 + j] = _mm512_fmadd_ps(g_lo[r][c], xl, acc_lo[c][i * 5 + j]);
                            acc_hi[c][i * 5 + j] = _mm256_fmadd_ps(g_hi[r][c], xh, acc_hi[c][i * 5 + j]);
                        }
                    }
                }
            }
        }
    }
    for (int c = 0; c < 6; c++) {
        db[c] = _mm512_reduce_add_ps(bias_acc[c]);
        for (int ij = 0; ij < 25; ij++) {
            __m256 h = acc_hi[c][ij];
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            dw[c * 25 + ij] = _mm512_reduce_add_ps(acc_lo[c][ij]) + _mm_cvtss_f32(s);
        }
    }
}

void conv1_pool_relu_backward(const float *x, long x_model_stride, const float *grad, const float *out,
                              const uint8_t *which, long models, long batch, float *dw, float *db) {
    long stride = models * 6;
    for (long k = 0; k < models; k++)
        backward_one(x + k * x_model_stride, grad + k * 6, out + k * 6, which + k * batch * 864, stride, batch,
                     dw + k * 150, db + k * 6);
}
