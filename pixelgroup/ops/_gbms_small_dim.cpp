// The symmetric pass of the tiled GBMS layer (tiled_gbms.py) for D <= 8 in vector code: no
// kernel entry leaves the L1 cache. Compiled at first use by native.py with -march=native
// (AVX-512 or AVX2 code, whichever this CPU has), loaded with ctypes; every function is
// `extern "C"` and takes raw pointers.
//
// Layout: points transposed, `xt` (D, np) with np a multiple of the vector width, columns
// >= n zero (masked out). Pairs j > i are formed once and added to both rows; the diagonal
// once. Blocks of BI rows meet chunks of CJ columns, a block in sub-blocks of RB rows. For one
// sub-block and chunk, a first pass writes the kernel values (RB, CJ) to a buffer that stays
// in the L1 cache, and later passes read them back for the rows' sums (one row at a time, its
// sums in registers) and for the columns' sums (one column vector at a time, over the rows).
// Each pass keeps few values live, so none spills registers with AVX2's sixteen: one pass doing
// everything for four rows at once (the kernel before) needed about forty and ran 1.8x slower
// per pair as AVX2 code at D = 8. The columns' sums of a block go to a zeroed tile buffer
// first, the rows' sums of one chunk to a row subtotal, so no float sum runs over more than
// max(BI, CJ / W) terms before it is added to the total.
#include <cmath>
#include <cstdint>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

