/* A 2 x 2 window's max-pool and ReLU over 16 lanes: v holds the window's four positions (row-major).
   As max_pool2d: the first maximum is taken, and a NaN wins; ReLU keeps NaN. *which gets the position. */
#ifndef LENET_POOL_RELU_H
#define LENET_POOL_RELU_H
#include <immintrin.h>

static inline __m512 pool_relu(const __m512 v[4], __m512i *which) {
    __m512 m = v[0];
    __m512i q = _mm512_setzero_si512();
    for (int p = 1; p < 4; p++) {
        __mmask16 take = _mm512_cmp_ps_mask(v[p], m, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v[p], v[p], _CMP_UNORD_Q);
        m = _mm512_mask_blend_ps(take, m, v[p]);
        q = _mm512_mask_blend_epi32(take, q, _mm512_set1_epi32(p));
    }
    *which = q;
    __mmask16 keep = _mm512_cmp_ps_mask(m, _mm512_setzero_ps(), _CMP_GT_OQ) | _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
    return _mm512_maskz_mov_ps(keep, m);
}
#endif
