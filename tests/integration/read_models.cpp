#include "read_models.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>

#include <librdkafka/rdkafkacpp.h>
#include <pqxx/pqxx>
#include <rapidjson/document.h>

#include <cauce/commands/envelope.hpp>
#include <cauce/commands/upcast.hpp>
#include <cauce/core/kafka_client.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>

namespace cauce::testing {
namespace {

constexpr std::int64_t kBaseUs = 1'764'000'000'000'000;  // 2025-11-24T16:00:00Z

class Producer {
 public:
  explicit Producer(const core::KafkaConfig& kafka) : topic_(kafka.events_topic) {
    std::string err;
    // Batches compressed as cauce's own producers compress them (kafka.compression, zstd), so
    // the projector and every reader in these tests decompress what production writes.
    auto conf =
        core::kafka_producer_conf(kafka, {{"enable.idempotence", "true"}, {"linger.ms", "5"}});
    producer_.reset(RdKafka::Producer::create(conf.get(), err));
    if (!producer_) throw std::runtime_error(err);
  }
  ~Producer() { producer_->flush(30000); }

  void send(const std::string& key, const std::string& value,
            std::int32_t partition = RdKafka::Topic::PARTITION_UA) {
    for (;;) {
      const auto rc = producer_->produce(topic_, partition, RdKafka::Producer::RK_MSG_COPY,
                                         const_cast<char*>(value.data()), value.size(), key.data(),
                                         key.size(), 0, nullptr);
      if (rc == RdKafka::ERR_NO_ERROR) return;
      if (rc != RdKafka::ERR__QUEUE_FULL) throw std::runtime_error(RdKafka::err2str(rc));
      producer_->poll(50);
    }
  }
  void flush() {
    if (producer_->flush(30000) != RdKafka::ERR_NO_ERROR) {
      throw std::runtime_error("synthetic events not delivered within 30 s");
    }
  }

 private:
  std::string topic_;
  std::unique_ptr<RdKafka::Producer> producer_;
};

// One envelope as the processor would write it (ids derived from the time).
std::string envelope_json(const std::string& aggregate_type, const std::string& aggregate_id,
                          std::int64_t version, const std::string& type, int schema_version,
                          const std::string& data, std::int64_t at_us) {
  commands::EventEnvelope e;
  e.event_id = commands::uuid_v7(at_us / 1000);
  e.type = type;
  e.schema_version = schema_version;
  e.aggregate_type = aggregate_type;
  e.aggregate_id = aggregate_id;
  e.version = version;
  e.occurred_at_us = at_us;
  e.command_id = commands::uuid_v7(at_us / 1000);
  e.correlation_id = "synthetic";
  e.causation_id = e.command_id;
  e.actor = "test";
  e.data = data;
  return commands::to_json(e);
}

// Envelopes for one aggregate, versions 1, 2, ...
class Aggregate {
 public:
  Aggregate(std::string type, std::string id) : type_(std::move(type)), id_(std::move(id)) {}
  std::string next(const std::string& event_type, int schema_version, const std::string& data,
                   std::int64_t at_us) {
    return envelope_json(type_, id_, ++version_, event_type, schema_version, data, at_us);
  }
  const std::string& id() const { return id_; }

