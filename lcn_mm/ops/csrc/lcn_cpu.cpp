// Fused CPU kernels for Local Context Normalization (forward and backward).
//
// Plain C ABI over raw pointers (called through ctypes), so it compiles in seconds with no
// PyTorch headers. Work is split over (n, g) planes with OpenMP; each plane is processed by one
// thread in a fixed order, so results are bitwise reproducible.
//
// Per plane (one sample, one group of cpg channels, H x W pixels):
//   forward:  per-pixel group mean m and M2 (two passes over the cpg channels, double),
//             shift K = mean of m over the plane, box sums of (m - K) and (M2/cpg + (m - K)^2)
//             with running sums along H then W (double; O(1) per pixel whatever the window),
//             mu - K and rstd, then y = (x - mu) * rstd * weight + bias.
//   backward: A = sum_c w*dy, B = sum_c w*dy*xhat per pixel (and per-channel dw/db partials),
//             beta = -r^2 B / n, alpha = -r A / n - (mu - K) beta, their box sums over the
//             reflected window, dx = w*dy*r + box(alpha) + (x - K) * box(beta).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Clipped count of pixels in [i - lo, i + hi] on an axis of length len.
inline double count1d(int64_t i, int64_t len, int64_t lo, int64_t hi) {
  return static_cast<double>(std::min(i + hi, len - 1) - std::max(i - lo, int64_t(0)) + 1);
}

// In-place clipped box sum of an H x W double map over rows [i-lo_h, i+hi_h] and columns
// [j-lo_w, j+hi_w], with running sums: rows map -> tmp (acc holds W partial column sums),
// then columns tmp -> map. O(1) per pixel whatever the window.
void box_sum(double* map, int64_t H, int64_t W, int64_t lo_h, int64_t hi_h, int64_t lo_w,
             int64_t hi_w, std::vector<double>& tmp, std::vector<double>& acc) {
  const double* src = map;
  if (lo_h || hi_h) {
    double* a = acc.data();
    std::fill(a, a + W, 0.0);
    for (int64_t r = 0; r <= std::min(hi_h, H - 1); ++r) {
      const double* in = map + r * W;
      for (int64_t j = 0; j < W; ++j) a[j] += in[j];
    }
    for (int64_t i = 0; i < H; ++i) {
      double* out = tmp.data() + i * W;
      const int64_t add = i + 1 + hi_h, sub = i - lo_h;
      const double* in_add = add < H ? map + add * W : nullptr;
      const double* in_sub = sub >= 0 ? map + sub * W : nullptr;
      if (in_add && in_sub) {
        for (int64_t j = 0; j < W; ++j) {
          out[j] = a[j];
          a[j] += in_add[j] - in_sub[j];
        }
      } else {
        for (int64_t j = 0; j < W; ++j) out[j] = a[j];
        if (in_add)
          for (int64_t j = 0; j < W; ++j) a[j] += in_add[j];
        if (in_sub)
          for (int64_t j = 0; j < W; ++j) a[j] -= in_sub[j];
      }
    }
    src = tmp.data();
  }
  if (lo_w || hi_w) {
    if (src == map) {  // no row pass: the column pass must not read what it overwrites
      std::copy(map, map + H * W, tmp.begin());
      src = tmp.data();
    }
    // Running sums along each row are a serial chain; eight rows at a time keep eight
    // independent chains in flight.
    const int64_t full_add = std::max<int64_t>(0, W - 1 - hi_w);  // j < full_add: add j+1+hi_w
    const int64_t first = std::min(hi_w, W - 1);
    constexpr int64_t R = 8;
    for (int64_t i0 = 0; i0 < H; i0 += R) {
      const int64_t rows = std::min(R, H - i0);
      double sum[R] = {0, 0, 0, 0, 0, 0, 0, 0};
      const double* in = src + i0 * W;
      double* out = map + i0 * W;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j <= first; ++j) sum[r] += in[r * W + j];
      for (int64_t j = 0; j < W; ++j) {
        for (int64_t r = 0; r < rows; ++r) out[r * W + j] = sum[r];
        if (j < full_add)
          for (int64_t r = 0; r < rows; ++r) sum[r] += in[r * W + j + 1 + hi_w];
        if (j >= lo_w)
          for (int64_t r = 0; r < rows; ++r) sum[r] -= in[r * W + j - lo_w];
      }
    }
  } else if (src != map) {
    std::copy(src, src + H * W, map);
  }
}

