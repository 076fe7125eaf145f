// The allocation problem behind `squish auto`: every tensor takes exactly one of its candidate
// types, each with an exact size in bytes and a predicted cost (the KL divergence it adds); pick
// one per tensor to minimise the summed cost under a byte budget (a multiple-choice knapsack), or
// to minimise bytes under a cost bound.
//
// The byte-budget problem is solved by dynamic programming over bytes counted in units of
// g = ceil(budget / kSolverUnits) bytes, each option's size rounded up to whole units, so every
// answer fits the exact budget and is optimal among the answers that fit budget - n * g bytes
// (exactly optimal when g = 1). A greedy pass then spends the rounding slack on the upgrades
// that lower the cost most per byte, using exact sizes. The Lagrangian relaxation (convex hull
// per tensor) gives the lower bound reported with the answer.
#pragma once

#include <cstdint>
#include <vector>

namespace squish {

struct SolverOption {
  uint64_t bytes = 0;
  double cost = 0;  // >= 0
};

struct SolverItem {
  std::vector<SolverOption> options;  // at least one
};

struct SolverResult {
  bool feasible = false;    // false: even the smallest option of every item exceeds the budget
  std::vector<int> choice;  // option index per item
  uint64_t bytes = 0;
  double cost = 0;
  double lower_bound = 0;  // Lagrangian bound on the optimal cost at this budget
};

constexpr int64_t kSolverUnits = 50000;

// Minimum total cost with total bytes <= byte_budget.
SolverResult solve_min_cost(const std::vector<SolverItem>& items, uint64_t byte_budget);

// Fewest bytes with total cost <= max_cost (searched over byte budgets with solve_min_cost);
// infeasible when even the most costly-in-bytes choice cannot reach max_cost.
SolverResult solve_min_bytes(const std::vector<SolverItem>& items, double max_cost);

// Smallest and largest possible totals (every item at its smallest / largest option).
uint64_t min_total_bytes(const std::vector<SolverItem>& items);
uint64_t max_total_bytes(const std::vector<SolverItem>& items);

}  // namespace squish
