// The access log's lines: every field in JSON (escaped so that any bytes give valid JSON) and
// in text (one line whatever the bytes), written by the sink's thread.
#include "core/access_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace sluice {
namespace {

// Appends the entries through a real sink into a pipe; returns what was written.
std::string render(const std::vector<AccessLogEntry>& entries, LogFormat format, bool colour) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  std::string out;
  {
    AccessLogSink sink(fds[1]);
    Counter dropped;
    {
      AccessLog log(&sink, dropped);
      for (const AccessLogEntry& e : entries) log.append(e, format, colour);
    }  // its destructor hands the lines over
    EXPECT_EQ(dropped.get(), 0u);
  }  // the sink's thread writes everything before it ends
  close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  return out;
}

AccessLogEntry sample() {
  AccessLogEntry e;
  e.listener = "ingress";
  e.client = "10.0.0.7";
  e.method = "GET";
  e.target = "/api/items?x=1";
  e.host = "app.example.com";
  e.status = 200;
  e.bytes_in = 12;
  e.bytes_out = 3456;
  e.duration_us = 12345;
  e.upstream_us = 2005;
  e.cluster = "app";
  e.upstream = "127.0.0.1:4000";
  e.reused = true;
  e.request_id = "0123456789abcdef";
  e.protocol = "HTTP/1.1";
  return e;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(AccessLog, JsonLineHasEveryField) {
  const std::string out = render({sample()}, LogFormat::kJson, false);
  ASSERT_EQ(lines(out).size(), 1u) << out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["listener"], "ingress");
  EXPECT_EQ(j["client"], "10.0.0.7");
  EXPECT_EQ(j["method"], "GET");
  EXPECT_EQ(j["path"], "/api/items?x=1");
  EXPECT_EQ(j["host"], "app.example.com");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["bytes_in"], 12);
  EXPECT_EQ(j["bytes_out"], 3456);
  EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 12.345);
  EXPECT_DOUBLE_EQ(j["upstream_duration_ms"].get<double>(), 2.005);
  EXPECT_EQ(j["cluster"], "app");
  EXPECT_EQ(j["upstream"], "127.0.0.1:4000");
  EXPECT_EQ(j["reused"], true);
  EXPECT_EQ(j["request_id"], "0123456789abcdef");
  EXPECT_EQ(j["protocol"], "HTTP/1.1");
  EXPECT_TRUE(j["reason"].is_null());
  const std::string t = j["time"];
  ASSERT_EQ(t.size(), 24u) << t;  // 2026-12-01T18:25:38.246Z
  EXPECT_EQ(t[10], 'T');
  EXPECT_EQ(t.back(), 'Z');
}

TEST(AccessLog, JsonEscapesAnyBytes) {
  AccessLogEntry e = sample();
  const std::string nasty = std::string("/a\"b\\c\x01\x7f\n\t") + "\xc3\xa9";
  e.target = nasty;
  const std::string quotes(2000, '"');  // the worst case: every byte escaped
  e.host = quotes;
  e.upstream_us = 0;
  e.reused = false;
  e.cluster = std::string_view();  // no data pointer at all, as an unset field
  const std::string out = render({e, sample()}, LogFormat::kJson, false);
  auto ls = lines(out);
  ASSERT_EQ(ls.size(), 2u) << out;
  auto j = nlohmann::json::parse(ls[0]);
  EXPECT_EQ(j["path"], nasty);
  EXPECT_EQ(j["host"], quotes);
  EXPECT_TRUE(j["upstream_duration_ms"].is_null());
  EXPECT_EQ(j["reused"], false);
  EXPECT_EQ(j["cluster"], "");
  EXPECT_EQ(nlohmann::json::parse(ls[1])["path"], "/api/items?x=1");
}

// The escaping looks at eight bytes at a time: every byte that needs escaping, at every place
// in a word and across word boundaries, comes back as it was.
TEST(AccessLog, JsonEscapesEveryByteAtEveryPlaceInAWord) {
  const std::string specials = std::string("\0\x01\x1f\"\\\x7f", 6);
  for (char c : specials) {
    for (size_t at = 0; at < 24; ++at) {
      // 'a's with the byte at `at`, and a UTF-8 "é" (bytes from 0x80 pass as they are) away
      // from it.
      std::string target;
      for (size_t i = 0; i < 24; ++i) target.push_back(i == at ? c : 'a');
      target += at < 12 ? "\xc3\xa9" : "";
      if (at >= 12) target = "\xc3\xa9" + target;
      AccessLogEntry e = sample();
      e.target = target;
      const std::string out = render({e}, LogFormat::kJson, false);
      EXPECT_EQ(nlohmann::json::parse(out)["path"], target)
          << "byte " << int(static_cast<unsigned char>(c)) << " at " << at;
    }
  }
  AccessLogEntry e = sample();
  e.target = "/plain/path/of/forty/bytes/0123456789ab";  // whole words, nothing escaped
  EXPECT_NE(render({e}, LogFormat::kJson, false).find("\"path\":\"" + std::string(e.target) + "\""),
            std::string::npos);
}

TEST(AccessLog, ReasonSaysWhySluiceRefused) {
  AccessLogEntry e = sample();
  e.status = 429;
  e.protocol = "HTTP/2";
  e.reason = "rate_limited:api";
  auto j = nlohmann::json::parse(render({e}, LogFormat::kJson, false));
  EXPECT_EQ(j["protocol"], "HTTP/2");
  EXPECT_EQ(j["reason"], "rate_limited:api");
  const std::string text = render({e}, LogFormat::kText, false);
  EXPECT_NE(text.find(" HTTP/2\" 429 "), std::string::npos) << text;
  EXPECT_NE(text.find(" id=0123456789abcdef reason=rate_limited:api\n"), std::string::npos) << text;
}

TEST(AccessLog, TextLineIsOneLine) {
  AccessLogEntry e = sample();
  e.target = "/x\ny\x01";
  e.status = 503;
  e.cluster = "";
  e.upstream_us = 0;
  const std::string out = render({e}, LogFormat::kText, false);
  ASSERT_EQ(lines(out).size(), 1u) << out;
  EXPECT_NE(out.find(" ingress 10.0.0.7 \"GET app.example.com/x\\x0ay\\x01 HTTP/1.1\" 503 in=12 "
                     "out=3456 12.345ms upstream=- - 127.0.0.1:4000 reused "
                     "id=0123456789abcdef\n"),
            std::string::npos)
      << out;
  const std::string coloured = render({e}, LogFormat::kText, true);
  EXPECT_NE(coloured.find("\" \x1b[31m"
                          "503\x1b[0m in="),
            std::string::npos)
      << coloured;
}

}  // namespace
}  // namespace sluice
