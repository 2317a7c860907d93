// kolo_bench's output: nccl-tests-style tables on stdout and the same rows
// as JSON.
#ifndef KOLO_BENCH_REPORT_H_
#define KOLO_BENCH_REPORT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "bench/collective.h"
#include "bench/measurement.h"
#include "nlohmann/json.hpp"

namespace kolo::bench {

// One line of a table: one implementation, one collective, one size.
struct Row {
  std::string implementation;  // "kolo", "mpi", "gloo" or "membound"
  std::string label;           // kolo: the backend label; else a description
  Collective collective = Collective::kAllreduce;
  int64_t bytes = 0;
  int64_t count = 0;
  std::string type;
  std::string redop;  // "none" for collectives that do not reduce
  int root = -1;      // -1 for collectives without a root
  // Absent where the implementation has no such form.
  std::optional<Measurement> out_of_place;
  std::optional<Measurement> in_place;
};

// GB/s as nccl-tests counts them (1e9 bytes per second).
double AlgorithmBandwidth(int64_t bytes, double time_us);

// Prints "# <title>" and the column headings.
void PrintTableHeader(const std::string& title);
// Prints the row, then a comment line for each failed measurement.
void PrintRow(const Row& row, int ranks);
// "# Avg bus bandwidth" over the rows' measured, error-free columns.
void PrintAverageBusBandwidth(double busbw_sum, int columns);

nlohmann::json RowToJson(const Row& row, int ranks);
// The bus bandwidth of each error-free measurement of the row.
void AccumulateBusBandwidth(const Row& row, int ranks, double* busbw_sum,
                            int* columns);

}  // namespace kolo::bench

#endif  // KOLO_BENCH_REPORT_H_