namespace {

#if defined(__AVX512F__)
constexpr int kBytes = 64;
#else
constexpr int kBytes = 32;
#endif
constexpr int BI = 256;  // rows per block: the unit of the threads' split
constexpr int CJ = 256;  // columns per chunk
// rows per sub-block: its kernel values (RB, CJ) take 16 KiB in float32, half of Zen 3's L1
// (16 ran as fast as 32 or 8 here, with chunks of 128 to 512 columns, on both kinds of code)
constexpr int RB = 16;
constexpr int MAX_D = 8;
// How the backward splits its work on a sub-block's pairs into passes (pair_pass), by D: a pass
// holds up to 4 D + 1 broadcast rows and sums in registers, so where they would not fit (16
// with AVX2, 32 with AVX-512) the work takes more passes; the bounds were measured (one thread,
// N = 16,384, D = 1..8). The forward always takes two: kernel values, then the rows' sums.
constexpr int BACKWARD_ONE_PASS = kBytes == 64 ? 4 : 2;
constexpr int BACKWARD_FACTORS_PASS = kBytes == 64 ? 8 : 3;

template <typename T> struct Vec;
template <> struct Vec<float> {
  typedef float T;
  typedef float V __attribute__((vector_size(kBytes)));
  typedef int32_t I __attribute__((vector_size(kBytes)));
  typedef uint32_t U __attribute__((vector_size(kBytes)));
  static constexpr int W = kBytes / 4;
  static constexpr T magic = 12582912.0f;  // 1.5 * 2^23
  static constexpr int mantissa = 23, bias = 127;
  // 2^f on [-0.5, 0.5]: degree-5 minimax fit of the relative error (Lawson iterations),
  // relative error 2.3e-7 in float32 Horner (measured); the logit's own rounding is larger
  static V poly(V f) {
    V p = f * 1.3276471736982723e-3f + 9.675541540085833e-3f;
    p = p * f + 5.550713276094544e-2f;
    p = p * f + 2.4022119720074647e-1f;
    p = p * f + 6.931469670620418e-1f;
    return p * f + 1.0000000716554334f;
  }
};
template <> struct Vec<double> {
  typedef double T;
  typedef double V __attribute__((vector_size(kBytes)));
  typedef int64_t I __attribute__((vector_size(kBytes)));
  typedef uint64_t U __attribute__((vector_size(kBytes)));
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
  static constexpr T magic = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int mantissa = 52, bias = 1023;
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
// float32; NaN stays NaN. l + 1.5 * 2^p rounds l to the integer k in the low mantissa bits,
// which shifted up give 2^k's exponent field.
template <typename T>
inline typename Vec<T>::V floored_exp2(typename Vec<T>::V l) {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::U U;
  const V floor = V{} * 0 + T(-115);
  l = floor > l ? floor : l;  // a max that keeps NaN
  const V rounded = l + Vec<T>::magic;
  const V f = l - (rounded - Vec<T>::magic);
  const U exponent = ((U)rounded << Vec<T>::mantissa) + ((U{} + Vec<T>::bias) << Vec<T>::mantissa);
  return Vec<T>::poly(f) * (V)exponent;
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

// one broadcast vector per entry
template <typename T>
inline typename Vec<T>::V splat(T v) {
  return typename Vec<T>::V{} * 0 + v;
}

// The traversal both kernels share. Rows [i0, i1) go in blocks of BI rows; each block meets
// the chunks of CJ columns from its first row's vector on. Per chunk the tile (Width, CJ) is
// zeroed and `chunk(c0, c1)` runs; then each sub-block of RB rows from s0 meets the columns
// [j_first, c1) from its own first vector on: `sub_block(s0, rows, j_first, c0, c1)` adds the
// rows' sums to acc and the columns' sums to the tile at j - c0. The tile is then added to
// acc (Width, np); after a block, `diagonal(i)` adds each row's own pair.
template <typename T, int Width, typename Chunk, typename SubBlock, typename Diagonal>
void sweep(int64_t np, T* acc, int64_t i0, int64_t i1, T* tile, Chunk chunk, SubBlock sub_block,
           Diagonal diagonal) {
  constexpr int W = Vec<T>::W;
  for (int64_t b0 = i0; b0 < i1; b0 += BI) {
    const int64_t b1 = b0 + BI < i1 ? b0 + BI : i1;
    for (int64_t c0 = (b0 / W) * W; c0 < np; c0 += CJ) {
      const int64_t c1 = c0 + CJ < np ? c0 + CJ : np;
      for (int64_t t = 0; t < Width * CJ; ++t) tile[t] = 0;
      chunk(c0, c1);
      for (int64_t s0 = b0; s0 < b1; s0 += RB) {
        const int64_t j_first = c0 > (s0 / W) * W ? c0 : (s0 / W) * W;
        if (j_first < c1) sub_block(s0, b1 - s0 < RB ? int(b1 - s0) : RB, j_first, c0, c1);
      }
      for (int d = 0; d < Width; ++d) {
        for (int64_t j = c0; j < c1; ++j) acc[d * np + j] += tile[d * CJ + (j - c0)];
      }
    }
    for (int64_t i = b0; i < b1; ++i) diagonal(i);
  }
}

// The scratch buffer's parts, carved from one caller's buffer of pg_scratch_elements() entries
// from its first 64-byte boundary on (a vector split over two cache lines costs up to 1.4x in
// the passes): the tile (<= MAX_D + 1, CJ); kernel values g and the backward's second factors
// m (RB, CJ); the chunk's columns (MAX_D, CJ) of x, of x times the scale and of z, and its κc
// (CJ): copies with a fixed row stride, so that every pass addresses them from one pointer; the
// sub-block's rows as broadcast vectors xb, zb (RB, MAX_D, W).
template <typename T>
struct Scratch {
  T *tile, *g, *m, *xc, *xs, *zc, *kcc, *xb, *zb;
  explicit Scratch(T* base)
      : tile(reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(base) + 63) & ~uintptr_t(63))),
        g(tile + (MAX_D + 1) * CJ),
        m(g + RB * CJ),
        xc(m + RB * CJ),
        xs(xc + MAX_D * CJ),
        zc(xs + MAX_D * CJ),
        kcc(zc + MAX_D * CJ),
        xb(kcc + CJ),
        zb(xb + RB * MAX_D * Vec<T>::W) {}
  static constexpr int64_t elements() {
    return (MAX_D + 1 + 2 * RB + 3 * MAX_D + 1) * CJ + 2 * RB * MAX_D * Vec<T>::W + 64 / sizeof(T);
  }
};

// to (D, CJ) = factor * the chunk's columns [c0, c1) of from (D, np)
template <typename T, int D>
inline void chunk_columns(const T* from, int64_t np, T factor, int64_t c0, int64_t c1, T* to) {
  for (int d = 0; d < D; ++d) {
    for (int64_t j = c0; j < c1; ++j) to[d * CJ + (j - c0)] = factor * from[d * np + j];
  }
}

// The chunk's columns [c0, c1) into the scratch: xc = x, xs = scale * x and, for the backward
// (zt, kc not null), zc = z and kcc = κc
template <typename T, int D>
inline void copy_chunk(const Scratch<T>& s, const T* xt, const T* zt, const T* kc, int64_t np,
                       T scale, int64_t c0, int64_t c1) {
  chunk_columns<T, D>(xt, np, T(1), c0, c1, s.xc);
  chunk_columns<T, D>(xt, np, scale, c0, c1, s.xs);
  if (zt != nullptr) {
    chunk_columns<T, D>(zt, np, T(1), c0, c1, s.zc);
    chunk_columns<T, 1>(kc, np, T(1), c0, c1, s.kcc);
  }
}

// rows s0 .. s0 + rows - 1 of `from` (D, np) as broadcast vectors (RB, D, W)
template <typename T, int D>
inline void broadcast_rows(const T* from, int64_t np, int64_t s0, int rows, T* to) {
  constexpr int W = Vec<T>::W;
  for (int r = 0; r < rows; ++r) {
    for (int d = 0; d < D; ++d) store(to + (r * D + d) * W, splat(from[d * np + s0 + r]));
  }
}

// One pass over the sub-block's pairs: row i = s0 + r, the columns [j_first, c1), results at
// [r, j - c0] of g and m (RB, CJ). With KERNEL it writes g = G_ij = 2^(x_i·xs_j − shift), zero
// where j <= i or j >= n (the logit summed in up to four chains), else it reads g. For E0 < E1
// it adds the backward's cross products Σ_{d in [E0, E1)} κz_i[d] x_j[d] + κx_i[d] z_j[d] to m
// (to those of earlier passes where E0 > 0); the pass that reaches E1 = D finishes
// m = M_ij = g (cross − κc_i − κc_j) (E0 = E1 = D: reads it). With ROWS it adds the rows' sums
// to acc (D + 1, np): [Σ_j g x_j, Σ_j g] in the forward (E1 = 0), Σ_j g z_j + m x_j in the
// backward (E1 = D). A pass holds up to 4 D + 1 broadcast rows and sums in registers, so the
// work is split into several passes where it would not fit (the plan in forward / backward).
template <typename T>
struct Pairs {  // what a pass needs: the sub-block's rows s0 .. s0 + rows - 1 and its columns
  Scratch<T> s;
  int64_t n, np;
  T shift, kappa;
  const T* kc;  // (np) κc (backward) or null
  T* acc;
  int64_t s0;
  int rows;
  int64_t j_first, c0, c1;
};

template <typename T, int D, bool KERNEL, int E0, int E1, bool ROWS>
inline void pair_pass(const Pairs<T>& p) {
  typedef typename Vec<T>::V V;
  const Scratch<T>& s = p.s;
  const int64_t n = p.n, np = p.np, s0 = p.s0, j_first = p.j_first, c0 = p.c0, c1 = p.c1;
  const T shift = p.shift, kappa = p.kappa;
  const int rows = p.rows;
  constexpr int W = Vec<T>::W;
  constexpr int C = D < 4 ? D : 4;
  constexpr int E = E1 - E0 > 0 ? E1 - E0 : 1;
  constexpr bool BACKWARD = E1 == D;
  constexpr int SUMS = BACKWARD ? D : D + 1;
  for (int r = 0; r < rows; ++r) {
    const int64_t i = s0 + r;
    V xi[D], kx[E], kz[E], own[SUMS];
    for (int d = 0; d < D; ++d) xi[d] = load(s.xb + (r * D + d) * W);
    for (int d = E0; d < E1; ++d) {
      kx[d - E0] = kappa * load(s.xb + (r * D + d) * W);
      kz[d - E0] = kappa * load(s.zb + (r * D + d) * W);
    }
    for (int d = 0; d < SUMS; ++d) own[d] = V{} * 0;
    const V kci = splat(BACKWARD ? p.kc[i] : T(0));
    for (int64_t o = j_first - c0; o < c1 - c0; o += W) {
      V g, m = V{} * 0;
      if constexpr (KERNEL) {
        V part[C];
        for (int c = 0; c < C; ++c) part[c] = xi[c] * load(s.xs + c * CJ + o);
        for (int d = C; d < D; ++d) part[d % C] += xi[d] * load(s.xs + d * CJ + o);
        for (int w = C / 2; w >= 1; w /= 2) {
          for (int c = 0; c < w; ++c) part[c] += part[c + w];
        }
        if (C == 3) part[0] += part[2];
        g = floored_exp2<T>(part[0] - shift);
        const int64_t j0 = c0 + o;
        if (j0 <= i || j0 + W > n) g = masked<T>(g, j0, i, n);
        store(s.g + r * CJ + o, g);
      } else {
        g = load(s.g + r * CJ + o);
      }
      if constexpr (E0 < E1) {
        V a = E0 == 0 ? V{} * 0 : load(s.m + r * CJ + o), b = V{} * 0;
        for (int d = E0; d < E1; ++d) {
          a += kz[d - E0] * load(s.xc + d * CJ + o);
          b += kx[d - E0] * load(s.zc + d * CJ + o);
        }
        m = BACKWARD ? g * (a + b - kci - load(s.kcc + o)) : a + b;
        store(s.m + r * CJ + o, m);
      } else if constexpr (BACKWARD && ROWS) {
        m = load(s.m + r * CJ + o);
      }
      if constexpr (ROWS && BACKWARD) {
        for (int d = 0; d < D; ++d) {  // two separate multiply-adds (not a product added)
          own[d] += g * load(s.zc + d * CJ + o);
          own[d] += m * load(s.xc + d * CJ + o);
        }
      } else if constexpr (ROWS) {
        for (int d = 0; d < D; ++d) own[d] += g * load(s.xc + d * CJ + o);
        own[D] += g;
      }
    }
    if constexpr (ROWS) {
      for (int d = 0; d < SUMS; ++d) p.acc[d * np + i] += lane_sum<T>(own[d]);
    }
  }
}

// The columns' sums of the sub-block's pairs into the tile (at j - c0), one column vector at a
// time over the rows, from g (and m): [Σ_i g x_i, Σ_i g] in the forward, Σ_i g z_i + m x_i in
// the backward.
template <typename T, int D, bool BACKWARD>
inline void column_sums(const Pairs<T>& p) {
  typedef typename Vec<T>::V V;
  constexpr int W = Vec<T>::W;
  constexpr int SUMS = BACKWARD ? D : D + 1;
  const Scratch<T>& s = p.s;
  for (int64_t o = p.j_first - p.c0; o < p.c1 - p.c0; o += W) {
    V aj[SUMS];
    for (int d = 0; d < SUMS; ++d) aj[d] = load(s.tile + d * CJ + o);
    for (int r = 0; r < p.rows; ++r) {
      const V g = load(s.g + r * CJ + o);
      if constexpr (BACKWARD) {
        const V m = load(s.m + r * CJ + o);
        for (int d = 0; d < D; ++d) {  // two separate multiply-adds (not a product added)
          aj[d] += g * load(s.zb + (r * D + d) * W);
          aj[d] += m * load(s.xb + (r * D + d) * W);
        }
      } else {
        for (int d = 0; d < D; ++d) aj[d] += g * load(s.xb + (r * D + d) * W);
        aj[D] += g;
      }
    }
    for (int d = 0; d < SUMS; ++d) store(s.tile + d * CJ + o, aj[d]);
  }
}

// acc (D + 1, np) += [Σ_j G_ij x_j, Σ_j G_ij] for rows [i0, i1); G_ij = 2^(scale x_i·x_j − shift)
template <typename T, int D>
void forward(const T* xt, int64_t n, int64_t np, T scale, T shift, T* acc, int64_t i0,
             int64_t i1, T* scratch) {
  const Scratch<T> s(scratch);
  auto chunk = [=](int64_t c0, int64_t c1) {
    copy_chunk<T, D>(s, xt, nullptr, nullptr, np, scale, c0, c1);
  };
  auto sub_block = [=](int64_t s0, int rows, int64_t j_first, int64_t c0, int64_t c1) {
    broadcast_rows<T, D>(xt, np, s0, rows, s.xb);
    const Pairs<T> p{s, n, np, shift, T(0), nullptr, acc, s0, rows, j_first, c0, c1};
    pair_pass<T, D, true, 0, 0, false>(p);  // kernel values
    pair_pass<T, D, false, 0, 0, true>(p);  // the rows' sums
    column_sums<T, D, false>(p);
  };
  auto diagonal = [=](int64_t i) {
    T l = -shift;
    for (int d = 0; d < D; ++d) l += scale * xt[d * np + i] * xt[d * np + i];
    const T g = floored_exp2_scalar(l);
    for (int d = 0; d < D; ++d) acc[d * np + i] += g * xt[d * np + i];
    acc[D * np + i] += g;
  };
  sweep<T, D + 1>(np, acc, i0, i1, s.tile, chunk, sub_block, diagonal);
}

// acc (D, np) += Σ_j G_ij z_j + M_ij x_j for rows [i0, i1), with the columns' halves of the
// symmetric pairs: M_ij = G_ij (κz_i·x_j + κx_i·z_j − κc_i − κc_j); zt (D, np), kc (np) = κc
template <typename T, int D>
void backward(const T* xt, const T* zt, const T* kc, int64_t n, int64_t np, T scale, T shift,
              T kappa, T* acc, int64_t i0, int64_t i1, T* scratch) {
  const Scratch<T> s(scratch);
  auto chunk = [=](int64_t c0, int64_t c1) {
    copy_chunk<T, D>(s, xt, zt, kc, np, scale, c0, c1);
  };
  auto sub_block = [=](int64_t s0, int rows, int64_t j_first, int64_t c0, int64_t c1) {
    broadcast_rows<T, D>(xt, np, s0, rows, s.xb);
    broadcast_rows<T, D>(zt, np, s0, rows, s.zb);
    const Pairs<T> p{s, n, np, shift, kappa, kc, acc, s0, rows, j_first, c0, c1};
    if constexpr (D <= BACKWARD_ONE_PASS) {
      pair_pass<T, D, true, 0, D, true>(p);
    } else if constexpr (D <= BACKWARD_FACTORS_PASS) {  // G and M, then the rows' sums
      pair_pass<T, D, true, 0, D, false>(p);
      pair_pass<T, D, false, D, D, true>(p);
    } else {  // G; M's cross products in two parts; the rows' sums
      pair_pass<T, D, true, 0, 0, false>(p);
      pair_pass<T, D, false, 0, D / 2, false>(p);
      pair_pass<T, D, false, D / 2, D, false>(p);
      pair_pass<T, D, false, D, D, true>(p);
    }
    column_sums<T, D, true>(p);
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
  sweep<T, D>(np, acc, i0, i1, s.tile, chunk, sub_block, diagonal);
}

// Flush-to-zero and denormals-are-zero (MXCSR bits 15 and 6) for the object's lifetime, the
// caller's MXCSR restored after: the products of a floored kernel value (2^-115) with small
// factors (gradients, κc) fall below float32's 2^-126, and each such subnormal operand or
// result costs on the order of a hundred cycles on Intel cores (the backward at D = 3 ran 12-32x
// longer without it there; docs/benchmarks.md §6.1). Flushed, such a term
// is zero instead: an absolute change below 2^-126 per pair, as the floor's (tiled_gbms.py).
// The register is per thread, so each caller's thread sets and restores its own.
struct FlushDenormals {
#if defined(__SSE__)
  const unsigned int saved = _mm_getcsr();
  FlushDenormals() { _mm_setcsr(saved | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

}  // namespace

// BI for the caller, which splits rows among threads on block bounds, and the size of the
// scratch buffer each call takes (entries of its float type; the most of either type)
extern "C" int64_t pg_block_rows() { return BI; }
extern "C" int64_t pg_scratch_elements() {
  return Scratch<float>::elements() > Scratch<double>::elements() ? Scratch<float>::elements()
                                                                  : Scratch<double>::elements();
}

#define PG_EXPORT(T, NAME, D)                                                         \
  extern "C" void pg_forward_##NAME##_d##D(const T* xt, int64_t n, int64_t np, T scale,      \
                                           T shift, T* acc, int64_t i0, int64_t i1,           \
                                           T* scratch) {                                      \
    const FlushDenormals flush;                                                               \
    forward<T, D>(xt, n, np, scale, shift, acc, i0, i1, scratch);                             \
  }                                                                                           \
  extern "C" void pg_backward_##NAME##_d##D(const T* xt, const T* zt, const T* kc, int64_t n, \
                                            int64_t np, T scale, T shift, T kappa, T* acc,    \
                                            int64_t i0, int64_t i1, T* scratch) {             \
    const FlushDenormals flush;                                                               \
    backward<T, D>(xt, zt, kc, n, np, scale, shift, kappa, acc, i0, i1, scratch);             \
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
