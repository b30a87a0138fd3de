#include <cauce/api/pg_api_key_store.hpp>
#include <cauce/core/postgres.hpp>

namespace cauce::api {
namespace {

constexpr const char* kColumns =
    "id, name, role, salt, secret_hash, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
    "to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

ApiKeyRecord to_record(const pqxx::row& row) {
  ApiKeyRecord r;
  r.id = row[0].as<std::string>();
  r.name = row[1].as<std::string>();
  r.role = parse_role(row[2].as<std::string>()).value_or(Role::kReader);
  r.salt = row[3].as<std::string>();
  r.secret_hash = row[4].as<std::string>();
  r.created_at = row[5].as<std::string>();
  if (!row[6].is_null()) r.revoked_at = row[6].as<std::string>();
  return r;
}

std::string insert_row(pqxx::work& w, const ApiKeyRecord& r) {
  return w
      .exec_params1(
          "INSERT INTO api_keys (id, name, role, salt, secret_hash) VALUES ($1,$2,$3,$4,$5) "
          "RETURNING to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
          r.id, r.name, std::string(role_name(r.role)), r.salt, r.secret_hash)[0]
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
