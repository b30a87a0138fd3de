#include <cstring>
#include <stdexcept>

#include <cauce/commands/snapshot.hpp>

#include "json_fields.hpp"

namespace cauce::commands {
namespace {

constexpr std::string_view kMagic = "CAUCESN8";

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
  void fixed64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>(v >> (8 * i)));
  }
  void uuid(const Uuid& id) {
    out_.append(reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size());
  }
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
  std::uint64_t fixed64() {
    if (in_.size() < 8) fail("truncated");
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(in_[i])} << (8 * i);
    in_.remove_prefix(8);
    return v;
  }
  Uuid uuid() {
    Uuid id;
    if (in_.size() < id.bytes.size()) fail("truncated");
    std::memcpy(id.bytes.data(), in_.data(), id.bytes.size());
    in_.remove_prefix(id.bytes.size());
    return id;
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

void write_state(Writer& w, const AggregateState& state) {
  std::visit(
      [&](const auto& s) {
        using S = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<S, contact::State>) {
          w.flag(s.exists);
          w.flag(s.archived);
          w.i64(s.version);
          w.i64(s.calls_count);
          w.flag(!s.assigned_to.empty());
          if (!s.assigned_to.empty()) w.str(s.assigned_to.view());
          for (const auto d : {s.name, s.phone, s.email, s.tags, s.notes}) w.fixed64(d);
          w.flag(!s.claimed_by.empty());
          if (!s.claimed_by.empty()) {
            w.str(s.claimed_by.view());
            w.i64(s.claimed_until_us);
          }
        } else if constexpr (std::is_same_v<S, alert::State>) {
          w.flag(s.exists);
          w.i64(s.version);
          w.u64(static_cast<std::uint64_t>(s.level));
          w.u64(static_cast<std::uint64_t>(s.status));
          w.flag(s.deadline_missed);
        } else if constexpr (std::is_same_v<S, import::State>) {
          w.flag(s.exists);
          w.i64(s.version);
          w.u64(static_cast<std::uint64_t>(s.status));
        } else if constexpr (std::is_same_v<S, webhook::State>) {
          w.flag(s.exists);
          w.i64(s.version);
          w.u64(static_cast<std::uint64_t>(s.status));
        } else if constexpr (std::is_same_v<S, report_schedule::State>) {
          w.flag(s.exists);
          w.i64(s.version);
          w.u64(static_cast<std::uint64_t>(s.status));
          w.i64(s.revision);
          w.i64(s.last_slot_us);
          w.flag(s.definition != nullptr);
          if (s.definition) {
            const auto& d = *s.definition;
            w.str(d.title);
            w.str(d.source_url);
            w.opt(d.every);
            w.opt(d.cron);
            w.str(d.timezone);
            w.opt(d.source_auth);
          }
        } else {
          // Reports and backups: where the job is, which its workers' next step is decided on.
          w.flag(s.exists);
          w.i64(s.version);
          w.u64(static_cast<std::uint64_t>(s.status));
          w.i64(s.round);
          w.i64(s.attempt);
          if constexpr (std::is_same_v<S, backup::State>) {
            w.u64(static_cast<std::uint64_t>(s.copy));
            w.i64(s.copy_attempts);
          }
        }
      },
      state);
}

template <typename S>
S read_job_state(Reader& r, std::uint64_t statuses) {
  S s;
  s.exists = r.flag();
  s.version = r.i64();
  const auto status = r.u64();
  if (status >= statuses) Reader::fail("bad job status");
  s.status = static_cast<decltype(s.status)>(status);
  s.round = r.i64();
  s.attempt = r.i64();
  return s;
}

