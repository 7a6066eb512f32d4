// Fused CPU kernels for Local Context Normalization (forward and backward).
//
// Plain C ABI over raw pointers (called through ctypes), so it compiles in seconds with no
// PyTorch headers. Work is split over (n, g) planes with OpenMP; each plane is processed by one
// thread in a fixed order, so results are bitwise reproducible.
//
// Per plane (one sample, one group of cpg channels, H x W pixels):
//   statistics: per-pixel group mean m and M2 (one pass over the cpg channels, double), a
//             shift K (mean of m over a sample of pixels), box sums of (m - K) and
//             (M2/cpg + (m - K)^2) with running sums along H then W, restarted every 128+
//             outputs (double; O(1) per pixel whatever the window, rounding error independent
//             of the map size), then
//             the window mean mu and rstd.
//   forward:  statistics, then y = ((x - mu_hi) - mu_lo) * rstd * weight + bias, where
//             mu_hi + mu_lo is mu as two T values: x - mu is formed without rounding mu to T.
//   backward: the statistics saved by the forward pass (a double map of mu and a T map of
//             rstd) or, when none were saved, the statistics again from x; then
//             A = sum_c w*dy, B = sum_c w*dy*xhat per pixel (and per-channel dw/db partials),
//             beta = -r^2 B / n, alpha = -r A / n - (mu - K) beta, their box sums over the
//             reflected window, dx = w*dy*r + box(alpha) + (x - K) * box(beta), with K = mu at
//             the first pixel.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Clipped count of pixels in [i - lo, i + hi] on an axis of length len.
inline double count1d(int64_t i, int64_t len, int64_t lo, int64_t hi) {
  return static_cast<double>(std::min(i + hi, len - 1) - std::max(i - lo, int64_t(0)) + 1);
}

// Outputs between restarts of a running sum (at least twice the window): a running sum gains
// ~u|sum| of rounding error per step (u = 2^-53), so each one restarts from a direct sum of
// its window every `seg` outputs, and its error comes from at most seg + k additions whatever
// the length of the line.
constexpr int64_t kRestart = 128;

inline int64_t restart_every(int64_t lo, int64_t hi, int64_t len) {
  return std::max<int64_t>(kRestart, 2 * (std::min(lo, len - 1) + std::min(hi, len - 1) + 1));
}

