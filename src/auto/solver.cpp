#include "auto/solver.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace squish {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

void check_items(const std::vector<SolverItem>& items) {
  for (const SolverItem& item : items) {
    if (item.options.empty() || item.options.size() > 255)
      fail("internal: a solver item needs 1..255 options, has {}", item.options.size());
  }
}

SolverResult totals(const std::vector<SolverItem>& items, std::vector<int> choice) {
  SolverResult r;
  r.choice = std::move(choice);
  for (size_t i = 0; i < items.size(); ++i) {
    r.bytes += items[i].options[r.choice[i]].bytes;
    r.cost += items[i].options[r.choice[i]].cost;
  }
  return r;
}

// Largest Lagrangian dual value max_l (sum_i min_j (cost + l * bytes) - l * budget): a lower
// bound on the optimal cost. The dual is concave in l; its slope is (relaxed bytes - budget).
double lagrangian_bound(const std::vector<SolverItem>& items, uint64_t budget) {
  auto dual = [&](double l, uint64_t* relaxed_bytes) {
    double sum = 0;
    uint64_t bytes = 0;
    for (const SolverItem& item : items) {
      double best = kInf;
      uint64_t best_bytes = 0;
      for (const SolverOption& o : item.options) {
        const double v = o.cost + l * static_cast<double>(o.bytes);
        if (v < best || (v == best && o.bytes < best_bytes)) {
          best = v;
          best_bytes = o.bytes;
        }
      }
      sum += best;
      bytes += best_bytes;
    }
    if (relaxed_bytes) *relaxed_bytes = bytes;
    return sum - l * static_cast<double>(budget);
  };
  uint64_t bytes = 0;
  double best = dual(0, &bytes);
  if (bytes <= budget) return best;
  // Bisect on log l for the slope's sign change.
  double lo = 1e-30, hi = 1.0;
  while (dual(hi, &bytes), bytes > budget && hi < 1e30) hi *= 16;
  for (int it = 0; it < 200; ++it) {
    const double mid = std::sqrt(lo * hi);
    best = std::max(best, dual(mid, &bytes));
    if (bytes > budget)
      lo = mid;
    else
      hi = mid;
  }
  return std::max({best, dual(lo, nullptr), dual(hi, nullptr)});
}

// Spends unused bytes on the moves that lower the cost most (exact sizes).
void greedy_fill(const std::vector<SolverItem>& items, uint64_t budget, std::vector<int>& choice) {
  uint64_t used = 0;
  for (size_t i = 0; i < items.size(); ++i) used += items[i].options[choice[i]].bytes;
  for (;;) {
    double best_gain = 0;
    size_t best_i = 0;
    int best_j = -1;
    for (size_t i = 0; i < items.size(); ++i) {
      const SolverOption& cur = items[i].options[choice[i]];
      for (size_t j = 0; j < items[i].options.size(); ++j) {
        const SolverOption& o = items[i].options[j];
        if (o.cost >= cur.cost) continue;
        if (o.bytes > cur.bytes && o.bytes - cur.bytes > budget - used) continue;
        const double gain = cur.cost - o.cost;
        if (gain > best_gain) {
          best_gain = gain;
          best_i = i;
          best_j = static_cast<int>(j);
        }
      }
    }
    if (best_j < 0) return;
    used = used - items[best_i].options[choice[best_i]].bytes + items[best_i].options[best_j].bytes;
    choice[best_i] = best_j;
  }
}

}  // namespace

uint64_t min_total_bytes(const std::vector<SolverItem>& items) {
  uint64_t sum = 0;
  for (const SolverItem& item : items) {
    uint64_t m = std::numeric_limits<uint64_t>::max();
    for (const SolverOption& o : item.options) m = std::min(m, o.bytes);
    sum += m;
  }
  return sum;
}

uint64_t max_total_bytes(const std::vector<SolverItem>& items) {
  uint64_t sum = 0;
  for (const SolverItem& item : items) {
    uint64_t m = 0;
    for (const SolverOption& o : item.options) m = std::max(m, o.bytes);
    sum += m;
  }
  return sum;
}

SolverResult solve_min_cost(const std::vector<SolverItem>& items, uint64_t budget) {
  check_items(items);
  const size_t n = items.size();
  std::vector<int> smallest(n, 0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 1; j < items[i].options.size(); ++j) {
      if (items[i].options[j].bytes < items[i].options[smallest[i]].bytes)
        smallest[i] = static_cast<int>(j);
    }
  }
  if (min_total_bytes(items) > budget) {
    SolverResult r = totals(items, smallest);
    r.feasible = false;
    return r;
  }
  // Dynamic programming over capacity units: best[c] = least cost of the items so far within c
  // units; picks[i * (C + 1) + c] = the option item i takes at capacity c.
  const uint64_t g =
      std::max<uint64_t>(1, (budget + kSolverUnits - 1) / static_cast<uint64_t>(kSolverUnits));
  const size_t C = static_cast<size_t>(budget / g);
  std::vector<double> best(C + 1, 0.0), next(C + 1);
  std::vector<uint8_t> picks(n * (C + 1), 0);
  for (size_t i = 0; i < n; ++i) {
    std::fill(next.begin(), next.end(), kInf);
    uint8_t* pick = picks.data() + i * (C + 1);
    for (size_t j = 0; j < items[i].options.size(); ++j) {
      const SolverOption& o = items[i].options[j];
      const uint64_t w = (o.bytes + g - 1) / g;
      if (w > C) continue;
      for (size_t c = w; c <= C; ++c) {
        const double v = best[c - w] + o.cost;
        if (v < next[c]) {
          next[c] = v;
          pick[c] = static_cast<uint8_t>(j);
        }
      }
    }
    best.swap(next);
  }
  std::vector<int> choice(n, 0);
  if (!std::isfinite(best[C])) {
    // Rounding made the smallest options overflow the units: they still fit in exact bytes.
    choice = smallest;
  } else {
    size_t c = C;
    for (size_t i = n; i-- > 0;) {
      const int j = picks[i * (C + 1) + c];
      choice[i] = j;
      c -= (items[i].options[j].bytes + g - 1) / g;
    }
  }
  greedy_fill(items, budget, choice);
  SolverResult r = totals(items, std::move(choice));
  r.feasible = true;
  r.lower_bound = std::min(r.cost, lagrangian_bound(items, budget));
  return r;
}

SolverResult solve_min_bytes(const std::vector<SolverItem>& items, double max_cost) {
  uint64_t lo = min_total_bytes(items), hi = max_total_bytes(items);
  SolverResult at_hi = solve_min_cost(items, hi);
  if (at_hi.cost > max_cost) {
    at_hi.feasible = false;
    return at_hi;
  }
  SolverResult at_lo = solve_min_cost(items, lo);
  if (at_lo.cost <= max_cost) return at_lo;
  // Invariant: cost(lo) > max_cost >= cost(hi). Bytes are searched to 1 / 20000 of the range.
  const uint64_t tolerance = std::max<uint64_t>(1, (hi - lo) / 20000);
  while (hi - lo > tolerance) {
    const uint64_t mid = lo + (hi - lo) / 2;
    SolverResult r = solve_min_cost(items, mid);
    if (r.cost <= max_cost) {
      hi = mid;
      at_hi = std::move(r);
    } else {
      lo = mid;
    }
  }
  return at_hi;
}

}  // namespace squish
