#include <cauce/projections/parked_events.hpp>

#include "pg_projection.hpp"

namespace cauce::projections {

ParkedEvents::ParkedEvents(std::string conninfo, std::string projection, std::string topic)
    : projection_store_(std::make_unique<PgProjection>(std::move(conninfo), std::move(projection),
                                                       std::move(topic))) {}

ParkedEvents::~ParkedEvents() = default;

std::vector<ParkedEvent> ParkedEvents::list(bool all, std::int64_t after_id, int limit) {
  const std::lock_guard lock(mutex_);
  return projection_store_->list_parked(all, after_id, limit);
}

std::optional<ParkedEvent> ParkedEvents::get(std::int64_t id) {
  const std::lock_guard lock(mutex_);
  auto rows = projection_store_->list_parked(true, 0, 1, id);
  if (rows.empty()) return std::nullopt;
  return std::move(rows.front());
}

std::int64_t ParkedEvents::open_count() {
  const std::lock_guard lock(mutex_);
  return projection_store_->open_parked();
}

RetryResult ParkedEvents::retry(std::int64_t id, const std::string& actor) {
  const std::lock_guard lock(mutex_);
  return projection_store_->retry_parked(id, actor);
}

bool ParkedEvents::skip(std::int64_t id, const std::string& actor) {
  const std::lock_guard lock(mutex_);
  return projection_store_->skip_parked(id, actor);
}

}  // namespace cauce::projections
