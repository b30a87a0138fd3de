// `cauce events tail` and `cauce events dump`: the event log as an operator reads it, one JSON
// line per event, through a plain read_committed consumer (what any analytics client sees).

#include "events_cli.hpp"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <cauce/core/crypto.hpp>
#include <cauce/core/errors.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/kafka_client.hpp>

namespace cauce::api {
namespace {

using Offsets = std::map<std::int32_t, std::int64_t>;

std::unique_ptr<RdKafka::KafkaConsumer> log_reader(const core::KafkaConfig& kafka) {
  // Assigned partitions, never a group's: nothing is committed and no member is disturbed.
  auto conf = core::kafka_conf(kafka, {{"group.id", "cauce-events-cli-" + core::random_hex(4)},
                                       {"enable.auto.commit", "false"},
                                       {"enable.auto.offset.store", "false"},
                                       {"isolation.level", "read_committed"},
                                       {"auto.offset.reset", "earliest"},
                                       {"enable.partition.eof", "true"}});
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!consumer) throw core::DependencyError("kafka", "events consumer: " + err, false);
  return consumer;
}

void assign(RdKafka::KafkaConsumer& consumer, const std::string& topic, const Offsets& from) {
  std::vector<std::unique_ptr<RdKafka::TopicPartition>> owned;
  std::vector<RdKafka::TopicPartition*> list;
  for (const auto& [partition, offset] : from) {
    owned.emplace_back(RdKafka::TopicPartition::create(topic, partition, offset));
    list.push_back(owned.back().get());
  }
  const auto rc = consumer.assign(list);
  if (rc != RdKafka::ERR_NO_ERROR) {
    throw core::DependencyError("kafka", "assign: " + RdKafka::err2str(rc), true);
  }
}

class Printer {
 public:
  Printer(EventFilter filter, bool colour) : filter_(std::move(filter)), colour_(colour) {}

  // Prints the record when it passes the filter; returns whether it did.
  bool print(const RdKafka::Message& m) {
    const auto value = core::kafka_payload(m);
    rapidjson::Document event;
    event.Parse(value.c_str(), value.size());
    const bool is_event = !event.HasParseError() && event.IsObject();
    auto text = [&](const char* name) -> std::string {
      return is_event && event.HasMember(name) && event[name].IsString() ? event[name].GetString()
                                                                         : std::string();
    };
    const auto type = text("type");
    if (!filter_.types.empty() && !filter_.types.contains(type)) return false;
    if (!filter_.aggregate.empty() && text("aggregate_id") != filter_.aggregate) return false;

    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
    const auto position = std::to_string(m.partition()) + ":" + std::to_string(m.offset());
    w.StartObject();
    w.Key("position");
    w.String(position.c_str());
    w.Key("timestamp_ms");
    w.Int64(m.timestamp().timestamp);
    if (is_event) {
      w.Key("event");
      event.Accept(w);  // re-written compact: one line per event whatever the producer wrote
    } else {            // not a cauce event (a foreign producer): shown as it is
      w.Key("record");
      w.String(value.c_str(), static_cast<rapidjson::SizeType>(value.size()));
    }
    w.EndObject();
    if (colour_) {
      std::cout << "\x1b[2m" << position << "\x1b[0m \x1b[36m" << (type.empty() ? "?" : type)
                << "\x1b[0m " << buffer.GetString() << "\n";
    } else {
      std::cout << buffer.GetString() << "\n";
    }
    return true;
  }

 private:
  EventFilter filter_;
  bool colour_;
};

// Timeouts and a broker away for a moment (librdkafka reconnects) are waited out; any other
// error (a partition's offsets gone, no authorisation) ends the command rather than spin.
void check_consumer_error(const RdKafka::Message& m) {
  switch (m.err()) {
    case RdKafka::ERR_NO_ERROR:
    case RdKafka::ERR__TIMED_OUT:
    case RdKafka::ERR__PARTITION_EOF:
    case RdKafka::ERR__TRANSPORT:
    case RdKafka::ERR__ALL_BROKERS_DOWN:
      return;
    default:
      throw core::DependencyError("kafka", "reading the event log: " + m.errstr(), false);
  }
}

int partition_count(const core::KafkaConfig& kafka) {
  const auto info =
      core::KafkaAdmin(kafka).describe(std::chrono::milliseconds(kafka.request_timeout_ms));
  const auto it = info.partitions_by_topic.find(kafka.events_topic);
  if (it == info.partitions_by_topic.end()) {
    throw core::DependencyError("kafka",
                                "the event topic " + kafka.events_topic + " does not exist", false);
  }
  return it->second;
}

}  // namespace

