// Least-cost assignment for the BSDS boundary benchmark (pixelgroup.metrics._bsds_match).
//
// A sparse bipartite graph of rows and columns with integer edge costs, where each row may
// instead take a private outlier at cost `outlier`: pg_assign gives every row a column or its
// outlier, each column to at most one row, at the least total cost. It is the
// successive-shortest-path (Hungarian) method: rows join one at a time, each along a shortest
// augmenting path found by Dijkstra on reduced costs (node potentials keep them >= 0). A search
// touches only the nodes it reaches, so on a boundary map, where conflicts are local, its cost
// follows the size of the conflict rather than the size of the image. Exact in integers.
//
// Invariants: free columns and outliers keep potential 0, matched ones <= 0, and an outlier's
// only arc is from its row, so a row that took its outlier is never reached again.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

namespace {

using Item = std::pair<int64_t, int64_t>;  // (distance, node)
constexpr int64_t kFar = std::numeric_limits<int64_t>::max();

struct Solver {
    int64_t n_rows, n_cols;  // nodes: columns 0..n_cols-1, the outlier of row r is n_cols + r
    const int64_t *indptr, *cols, *cost;
    int64_t outlier;
    int64_t* row_match;  // column or outlier node of each row, -1 while unassigned
    std::vector<int64_t> col_match, pi_node, pi_row, dist, from, row_dist, touched, done_rows;
    std::vector<char> done;
    std::vector<Item> heap;

    bool is_sink(int64_t node) const { return node >= n_cols || col_match[node] < 0; }

    void push(int64_t node, int64_t d, int64_t r) {
        if (d >= dist[node]) return;
        if (dist[node] == kFar) touched.push_back(node);
        dist[node] = d;
        from[node] = r;
        heap.push_back({d, node});
        std::push_heap(heap.begin(), heap.end(), std::greater<Item>());
    }

    void relax(int64_t r, int64_t d) {  // row r is final at distance d: offer its arcs
        row_dist[r] = d;
        done_rows.push_back(r);
        for (int64_t e = indptr[r]; e < indptr[r + 1]; ++e)
            if (!done[cols[e]]) push(cols[e], d + cost[e] + pi_row[r] - pi_node[cols[e]], r);
        push(n_cols + r, d + outlier + pi_row[r] - pi_node[n_cols + r], r);
    }

    // The cheapest arc of a new row, when it ends at a sink, is its shortest path: no search.
    bool direct(int64_t src) {
        int64_t best = n_cols + src, best_d = outlier + pi_row[src] - pi_node[best];
        for (int64_t e = indptr[src]; e < indptr[src + 1]; ++e) {
            int64_t c = cols[e], d = cost[e] + pi_row[src] - pi_node[c];
            if (d < best_d || (d == best_d && c < best)) best = c, best_d = d;
        }
        if (!is_sink(best)) return false;
        pi_row[src] -= best_d;
        row_match[src] = best;
        if (best < n_cols) col_match[best] = src;
        return true;
    }

    void search(int64_t src) {
        relax(src, 0);
        int64_t sink = -1, D = 0;
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), std::greater<Item>());
            auto [d, node] = heap.back();
            heap.pop_back();
            if (done[node] || d != dist[node]) continue;
            done[node] = 1;
            if (is_sink(node)) {
                sink = node, D = d;
                break;
            }
            relax(col_match[node], d);  // a matched arc has reduced cost 0
        }
        // potentials: what was finalised moves by d - D (<= 0), the rest stays
        for (int64_t r : done_rows) pi_row[r] += row_dist[r] - D;
        for (int64_t node : touched)
            if (done[node]) pi_node[node] += dist[node] - D;
        for (int64_t node = sink;;) {  // augment: each row on the path takes the next node
            int64_t r = from[node], previous = row_match[r];
            row_match[r] = node;
            if (node < n_cols) col_match[node] = r;
            if (r == src) break;
            node = previous;
        }
        for (int64_t node : touched) dist[node] = kFar, done[node] = 0;
        touched.clear(), done_rows.clear(), heap.clear();
    }
};

}  // namespace

// row_match[r] <- the column of row r, or -1 where it takes its outlier. Returns 0.
extern "C" int pg_assign(int64_t n_rows, int64_t n_cols, const int64_t* indptr,
                         const int64_t* cols, const int64_t* cost, int64_t outlier,
                         int64_t* row_match) {
    Solver s{n_rows, n_cols, indptr, cols, cost, outlier, row_match};
    s.col_match.assign(n_cols, -1);
    s.pi_node.assign(n_cols + n_rows, 0);
    s.pi_row.assign(n_rows, 0);
    s.dist.assign(n_cols + n_rows, kFar);
    s.from.assign(n_cols + n_rows, -1);
    s.row_dist.assign(n_rows, 0);
    s.done.assign(n_cols + n_rows, 0);
    std::fill(row_match, row_match + n_rows, -1);
    for (int64_t r = 0; r < n_rows; ++r)
        if (!s.direct(r)) s.search(r);
    for (int64_t r = 0; r < n_rows; ++r)
        if (row_match[r] >= n_cols) row_match[r] = -1;
    return 0;
}
