#pragma once

// A partition's aggregate state as bytes, so that a processor taking the partition loads it and
// replays only the events after it instead of the whole history (DESIGN §3's snapshots). Pure:
// the processor stores and reads the bytes (processor.cpp).
//
// Format 8 (2 + a contact's claim + an alert's missed deadline, 4; + jobs' status, round and
// attempt and report schedules, 5; + webhooks, 6; + imports, 7; + a backup's copy status and
// copy attempts, 8), little-endian: the magic "CAUCESN8", then the aggregates
// (count, then per aggregate its 16-byte id, its type and the state's fields), then the commands
// (count, then per command its 16-byte id, request digest, version and offset, and for a remembered
// rejection its code, field and message). Integers are LEB128 varints (zigzag for signed) except
// digests, which are 8 fixed bytes; strings are a length and bytes. Decoding checks every length
// against what is left and throws std::invalid_argument on anything it does not expect. A snapshot
// of another format is not read (the processor replays the log instead).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <cauce/commands/handler.hpp>

namespace cauce::commands {

inline constexpr int kSnapshotFormat = 8;

std::string encode_snapshot(const MemoryAggregateStore& store);
std::unique_ptr<MemoryAggregateStore> decode_snapshot(std::string_view bytes);

// What a stored snapshot is: written (as JSON) after its chunks, read first.
struct SnapshotManifest {
  int format = kSnapshotFormat;
  std::int64_t chunks = 0;      // records "<partition>/0" … "<partition>/<chunks-1>"
  std::int64_t bytes = 0;       // their total size
  std::string sha256;           // of their concatenation (hex)
  std::int64_t events_end = 0;  // the offset after the last event the state includes
  std::int64_t aggregates = 0;
  std::int64_t commands = 0;
};

std::string to_json(const SnapshotManifest& manifest);
// Throws std::invalid_argument naming what is wrong.
SnapshotManifest snapshot_manifest_from_json(std::string_view json);

}  // namespace cauce::commands