struct Scratch {
  std::vector<double> a, b, tmp, acc, inv_cw;
  // inv_cw[j]: 1 / (number of window columns at j), so the per-pixel loops vectorize.
  Scratch(int64_t H, int64_t W, int64_t lo_w, int64_t hi_w)
      : a(H * W), b(H * W), tmp(H * W), acc(W), inv_cw(W) {
    for (int64_t j = 0; j < W; ++j) inv_cw[j] = 1.0 / count1d(j, W, lo_w, hi_w);
  }
};

template <typename T>
void forward_impl(const T* x, const T* weight, const T* bias, T* y, T* mu_c, T* rstd,
                  double* shift, int64_t N, int64_t G, int64_t cpg, int64_t H, int64_t W,
                  int64_t lo_h, int64_t hi_h, int64_t lo_w, int64_t hi_w, double eps,
                  int nthreads) {
  const int64_t HW = H * W, planes = N * G;
#pragma omp parallel num_threads(nthreads)
  {
    Scratch s(H, W, lo_w, hi_w);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t g = plane % G;
      const T* xp = x + plane * cpg * HW;
      T* yp = y + plane * cpg * HW;
      // One pass over the channels, shifted by the first channel's value at each pixel:
      // m = x0 + S1/cpg and M2 = S2 - S1^2/cpg, in double.
      double* m = s.a.data();
      double* q = s.b.data();
      std::fill(m, m + HW, 0.0);
      std::fill(q, q + HW, 0.0);
      for (int64_t c = 1; c < cpg; ++c) {
        const T* xc = xp + c * HW;
        for (int64_t p = 0; p < HW; ++p) {
          const double d = static_cast<double>(xc[p]) - static_cast<double>(xp[p]);
          m[p] += d;
          q[p] += d * d;
        }
      }
      double k = 0.0;
#pragma omp simd reduction(+ : k)
      for (int64_t p = 0; p < HW; ++p) {
        const double s1 = m[p];
        m[p] = static_cast<double>(xp[p]) + s1 / static_cast<double>(cpg);
        q[p] = std::max(q[p] - s1 * s1 / static_cast<double>(cpg), 0.0);
        k += m[p];
      }
      // Round the shift to T so that x - k is exact in T arithmetic when x is near k.
      k = static_cast<double>(static_cast<T>(k / static_cast<double>(HW)));
      const double inv_cpg = 1.0 / static_cast<double>(cpg);
      for (int64_t p = 0; p < HW; ++p) {
        const double d = m[p] - k;
        m[p] = d;
        q[p] = q[p] * inv_cpg + d * d;
      }
      box_sum(m, H, W, lo_h, hi_h, lo_w, hi_w, s.tmp, s.acc);
      box_sum(q, H, W, lo_h, hi_h, lo_w, hi_w, s.tmp, s.acc);
      T* mup = mu_c + plane * HW;
      T* rp = rstd + plane * HW;
      const double* inv_cw = s.inv_cw.data();
      for (int64_t i = 0; i < H; ++i) {
        const double inv_ch = 1.0 / count1d(i, H, lo_h, hi_h);
        const double* mi = m + i * W;
        const double* qi = q + i * W;
        T* mui = mup + i * W;
        T* ri = rp + i * W;
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) {
          const double inv_n = inv_ch * inv_cw[j];
          const double mu = mi[j] * inv_n;
          const double var = std::max(qi[j] * inv_n - mu * mu, 0.0);
          const double r = 1.0 / std::sqrt(var + eps);
          mui[j] = static_cast<T>(mu);
          ri[j] = static_cast<T>(r);
        }
      }
      shift[plane] = k;
      // Normalize in the input precision (as GroupNorm does) from the stored maps.
      const T kt = static_cast<T>(k);
      for (int64_t c = 0; c < cpg; ++c) {
        const int64_t ch = g * cpg + c;
        const T w = weight ? weight[ch] : T(1);
        const T b = bias ? bias[ch] : T(0);
        const T* xc = xp + c * HW;
        T* yc = yp + c * HW;
        for (int64_t p = 0; p < HW; ++p) yc[p] = (xc[p] - kt - mup[p]) * (rp[p] * w) + b;
      }
    }
  }
}