 private:
  std::string type_;
  std::string id_;
  std::int64_t version_ = 0;
};

std::string json_string(const rapidjson::Value& d, const char* key) {
  const auto it = d.FindMember(key);
  return it == d.MemberEnd() || !it->value.IsString() ? "" : it->value.GetString();
}

std::vector<std::string> query_lines(const TempDatabase& db, const std::string& sql) {
  auto connection = core::connect_postgres(core::postgres_conninfo(db.config()));
  pqxx::nontransaction n(*connection);
  std::vector<std::string> out;
  for (const auto& row : n.exec(sql)) out.push_back(row[0].as<std::string>());
  return out;
}

const char* const kUtc = R"('YYYY-MM-DD"T"HH24:MI:SS.US"Z"')";

}  // namespace

std::size_t write_synthetic_log(const core::KafkaConfig& kafka, const SyntheticLog& log) {
  Producer producer(kafka);
  std::size_t written = 0;
  std::int64_t at = kBaseUs;
  for (int c = 0; c < log.contacts; ++c) {
    Aggregate contact("contact", commands::uuid_v7(at / 1000));
    const auto name = "Contact " + std::to_string(c);
    producer.send(contact.id(),
                  contact.next("contact.registered", 1,
                               R"({"name":")" + name + R"(","phone":"+35191234)" +
                                   std::to_string(1000 + c % 9000) + R"(","tags":["t)" +
                                   std::to_string(c % 3) + R"("]})",
                               at += 1000));
    ++written;
    for (int k = 0; k < log.calls_per_contact; ++k) {
      const auto call_id = commands::uuid_v7(at / 1000);
      const auto called = at + 500;
      const bool v1 = k % 2 == 1;
      const auto when = v1 ? R"("called_at_us":)" + std::to_string(called)
                           : R"("called_at":")" + core::format_utc_micros(called) + "\"";
      producer.send(
          contact.id(),
          contact.next("contact.call_logged", v1 ? 1 : 2,
                       R"({"call_id":")" + call_id + R"(","outcome":"answered",)" +
                           R"("duration_s":)" + std::to_string(10 + k) + R"(,"operator":"op)" +
                           std::to_string(k % 4) + "\"," + when + "}",
                       at += 1000));
      ++written;
    }
    if (c % 2 == 0) {
      producer.send(contact.id(),
                    contact.next("contact.assigned", 1, R"({"operator":"op1"})", at += 1000));
      ++written;
    }
    if (c % 5 == 0) {
      producer.send(
          contact.id(),
          contact.next("contact.updated", 1, R"({"name":")" + name + " (updated)\"}", at += 1000));
      producer.send(contact.id(), contact.next("contact.archived", 1, "{}", at += 1000));
      written += 2;
    }
  }
  for (int a = 0; a < log.alerts; ++a) {
    Aggregate alert("alert", commands::uuid_v7(at / 1000));
    producer.send(alert.id(), alert.next("alert.raised", 1,
                                         R"({"level":"info","title":"Alert )" + std::to_string(a) +
                                             R"(","region":"eu"})",
                                         at += 1000));
    producer.send(alert.id(), alert.next("alert.escalated", 1, R"({"from":"info","to":"critical"})",
                                         at += 1000));
    written += 2;
    if (a % 2 == 0) {
      producer.send(alert.id(), alert.next("alert.acknowledged", 1, "{}", at += 1000));
      producer.send(alert.id(),
                    alert.next("alert.closed", 1, R"({"resolution":"fixed"})", at += 1000));
      written += 2;
    }
  }
  for (int g = 0; g < log.garbage; ++g) {
    producer.send("garbage-" + std::to_string(g), g % 2 ? "not json" : R"({"type":"x"})");
  }
  producer.flush();
  return written;
}

void write_again(const core::KafkaConfig& kafka, const std::vector<LoggedEvent>& records) {
  Producer producer(kafka);
  for (const auto& r : records) producer.send(r.key, r.value);
  producer.flush();
}

std::string synthetic_envelope(const std::string& aggregate_type, const std::string& aggregate_id,
                               std::int64_t version, const std::string& type, int schema_version,
                               const std::string& data, const std::string& occurred_at) {
  auto json = envelope_json(aggregate_type, aggregate_id, version, type, schema_version, data,
                            kBaseUs + version * 1000);
  if (!occurred_at.empty()) {  // a time the envelope's pattern allows but PostgreSQL may not
    const auto field = std::string(R"("occurred_at":")");
    const auto start = json.find(field) + field.size();
    json.replace(start, json.find('"', start) - start, occurred_at);
  }
  return json;
}

void write_records(const core::KafkaConfig& kafka,
                   const std::vector<std::pair<std::string, std::string>>& records) {
  Producer producer(kafka);
  for (const auto& [key, value] : records) producer.send(key, value);
  producer.flush();
}

void write_records_on_cauce_partitions(
    const core::KafkaConfig& kafka,
    const std::vector<std::pair<std::string, std::string>>& records) {
  Producer producer(kafka);
  for (const auto& [key, value] : records) {
    producer.send(key, value, core::kafka_key_partition(key, kafka.partitions));
  }
  producer.flush();
}

