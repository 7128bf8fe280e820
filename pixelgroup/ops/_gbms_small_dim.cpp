// The symmetric pass of the tiled GBMS layer (tiled_gbms.py) for D <= 8, fused: each kernel
// entry is formed, exponentiated and accumulated in vector registers, never written to memory.
// Compiled at first use by native.py with -march=native (AVX-512 or AVX2 code, whichever this
// CPU has), loaded with ctypes; every function is `extern "C"` and takes raw pointers.
//
// Layout: points transposed, `xt` (D, np) with np a multiple of the vector width, columns
// >= n zero (masked out). Pairs j > i are formed once and added to both rows; the diagonal
// once. Blocks of BI rows meet chunks of CJ columns; the columns' sums of one tile go to a
// zeroed tile buffer first, the rows' sums of one chunk to a row subtotal, so no float sum
// runs over more than max(BI, CJ / W) terms before it is added to the total.
#include <cmath>
#include <cstdint>

namespace {

#if defined(__AVX512F__)
constexpr int kBytes = 64;
#else
constexpr int kBytes = 32;
#endif
constexpr int BI = 256;
constexpr int CJ = 1024;
constexpr int R = 4;  // rows per pass over a chunk (1, 2, 3 or 4 ran within 5 % of each other)

template <typename T> struct Vec;
template <> struct Vec<float> {
  typedef float V __attribute__((vector_size(kBytes)));
  typedef int32_t I __attribute__((vector_size(kBytes)));
  static constexpr int W = kBytes / 4;
  // 2^f on [-0.5, 0.5]: Cephes exp2f, relative error 8.7e-8 (float32 Horner, measured)
  static V poly(V f) {
    V p = f * 1.535336188319500e-4f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    return p * f + 1.0f;
  }
  static V pow2(I k) { return (V)((k + 127) << 23); }
};
template <> struct Vec<double> {
  typedef double V __attribute__((vector_size(kBytes)));
  typedef int64_t I __attribute__((vector_size(kBytes)));
  static constexpr int W = kBytes / 8;
  // 2^f on [-0.5, 0.5]: Taylor series of e^(f ln 2) to degree 13, relative error < 1e-16
  static V poly(V f) {
    const double c[14] = {1.0,
                          0.6931471805599453,
                          0.2402265069591007,
                          0.05550410866482158,
                          0.009618129107628477,
                          0.0013333558146428443,
                          0.00015403530393381608,
                          1.525273380405984e-05,
                          1.3215486790144307e-06,
                          1.0178086009239699e-07,
                          7.054911620801123e-09,
                          4.445538271870811e-10,
                          2.5678435993488202e-11,
                          1.3691488853904124e-12};
    V p = f * c[13] + c[12];
    for (int k = 11; k >= 0; --k) p = p * f + c[k];
    return p;
  }
  static V pow2(I k) { return (V)((k + 1023) << 52); }
};

// vectors read and written at any address (torch's buffers are 64-byte aligned, but nothing
// here relies on it; unaligned moves cost nothing extra on aligned data)
template <typename T>
inline typename Vec<T>::V load(const T* p) {
  typedef typename Vec<T>::V V __attribute__((aligned(sizeof(T))));
  return *(const V*)p;
}
template <typename T>
inline void store(T* p, typename Vec<T>::V v) {
  typedef typename Vec<T>::V V __attribute__((aligned(sizeof(T))));
  *(V*)p = v;
}

// 2^l for l <= 0 (> 0 only by rounding), floored at 2^-115 so that no value is subnormal in
// float32; NaN stays NaN.
template <typename T>
inline typename Vec<T>::V floored_exp2(typename Vec<T>::V l) {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::I I;
  l = l < T(-115) ? l * 0 + T(-115) : l;
  I k = __builtin_convertvector(l - T(0.5), I);  // toward zero: ceil(l - 0.5) = round(l)
  V f = l - __builtin_convertvector(k, V);
  return Vec<T>::poly(f) * Vec<T>::pow2(k);
}

template <typename T>
inline T floored_exp2_scalar(T l) {
  return std::exp2(l < T(-115) ? T(-115) : l);
}

template <typename T>
inline T lane_sum(typename Vec<T>::V v) {
  T s = 0;
  for (int t = 0; t < Vec<T>::W; ++t) s += v[t];
  return s;
}

// keep lanes j with i < j < n (as all-ones bits) where a vector straddles either bound
template <typename T>
inline typename Vec<T>::V masked(typename Vec<T>::V g, int64_t j0, int64_t i, int64_t n) {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::I I;
  I keep;
  for (int t = 0; t < Vec<T>::W; ++t) keep[t] = j0 + t > i && j0 + t < n ? -1 : 0;
  return (V)((I)g & keep);
}

// The traversal both kernels share. Rows [i0, i1) go in blocks of BI rows; each block meets
// the chunks of CJ columns from its first row's vector on. Per chunk the tile (Width, CJ) is
// zeroed, `pass(i, rows, j_first, c0, c1)` adds the pairs of rows i .. i + rows - 1 with the
// columns [j_first, c1) (rows' sums straight into acc, columns' sums into the tile at j - c0),
// and the tile is added to acc (Width, np). After a block, `diagonal(i)` adds each row's own
// pair.
template <typename T, int Width, typename Pass, typename Diagonal>
void sweep(int64_t np, T* acc, int64_t i0, int64_t i1, T* tile, Pass pass, Diagonal diagonal) {
  constexpr int W = Vec<T>::W;
  for (int64_t b0 = i0; b0 < i1; b0 += BI) {
    const int64_t b1 = b0 + BI < i1 ? b0 + BI : i1;
    for (int64_t c0 = (b0 / W) * W; c0 < np; c0 += CJ) {
      const int64_t c1 = c0 + CJ < np ? c0 + CJ : np;
      for (int64_t t = 0; t < Width * CJ; ++t) tile[t] = 0;
      for (int64_t i = b0; i < b1; i += R) {
        const int64_t j_first = c0 > (i / W) * W ? c0 : (i / W) * W;
        pass(i, b1 - i < R ? int(b1 - i) : R, j_first, c0, c1);
      }
      for (int d = 0; d < Width; ++d) {
        for (int64_t j = c0; j < c1; ++j) acc[d * np + j] += tile[d * CJ + (j - c0)];
      }
    }
    for (int64_t i = b0; i < b1; ++i) diagonal(i);
  }
}

// acc (D + 1, np) += [Σ_j G_ij x_j, Σ_j G_ij] for rows [i0, i1); G_ij = 2^(scale x_i·x_j − shift)
template <typename T, int D>
void forward(const T* xt, int64_t n, int64_t np, T scale, T shift, T* acc, int64_t i0,
             int64_t i1, T* tile) {
  typedef typename Vec<T>::V V;
  constexpr int W = Vec<T>::W;
  auto pass = [=](int64_t i, int rows, int64_t j_first, int64_t c0,
                  int64_t c1) __attribute__((always_inline)) {
    T q[R][D], xi[R][D];
    V own[R][D + 1];
    for (int r = 0; r < R; ++r) {
      for (int d = 0; d < D; ++d) {
        xi[r][d] = r < rows ? xt[d * np + i + r] : T(0);
        q[r][d] = scale * xi[r][d];
      }
      for (int d = 0; d <= D; ++d) own[r][d] = V{} * 0;
    }
    for (int64_t j0 = j_first; j0 < c1; j0 += W) {
      const bool edge = j0 <= i + R - 1 || j0 + W > n;
      V xj[D], aj[D + 1];
      for (int d = 0; d < D; ++d) xj[d] = load(xt + d * np + j0);
      for (int d = 0; d <= D; ++d) aj[d] = load(tile + d * CJ + (j0 - c0));
      for (int r = 0; r < rows; ++r) {
        V l = V{} * 0 - shift;
        for (int d = 0; d < D; ++d) l += q[r][d] * xj[d];
        V g = floored_exp2<T>(l);
        if (edge) g = masked<T>(g, j0, i + r, n);
        for (int d = 0; d < D; ++d) {
          own[r][d] += g * xj[d];
          aj[d] += g * xi[r][d];
        }
        own[r][D] += g;
        aj[D] += g;
      }
      for (int d = 0; d <= D; ++d) store(tile + d * CJ + (j0 - c0), aj[d]);
    }
    for (int r = 0; r < rows; ++r) {
      for (int d = 0; d <= D; ++d) acc[d * np + i + r] += lane_sum<T>(own[r][d]);
    }
  };
  auto diagonal = [=](int64_t i) {
    T l = -shift;
    for (int d = 0; d < D; ++d) l += scale * xt[d * np + i] * xt[d * np + i];
    const T g = floored_exp2_scalar(l);
    for (int d = 0; d < D; ++d) acc[d * np + i] += g * xt[d * np + i];
    acc[D * np + i] += g;
  };
  sweep<T, D + 1>(np, acc, i0, i1, tile, pass, diagonal);
}

// acc (D, np) += Σ_j G_ij z_j + M_ij x_j for rows [i0, i1), with the columns' halves of the
// symmetric pairs: M_ij = G_ij (κz_i·x_j + κx_i·z_j − κc_i − κc_j); zt (D, np), kc (np) = κc
template <typename T, int D>
void backward(const T* xt, const T* zt, const T* kc, int64_t n, int64_t np, T scale, T shift,
              T kappa, T* acc, int64_t i0, int64_t i1, T* tile) {
  typedef typename Vec<T>::V V;
  constexpr int W = Vec<T>::W;
  auto pass = [=](int64_t i, int rows, int64_t j_first, int64_t c0,
                  int64_t c1) __attribute__((always_inline)) {
    T q[R][D], xi[R][D], zi[R][D], kx[R][D], kz[R][D], kci[R];
    V own[R][D];
    for (int r = 0; r < R; ++r) {
      for (int d = 0; d < D; ++d) {
        xi[r][d] = r < rows ? xt[d * np + i + r] : T(0);
        zi[r][d] = r < rows ? zt[d * np + i + r] : T(0);
        q[r][d] = scale * xi[r][d];
        kx[r][d] = kappa * xi[r][d];
        kz[r][d] = kappa * zi[r][d];
        own[r][d] = V{} * 0;
      }
      kci[r] = r < rows ? kc[i + r] : T(0);
    }
    for (int64_t j0 = j_first; j0 < c1; j0 += W) {
      const bool edge = j0 <= i + R - 1 || j0 + W > n;
      V xj[D], zj[D], aj[D];
      for (int d = 0; d < D; ++d) {
        xj[d] = load(xt + d * np + j0);
        zj[d] = load(zt + d * np + j0);
        aj[d] = load(tile + d * CJ + (j0 - c0));
      }
      const V kcj = load(kc + j0);
      for (int r = 0; r < rows; ++r) {
        V l = V{} * 0 - shift;
        V m = -kcj - kci[r];
        for (int d = 0; d < D; ++d) {
          l += q[r][d] * xj[d];
          m += kz[r][d] * xj[d] + kx[r][d] * zj[d];
        }
        V g = floored_exp2<T>(l);
        if (edge) g = masked<T>(g, j0, i + r, n);
        m *= g;
        for (int d = 0; d < D; ++d) {
          own[r][d] += g * zj[d] + m * xj[d];
          aj[d] += g * zi[r][d] + m * xi[r][d];
        }
      }
      for (int d = 0; d < D; ++d) store(tile + d * CJ + (j0 - c0), aj[d]);
    }
    for (int r = 0; r < rows; ++r) {
      for (int d = 0; d < D; ++d) acc[d * np + i + r] += lane_sum<T>(own[r][d]);
    }
  };
  auto diagonal = [=](int64_t i) {  // M_ii = G_ii (2κz_i·x_i − 2κc_i)
    T l = -shift, zx = 0;
    for (int d = 0; d < D; ++d) {
      l += scale * xt[d * np + i] * xt[d * np + i];
      zx += zt[d * np + i] * xt[d * np + i];
    }
    const T g = floored_exp2_scalar(l);
    const T m = g * (2 * kappa * zx - 2 * kc[i]);
    for (int d = 0; d < D; ++d) acc[d * np + i] += g * zt[d * np + i] + m * xt[d * np + i];
  };
  sweep<T, D>(np, acc, i0, i1, tile, pass, diagonal);
}

}  // namespace