// In-place clipped box sum of an H x W double map over rows [i-lo_h, i+hi_h] and columns
// [j-lo_w, j+hi_w] with restarted running sums: down the columns map -> tmp (acc holds W
// partial column sums, updated with SIMD), then along the rows tmp -> map. O(1) per pixel
// whatever the window.
void box_sum(double* map, int64_t H, int64_t W, int64_t lo_h, int64_t hi_h, int64_t lo_w,
             int64_t hi_w, std::vector<double>& tmp, std::vector<double>& acc) {
  const double* src = map;
  if (lo_h || hi_h) {
    double* a = acc.data();
    const int64_t seg = restart_every(lo_h, hi_h, H);
    for (int64_t i0 = 0; i0 < H; i0 += seg) {
      std::fill(a, a + W, 0.0);
      for (int64_t r = std::max<int64_t>(0, i0 - lo_h); r <= std::min(H - 1, i0 + hi_h); ++r) {
        const double* in = map + r * W;
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) a[j] += in[j];
      }
      for (int64_t i = i0; i < std::min(H, i0 + seg); ++i) {
        double* out = tmp.data() + i * W;
        const int64_t add = i + 1 + hi_h, sub = i - lo_h;
        const double* in_add = add < H ? map + add * W : nullptr;
        const double* in_sub = sub >= 0 ? map + sub * W : nullptr;
        if (in_add && in_sub) {
#pragma omp simd
          for (int64_t j = 0; j < W; ++j) {
            out[j] = a[j];
            a[j] += in_add[j] - in_sub[j];
          }
        } else {
          std::copy(a, a + W, out);
          if (in_add)
            for (int64_t j = 0; j < W; ++j) a[j] += in_add[j];
          if (in_sub)
            for (int64_t j = 0; j < W; ++j) a[j] -= in_sub[j];
        }
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
    const int64_t seg = restart_every(lo_w, hi_w, W);
    const int64_t full_add = std::max<int64_t>(0, W - 1 - hi_w);  // j < full_add: add j+1+hi_w
    constexpr int64_t R = 8;
    for (int64_t i0 = 0; i0 < H; i0 += R) {
      const int64_t rows = std::min(R, H - i0);
      double sum[R];
      const double* in = src + i0 * W;
      double* out = map + i0 * W;
      for (int64_t j0 = 0; j0 < W; j0 += seg) {
        const int64_t j1 = std::min(W, j0 + seg);
        const int64_t w0 = std::max<int64_t>(0, j0 - lo_w), w1 = std::min(W - 1, j0 + hi_w);
        for (int64_t r = 0; r < rows; ++r) {
          sum[r] = 0.0;
          for (int64_t j = w0; j <= w1; ++j) sum[r] += in[r * W + j];
        }
        for (int64_t j = j0; j < j1; ++j) {
          for (int64_t r = 0; r < rows; ++r) out[r * W + j] = sum[r];
          if (j < full_add)
            for (int64_t r = 0; r < rows; ++r) sum[r] += in[r * W + j + 1 + hi_w];
          if (j >= lo_w)
            for (int64_t r = 0; r < rows; ++r) sum[r] -= in[r * W + j - lo_w];
        }
      }
    }
  } else if (src != map) {
    std::copy(src, src + H * W, map);
  }
}

// Per-thread work buffers, kept between calls (page-faulting fresh H x W maps on every call
// would cost as much as the arithmetic).
struct Scratch {
  std::vector<double> a, b, c, d, tmp, acc, inv_cw;
  void prepare(int64_t H, int64_t W, int64_t lo_w, int64_t hi_w) {
    const size_t hw = static_cast<size_t>(H * W);
    for (auto* v : {&a, &b, &c, &d, &tmp})
      if (v->size() < hw) v->resize(hw);
    acc.resize(W);
    inv_cw.resize(W);
    for (int64_t j = 0; j < W; ++j) inv_cw[j] = 1.0 / count1d(j, W, lo_w, hi_w);
  }
};

Scratch& thread_scratch() {
  static thread_local Scratch s;
  return s;
}

// Buffers for maps up to this many pixels are kept between calls; larger ones (huge-image
// inference) are released after the call.
constexpr size_t kKeepPixels = size_t(1) << 21;

void release_if_huge(Scratch& s) {
  if (s.a.size() > kKeepPixels) s = Scratch();
}

// Pixels per tile in the loops over the channels of a group: the per-pixel partial sums of a
// tile stay in L1 while all cpg channels stream through, instead of re-reading H x W double
// maps once per channel.
constexpr int64_t kTile = 512;

// Window statistics of one (n, g) plane: mu into mu_out (H x W, double: s.a, or the map saved
// for the backward pass, so that it is not copied there) and rstd into s.b.
// The sums are taken of m - K with K the mean of m over ~64 evenly spaced pixels, rounded to
// 8 significant bits (deterministic; one outlier pixel cannot move it far), so the squares stay
// small where the data sit near their typical level. The final var = S2/n - (S1/n)^2 then
// loses at most ~u * max(m - K)^2 (u = 2^-53): 1e-8 for values 1e4 away from K.
template <typename T>
void plane_stats(const T* xp, int64_t cpg, int64_t H, int64_t W, int64_t lo_h, int64_t hi_h,
                 int64_t lo_w, int64_t hi_w, double eps, Scratch& s, double* mu_out) {
  const int64_t HW = H * W;
  const double inv_cpg = 1.0 / static_cast<double>(cpg);
  const int64_t stride = std::max<int64_t>(1, HW / 64);
  double k = 0.0;
  int64_t samples = 0;
  for (int64_t p = 0; p < HW; p += stride, ++samples) {
    double m = 0.0;
    for (int64_t c = 0; c < cpg; ++c) m += static_cast<double>(xp[c * HW + p]);
    k += m * inv_cpg;
  }
  k /= static_cast<double>(samples);
  // K rounded to 8 significant bits: m - K is then exact, so an exactly constant window (integer
  // or not, e.g. nodata) has exact box sums and its variance cancels to 0 instead of to rounding
  // noise that rstd = (v + eps)^-1/2, and the gradient w*dy*rstd there, would see at dv/(2 eps).
  if (k != 0.0) {
    int e = 0;
    const double f = std::frexp(k, &e);
    k = std::ldexp(std::nearbyint(std::ldexp(f, 8)), e - 8);
  }
  // Per pixel, one pass over the channels (shifted by channel 0 at that pixel):
  // a = m - K and b = M2 / cpg + a^2, the two maps to box-filter.
  double* a = s.a.data();
  double* b = s.b.data();
  double s1[kTile], s2[kTile];
  for (int64_t p0 = 0; p0 < HW; p0 += kTile) {
    const int64_t len = std::min(kTile, HW - p0);
    const T* x0 = xp + p0;
    for (int64_t t = 0; t < len; ++t) s1[t] = s2[t] = 0.0;
    for (int64_t c = 1; c < cpg; ++c) {
      const T* xc = x0 + c * HW;
#pragma omp simd
      for (int64_t t = 0; t < len; ++t) {
        const double d = static_cast<double>(xc[t]) - static_cast<double>(x0[t]);
        s1[t] += d;
        s2[t] += d * d;
      }
    }
#pragma omp simd
    for (int64_t t = 0; t < len; ++t) {
      const double am = (static_cast<double>(x0[t]) - k) + s1[t] * inv_cpg;
      a[p0 + t] = am;
      b[p0 + t] = std::max(s2[t] - s1[t] * s1[t] * inv_cpg, 0.0) * inv_cpg + am * am;
    }
  }
  box_sum(a, H, W, lo_h, hi_h, lo_w, hi_w, s.tmp, s.acc);
  box_sum(b, H, W, lo_h, hi_h, lo_w, hi_w, s.tmp, s.acc);
  const double* inv_cw = s.inv_cw.data();
  for (int64_t i = 0; i < H; ++i) {
    const double inv_ch = 1.0 / count1d(i, H, lo_h, hi_h);
    const double* ai = a + i * W;
    double* bi = b + i * W;
    double* mi = mu_out + i * W;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      const double inv_n = inv_ch * inv_cw[j];
      const double mu = ai[j] * inv_n;
      const double var = std::max(bi[j] * inv_n - mu * mu, 0.0);
      mi[j] = mu + k;
      bi[j] = 1.0 / std::sqrt(var + eps);
    }
  }
}

