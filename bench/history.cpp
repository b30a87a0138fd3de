#include "history.hpp"

#include <stdexcept>

#include <cauce/commands/envelope.hpp>
#include <cauce/core/kafka_client.hpp>

namespace cauce::bench {

std::int64_t produce_history(const core::KafkaConfig& kafka, int aggregates, int updates,
                             std::vector<std::string>& one_id_per_partition) {
  auto conf = core::kafka_producer_conf(kafka, {{"enable.idempotence", "true"},
                                                {"linger.ms", "20"},
                                                {"batch.size", "1000000"},
                                                {"queue.buffering.max.messages", "1000000"}});
  std::string err;
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf.get(), err));
  if (!producer) throw std::runtime_error(err);
  one_id_per_partition.assign(static_cast<std::size_t>(kafka.partitions), "");
  std::int64_t produced = 0;
  for (int a = 0; a < aggregates; ++a) {
    const auto id = commands::uuid_v7(1'700'000'000'000 + a);
    const auto partition = core::kafka_key_partition(id, kafka.partitions);
    if (one_id_per_partition[static_cast<std::size_t>(partition)].empty()) {
      one_id_per_partition[static_cast<std::size_t>(partition)] = id;
    }
    for (int v = 1; v <= updates + 1; ++v) {
      commands::EventEnvelope e;
      e.event_id = commands::uuid_v7(1'700'000'000'000 + a);
      e.type = v == 1 ? "contact.registered" : "contact.updated";
      e.aggregate_type = "contact";
      e.aggregate_id = id;
      e.version = v;
      e.occurred_at_us = 1'700'000'000'000'000;
      e.command_id = commands::uuid_from_name(id + std::to_string(v));
      e.correlation_id = e.command_id;
      e.causation_id = e.command_id;
      e.actor = "bench";
      e.data = v == 1 ? R"({"name":"Contact","phone":"+442079460958","tags":["vip","north"]})"
                      : R"({"notes":"update )" + std::to_string(v) + R"("})";
      const auto json = commands::to_json(e);
      while (core::kafka_produce(*producer, kafka.events_topic, partition, id, json,
                                 {{commands::header::kRequestHash, e.command_id}}) ==
             RdKafka::ERR__QUEUE_FULL) {
        producer->poll(5);
      }
      ++produced;
    }
  }
  if (producer->flush(120000) != RdKafka::ERR_NO_ERROR) throw std::runtime_error("flush");
  return produced;
}

}  // namespace cauce::bench
