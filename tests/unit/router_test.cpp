#include <gtest/gtest.h>

#include <cauce/api/http.hpp>

namespace cauce::api {
namespace {

Response ok(Request&) { return Response(http::status::ok, 11); }

TEST(RouterTest, MatchesLiteralAndParameterSegments) {
  Router router;
  router.add(http::verb::get, "/v1/keys", Role::kAdmin, ok);
  router.add(http::verb::delete_, "/v1/keys/{id}", Role::kAdmin, ok);
  const auto list = router.match(http::verb::get, "/v1/keys?limit=3");
  ASSERT_NE(list.route, nullptr);
  EXPECT_EQ(list.route->pattern, "/v1/keys");
  const auto one = router.match(http::verb::delete_, "/v1/keys/abc123/");
  ASSERT_NE(one.route, nullptr);
  ASSERT_EQ(one.params.size(), 1u);
  EXPECT_EQ(one.params[0].first, "id");
  EXPECT_EQ(one.params[0].second, "abc123");
}

TEST(RouterTest, KnownPathWithOtherMethodListsAllowedMethods) {
  Router router;
  router.add(http::verb::get, "/v1/keys", Role::kAdmin, ok);
  router.add(http::verb::post, "/v1/keys", Role::kAdmin, ok);
  const auto m = router.match(http::verb::put, "/v1/keys");
  EXPECT_EQ(m.route, nullptr);
  EXPECT_EQ(m.allowed, (std::vector<http::verb>{http::verb::get, http::verb::post}));
}

TEST(RouterTest, UnknownPathMatchesNothing) {
  Router router;
  router.add(http::verb::get, "/v1/keys/{id}", Role::kAdmin, ok);
  for (const auto* path : {"/", "/v1", "/v1/keys", "/v1/keys/a/b", "/v2/keys/a"}) {
    const auto m = router.match(http::verb::get, path);
    EXPECT_EQ(m.route, nullptr) << path;
    EXPECT_TRUE(m.allowed.empty()) << path;
  }
}

TEST(RouterTest, TwoParametersAndAPathOfManySegments) {
  Router router;
  router.add(http::verb::get, "/v1/contacts/{id}/calls/{call}", Role::kReader, ok);
  const auto m = router.match(http::verb::get, "/v1/contacts/c1/calls/k2?x=1");
  ASSERT_NE(m.route, nullptr);
  EXPECT_EQ(m.params,
            (std::vector<std::pair<std::string, std::string>>{{"id", "c1"}, {"call", "k2"}}));
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "/v1";
  const auto none = router.match(http::verb::get, deep);
  EXPECT_EQ(none.route, nullptr);
  EXPECT_TRUE(none.allowed.empty());
}

}  // namespace
}  // namespace cauce::api