// mu (double) as hi + lo in T, and rstd in T, for pixels [p0, p0 + len): (x - hi) - lo is
// x - mu with one rounding of the (small) result, where x - T(mu) would carry mu's rounding
// to T (half an ulp of |mu|: 5e-4 at 1e4 in float32) into every output.
template <typename T>
inline void split_stats(const double* mu, const double* rs, int64_t p0, int64_t len, T* hi,
                        T* lo, T* rf) {
  for (int64_t t = 0; t < len; ++t) {
    hi[t] = static_cast<T>(mu[p0 + t]);
    lo[t] = static_cast<T>(mu[p0 + t] - static_cast<double>(hi[t]));
    rf[t] = static_cast<T>(rs[p0 + t]);
  }
}

template <typename T>
void forward_impl(const T* x, const T* weight, const T* bias, T* y, double* mu_out,
                  T* rstd_out,
                  int64_t N, int64_t G,
                  int64_t cpg, int64_t H, int64_t W, int64_t lo_h, int64_t hi_h, int64_t lo_w,
                  int64_t hi_w, double eps, int nthreads) {
  const int64_t HW = H * W, planes = N * G;
#pragma omp parallel num_threads(nthreads)
  {
    Scratch& s = thread_scratch();
    s.prepare(H, W, lo_w, hi_w);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t g = plane % G;
      const T* xp = x + plane * cpg * HW;
      T* yp = y + plane * cpg * HW;
      // mu straight into the saved map when the backward pass wants it (double), else s.a
      double* mu = mu_out ? mu_out + plane * HW : s.a.data();
      plane_stats(xp, cpg, H, W, lo_h, hi_h, lo_w, hi_w, eps, s, mu);
      // Normalize in the input precision (as GroupNorm does).
      const double* rs = s.b.data();
      if (mu_out) {  // rstd for the backward pass, as the normalization uses it
        T* ro = rstd_out + plane * HW;
        for (int64_t p = 0; p < HW; ++p) ro[p] = static_cast<T>(rs[p]);
      }
      T hi[kTile], lo[kTile], rf[kTile];
      for (int64_t p0 = 0; p0 < HW; p0 += kTile) {
        const int64_t len = std::min(kTile, HW - p0);
        split_stats(mu, rs, p0, len, hi, lo, rf);
        for (int64_t c = 0; c < cpg; ++c) {
          const int64_t ch = g * cpg + c;
          const T w = weight ? weight[ch] : T(1);
          const T bb = bias ? bias[ch] : T(0);
          const T* xc = xp + c * HW + p0;
          T* yc = yp + c * HW + p0;
#pragma omp simd
          for (int64_t t = 0; t < len; ++t)
            yc[t] = ((xc[t] - hi[t]) - lo[t]) * (rf[t] * w) + bb;
        }
      }
    }
    release_if_huge(s);
  }
}

