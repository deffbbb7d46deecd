#include "core/config.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(ConfigValues, Durations) {
  EXPECT_EQ(parse_duration("250ms"), Millis(250));
  EXPECT_EQ(parse_duration("2s"), Millis(2000));
  EXPECT_EQ(parse_duration("1m"), Millis(60000));
  EXPECT_EQ(parse_duration("0s"), Millis(0));
  for (const char* bad : {"", "2", "s", "2x", "-1s", "1.5s", " 2s", "2s "})
    EXPECT_FALSE(parse_duration(bad)) << bad;
  EXPECT_EQ(format_duration(Millis(75000)), "75s");
  EXPECT_EQ(format_duration(Millis(250)), "250ms");
}

TEST(ConfigValues, Sizes) {
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("64KiB"), 65536u);
  EXPECT_EQ(parse_size("1MiB"), 1048576u);
  for (const char* bad : {"", "KiB", "1KB", "1 KiB", "-1", "99999999999999999999"})
    EXPECT_FALSE(parse_size(bad)) << bad;
}

TEST(ConfigValues, Addresses) {
  auto a = parse_host_port("127.0.0.1:8080");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 8080);
  auto b = parse_host_port("[::1]:0");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->str(), "[::1]:0");
  auto c = parse_host_port("localhost:4000");
  ASSERT_TRUE(c);
  for (const char* bad : {"", "1.2.3.4", ":80", "host:", "host:99999", "::1:80", "h:8o"})
    EXPECT_FALSE(parse_host_port(bad)) << bad;
}

}  // namespace
}  // namespace sluice