template <typename T>
void backward_impl(const T* x, const T* dy, const T* mu_c, const T* rstd, const double* shift,
                   const T* weight, T* dx, double* dw_part, double* db_part, int64_t N,
                   int64_t G, int64_t cpg, int64_t H, int64_t W, int64_t lo_h, int64_t hi_h,
                   int64_t lo_w, int64_t hi_w, int nthreads) {
  const int64_t HW = H * W, planes = N * G, C = G * cpg;
#pragma omp parallel num_threads(nthreads)
  {
    Scratch s(H, W, lo_w, hi_w);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t n = plane / G, g = plane % G;
      const T* xp = x + plane * cpg * HW;
      const T* dyp = dy + plane * cpg * HW;
      const T* mup = mu_c + plane * HW;
      const T* rp = rstd + plane * HW;
      const double k = shift[plane];
      double* A = s.a.data();
      double* B = s.b.data();
      std::fill(A, A + HW, 0.0);
      std::fill(B, B + HW, 0.0);
      for (int64_t c = 0; c < cpg; ++c) {
        const int64_t ch = g * cpg + c;
        const double w = weight ? static_cast<double>(weight[ch]) : 1.0;
        const T* xc = xp + c * HW;
        const T* dc = dyp + c * HW;
        double sum_dxh = 0.0, sum_d = 0.0;
#pragma omp simd reduction(+ : sum_dxh, sum_d)
        for (int64_t p = 0; p < HW; ++p) {
          const double xh = (static_cast<double>(xc[p]) - k - static_cast<double>(mup[p])) *
                            static_cast<double>(rp[p]);
          const double d = static_cast<double>(dc[p]);
          sum_dxh += d * xh;
          sum_d += d;
          A[p] += w * d;
          B[p] += w * d * xh;
        }
        if (dw_part) dw_part[n * C + ch] = sum_dxh;
        if (db_part) db_part[n * C + ch] = sum_d;
      }
      if (!dx) continue;
      const double* inv_cw = s.inv_cw.data();
      for (int64_t i = 0; i < H; ++i) {
        const double inv_ch = 1.0 / (static_cast<double>(cpg) * count1d(i, H, lo_h, hi_h));
        double* Ai = A + i * W;
        double* Bi = B + i * W;
        const T* mui = mup + i * W;
        const T* ri = rp + i * W;
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) {
          const double inv_n = inv_ch * inv_cw[j];
          const double r = static_cast<double>(ri[j]);
          const double beta = -r * r * Bi[j] * inv_n;
          Ai[j] = -r * Ai[j] * inv_n - static_cast<double>(mui[j]) * beta;
          Bi[j] = beta;
        }
      }
      // The adjoint of the clipped box sum is the box sum over the reflected window.
      box_sum(A, H, W, hi_h, lo_h, hi_w, lo_w, s.tmp, s.acc);
      box_sum(B, H, W, hi_h, lo_h, hi_w, lo_w, s.tmp, s.acc);
      T* dxp = dx + plane * cpg * HW;
      for (int64_t c = 0; c < cpg; ++c) {
        const double w = weight ? static_cast<double>(weight[g * cpg + c]) : 1.0;
        const T* xc = xp + c * HW;
        const T* dc = dyp + c * HW;
        T* out = dxp + c * HW;
        for (int64_t p = 0; p < HW; ++p) {
          out[p] = static_cast<T>(w * static_cast<double>(dc[p]) * static_cast<double>(rp[p]) +
                                  A[p] + (static_cast<double>(xc[p]) - k) * B[p]);
        }
      }
    }
  }
}

}  // namespace

extern "C" {

int lcn_abi_version() { return 1; }

#define LCN_DEFINE(SUFFIX, T)                                                                 \
  void lcn_forward_##SUFFIX(const T* x, const T* weight, const T* bias, T* y, T* mu_c,        \
                            T* rstd, double* shift, int64_t N, int64_t G, int64_t cpg,         \
                            int64_t H, int64_t W, int64_t lo_h, int64_t hi_h, int64_t lo_w,    \
                            int64_t hi_w, double eps, int nthreads) {                          \
    forward_impl<T>(x, weight, bias, y, mu_c, rstd, shift, N, G, cpg, H, W, lo_h, hi_h, lo_w, \
                    hi_w, eps, nthreads);                                                      \
  }                                                                                            \
  void lcn_backward_##SUFFIX(const T* x, const T* dy, const T* mu_c, const T* rstd,           \
                             const double* shift, const T* weight, T* dx, double* dw_part,     \
                             double* db_part, int64_t N, int64_t G, int64_t cpg, int64_t H,    \
                             int64_t W, int64_t lo_h, int64_t hi_h, int64_t lo_w,              \
                             int64_t hi_w, int nthreads) {                                     \
    backward_impl<T>(x, dy, mu_c, rstd, shift, weight, dx, dw_part, db_part, N, G, cpg, H, W, \
                     lo_h, hi_h, lo_w, hi_w, nthreads);                                        \
  }

LCN_DEFINE(f32, float)
LCN_DEFINE(f64, double)

}  // extern "C"
