#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cauce/api/pg_api_key_store.hpp>
#include <cauce/core/postgres.hpp>

namespace cauce::api {
namespace {

constexpr const char* kColumns =
    "id, name, role, salt, secret_hash, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), coalesce(actor, "
    "name), "
    "array_to_json(topics)::text, array_to_json(regions)::text";

// A JSON array of strings (array_to_json of a text[]) -> its set; NULL -> nullopt.
std::optional<std::set<std::string>> name_set(const pqxx::field& field) {
  if (field.is_null()) return std::nullopt;
  rapidjson::Document d;
  d.Parse(field.c_str());
  std::set<std::string> out;
  if (d.IsArray()) {
    for (const auto& v : d.GetArray()) {
      if (v.IsString()) out.emplace(v.GetString(), v.GetStringLength());
    }
  }
  return out;
}

// A set -> a JSON array for `$n::jsonb` (NULL for nullopt, turned into text[] in SQL).
std::optional<std::string> json_array(const std::optional<std::set<std::string>>& names) {
  if (!names) return std::nullopt;
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartArray();
  for (const auto& n : *names) w.String(n.c_str(), static_cast<rapidjson::SizeType>(n.size()));
  w.EndArray();
  return std::string(buffer.GetString(), buffer.GetSize());
}

ApiKeyRecord to_record(const pqxx::row& row) {
  ApiKeyRecord r;
  r.id = row[0].as<std::string>();
  r.name = row[1].as<std::string>();
  r.role = parse_role(row[2].as<std::string>()).value_or(Role::kReader);
  r.salt = row[3].as<std::string>();
  r.secret_hash = row[4].as<std::string>();
  r.created_at = row[5].as<std::string>();
  if (!row[6].is_null()) r.revoked_at = row[6].as<std::string>();
  r.actor = row[7].as<std::string>();
  r.scope.topics = name_set(row[8]);
  r.scope.regions = name_set(row[9]);
  return r;
}

std::string insert_row(pqxx::work& w, const ApiKeyRecord& r) {
  return w
      .exec_params1(
          "INSERT INTO api_keys (id, name, role, salt, secret_hash, actor, topics, regions) "
          "VALUES ($1, $2, $3, $4, $5, $6, "
          "  CASE WHEN $7::jsonb IS NOT NULL THEN ARRAY(SELECT jsonb_array_elements_text($7)) END, "
          "  CASE WHEN $8::jsonb IS NOT NULL THEN ARRAY(SELECT jsonb_array_elements_text($8)) END) "
          "RETURNING to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
          r.id, r.name, std::string(role_name(r.role)), r.salt, r.secret_hash, r.actor,
          json_array(r.scope.topics), json_array(r.scope.regions))[0]
      .as<std::string>();
}

}  // namespace

std::string PgApiKeyStore::insert(const ApiKeyRecord& record) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::work w(c);
    auto created_at = insert_row(w, record);
    w.commit();
    return created_at;
  });
}

bool PgApiKeyStore::insert_if_none_active(const ApiKeyRecord& record) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::work w(c);
    // Serialises concurrent first starts: only one of them creates the admin key.
    w.exec("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE");
    if (w.exec1("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")[0].as<long>() > 0) {
      return false;
    }
    insert_row(w, record);
    w.commit();
    return true;
  });
}

std::optional<ApiKeyRecord> PgApiKeyStore::find(const std::string& id) {
  return pool_.with_connection([&](pqxx::connection& c) -> std::optional<ApiKeyRecord> {
    pqxx::read_transaction r(c);
    const auto rows =
        r.exec_params(std::string("SELECT ") + kColumns + " FROM api_keys WHERE id = $1", id);
    if (rows.empty()) return std::nullopt;
    return to_record(rows[0]);
  });
}

std::vector<ApiKeyRecord> PgApiKeyStore::list() {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::read_transaction r(c);
    std::vector<ApiKeyRecord> out;
    for (const auto& row :
         r.exec(std::string("SELECT ") + kColumns + " FROM api_keys ORDER BY created_at, id")) {
      out.push_back(to_record(row));
    }
    return out;
  });
}

bool PgApiKeyStore::revoke(const std::string& id) {
  return pool_.with_connection([&](pqxx::connection& c) {
    pqxx::work w(c);
    const auto rows = w.exec_params(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", id);
    w.commit();
    return rows.affected_rows() == 1;
  });
}

}  // namespace cauce::api