AggregateState read_state(Reader& r, AggregateType type) {
  switch (type) {
    case AggregateType::kContact: {
      contact::State s;
      s.exists = r.flag();
      s.archived = r.flag();
      s.version = r.i64();
      s.calls_count = static_cast<std::int32_t>(r.i64());
      if (r.flag()) s.assigned_to = Atom::of(r.str());
      for (auto* d : {&s.name, &s.phone, &s.email, &s.tags, &s.notes}) *d = r.fixed64();
      if (r.flag()) {
        s.claimed_by = Atom::of(r.str());
        s.claimed_until_us = r.i64();
      }
      return s;
    }
    case AggregateType::kAlert: {
      alert::State s;
      s.exists = r.flag();
      s.version = r.i64();
      const auto level = r.u64();
      if (level < 1 || level > 3) Reader::fail("bad alert level");
      s.level = static_cast<alert::Level>(level);
      const auto status = r.u64();
      if (status > 2) Reader::fail("bad alert status");
      s.status = static_cast<alert::Status>(status);
      s.deadline_missed = r.flag();
      return s;
    }
    case AggregateType::kReport:
      return read_job_state<report::State>(r, 6);
    case AggregateType::kBackup: {
      auto s = read_job_state<backup::State>(r, 6);
      const auto copy = r.u64();
      if (copy > 3) Reader::fail("bad backup copy status");
      s.copy = static_cast<backup::CopyStatus>(copy);
      s.copy_attempts = r.i64();
      return s;
    }
    case AggregateType::kReportSchedule: {
      report_schedule::State s;
      s.exists = r.flag();
      s.version = r.i64();
      const auto status = r.u64();
      if (status > 2) Reader::fail("bad report schedule status");
      s.status = static_cast<report_schedule::Status>(status);
      s.revision = r.i64();
      s.last_slot_us = r.i64();
      if (r.flag()) {
        report_schedule::Definition d;
        d.title = r.str();
        d.source_url = r.str();
        d.every = r.opt();
        d.cron = r.opt();
        d.timezone = r.str();
        d.source_auth = r.opt();
        s.definition = std::make_shared<const report_schedule::Definition>(std::move(d));
      }
      return s;
    }
    case AggregateType::kWebhook: {
      webhook::State s;
      s.exists = r.flag();
      s.version = r.i64();
      const auto status = r.u64();
      if (status > 1) Reader::fail("bad webhook status");
      s.status = static_cast<webhook::Status>(status);
      return s;
    }
    case AggregateType::kImport: {
      import::State s;
      s.exists = r.flag();
      s.version = r.i64();
      const auto status = r.u64();
      if (status > static_cast<std::uint64_t>(import::Status::kFailed)) {
        Reader::fail("bad import status");
      }
      s.status = static_cast<import::Status>(status);
      return s;
    }
  }
  Reader::fail("unknown aggregate type");
}

}  // namespace

std::string encode_snapshot(const MemoryAggregateStore& store) {
  Writer w;
  w.raw(kMagic);
  w.u64(store.aggregates().size());
  store.aggregates().for_each([&](const AggregateKey& key, const AggregateState& state) {
    w.uuid(key.id);
    w.u64(static_cast<std::uint64_t>(key.type));
    write_state(w, state);
  });
  w.u64(store.commands().size());
  store.commands().for_each([&](const Uuid& id, const MemoryAggregateStore::CommandRecord& c) {
    w.uuid(id);
    w.fixed64(c.request);
    w.i64(c.version);
    w.i64(c.offset);
    if (c.offset == MemoryAggregateStore::kRejected) {
      const auto* rejection = store.rejections().find(id);
      for (const auto* text : {&rejection->code, &rejection->field, &rejection->message}) {
        w.str(*text);
      }
    }
  });
  return w.take();
}

std::unique_ptr<MemoryAggregateStore> decode_snapshot(std::string_view bytes) {
  Reader r(bytes);
  r.expect(kMagic);
  auto store = std::make_unique<MemoryAggregateStore>();
  const auto aggregates = r.count();
  for (std::size_t i = 0; i < aggregates; ++i) {
    const auto id = r.uuid();
    const auto tag = r.u64();
    if (tag > static_cast<std::uint64_t>(AggregateType::kImport))
      Reader::fail("bad aggregate type");
    const auto type = static_cast<AggregateType>(tag);
    store->put(AggregateKey{id, type}, read_state(r, type));
  }
  const auto commands = r.count();
  for (std::size_t i = 0; i < commands; ++i) {
    const auto id = r.uuid();
    AppliedCommand c;
    c.request = r.fixed64();
    c.version = r.i64();
    c.offset = r.i64();
    if (c.offset < MemoryAggregateStore::kRejected) Reader::fail("bad command offset");
    if (c.offset == MemoryAggregateStore::kRejected)
      c.rejection = Rejection{r.str(), r.str(), r.str()};
    store->record_command(id, c);
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
