#include <atomic>

#include <cauce/api/readiness.hpp>
#include <cauce/commands/processor.hpp>
#include <cauce/core/kafka_admin.hpp>
#include <cauce/core/log.hpp>
#include <cauce/core/postgres.hpp>
#include <cauce/projections/projector.hpp>

namespace cauce::api {
namespace {

// A failed check: a client-safe message for /readyz and the cause for the log.
class CheckFailed : public std::runtime_error {
 public:
  CheckFailed(const std::string& message, std::string cause)
      : std::runtime_error(message), cause_(std::move(cause)) {}
  const std::string& cause() const noexcept { return cause_; }

 private:
  std::string cause_;
};

class PostgresCheck final : public DependencyCheck {
 public:
  explicit PostgresCheck(core::PostgresConfig config) {
    config.connect_timeout_s = 1;
    conninfo_ = core::postgres_conninfo(config) + " options='-c statement_timeout=1000'";
  }
  std::string name() const override { return "postgres"; }
  std::string check() override {
    try {
      if (!connection_) connection_ = core::connect_postgres(conninfo_);
      pqxx::nontransaction n(*connection_);
      n.exec1("SELECT 1");
      return "ok";
    } catch (const core::RefusedError& e) {
      connection_.reset();
      throw CheckFailed("PostgreSQL refused the connection; check " + e.settings(), e.what());
    } catch (const std::exception& e) {
      connection_.reset();
      // The cause (host, port, libpq's reason) goes to the log; /readyz says only this.
      throw CheckFailed("PostgreSQL is unreachable", e.what());
    }
  }

 private:
  std::string conninfo_;
  std::unique_ptr<pqxx::connection> connection_;
};

class KafkaCheck final : public DependencyCheck {
 public:
  explicit KafkaCheck(core::KafkaConfig config)
      : topics_(core::cauce_topics(config)), admin_(std::move(config)) {}
  std::string name() const override { return "kafka"; }
  std::string check() override {
    core::ClusterInfo info;
    try {
      info = admin_.describe(std::chrono::milliseconds(1000));
    } catch (const core::RefusedError& e) {
      throw CheckFailed("Kafka refused the connection; check " + e.settings(), e.what());
    } catch (const std::exception& e) {
      throw CheckFailed("Kafka is unreachable", e.what());
    }
    for (const auto& topic : topics_) {
      if (!info.partitions_by_topic.contains(topic.name)) {
        throw std::runtime_error("topic " + topic.name +
                                 " does not exist; run `cauce topics create`");
      }
    }
    return "ok";
  }

 private:
  std::vector<core::TopicSpec> topics_;
  core::KafkaAdmin admin_;
};

class ProjectionCheck final : public DependencyCheck {
 public:
  ProjectionCheck(const projections::Projector& projector, std::int64_t max_lag)
      : projector_(projector), max_lag_(max_lag) {}
  std::string name() const override { return "projection"; }
  std::string check() override {
    const auto status = projector_.status();
    const auto lag =
        "lag " + std::to_string(status.lag) + " events (bound " + std::to_string(max_lag_) + ")";
    if (!status.postgres_ok) throw std::runtime_error("not projecting: PostgreSQL failed; " + lag);
    if (status.lag > max_lag_) throw std::runtime_error("behind the log: " + lag);
    degraded_ = status.parked > 0;
    if (degraded_) {
      return lag + "; degraded: " + std::to_string(status.parked) +
             " parked events (cauce parked list)";
    }
    return lag;
  }
  bool degraded() const override { return degraded_; }

 private:
  const projections::Projector& projector_;
  std::int64_t max_lag_;
  std::atomic<bool> degraded_{false};
};

class ProcessorCheck final : public DependencyCheck {
 public:
  explicit ProcessorCheck(const commands::CommandProcessor& processor) : processor_(processor) {}
  std::string name() const override { return "processor"; }
  std::string check() override {
    if (!processor_.has_assignment()) {
      throw std::runtime_error("waiting for the consumer group to assign partitions");
    }
    const auto partitions = processor_.status();
    std::size_t ready = 0;
    for (const auto& p : partitions) {
      if (p.fenced) throw std::runtime_error("fenced: another processor took over");
      ready += p.ready ? 1 : 0;
    }
    const auto counts =
        std::to_string(ready) + " of " + std::to_string(partitions.size()) + " partitions ready";
    if (ready < partitions.size()) throw std::runtime_error("rebuilding state: " + counts);
    return counts;
  }

