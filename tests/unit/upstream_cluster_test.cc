// UpstreamCluster on a real loop: load balancing (round robin, least request), passive outlier
// ejection after refused connects, and address changes that keep, add and retire pools.
#include "upstream/upstream_cluster.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <vector>

#include "core/loop_context.h"
#include "net/listener.h"

namespace sluice {
namespace {

UpstreamAddress address(uint16_t port) {
  UpstreamAddress a;
  EXPECT_EQ(uv_ip4_addr("127.0.0.1", port, reinterpret_cast<sockaddr_in*>(&a.address)), 0);
  a.endpoint = a.name = "127.0.0.1:" + std::to_string(port);
  return a;
}

// Waits for a connection and gives it straight back (or records the failure).
class Client final : public PoolClient {
 public:
  explicit Client(UpstreamPool& pool) : pool_(pool) {}
  void on_pool_ready(UpstreamSide* side) override {
    ++ready;
    pool_.release(static_cast<UpstreamConnection*>(side));
  }
  void on_pool_failure(PoolFailure f) override { failures.push_back(f); }
  int ready = 0;
  std::vector<PoolFailure> failures;

 private:
  UpstreamPool& pool_;
};

class UpstreamClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ctx_.start_deferred();
  }
  void TearDown() override {
    cluster_.reset();
    for (int fd : fds_) ::close(fd);
    uv_run(&loop_, UV_RUN_DEFAULT);  // close callbacks, then the deferred deletions
    ctx_.stop_deferred();
    uv_run(&loop_, UV_RUN_DEFAULT);
    clients_.clear();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  void make_cluster(LoadBalancing lb, const AddressList& addresses) {
    config_ = std::make_shared<ClusterConfig>();
    config_->load_balancing = lb;
    config_->outlier.consecutive_failures = 2;
    config_->outlier.base_ejection = Millis(60000);
    config_->outlier.max_ejection = Millis(120000);
    cluster_ = std::make_unique<UpstreamCluster>(ctx_, config_, stats_);
    cluster_->set_addresses(addresses);
  }

  // A port nothing listens on: connects are refused.
  uint16_t closed_port() {
    std::string error;
    int fd = open_listen_socket(HostPort{"127.0.0.1", 0}, false, error);
    uint16_t port = static_cast<uint16_t>(bound_port(fd));
    ::close(fd);
    return port;
  }
  // A port that accepts (the kernel completes handshakes into the backlog).
  uint16_t open_port() {
    std::string error;
    int fd = open_listen_socket(HostPort{"127.0.0.1", 0}, false, error);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::listen(fd, 64), 0);
    fds_.push_back(fd);
    return static_cast<uint16_t>(bound_port(fd));
  }

  Client& client(UpstreamPool& pool) {
    clients_.push_back(std::make_unique<Client>(pool));
    return *clients_.back();
  }
  // Acquire on `pool`; the loop runs until the attempt has an outcome.
  void attempt(UpstreamPool& pool) {
    Client& c = client(pool);
    UpstreamConnection* conn = nullptr;
    PoolFailure f;
    switch (pool.acquire(&c, false, &conn, &f)) {
      case UpstreamPool::Acquire::kReady:
        pool.release(conn);
        return;
      case UpstreamPool::Acquire::kFailed:
        c.failures.push_back(f);
        return;
      case UpstreamPool::Acquire::kQueued:
        break;
    }
    while (c.ready == 0 && c.failures.empty()) uv_run(&loop_, UV_RUN_ONCE);
  }
  // A connection that opens with nobody waiting for it any more goes idle in the pool.
  void warm(UpstreamPool& pool) {
    Client& c = client(pool);
    UpstreamConnection* conn = nullptr;
    PoolFailure f;
    ASSERT_EQ(pool.acquire(&c, false, &conn, &f), UpstreamPool::Acquire::kQueued);
    pool.cancel(&c);
    while (pool.connecting_count()) uv_run(&loop_, UV_RUN_ONCE);
  }

  uv_loop_t loop_;
  LoopContext ctx_{&loop_, 42};
  std::shared_ptr<ClusterConfig> config_;
  ClusterStats stats_;
  std::unique_ptr<UpstreamCluster> cluster_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::vector<int> fds_;
};