template <typename T>
void backward_impl(const T* x, const T* dy, const T* weight, const double* mu_in,
                   const T* rstd_in,
                   T* dx, double* dw_part,
                   double* db_part, int64_t N, int64_t G, int64_t cpg, int64_t H, int64_t W,
                   int64_t lo_h, int64_t hi_h, int64_t lo_w, int64_t hi_w, double eps,
                   int nthreads) {
  const int64_t HW = H * W, planes = N * G, C = G * cpg;
#pragma omp parallel num_threads(nthreads)
  {
    Scratch& s = thread_scratch();
    s.prepare(H, W, lo_w, hi_w);
    std::vector<double> sum_dxh(cpg), sum_d(cpg), wd(cpg);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t n = plane / G, g = plane % G;
      const T* xp = x + plane * cpg * HW;
      const T* dyp = dy + plane * cpg * HW;
      const double* mu;
      if (mu_in) {  // saved by the forward pass: mu used where it is
        mu = mu_in + plane * HW;
        const T* ri = rstd_in + plane * HW;
        for (int64_t p = 0; p < HW; ++p) s.b[p] = static_cast<double>(ri[p]);
      } else {
        plane_stats(xp, cpg, H, W, lo_h, hi_h, lo_w, hi_w, eps, s, s.a.data());
        mu = s.a.data();
      }
      // Any K near the data keeps (x - K) * box(beta) + box(alpha) from cancelling much.
      const double k = mu[0];
      const double* rs = s.b.data();
      for (int64_t c = 0; c < cpg; ++c) {
        wd[c] = weight ? static_cast<double>(weight[g * cpg + c]) : 1.0;
        sum_dxh[c] = sum_d[c] = 0.0;
      }
      // Pass 1, tile by tile: A = sum_c w*dy and B = sum_c w*dy*xhat per pixel, and the
      // per-channel sums for dweight (dy*xhat) and dbias (dy), in a fixed order.
      double* A = s.c.data();
      double* B = s.d.data();
      for (int64_t p0 = 0; p0 < HW; p0 += kTile) {
        const int64_t len = std::min(kTile, HW - p0);
        double* At = A + p0;
        double* Bt = B + p0;
        T hi[kTile], lo[kTile], rf[kTile];
        split_stats(mu, rs, p0, len, hi, lo, rf);
        for (int64_t t = 0; t < len; ++t) At[t] = Bt[t] = 0.0;
        for (int64_t c = 0; c < cpg; ++c) {
          const T* xc = xp + c * HW + p0;
          const T* dc = dyp + c * HW + p0;
          const double w = wd[c];
          double sdx = 0.0, sd = 0.0;
#pragma omp simd reduction(+ : sdx, sd)
          for (int64_t t = 0; t < len; ++t) {
            // xhat in the input precision, as the forward pass computed it.
            const double h = static_cast<double>(((xc[t] - hi[t]) - lo[t]) * rf[t]);
            const double d = static_cast<double>(dc[t]);
            sdx += d * h;
            sd += d;
            At[t] += w * d;
            Bt[t] += w * d * h;
          }
          sum_dxh[c] += sdx;
          sum_d[c] += sd;
        }
      }
      for (int64_t c = 0; c < cpg; ++c) {
        if (dw_part) dw_part[n * C + g * cpg + c] = sum_dxh[c];
        if (db_part) db_part[n * C + g * cpg + c] = sum_d[c];
      }
      if (!dx) continue;
      // beta = -r^2 B / n and alpha = -r A / n - (mu - K) beta, n = cpg * window count.
      const double* inv_cw = s.inv_cw.data();
      for (int64_t i = 0; i < H; ++i) {
        const double inv_ch = 1.0 / (static_cast<double>(cpg) * count1d(i, H, lo_h, hi_h));
        double* Ai = A + i * W;
        double* Bi = B + i * W;
        const double* mi = mu + i * W;
        const double* ri = rs + i * W;
#pragma omp simd
        for (int64_t j = 0; j < W; ++j) {
          const double inv_n = inv_ch * inv_cw[j];
          const double beta = -ri[j] * ri[j] * Bi[j] * inv_n;
          Ai[j] = -ri[j] * Ai[j] * inv_n - (mi[j] - k) * beta;
          Bi[j] = beta;
        }
      }
      // The adjoint of the clipped box sum is the box sum over the reflected window.
      box_sum(A, H, W, hi_h, lo_h, hi_w, lo_w, s.tmp, s.acc);
      box_sum(B, H, W, hi_h, lo_h, hi_w, lo_w, s.tmp, s.acc);
      // Pass 2: dx = w*dy*r + box(alpha) + (x - K) * box(beta).
      T* dxp = dx + plane * cpg * HW;
      for (int64_t p0 = 0; p0 < HW; p0 += kTile) {
        const int64_t len = std::min(kTile, HW - p0);
        const double* At = A + p0;
        const double* Bt = B + p0;
        const double* rt = rs + p0;
        for (int64_t c = 0; c < cpg; ++c) {
          const double w = wd[c];
          const T* xc = xp + c * HW + p0;
          const T* dc = dyp + c * HW + p0;
          T* out = dxp + c * HW + p0;
#pragma omp simd
          for (int64_t t = 0; t < len; ++t)
            out[t] = static_cast<T>(w * static_cast<double>(dc[t]) * rt[t] + At[t] +
                                    (static_cast<double>(xc[t]) - k) * Bt[t]);
        }
      }
    }
    release_if_huge(s);
  }
}

}  // namespace