 private:
  const commands::CommandProcessor& processor_;
};

class DataDirCheck final : public DependencyCheck {
 public:
  DataDirCheck(std::filesystem::path dir, std::int64_t min_free_bytes)
      : dir_(std::move(dir)), min_free_bytes_(min_free_bytes) {}
  std::string name() const override { return "data_dir"; }
  std::string check() override {
    std::error_code error;
    const auto space = std::filesystem::space(dir_, error);
    if (error) {
      throw CheckFailed("the data dir's file system cannot be read",
                        dir_.string() + ": " + error.message());
    }
    const auto free =
        std::to_string(space.available) + " bytes free of " + std::to_string(space.capacity);
    degraded_ = space.available < static_cast<std::uintmax_t>(min_free_bytes_);
    if (degraded_) {
      return free + "; degraded: below readiness.min_free_bytes (" +
             std::to_string(min_free_bytes_) + ")";
    }
    return free;
  }
  bool degraded() const override { return degraded_; }

 private:
  std::filesystem::path dir_;
  std::int64_t min_free_bytes_;
  std::atomic<bool> degraded_{false};
};

}  // namespace

std::unique_ptr<DependencyCheck> make_data_dir_check(std::filesystem::path data_dir,
                                                     std::int64_t min_free_bytes) {
  return std::make_unique<DataDirCheck>(std::move(data_dir), min_free_bytes);
}

std::unique_ptr<DependencyCheck> make_processor_check(const commands::CommandProcessor& processor) {
  return std::make_unique<ProcessorCheck>(processor);
}

std::unique_ptr<DependencyCheck> make_projection_check(const projections::Projector& projector,
                                                       std::int64_t max_lag) {
  return std::make_unique<ProjectionCheck>(projector, max_lag);
}

std::unique_ptr<DependencyCheck> make_postgres_check(const core::PostgresConfig& config) {
  return std::make_unique<PostgresCheck>(config);
}

std::unique_ptr<DependencyCheck> make_kafka_check(const core::KafkaConfig& config) {
  return std::make_unique<KafkaCheck>(config);
}

ReadinessProbe::ReadinessProbe(std::vector<std::unique_ptr<DependencyCheck>> checks,
                               std::chrono::milliseconds interval,
                               std::chrono::milliseconds max_age)
    : interval_(interval), max_age_(max_age) {
  for (auto& check : checks) {
    auto slot = std::make_unique<Slot>();
    slot->check = std::move(check);
    slots_.push_back(std::move(slot));
  }
  for (auto& slot : slots_) threads_.emplace_back([this, s = slot.get()] { loop(*s); });
}

ReadinessProbe::~ReadinessProbe() {
  {
    const std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_requested_.notify_all();
  threads_.clear();  // joins
}

void ReadinessProbe::loop(Slot& slot) {
  static const core::Logger log("readiness");
  for (;;) {
    bool ok = true;
    bool degraded = false;
    std::string detail;
    std::string cause;
    try {
      detail = slot.check->check();
      degraded = slot.check->degraded();
    } catch (const CheckFailed& e) {
      ok = false;
      detail = e.what();
      cause = e.cause();
    } catch (const std::exception& e) {
      ok = false;
      detail = e.what();
    }
    std::unique_lock lock(mutex_);
    if (!slot.has_result || slot.ok != ok) {
      const auto name = slot.check->name();
      if (ok) {
        log.info("dependency ready", {{"dependency", name}});
      } else {
        log.warn("dependency not ready",
                 {{"dependency", name}, {"detail", detail}, {"cause", cause}});
      }
    }
    if (ok && degraded != slot.degraded) {
      log.warn(degraded ? "dependency degraded" : "dependency no longer degraded",
               {{"dependency", slot.check->name()}, {"detail", detail}});
    }
    slot.has_result = true;
    slot.ok = ok;
    slot.degraded = ok && degraded;
    slot.detail = std::move(detail);
    slot.at = std::chrono::steady_clock::now();
    if (stop_requested_.wait_for(lock, interval_, [this] { return stopping_; })) return;
  }
}

ReadinessProbe::Report ReadinessProbe::report() const {
  const auto now = std::chrono::steady_clock::now();
  const std::lock_guard lock(mutex_);
  Report report{true, false, stopping_requests_.load(), {}};
  for (const auto& slot : slots_) {
    CheckStatus status{slot->check->name(), slot->ok, slot->degraded, slot->detail, 0};
    if (!slot->has_result) {
      status.ok = false;
      status.detail = "not checked yet";
    } else {
      status.age_s = std::chrono::duration<double>(now - slot->at).count();
      if (now - slot->at > max_age_) {
        status.ok = false;
        status.detail = "no answer for " + std::to_string(static_cast<int>(status.age_s)) + " s";
      }
    }
    report.ready = report.ready && status.ok;
    report.degraded = report.degraded || status.degraded;
    report.checks.push_back(std::move(status));
  }
  if (report.stopping) report.ready = false;
  return report;
}

}  // namespace cauce::api
