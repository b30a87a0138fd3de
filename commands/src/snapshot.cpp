#include <stdexcept>

#include <cauce/commands/snapshot.hpp>

#include "json_fields.hpp"

namespace cauce::commands {
namespace {

constexpr std::string_view kMagic = "CAUCESN1";

class Writer {
 public:
  void raw(std::string_view bytes) { out_.append(bytes); }
  void u64(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void i64(std::int64_t v) {
    u64((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63));
  }
  void flag(bool v) { out_.push_back(v ? '\1' : '\0'); }
  void str(std::string_view v) {
    u64(v.size());
    out_.append(v);
  }
  void opt(const std::optional<std::string>& v) {
    flag(v.has_value());
    if (v) str(*v);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  void expect(std::string_view bytes) {
    if (in_.substr(0, bytes.size()) != bytes) fail("not a snapshot of this format");
    in_.remove_prefix(bytes.size());
  }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (in_.empty()) fail("truncated");
      const auto b = static_cast<unsigned char>(in_.front());
      in_.remove_prefix(1);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("varint too long");
  }
  std::int64_t i64() {
    const auto z = u64();
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  bool flag() {
    const auto v = u64();
    if (v > 1) fail("bad flag");
    return v == 1;
  }
  std::string str() {
    const auto n = u64();
    if (n > in_.size()) fail("string longer than the snapshot");
    std::string v(in_.substr(0, n));
    in_.remove_prefix(n);
    return v;
  }
  std::optional<std::string> opt() {
    if (!flag()) return std::nullopt;
    return str();
  }
  // A count of items that each take at least one byte: never more than what is left.
  std::size_t count() {
    const auto n = u64();
    if (n > in_.size()) fail("count larger than the snapshot");
    return static_cast<std::size_t>(n);
  }
  bool done() const { return in_.empty(); }

  [[noreturn]] static void fail(const std::string& why) {
    throw std::invalid_argument("snapshot: " + why);
  }

 private:
  std::string_view in_;
};

enum Tag : std::uint64_t { kContact = 0, kAlert = 1, kReport = 2, kBackup = 3 };

void write_state(Writer& w, const AggregateState& state) {
  std::visit(
      [&](const auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, contact::State>) {
          w.u64(kContact);
          w.flag(s.exists);
          w.flag(s.archived);
          w.i64(s.version);
          w.str(s.name);
          w.str(s.phone);
          w.opt(s.email);
          w.u64(s.tags.size());
          for (const auto& tag : s.tags) w.str(tag);
          w.opt(s.notes);
          w.opt(s.assigned_to);
          w.i64(s.calls_count);
        } else if constexpr (std::is_same_v<S, alert::State>) {
          w.u64(kAlert);
          w.flag(s.exists);
          w.i64(s.version);
          w.u64(static_cast<std::uint64_t>(s.level));
          w.u64(static_cast<std::uint64_t>(s.status));
        } else {
          w.u64(std::is_same_v<S, report::State> ? kReport : kBackup);
          w.flag(s.exists);
          w.i64(s.version);
        }
      },
      state);
}

AggregateState read_state(Reader& r) {
  switch (r.u64()) {
    case kContact: {
      contact::State s;
      s.exists = r.flag();
      s.archived = r.flag();
      s.version = r.i64();
      s.name = r.str();
      s.phone = r.str();
      s.email = r.opt();
      const auto tags = r.count();
      for (std::size_t i = 0; i < tags; ++i) s.tags.push_back(r.str());
      s.notes = r.opt();
      s.assigned_to = r.opt();
      s.calls_count = static_cast<int>(r.i64());
      return s;
    }
    case kAlert: {
      alert::State s;
      s.exists = r.flag();
      s.version = r.i64();
      const auto level = r.u64();
      if (level < 1 || level > 3) Reader::fail("bad alert level");
      s.level = static_cast<alert::Level>(level);
      const auto status = r.u64();
      if (status > 2) Reader::fail("bad alert status");
      s.status = static_cast<alert::Status>(status);
      return s;
    }
    case kReport: {
      report::State s;
      s.exists = r.flag();
      s.version = r.i64();
      return s;
    }
    case kBackup: {
      backup::State s;
      s.exists = r.flag();
      s.version = r.i64();
      return s;
    }
    default:
      Reader::fail("unknown aggregate tag");
  }
}

}  // namespace

std::string encode_snapshot(const MemoryAggregateStore& store) {
  Writer w;
  w.raw(kMagic);
  w.u64(store.aggregates().size());
  for (const auto& [key, state] : store.aggregates()) {
    w.str(key);
    write_state(w, state);
  }
  w.u64(store.commands().size());
  for (const auto& [id, c] : store.commands()) {
    w.str(id);
    w.str(c.request_hash);
    w.str(c.aggregate_id);
    w.i64(c.version);
    w.str(c.position);
    w.opt(c.call_id);
    w.flag(c.rejection.has_value());
    if (c.rejection) {
      w.str(c.rejection->code);
      w.str(c.rejection->field);
      w.str(c.rejection->message);
    }
  }
  return w.take();
}

std::unique_ptr<MemoryAggregateStore> decode_snapshot(std::string_view bytes) {
  Reader r(bytes);
  r.expect(kMagic);
  auto store = std::make_unique<MemoryAggregateStore>();
  const auto aggregates = r.count();
  for (std::size_t i = 0; i < aggregates; ++i) {
    auto key = r.str();
    store->put(key, read_state(r));
  }
  const auto commands = r.count();
  for (std::size_t i = 0; i < commands; ++i) {
    auto id = r.str();
    AppliedCommand c;
    c.request_hash = r.str();
    c.aggregate_id = r.str();
    c.version = r.i64();
    c.position = r.str();
    c.call_id = r.opt();
    if (r.flag()) {
      Rejection rejection;
      rejection.code = r.str();
      rejection.field = r.str();
      rejection.message = r.str();
      c.rejection = std::move(rejection);
    }
    store->record_command(id, std::move(c));
  }
  if (!r.done()) Reader::fail("bytes after the end");
  return store;
}

std::string to_json(const SnapshotManifest& m) {
  return json::object([&](json::Writer& w) {
    json::field(w, "format", static_cast<std::int64_t>(m.format));
    json::field(w, "chunks", m.chunks);
    json::field(w, "bytes", m.bytes);
    json::field(w, "sha256", m.sha256);
    json::field(w, "events_end", m.events_end);
    json::field(w, "aggregates", m.aggregates);
    json::field(w, "commands", m.commands);
  });
}

SnapshotManifest snapshot_manifest_from_json(std::string_view text) {
  const auto d = json::parse(text);
  const auto number = [&](const char* name) {
    const auto v = json::opt_int(d, name);
    if (!v || *v < 0) throw std::invalid_argument(std::string("manifest: ") + name + " missing");
    return *v;
  };
  SnapshotManifest m;
  m.format = static_cast<int>(number("format"));
  m.chunks = number("chunks");
  m.bytes = number("bytes");
  m.sha256 = json::string(d, "sha256");
  m.events_end = number("events_end");
  m.aggregates = number("aggregates");
  m.commands = number("commands");
  return m;
}

}  // namespace cauce::commands