TEST_F(UpstreamClusterTest, RoundRobinVisitsEveryAddressInTurnAndSkipsTheExcludedOne) {
  make_cluster(LoadBalancing::kRoundRobin, {address(1001), address(1002), address(1003)});
  std::vector<UpstreamPool*> order;
  for (int i = 0; i < 6; ++i) order.push_back(cluster_->pick());
  EXPECT_EQ(std::set<UpstreamPool*>(order.begin(), order.end()).size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(order[i], order[i + 3]);
  UpstreamPool* excluded = cluster_->pools()[0].get();
  for (int i = 0; i < 6; ++i) EXPECT_NE(cluster_->pick(excluded), excluded);
}

TEST_F(UpstreamClusterTest, NoAddressMeansNoPool) {
  make_cluster(LoadBalancing::kRoundRobin, {});
  EXPECT_EQ(cluster_->pick(), nullptr);
  cluster_->set_addresses({address(1001)});
  ASSERT_NE(cluster_->pick(), nullptr);
  // The only address is returned even when excluded: there is nothing else to try.
  EXPECT_EQ(cluster_->pick(cluster_->pools()[0].get()), cluster_->pools()[0].get());
}

TEST_F(UpstreamClusterTest, LeastRequestPicksTheLessLoadedAddress) {
  make_cluster(LoadBalancing::kLeastRequest, {address(open_port()), address(open_port())});
  UpstreamPool& busy = *cluster_->pools()[0];
  // A request waiting for a connection (the loop is not run: it stays connecting).
  Client& c = client(busy);
  UpstreamConnection* conn = nullptr;
  PoolFailure f;
  ASSERT_EQ(busy.acquire(&c, false, &conn, &f), UpstreamPool::Acquire::kQueued);
  EXPECT_EQ(busy.load(), 2u);  // connecting + waiting
  for (int i = 0; i < 20; ++i) EXPECT_EQ(cluster_->pick(), cluster_->pools()[1].get());
  busy.cancel(&c);
  std::set<UpstreamPool*> seen;
  for (int i = 0; i < 50; ++i) seen.insert(cluster_->pick());
  // Equal load again: a connection is still opening on the first, so the second is preferred
  // until it finishes; run the loop to let it complete and go idle.
  while (busy.connecting_count()) uv_run(&loop_, UV_RUN_ONCE);
  seen.clear();
  for (int i = 0; i < 50; ++i) seen.insert(cluster_->pick());
  EXPECT_EQ(seen.size(), 2u);  // both get requests when neither is busier
}

TEST_F(UpstreamClusterTest, RefusedConnectsEjectAnAddressUntilAllAreEjected) {
  uint16_t dead = closed_port();
  make_cluster(LoadBalancing::kRoundRobin, {address(dead), address(open_port())});
  UpstreamPool& bad = *cluster_->pools()[0];
  UpstreamPool& good = *cluster_->pools()[1];
  attempt(bad);
  EXPECT_FALSE(bad.ejected(ctx_.now_ms()));  // one failure of the two needed
  attempt(bad);
  EXPECT_TRUE(bad.ejected(ctx_.now_ms()));
  EXPECT_EQ(stats_.ejections.get(), 1u);
  EXPECT_EQ(stats_.connect_failures.get(), 2u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(cluster_->pick(), &good);
  // Excluding the good one leaves only ejected addresses: the least-ejected is still offered.
  EXPECT_EQ(cluster_->pick(&good), &bad);
  warm(good);
  EXPECT_EQ(good.idle_count(), 1u);
  EXPECT_EQ(stats_.idle_connections.get(), 1u);
}

// An address used while ejected (every address of its cluster is) fails again and again: the
// ejection it is in does not grow with each failure, the next one does.
TEST_F(UpstreamClusterTest, FailuresWhileEjectedDoNotGrowTheEjection) {
  make_cluster(LoadBalancing::kRoundRobin, {address(closed_port())});
  UpstreamPool& only = *cluster_->pools()[0];
  attempt(only);
  attempt(only);
  ASSERT_TRUE(only.ejected(ctx_.now_ms()));
  const uint64_t until = only.ejected_until_ms();
  EXPECT_EQ(cluster_->pick(), &only);  // the least-ejected, since all are
  for (int i = 0; i < 20; ++i) attempt(only);
  EXPECT_EQ(only.ejected_until_ms(), until);
  EXPECT_EQ(stats_.ejections.get(), 1u);
  EXPECT_EQ(stats_.connect_failures.get(), 22u);
}

TEST_F(UpstreamClusterTest, NewAddressesKeepPoolsRetireVanishedOnesAndSweepFreesThem) {
  uint16_t a = open_port(), b = open_port(), c = open_port();
  make_cluster(LoadBalancing::kRoundRobin, {address(a), address(b)});
  UpstreamPool* pool_a = cluster_->pools()[0].get();
  UpstreamPool* pool_b = cluster_->pools()[1].get();
  warm(*pool_a);  // an idle pooled connection to a
  warm(*pool_b);
  ASSERT_EQ(pool_a->idle_count(), 1u);
  EXPECT_EQ(stats_.idle_connections.get(), 2u);

  cluster_->set_addresses({address(b), address(c)});
  ASSERT_EQ(cluster_->address_count(), 2u);
  EXPECT_EQ(cluster_->pools()[0].get(), pool_b);  // kept, with its connection
  EXPECT_EQ(pool_b->idle_count(), 1u);
  EXPECT_NE(cluster_->pools()[1].get(), pool_a);
  // a's idle connection closed; once its close completes the retired pool is swept away.
  EXPECT_EQ(stats_.idle_connections.get(), 1u);
  for (int i = 0; i < 4; ++i) EXPECT_NE(cluster_->pick(), pool_a);
  while (cluster_->has_retired_pools()) {
    uv_run(&loop_, UV_RUN_NOWAIT);
    cluster_->sweep();
  }

  // A pool in use by an exchange is not freed until the exchange lets go.
  cluster_->pools()[0]->add_user();
  cluster_->set_addresses({address(c)});
  cluster_->sweep();
  EXPECT_TRUE(cluster_->has_retired_pools());
  pool_b->remove_user();
  while (cluster_->has_retired_pools()) {
    uv_run(&loop_, UV_RUN_NOWAIT);
    cluster_->sweep();
  }

  // A retired cluster is gone once nothing uses it.
  cluster_->add_user();
  cluster_->retire();
  EXPECT_EQ(cluster_->pick(), nullptr);
  EXPECT_FALSE(cluster_->sweep());
  cluster_->remove_user();
  EXPECT_TRUE(cluster_->sweep());
}

}  // namespace
}  // namespace sluice
