#include "event_log.hpp"

#include <memory>
#include <set>
#include <stdexcept>

#include <librdkafka/rdkafkacpp.h>
#include <rapidjson/document.h>

#include <cauce/commands/schemas.hpp>

#include "fixtures.hpp"

namespace cauce::testing {

std::vector<TopicRecord> read_topic(const core::KafkaConfig& kafka, const std::string& topic) {
  std::string err;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"bootstrap.servers", kafka.bootstrap_servers},
           {"group.id", unique_name("log-reader")},
           {"enable.auto.commit", "false"},
           {"enable.partition.eof", "true"},
           {"isolation.level", "read_committed"}}) {
    if (conf->set(k, v, err) != RdKafka::Conf::CONF_OK) throw std::runtime_error(err);
  }
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) throw std::runtime_error(err);
  std::vector<std::unique_ptr<RdKafka::TopicPartition>> owned;
  std::vector<RdKafka::TopicPartition*> partitions;
  for (int p = 0; p < kafka.partitions; ++p) {
    owned.emplace_back(RdKafka::TopicPartition::create(topic, p, RdKafka::Topic::OFFSET_BEGINNING));
    partitions.push_back(owned.back().get());
  }
  consumer->assign(partitions);
  std::vector<TopicRecord> out;
  std::set<std::int32_t> at_end;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (static_cast<int>(at_end.size()) < kafka.partitions) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error(topic + " could not be read to its end within 60 s");
    }
    const std::unique_ptr<RdKafka::Message> m(consumer->consume(500));
    if (m->err() == RdKafka::ERR__PARTITION_EOF) {
      at_end.insert(m->partition());
      continue;
    }
    if (m->err() != RdKafka::ERR_NO_ERROR) continue;
    at_end.erase(m->partition());
    TopicRecord& r = out.emplace_back();
    r.partition = m->partition();
    r.offset = m->offset();
    if (m->key() != nullptr) r.key = *m->key();
    r.value.assign(static_cast<const char*>(m->payload()), m->len());
    if (auto* headers = m->headers()) {
      for (const auto& h : headers->get_all()) {
        r.headers[h.key()] = std::string(static_cast<const char*>(h.value()), h.value_size());
      }
    }
  }
  consumer->close();
  return out;
}

std::vector<LoggedEvent> read_event_log(const core::KafkaConfig& kafka, bool skip_foreign) {
  std::vector<LoggedEvent> out;
  for (auto& record : read_topic(kafka, kafka.events_topic)) {
    LoggedEvent e;
    try {
      e.envelope = commands::event_from_json(record.value);
    } catch (const std::invalid_argument&) {
      if (skip_foreign) continue;
      throw;
    }
    static_cast<TopicRecord&>(e) = std::move(record);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<std::string> schema_problems(const std::vector<LoggedEvent>& events) {
  const auto& schemas = commands::SchemaRegistry::instance();
  std::vector<std::string> problems;
  for (const auto& e : events) {
    const auto where = std::to_string(e.partition) + ":" + std::to_string(e.offset) + " ";
    if (const auto v = schemas.validate_json("envelope.v1", e.value)) {
      problems.push_back(where + "envelope: " + v->field + ": " + v->message);
    }
    const auto data_schema = e.envelope.type + ".v" + std::to_string(e.envelope.schema_version);
    if (!schemas.contains(data_schema)) {
      problems.push_back(where + "no schema " + data_schema);
    } else if (const auto v = schemas.validate_json(data_schema, e.envelope.data)) {
      problems.push_back(where + data_schema + ": " + v->field + ": " + v->message);
    }
    const auto header = [&](const char* name) {
      const auto it = e.headers.find(name);
      return it == e.headers.end() ? std::string("<absent>") : it->second;
    };
    if (header(commands::header::kType) != e.envelope.type ||
        header(commands::header::kAggregateId) != e.envelope.aggregate_id ||
        header(commands::header::kEventId) != e.envelope.event_id ||
        e.key != e.envelope.aggregate_id) {
      problems.push_back(where + "headers or key disagree with the envelope");
    }
    // The trace: the header is the envelope's trace_parent, both present or both absent.
    const auto trace = e.envelope.trace_parent.empty()
                           ? std::string("<absent>")
                           : std::string(e.envelope.trace_parent.text());
    if (header(commands::header::kTraceParent) != trace) {
      problems.push_back(where + "traceparent header " + header(commands::header::kTraceParent) +
                         " is not the envelope's trace_parent " + trace);
    }
  }
  return problems;
}

std::vector<LoggedEvent> events_of_command(const std::vector<LoggedEvent>& events,
                                           const std::string& command_id) {
  std::vector<LoggedEvent> out;
  for (const auto& e : events) {
    if (e.envelope.command_id == command_id) out.push_back(e);
  }
  return out;
}

}  // namespace cauce::testing
