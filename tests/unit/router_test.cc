#include "http/router.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

Config config_with(std::vector<RouteConfig> routes) {
  Config c;
  for (const char* name : {"api", "backoffice", "app", "wild"}) {
    ClusterConfig cl;
    cl.name = name;
    c.clusters.push_back(cl);
  }
  ListenerConfig l;
  l.routes = std::move(routes);
  c.listeners.push_back(l);
  return c;
}

int route(const Router& r, std::string_view host, std::string_view path) {
  std::string buf;
  return r.match(host_without_port(host, buf), path);
}

TEST(Router, FirstMatchWinsOnPrefixAndHost) {
  Config c = config_with({{"", "/api", "api"},
                          {"admin.example.com", "", "backoffice"},
                          {"*.example.com", "/", "wild"},
                          {"", "/", "app"}});
  Router r(c.listeners[0].routes, c);
  EXPECT_EQ(route(r, "x", "/api/users"), 0);
  EXPECT_EQ(route(r, "admin.example.com", "/api"), 0);  // the prefix route comes first
  EXPECT_EQ(route(r, "admin.example.com", "/"), 1);
  EXPECT_EQ(route(r, "Admin.Example.COM:8443", "/x"), 1);  // case and port ignored
  EXPECT_EQ(route(r, "a.example.com", "/x"), 3);
  EXPECT_EQ(route(r, "a.b.example.com", "/x"), 3);
  EXPECT_EQ(route(r, "example.com", "/x"), 2);  // the wildcard needs a label before the suffix
  EXPECT_EQ(route(r, "notexample.com", "/x"), 2);
  EXPECT_EQ(route(r, "", "/x"), 2);
}

TEST(Router, NoMatchIsMinusOne) {
  Config c = config_with({{"api.example.com", "/v1/", "api"}});
  Router r(c.listeners[0].routes, c);
  EXPECT_EQ(route(r, "api.example.com", "/v1/x"), 0);
  EXPECT_EQ(route(r, "api.example.com", "/v2/x"), -1);
  EXPECT_EQ(route(r, "other.example.com", "/v1/x"), -1);
  EXPECT_EQ(route(r, "", "/v1/x"), -1);
  Router empty;
  EXPECT_EQ(route(empty, "a", "/"), -1);
}

TEST(Router, HostWithoutPort) {
  std::string buf;
  EXPECT_EQ(host_without_port("Example.com:80", buf), "example.com");
  EXPECT_EQ(host_without_port("example.com.", buf), "example.com");
  EXPECT_EQ(host_without_port("[::1]:8080", buf), "::1");
  EXPECT_EQ(host_without_port("[::1]", buf), "::1");
  EXPECT_EQ(host_without_port("127.0.0.1", buf), "127.0.0.1");
  EXPECT_EQ(host_without_port("", buf), "");
}

TEST(RequestTarget, OriginAndAbsoluteForms) {
  RequestTarget t;
  ASSERT_TRUE(split_request_target("/a/b?c=d", t));
  EXPECT_FALSE(t.absolute);
  EXPECT_EQ(t.path, "/a/b?c=d");
  ASSERT_TRUE(split_request_target("http://api.example.com:8080/x?y", t));
  EXPECT_TRUE(t.absolute);
  EXPECT_EQ(t.authority, "api.example.com:8080");
  EXPECT_EQ(t.path, "/x?y");
  ASSERT_TRUE(split_request_target("HTTP://Api.Example.com", t));
  EXPECT_EQ(t.authority, "Api.Example.com");
  EXPECT_EQ(t.path, "/");
  ASSERT_TRUE(split_request_target("http://h?q", t));
  EXPECT_EQ(t.authority, "h");
  EXPECT_EQ(t.path, "?q");
  ASSERT_TRUE(split_request_target("*", t));  // OPTIONS *
  EXPECT_EQ(t.path, "*");
  EXPECT_FALSE(split_request_target("https://api.example.com/", t));
  EXPECT_FALSE(split_request_target("http:///x", t));
  EXPECT_FALSE(split_request_target("http://user@host/x", t));
  EXPECT_FALSE(split_request_target("ftp://host/x", t));
  EXPECT_FALSE(split_request_target("host:443", t));  // authority-form (CONNECT)
}

}  // namespace
}  // namespace sluice