int events_tail(const core::KafkaConfig& kafka, const EventFilter& filter,
                const std::atomic<bool>& stop) {
  const int partitions = partition_count(kafka);
  auto consumer = log_reader(kafka);
  // The ends as they are now, as offsets: every event committed after this line is printed.
  assign(*consumer, kafka.events_topic,
         core::KafkaAdmin(kafka).end_offsets(kafka.events_topic, partitions));
  std::cerr << "tailing " << kafka.events_topic << " (" << partitions
            << " partitions, read_committed); Ctrl-C stops" << std::endl;
  Printer printer(filter, ::isatty(STDOUT_FILENO) != 0);
  while (!stop) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(200));
    if (m->err() == RdKafka::ERR_NO_ERROR && printer.print(*m)) std::cout << std::flush;
    check_consumer_error(*m);
  }
  consumer->close();
  return 0;
}

int events_dump(const core::KafkaConfig& kafka, const EventFilter& filter,
                std::optional<std::chrono::system_clock::time_point> from_time,
                std::optional<std::chrono::system_clock::time_point> to_time,
                const std::atomic<bool>& stop) {
  const int partitions = partition_count(kafka);
  core::KafkaAdmin admin(kafka);
  const auto now = std::chrono::system_clock::now();
  // Each partition from the first record at or after from_time up to (not including) the first
  // at or after to_time; the ends as they are now when no to_time is given.
  Offsets from;  // the log's start (retention may have moved it past 0)
  for (int p = 0; p < partitions; ++p) from[p] = RdKafka::Topic::OFFSET_BEGINNING;
  if (from_time) {
    from = *from_time > now ? admin.end_offsets(kafka.events_topic, partitions)
                            : admin.offsets_for_time(kafka.events_topic, partitions, *from_time);
  }
  const auto until = to_time && *to_time <= now
                         ? admin.offsets_for_time(kafka.events_topic, partitions, *to_time)
                         : admin.end_offsets(kafka.events_topic, partitions);
  Offsets pending;  // partition -> where it stops
  for (const auto& [p, start] : from) {
    if (until.at(p) > std::max<std::int64_t>(start, 0)) pending[p] = until.at(p);
  }
  auto consumer = log_reader(kafka);
  assign(*consumer, kafka.events_topic, from);
  Printer printer(filter, false);
  std::int64_t printed = 0;
  while (!pending.empty() && !stop) {
    std::unique_ptr<RdKafka::Message> m(consumer->consume(500));
    // Errors first: one of the topic or the client as a whole (partition -1) would otherwise be
    // passed by, and a lasting one loop here for ever.
    if (m->err() != RdKafka::ERR_NO_ERROR && m->err() != RdKafka::ERR__PARTITION_EOF) {
      check_consumer_error(*m);
      continue;
    }
    const auto it = pending.find(m->partition());
    if (it == pending.end()) continue;
    if (m->err() == RdKafka::ERR__PARTITION_EOF) {
      pending.erase(it);  // everything committed is read (the rest are markers or still open)
      continue;
    }
    if (m->offset() >= it->second) {
      pending.erase(it);
      continue;
    }
    if (printer.print(*m)) ++printed;
    if (m->offset() + 1 >= it->second) pending.erase(it);
  }
  std::cout << std::flush;
  consumer->close();
  std::cerr << "dumped " << printed << " events" << (stop ? " (interrupted)" : "") << std::endl;
  return stop ? 130 : 0;
}

}  // namespace cauce::api
