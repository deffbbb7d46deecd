// Which requests a listener's maintenance mode refuses: read-only by method and for new
// upgrades, full for everything, exceptions by path prefix and method.
#include "exchange/maintenance_check.h"

#include <gtest/gtest.h>

#include "core/config.h"

namespace sluice {
namespace {

MaintenanceView view(MaintenanceMode mode) {
  MaintenanceView v;
  v.settings.mode = mode;
  v.settings.allow_paths = {MaintenancePath{"/login", {"POST"}}, MaintenancePath{"/health", {}}};
  return v;
}

TEST(MaintenanceCheck, OffRefusesNothing) {
  MaintenanceView v = view(MaintenanceMode::kOff);
  EXPECT_FALSE(check_maintenance(v, "POST", "/orders", false).refuse);
  EXPECT_FALSE(check_maintenance(v, "GET", "/ws", true).refuse);
}

TEST(MaintenanceCheck, ReadOnlyAllowsTheListedMethods) {
  MaintenanceView v = view(MaintenanceMode::kReadOnly);
  for (const char* m : {"GET", "HEAD", "OPTIONS"})
    EXPECT_FALSE(check_maintenance(v, m, "/orders", false).refuse) << m;
  for (const char* m : {"POST", "PUT", "PATCH", "DELETE"}) {
    MaintenanceDecision d = check_maintenance(v, m, "/orders", false);
    EXPECT_TRUE(d.refuse) << m;
    EXPECT_NE(d.why.find(m), std::string::npos) << d.why;
  }
}

TEST(MaintenanceCheck, ReadOnlyRefusesNewUpgradesEvenWithGet) {
  MaintenanceView v = view(MaintenanceMode::kReadOnly);
  MaintenanceDecision d = check_maintenance(v, "GET", "/live/websocket", true);
  EXPECT_TRUE(d.refuse);
  EXPECT_NE(d.why.find("WebSocket"), std::string::npos) << d.why;
}

TEST(MaintenanceCheck, ExceptionsByPrefixAndMethod) {
  for (MaintenanceMode m : {MaintenanceMode::kReadOnly, MaintenanceMode::kFull}) {
    MaintenanceView v = view(m);
    EXPECT_FALSE(check_maintenance(v, "POST", "/login", false).refuse);
    EXPECT_FALSE(check_maintenance(v, "POST", "/login?next=/", false).refuse);
    EXPECT_TRUE(check_maintenance(v, "PUT", "/login", false).refuse);            // POST only
    EXPECT_FALSE(check_maintenance(v, "DELETE", "/health/deep", false).refuse);  // any method
    EXPECT_TRUE(check_maintenance(v, "POST", "/logout", false).refuse);
  }
}

TEST(MaintenanceCheck, FullRefusesEverythingElseAndSaysTheMessage) {
  MaintenanceView v = view(MaintenanceMode::kFull);
  v.settings.message = "back at 14:00 UTC";
  MaintenanceDecision d = check_maintenance(v, "GET", "/", false);
  EXPECT_TRUE(d.refuse);
  EXPECT_NE(d.why.find("back at 14:00 UTC"), std::string::npos) << d.why;
}

TEST(MaintenanceCheck, RetryAfterInWholeSecondsAtLeastOne) {
  MaintenanceView v;
  v.settings.retry_after = Millis(120000);
  EXPECT_EQ(v.retry_after_s(), 120u);
  v.settings.retry_after = Millis(1500);
  EXPECT_EQ(v.retry_after_s(), 2u);
  v.settings.retry_after = Millis(0);
  EXPECT_EQ(v.retry_after_s(), 1u);
}

TEST(MaintenanceCheck, ContentTypeOfACustomBody) {
  MaintenanceSettings s;
  s.body = "<html><body>Down</body></html>";
  EXPECT_EQ(maintenance_content_type(s), "text/html; charset=utf-8");
  s.body = " {\"error\": \"maintenance\"}";
  EXPECT_EQ(maintenance_content_type(s), "application/json");
  s.body = "down";
  EXPECT_EQ(maintenance_content_type(s), "text/plain; charset=utf-8");
  s.content_type = "application/problem+json";
  EXPECT_EQ(maintenance_content_type(s), "application/problem+json");
}

}  // namespace
}  // namespace sluice
