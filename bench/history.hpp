#pragma once

// A synthetic event history for the benchmarks, produced straight to an events topic the way
// the processor writes it: per contact a registration and `updates` updates, keyed by contact
// id, in version order per partition, with the headers cauce reads back.

#include <cstdint>
#include <string>
#include <vector>

#include <cauce/core/config.hpp>

namespace cauce::bench {

// Returns the events produced; `one_id_per_partition` gets a contact id of each partition.
std::int64_t produce_history(const core::KafkaConfig& kafka, int aggregates, int updates,
                             std::vector<std::string>& one_id_per_partition);

}  // namespace cauce::bench