std::string without_lines(const std::string& text, const std::string& prefix) {
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\n', start);
    const auto line = text.substr(start, end == std::string::npos ? end : end - start + 1);
    if (!line.starts_with(prefix)) out += line;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::string reference_fold(const std::vector<LoggedEvent>& events) {
  struct Contact {
    std::int64_t version = 0;
    std::string status = "active", name, assigned = "-", last_call = "-";
    int calls = 0;
  };
  struct Alert {
    std::int64_t version = 0;
    std::string state, level;
  };
  std::map<std::string, Contact> contacts;
  std::map<std::string, Alert> alerts;
  std::vector<std::string> lines;
  for (const auto& logged : events) {
    auto e = logged.envelope;
    commands::upcast(e);
    rapidjson::Document d;
    d.Parse(e.data.c_str());
    if (e.aggregate_type == "contact") {
      auto& c = contacts[e.aggregate_id];
      c.version = e.version;
      if (e.type == "contact.registered" || (e.type == "contact.updated" && d.HasMember("name"))) {
        c.name = json_string(d, "name");
      } else if (e.type == "contact.call_logged") {
        ++c.calls;
        c.last_call = std::max(c.last_call == "-" ? "" : c.last_call, json_string(d, "called_at"));
        lines.push_back("call " + json_string(d, "call_id") + " " + e.aggregate_id + " " +
                        json_string(d, "outcome") + " " +
                        std::to_string(d["duration_s"].GetInt64()) + " " +
                        json_string(d, "called_at"));
      } else if (e.type == "contact.assigned") {
        c.assigned = json_string(d, "operator");
      } else if (e.type == "contact.archived") {
        c.status = "archived";
      }
    } else if (e.aggregate_type == "alert") {
      auto& a = alerts[e.aggregate_id];
      a.version = e.version;
      if (e.type == "alert.raised") {
        a.state = "open";
        a.level = json_string(d, "level");
      } else if (e.type == "alert.acknowledged") {
        a.state = "acknowledged";
      } else if (e.type == "alert.escalated") {
        a.level = json_string(d, "to");
      } else if (e.type == "alert.closed") {
        a.state = "closed";
      }
    }
  }
  for (const auto& [id, c] : contacts) {
    lines.push_back("contact " + id + " v" + std::to_string(c.version) + " " + c.status +
                    " calls=" + std::to_string(c.calls) + " assigned=" + c.assigned +
                    " name=" + c.name + " last_call=" + c.last_call);
  }
  for (const auto& [id, a] : alerts) {
    lines.push_back("alert " + id + " v" + std::to_string(a.version) + " " + a.state + " " +
                    a.level);
  }
  lines.push_back("events=" + std::to_string(events.size()));
  lines.push_back("notifications=" + std::to_string(events.size()));
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::string read_models_text(const TempDatabase& db) {
  std::vector<std::string> lines;
  auto add = [&](const std::string& sql) {
    for (auto& l : query_lines(db, sql)) lines.push_back(std::move(l));
  };
  add(std::string("SELECT format('contact %s v%s %s calls=%s assigned=%s name=%s last_call=%s', "
                  "id, version, status, calls_count, coalesce(assigned_to, '-'), name, "
                  "coalesce(to_char(last_call_at AT TIME ZONE 'UTC', ") +
      kUtc + "), '-')) FROM contacts");
  add(std::string("SELECT format('call %s %s %s %s %s', call_id, contact_id, outcome, "
                  "duration_s, to_char(occurred_at AT TIME ZONE 'UTC', ") +
      kUtc + ")) FROM calls");
  add("SELECT format('alert %s v%s %s %s', id, version, state, level) FROM alerts");
  add("SELECT 'events=' || count(*) FROM events");
  add("SELECT 'notifications=' || count(*) FROM notifications");
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

std::int64_t checkpoint_sum(const TempDatabase& db) {
  const auto v = db.query_value("SELECT coalesce(sum(next_offset), 0) FROM projection_checkpoints");
  return v.empty() ? 0 : std::stoll(v);
}

std::int64_t row_count(const TempDatabase& db, const std::string& table) {
  return std::stoll(db.query_value("SELECT count(*) FROM " + table));
}

std::int64_t log_end_sum(const core::KafkaConfig& kafka) {
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  conf->set("bootstrap.servers", kafka.bootstrap_servers, err);
  std::unique_ptr<RdKafka::Producer> client(RdKafka::Producer::create(conf.get(), err));
  if (!client) throw std::runtime_error(err);
  std::int64_t sum = 0;
  for (int p = 0; p < kafka.partitions; ++p) {
    std::int64_t low = 0;
    std::int64_t high = 0;
    const auto rc = client->query_watermark_offsets(kafka.events_topic, p, &low, &high, 10000);
    if (rc != RdKafka::ERR_NO_ERROR) throw std::runtime_error(RdKafka::err2str(rc));
    sum += high;
  }
  return sum;
}

}  // namespace cauce::testing