// BI and CJ for the caller, which splits rows among threads on block bounds and sizes the tile
// buffer (Width x CJ entries)
extern "C" int64_t pg_block_rows() { return BI; }
extern "C" int64_t pg_chunk_columns() { return CJ; }

#define PG_EXPORT(T, NAME, D)                                                         \
  extern "C" void pg_forward_##NAME##_d##D(const T* xt, int64_t n, int64_t np, T scale,      \
                                           T shift, T* acc, int64_t i0, int64_t i1,           \
                                           T* tile) {                                         \
    forward<T, D>(xt, n, np, scale, shift, acc, i0, i1, tile);                           \
  }                                                                                           \
  extern "C" void pg_backward_##NAME##_d##D(const T* xt, const T* zt, const T* kc, int64_t n, \
                                            int64_t np, T scale, T shift, T kappa, T* acc,    \
                                            int64_t i0, int64_t i1, T* tile) {                \
    backward<T, D>(xt, zt, kc, n, np, scale, shift, kappa, acc, i0, i1, tile);           \
  }

#define PG_EXPORT_BOTH(D)     \
  PG_EXPORT(float, f32, D) \
  PG_EXPORT(double, f64, D)

PG_EXPORT_BOTH(1)
PG_EXPORT_BOTH(2)
PG_EXPORT_BOTH(3)
PG_EXPORT_BOTH(4)
PG_EXPORT_BOTH(5)
PG_EXPORT_BOTH(6)
PG_EXPORT_BOTH(7)
PG_EXPORT_BOTH(8)