extern "C" {

int lcn_abi_version() { return 4; }

#define LCN_DEFINE(SUFFIX, T)                                                                 \
  void lcn_forward_##SUFFIX(const T* x, const T* weight, const T* bias, T* y, double* mu_out,\
                            T* rstd_out, int64_t N, int64_t G, int64_t cpg, int64_t H,         \
                            int64_t W, int64_t lo_h, int64_t hi_h, int64_t lo_w, int64_t hi_w, \
                            double eps, int nthreads) {                                        \
    forward_impl<T>(x, weight, bias, y, mu_out, rstd_out, N, G, cpg, H, W, lo_h, hi_h, lo_w,  \
                    hi_w, eps, nthreads);                                                      \
  }                                                                                            \
  void lcn_backward_##SUFFIX(const T* x, const T* dy, const T* weight, const double* mu_in,   \
                             const T* rstd_in, T* dx, double* dw_part, double* db_part,        \
                             int64_t N, int64_t G, int64_t cpg, int64_t H, int64_t W,          \
                             int64_t lo_h, int64_t hi_h, int64_t lo_w, int64_t hi_w,           \
                             double eps, int nthreads) {                                       \
    backward_impl<T>(x, dy, weight, mu_in, rstd_in, dx, dw_part, db_part, N, G, cpg, H, W,    \
                     lo_h, hi_h, lo_w, hi_w, eps, nthreads);                                   \
  }

LCN_DEFINE(f32, float)
LCN_DEFINE(f64, double)

}  // extern "C"
