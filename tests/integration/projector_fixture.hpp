#pragma once

// A projector on a test's own topics and database, with the migrations applied: the fixture of
// the projector tests (projector_kafka_pg_test, parked_kafka_pg_test).

#include <memory>

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/migrations.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/projector.hpp>

#include "read_models.hpp"

namespace cauce::testing {

class ProjectorFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    core::KafkaAdmin(kafka_).ensure_topics(core::cauce_topics(kafka_), kafka_.partitions, 1);
    auto connection = core::connect_postgres(core::postgres_conninfo(db_.config()));
    core::migrate(*connection, core::parse_migrations(core::embedded_migration_files()));
    projections_.group = unique_name("projector");
    projections_.batch_max = 500;
  }

  std::unique_ptr<projections::Projector> start_projector() {
    auto p = std::make_unique<projections::Projector>(
        projections::ProjectorOptions{
            .kafka = kafka_, .postgres = db_.config(), .projections = projections_, .schema = {}},
        registry_);
    p->start();
    return p;
  }

  // Waits until every record of the log (events and garbage) is behind the checkpoints.
  bool caught_up(std::chrono::milliseconds timeout = 60s) {
    const auto end = log_end_sum(kafka_);
    return eventually([&] { return checkpoint_sum(db_) == end; }, timeout, 100ms);
  }

  TempDatabase db_;
  core::KafkaConfig kafka_ = test_kafka(3);
  core::ProjectionsConfig projections_;
  prometheus::Registry registry_;
};

}  // namespace cauce::testing
